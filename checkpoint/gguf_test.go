package checkpoint

import (
	"bytes"
	"testing"

	"github.com/diffuse-go/diffuse/gguf"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
)

// ggufDiffusion serves the diffusion model of a GGUF file as a checkpoint
// Source under its original names: gguf.DiffusionModelNames strips
// stable-diffusion.cpp's prefix (and drops the other components) as
// ComfyUI-GGUF's loader does.
type ggufDiffusion struct {
	f     *gguf.File
	names map[string]string // original name → name in the file
}

func (g ggufDiffusion) Names() []string {
	out := make([]string, 0, len(g.names))
	for n := range g.names {
		out = append(out, n)
	}
	return out
}

func (g ggufDiffusion) Info(name string) (safetensors.TensorInfo, bool) {
	info, ok := g.f.Info(g.names[name])
	if !ok {
		return safetensors.TensorInfo{}, false
	}
	return safetensors.TensorInfo{Name: name, Shape: info.Shape}, true
}

// ggufTensors is the tiny model's original layout with its names as
// given, matrices Q8_0 where their rows are whole blocks (as the GGUF
// files people download), F16 otherwise, vectors F32. The data is zero:
// only names and shapes are read.
func ggufTensors(t *testing.T, layout fakeSource, original []string, rename func(string) string) []gguf.Tensor {
	t.Helper()
	var out []gguf.Tensor
	for _, n := range original {
		shape, ok := layout[n]
		if !ok {
			t.Fatalf("the rules have no tensor %s", n)
		}
		typ := gguf.F32
		switch {
		case len(shape) == 2 && shape[1]%32 == 0:
			typ = gguf.Q8_0
		case len(shape) >= 2:
			typ = gguf.F16
		}
		elems := 1
		for _, d := range shape {
			elems *= d
		}
		size, err := typ.RowBytes(elems)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, gguf.Tensor{Name: rename(n), Type: typ, Shape: shape, Data: make([]byte, size)})
	}
	return out
}

// TestGGUFNames reads the FLUX and SD3 tensor lists of GGUF files as
// ComfyUI-GGUF writes them (original names, general.architecture) and as
// stable-diffusion.cpp writes them (model.diffusion_model.*, other
// components beside it, no architecture) and maps both onto the diffusers
// names through the same rules as the safetensors files.
func TestGGUFNames(t *testing.T) {
	archRules := map[string]Rules{"flux": Flux, "sd3": SD3}
	for _, c := range []struct {
		arch     string
		m        nn.Module
		original []string
		refs     map[string]mmditRef
		others   []string // stable-diffusion.cpp's other components
	}{
		{"flux", tinyFlux(t), bflNames, fluxRefs, []string{"first_stage_model.decoder.conv_in.weight",
			"text_encoders.clip_l.transformer.text_model.final_layer_norm.weight", "text_encoders.t5xxl.transformer.shared.weight"}},
		{"sd3", tinySD3(t), mmditNames, sd3Refs, []string{"first_stage_model.decoder.conv_in.weight",
			"text_encoders.clip_g.transformer.text_projection.weight"}},
		{"sd3", tinySD35(t), sd35Names, sd35Refs, []string{"first_stage_model.decoder.conv_in.weight",
			"text_encoders.clip_g.transformer.text_projection.weight"}},
	} {
		ps, err := archRules[c.arch].Names(c.m)
		if err != nil {
			t.Fatal(err)
		}
		layout := layoutOf(ps, "")
		comfy := ggufTensors(t, layout, c.original, func(n string) string { return n })
		sdcpp := ggufTensors(t, layout, c.original, func(n string) string { return gguf.DiffusionModelPrefix + n })
		for _, o := range c.others {
			sdcpp = append(sdcpp, gguf.Tensor{Name: o, Type: gguf.F32, Shape: []int{4}, Data: make([]byte, 16)})
		}
		for _, file := range []struct {
			tool    string
			meta    []gguf.KV
			tensors []gguf.Tensor
			prefix  string
		}{
			{"ComfyUI-GGUF", []gguf.KV{{Key: "general.architecture", Value: gguf.MustValue(c.arch)}}, comfy, ""},
			{"stable-diffusion.cpp", nil, sdcpp, gguf.DiffusionModelPrefix},
		} {
			what := c.arch + " " + file.tool
			var buf bytes.Buffer
			if err := gguf.Encode(&buf, file.meta, file.tensors); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			f, err := gguf.Parse(buf.Bytes())
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			arch := f.Architecture()
			if arch == "" {
				arch = gguf.DetectArch(f.Names())
			}
			rules, ok := archRules[arch]
			if !ok {
				t.Fatalf("%s: architecture %q", what, arch)
			}
			params, err := rules.Names(c.m)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			src := ggufDiffusion{f: f, names: gguf.DiffusionModelNames(f.Names())}
			comp, err := MapComponent(src, "", params)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if len(comp) != len(ps) || len(src.names) != len(c.original) {
				t.Errorf("%s: %d of %d parameters mapped from %d tensors, want %d", what, len(comp), len(ps), len(src.names), len(c.original))
			}
			// Where each diffusers parameter is in the file.
			inFile := Component{}
			for name, r := range comp {
				r.Source = src.names[r.Source]
				inFile[name] = r
			}
			checkMMDiTRefs(t, what, inFile, file.prefix, c.refs)
		}
	}
}
