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

// componentSource serves one component of a single-file checkpoint (LDM,
// SGM, SD3 or FLUX layout) under diffusers names, reshaping, cutting fused
// rows, transposing and swapping halves where the mapping says.
type componentSource struct {
	f    weightsFile
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
		return nil, fmt.Errorf("%s: no tensor for %q", s.f, name)
	}
	t, err := s.f.view(r.Source)
	if err != nil {
		return nil, err
	}
	if _, err := r.Apply(t.Shape()); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", s.f, name, err)
	}
	if r.Sliced() {
		// A copy, so q, k and v do not each keep the whole fused tensor.
		t = t.Narrow(0, r.Rows[0], r.Rows[1]-r.Rows[0]).Clone()
	}
	if r.Transpose {
		t = t.Transpose(0, 1).Contiguous()
	}
	if r.Swap {
		t = swapHalves(t)
	}
	if r.Reshape {
		t = t.Reshape(r.Shape...)
	}
	if !slices.Equal(t.Shape(), r.Shape) {
		return nil, fmt.Errorf("%s: %s from %s has shape %v, want %v", s.f, name, r.Source, t.Shape(), r.Shape)
	}
	return t, nil
}

// swapHalves swaps the halves of t's first dimension, in t's dtype: the
// stored blocks or fp8 codes moved as they are (tensor.JoinRows), 16-bit
// values rounded back from Concat's float32 (exactly, since they came
// from 16 bits). Quantised halves that are not whole blocks become
// float32, which is what they decode to.
func swapHalves(t *tensor.Tensor) *tensor.Tensor {
	h := t.Dim(0) / 2
	a, b := t.Narrow(0, h, h), t.Narrow(0, 0, h)
	if t.DType().Quantized() {
		if s, ok := tensor.JoinRows(a, b); ok {
			return s
		}
		return tensor.Concat(0, a, b)
	}
	return tensor.Concat(0, a, b).ToDType(t.DType())
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
	vaeFiles  openFiles // a VAE given by Options.Components
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
	c.vaeFiles.close()
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

// SD21SchedulerConfig is stabilityai/stable-diffusion-2-1's
// scheduler_config.json, which diffusers' single-file loader uses for SD
// 2.x files (v-prediction; see checkpoint.SD21).
const SD21SchedulerConfig = `{"_class_name": "DDIMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
 "beta_start": 0.00085, "clip_sample": false, "num_train_timesteps": 1000, "prediction_type": "v_prediction",
 "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1, "trained_betas": null}`

func loadSingleFile(path string, opt LoadOptions) (*Components, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	m, err := checkpoint.Detect(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return loadLDM(f, m, opt)
}

// NewComponents builds the unloaded models of an SD 1.x/2.x single-file
// model from its configs.
func NewComponents(m checkpoint.Model) (*Components, error) {
	if m.SGM() || m.TextEncoder == nil {
		return nil, fmt.Errorf("%s is not an SD 1.x/2.x model (one text encoder)", m.Name)
	}
	c := &Components{Name: m.Name}
	var err error
	if c.TextEncoder, err = clip.New(*m.TextEncoder); err != nil {
		return nil, fmt.Errorf("text_encoder: %w", err)
	}
	if c.UNet, err = unet.New(m.UNet); err != nil {
		return nil, fmt.Errorf("unet: %w", err)
	}
	if c.VAE, err = vae.New(m.VAE); err != nil {
		return nil, fmt.Errorf("vae: %w", err)
	}
	if m.Prediction == "v_prediction" {
		// The single file does not say; the model's reference pipeline does.
		c.Scheduler = json.RawMessage(SD21SchedulerConfig)
	}
	return c, nil
}

// parts lists the models under their diffusers folder names.
func (c *Components) parts() []namedModule {
	return []namedModule{{"text_encoder", c.TextEncoder}, {"unet", c.UNet}, {"vae", c.VAE}}
}

// loadLDM builds the models of m and loads them from an LDM-layout file.
// It takes ownership of f.
func loadLDM(f *safetensors.File, m checkpoint.Model, opt LoadOptions) (*Components, error) {
	path := f.Path
	mp, err := checkpoint.Convert(f, m)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c, err := NewComponents(m)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.files = []*safetensors.File{f}
	for _, part := range c.parts() {
		if err := nn.Load(part.m, "", componentSource{newSTFile(f), mp.Component(part.name)}, opt.nnOpts()); err != nil {
			c.Close()
			return nil, fmt.Errorf("%s: %s: %w", path, part.name, err)
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
