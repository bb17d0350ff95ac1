// Package pipeline runs the denoising pipelines (text-to-image,
// image-to-image, inpainting) over the model families, and loads their
// components from diffusers folders and single-file checkpoints.
package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/diffuse-go/diffuse/checkpoint"
	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// componentSource serves one component of a single-file checkpoint (LDM or
// SGM layout) under diffusers names, reshaping, cutting fused q/k/v rows and
// transposing where the mapping says.
type componentSource struct {
	f    *safetensors.File
	comp checkpoint.Component
}

func (s componentSource) Names() []string {
	out := make([]string, 0, len(s.comp))
	for n := range s.comp {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (s componentSource) Shape(name string) ([]int, bool) {
	r, ok := s.comp[name]
	return r.Shape, ok
}

func (s componentSource) Tensor(name string) (*tensor.Tensor, error) {
	r, ok := s.comp[name]
	if !ok {
		return nil, fmt.Errorf("%s: no tensor for %q", s.f.Path, name)
	}
	t, err := nn.ViewTensor(s.f, r.Source)
	if err != nil {
		return nil, err
	}
	if _, err := r.Apply(t.Shape()); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", s.f.Path, name, err)
	}
	if r.Sliced() {
		// A copy, so q, k and v do not each keep the whole fused tensor.
		t = t.Narrow(0, r.Rows[0], r.Rows[1]-r.Rows[0]).Clone()
	}
	if r.Transpose {
		t = t.Transpose(0, 1).Contiguous()
	}
	if r.Reshape {
		t = t.Reshape(r.Shape...)
	}
	if !slices.Equal(t.Shape(), r.Shape) {
		return nil, fmt.Errorf("%s: %s from %s has shape %v, want %v", s.f.Path, name, r.Source, t.Shape(), r.Shape)
	}
	return t, nil
}

// Components are the loaded models of a Stable Diffusion checkpoint.
type Components struct {
	Name        string
	TextEncoder *clip.Model
	UNet        *unet.Model
	VAE         *vae.Model
	// Scheduler is the scheduler config of a diffusers folder (nil for single files).
	Scheduler json.RawMessage
	files     []*safetensors.File
}

// Close unmaps the checkpoint files. The models read their weights from
// those mappings (16- and 32-bit float tensors are not copied at load; see
// nn.ViewTensor), so they must not be used after Close. It is safe to call
// more than once.
func (c *Components) Close() {
	for _, f := range c.files {
		f.Close()
	}
	c.files = nil
}

// keepMapped hands back the pages of the mapped files that loading touched
// (vectors widened, weights converted; the models read them back if they
// need them) and returns those files: the others were read into memory,
// every tensor copied from them, so they are closed and let go.
func keepMapped(files []*safetensors.File) []*safetensors.File {
	var kept []*safetensors.File
	for _, f := range files {
		if f.Mapped() {
			f.DropPages()
			kept = append(kept, f)
		} else {
			f.Close()
		}
	}
	return kept
}

// dropPages lets the pages that loading touched (vectors widened, weights
// converted) leave memory; the models read them back if they need them.
func (c *Components) dropPages() {
	c.files = keepMapped(c.files)
}

// LoadOptions tune loading.
type LoadOptions struct {
	// DType stores matrix weights as F16/BF16/F32; zero keeps the file's dtype.
	DType *tensor.DType
}

func (o LoadOptions) nnOpts() nn.LoadOptions { return nn.LoadOptions{KeepDType: true} }

// convert applies o.DType to every matrix weight of m.
func (o LoadOptions) convert(m nn.Module) {
	if o.DType == nil {
		return
	}
	var ps nn.Params
	m.Params("", &ps)
	for _, p := range ps.List() {
		if t := *p.Ptr; t != nil && t.Rank() >= 2 && t.DType() != *o.DType {
			*p.Ptr = t.ToDType(*o.DType)
		}
	}
}

// Load opens an SD 1.x model: a diffusers folder (with model_index.json) or a
// single-file .safetensors checkpoint in the original LDM layout.
func Load(path string, opt LoadOptions) (*Components, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return loadFolder(path, opt)
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".safetensors":
		return loadSingleFile(path, opt)
	case ".ckpt", ".pt", ".pth", ".bin":
		return nil, fmt.Errorf("%s: pickle checkpoints are refused because loading them can run arbitrary code; convert it to .safetensors first", path)
	}
	return nil, fmt.Errorf("%s: unknown checkpoint type (want a .safetensors file or a diffusers folder)", path)
}

// Configs are the model configs a single-file checkpoint is built with.
type Configs struct {
	TextEncoder clip.Config
	UNet        unet.Config
	VAE         vae.Config
}

// SD15Configs are the built-in SD 1.x configs (inChannels 9 for inpainting).
func SD15Configs(inChannels int) Configs {
	return Configs{TextEncoder: clip.SD15(), UNet: unet.SD15(inChannels), VAE: vae.SD()}
}

func loadSingleFile(path string, opt LoadOptions) (*Components, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	layout, err := checkpoint.Detect(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return loadLDM(f, layout, SD15Configs(layout.UNet.InChannels), opt)
}

// loadLDM builds the models of cfgs from an LDM-layout file matched against layout.
func loadLDM(f *safetensors.File, layout checkpoint.Model, cfgs Configs, opt LoadOptions) (*Components, error) {
	path := f.Path
	mp, err := checkpoint.ConvertLDM(f, layout)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c := &Components{Name: mp.Model.Name, files: []*safetensors.File{f}}
	fail := func(err error) (*Components, error) { c.Close(); return nil, fmt.Errorf("%s: %w", path, err) }
	if c.TextEncoder, err = clip.New(cfgs.TextEncoder); err != nil {
		return fail(err)
	}
	if c.UNet, err = unet.New(cfgs.UNet); err != nil {
		return fail(err)
	}
	if c.VAE, err = vae.New(cfgs.VAE); err != nil {
		return fail(err)
	}
	for _, part := range []struct {
		name string
		m    nn.Module
		comp checkpoint.Component
	}{{"text encoder", c.TextEncoder, mp.TextEncoder}, {"unet", c.UNet, mp.UNet}, {"vae", c.VAE, mp.VAE}} {
		if err := nn.Load(part.m, "", componentSource{f, part.comp}, opt.nnOpts()); err != nil {
			return fail(fmt.Errorf("%s: %w", part.name, err))
		}
		opt.convert(part.m)
	}
	c.dropPages()
	return c, nil
}

// weightFile finds a component's weights in a diffusers folder.
func weightFile(dir string) (string, error) {
	for _, n := range []string{"diffusion_pytorch_model.safetensors", "model.safetensors",
		"diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors"} {
		p := filepath.Join(dir, n)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "diffusion_pytorch_model.bin")); err == nil {
		return "", fmt.Errorf("%s: only .bin (pickle) weights found; convert them to safetensors", dir)
	}
	return "", fmt.Errorf("%s: no safetensors weights found", dir)
}

func loadFolder(dir string, opt LoadOptions) (*Components, error) {
	if _, err := os.Stat(filepath.Join(dir, "model_index.json")); err != nil {
		return nil, fmt.Errorf("%s: not a diffusers folder (no model_index.json)", dir)
	}
	c := &Components{Name: filepath.Base(dir)}
	fail := func(err error) (*Components, error) { c.Close(); return nil, err }
	read := func(sub string) ([]byte, *safetensors.File, error) {
		cfg, err := os.ReadFile(filepath.Join(dir, sub, "config.json"))
		if err != nil {
			return nil, nil, err
		}
		wp, err := weightFile(filepath.Join(dir, sub))
		if err != nil {
			return nil, nil, err
		}
		f, err := safetensors.Open(wp)
		if err != nil {
			return nil, nil, err
		}
		c.files = append(c.files, f)
		return cfg, f, nil
	}
	cfg, f, err := read("text_encoder")
	if err != nil {
		return fail(err)
	}
	tc, err := clip.ParseConfig(cfg)
	if err != nil {
		return fail(err)
	}
	if c.TextEncoder, err = clip.New(tc); err != nil {
		return fail(err)
	}
	if err := loadInto(c.TextEncoder, f, opt); err != nil {
		return fail(err)
	}
	if cfg, f, err = read("unet"); err != nil {
		return fail(err)
	}
	uc, err := unet.ParseConfig(cfg)
	if err != nil {
		return fail(err)
	}
	if c.UNet, err = unet.New(uc); err != nil {
		return fail(err)
	}
	if err := loadInto(c.UNet, f, opt); err != nil {
		return fail(err)
	}
	if cfg, f, err = read("vae"); err != nil {
		return fail(err)
	}
	vc, err := vae.ParseConfig(cfg)
	if err != nil {
		return fail(err)
	}
	if c.VAE, err = vae.New(vc); err != nil {
		return fail(err)
	}
	if err := loadInto(c.VAE, f, opt); err != nil {
		return fail(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "scheduler", "scheduler_config.json")); err == nil {
		c.Scheduler = b
	} else if !errors.Is(err, os.ErrNotExist) {
		return fail(err)
	}
	c.dropPages()
	return c, nil
}

func loadInto(m nn.Module, f *safetensors.File, opt LoadOptions) error {
	// transformers checkpoints carry a position_ids buffer the model does not use.
	o := opt.nnOpts()
	src := filteredSource{nn.FileSource{F: f, InPlace: true}}
	if err := nn.Load(m, "", src, o); err != nil {
		return fmt.Errorf("%s: %w", f.Path, err)
	}
	opt.convert(m)
	return nil
}

// filteredSource hides buffers that are not parameters.
type filteredSource struct{ nn.FileSource }

func (s filteredSource) Names() []string {
	var out []string
	for _, n := range s.FileSource.Names() {
		if !checkpoint.Ignorable(n) && !transformersBuffers[n] {
			out = append(out, n)
		}
	}
	return out
}

// transformersBuffers are the buffers transformers saved with a diffusers
// folder's text encoder weights before it made them non-persistent:
// CLIPTextEmbeddings' position_ids, BertEmbeddings' position_ids and
// token_type_ids. No parameter takes them.
var transformersBuffers = map[string]bool{
	"text_model.embeddings.position_ids": true,
	"embeddings.position_ids":            true,
	"embeddings.token_type_ids":          true,
}
