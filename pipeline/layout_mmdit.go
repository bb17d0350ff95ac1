package pipeline

import (
	"slices"

	"github.com/diffuse-go/diffuse/checkpoint"
	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/flux"
	"github.com/diffuse-go/diffuse/model/sd3"
	"github.com/diffuse-go/diffuse/model/t5"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/nn"
)

// TensorSpec is one tensor of a checkpoint layout: its name and shape.
type TensorSpec struct {
	Name  string
	Shape []int
}

// moduleTensors lists a module's parameters under prefix (the layout of
// transformers- and diffusers-named files).
func moduleTensors(m nn.Module, prefix string) []TensorSpec {
	var ps nn.Params
	m.Params("", &ps)
	out := make([]TensorSpec, 0, len(ps.List()))
	for _, p := range ps.List() {
		out = append(out, TensorSpec{Name: prefix + p.Name, Shape: p.Shape})
	}
	return out
}

// SD3FileLayout lists the tensors of an original SD3 single file
// (Stability's and ComfyUI's sd3_medium_incl_clips_t5xxlfp16 layout) for
// these configs; t5c nil leaves T5 out. It is the loader's mapping
// (checkpoint.SD3 and checkpoint.LDMVAE) run backwards, for writing test
// and benchmark files.
func SD3FileLayout(tr sd3.Config, clipL, clipG clip.Config, t5c *t5.Config, v vae.Config) ([]TensorSpec, error) {
	m, err := sd3.New(tr)
	if err != nil {
		return nil, err
	}
	out, err := originalTensors(m, checkpoint.SD3, sd3FileTransformer)
	if err != nil {
		return nil, err
	}
	for _, enc := range []struct {
		c      clip.Config
		prefix string
	}{{clipL, sd3FileCLIPL}, {clipG, sd3FileCLIPG}} {
		enc.c.WithProjection = true
		cm, err := clip.New(enc.c)
		if err != nil {
			return nil, err
		}
		out = append(out, moduleTensors(cm, enc.prefix)...)
	}
	if t5c != nil {
		tm, err := t5.New(*t5c)
		if err != nil {
			return nil, err
		}
		out = append(out, t5Tensors(tm, sd3FileT5)...)
	}
	vs, err := VAEFileLayout(v, sd3FileVAE)
	if err != nil {
		return nil, err
	}
	return append(out, vs...), nil
}

// t5Tensors lists a T5 encoder's tensors as transformers saves them: the
// tied embedding once, as shared.weight.
func t5Tensors(m *t5.Model, prefix string) []TensorSpec {
	return slices.DeleteFunc(moduleTensors(m, prefix), func(s TensorSpec) bool {
		return s.Name == prefix+"encoder.embed_tokens.weight"
	})
}

// T5FileLayout lists a T5 encoder file's tensors (transformers names, as
// ComfyUI's t5xxl_fp16.safetensors).
func T5FileLayout(c t5.Config) ([]TensorSpec, error) {
	m, err := t5.New(c)
	if err != nil {
		return nil, err
	}
	return t5Tensors(m, ""), nil
}

// CLIPFileLayout lists a CLIP text encoder file's tensors (transformers
// names, as ComfyUI's clip_l.safetensors).
func CLIPFileLayout(c clip.Config) ([]TensorSpec, error) {
	m, err := clip.New(c)
	if err != nil {
		return nil, err
	}
	return moduleTensors(m, ""), nil
}

// VAEFileLayout lists an AutoencoderKL's tensors in the original (LDM)
// layout under prefix (BFL's ae.safetensors: no prefix).
func VAEFileLayout(c vae.Config, prefix string) ([]TensorSpec, error) {
	m, err := vae.New(c)
	if err != nil {
		return nil, err
	}
	return originalTensors(m, checkpoint.LDMVAE, prefix)
}

// FluxFileLayout lists the tensors of a BFL FLUX transformer file
// (flux1-dev.safetensors, flux1-schnell.safetensors) for c: the names of
// checkpoint.Flux.
func FluxFileLayout(c flux.Config) ([]TensorSpec, error) {
	m, err := flux.New(c)
	if err != nil {
		return nil, err
	}
	return originalTensors(m, checkpoint.Flux, "")
}
