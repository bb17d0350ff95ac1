package pipeline

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/checkpoint"
	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// goldenConfig decodes a golden case's config (or its named raw entry).
func goldenConfig(t *testing.T, gc *golden.Case, key string) json.RawMessage {
	t.Helper()
	if key == "" {
		return gc.Config
	}
	raw, ok := gc.Raw[key]
	if !ok {
		t.Fatalf("golden case %s has no %s", gc.Name, key)
	}
	return raw
}

// loadGolden fills m's parameters from a golden case's weights file.
func loadGolden(t *testing.T, gc *golden.Case, file string, m nn.Module, opt nn.LoadOptions) {
	t.Helper()
	f, err := gc.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := nn.Load(m, "", nn.FileSource{F: f}, opt); err != nil {
		t.Fatal(err)
	}
}

func findGolden(t *testing.T, name string) *golden.Case {
	t.Helper()
	gc, err := golden.Find(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gc.Close)
	return gc
}

// tinyModels loads the golden cases' tiny UNet, VAE and CLIP (diffusers
// names) as an SD 1.5-style model.
func tinyModels(t *testing.T) (*Components, checkpoint.Model) {
	t.Helper()
	m := checkpoint.SD15()
	m.Name = "tiny"
	u, v, te := findGolden(t, "unet_sd15"), findGolden(t, "vae"), findGolden(t, "clip_text")
	var err error
	if m.UNet, err = unet.ParseConfig(u.Config); err != nil {
		t.Fatal(err)
	}
	if m.VAE, err = vae.ParseConfig(v.Config); err != nil {
		t.Fatal(err)
	}
	tc, err := clip.ParseConfig(te.Config)
	if err != nil {
		t.Fatal(err)
	}
	m.TextEncoder = &tc
	c, err := NewComponents(m)
	if err != nil {
		t.Fatal(err)
	}
	loadGolden(t, u, "weights.safetensors", c.UNet, nn.LoadOptions{})
	loadGolden(t, v, "weights.safetensors", c.VAE, nn.LoadOptions{})
	loadGolden(t, te, "weights.safetensors", c.TextEncoder, nn.LoadOptions{})
	return c, m
}

// tinySD2 is the pipeline_sd2_vpred case's tiny SD 2.x: its UNet, the
// clip_text_proj encoder without projection in OpenCLIP ViT-H's place and
// the vae case.
func tinySD2(t *testing.T) (*Components, checkpoint.Model) {
	t.Helper()
	m := checkpoint.SD21()
	m.Name = "tiny SD 2.x"
	p, v, te := findGolden(t, "pipeline_sd2_vpred"), findGolden(t, "vae"), findGolden(t, "clip_text_proj")
	var err error
	if m.UNet, err = unet.ParseConfig(goldenConfig(t, p, "unet_config")); err != nil {
		t.Fatal(err)
	}
	if m.VAE, err = vae.ParseConfig(v.Config); err != nil {
		t.Fatal(err)
	}
	tc, err := clip.ParseConfig(te.Config)
	if err != nil {
		t.Fatal(err)
	}
	m.TextEncoder = &tc
	c, err := NewComponents(m)
	if err != nil {
		t.Fatal(err)
	}
	loadGolden(t, p, "unet.safetensors", c.UNet, nn.LoadOptions{})
	loadGolden(t, v, "weights.safetensors", c.VAE, nn.LoadOptions{})
	loadGolden(t, te, "weights.safetensors", c.TextEncoder, nn.LoadOptions{AllowUnused: true})
	return c, m
}

// sameWeights compares two models' parameters within f16 rounding,
// requiring matrices kept in f16.
func sameWeights(t *testing.T, a, b nn.Module) {
	t.Helper()
	var x, y nn.Params
	a.Params("", &x)
	b.Params("", &y)
	if len(x.List()) != len(y.List()) {
		t.Fatalf("%d parameters, want %d", len(y.List()), len(x.List()))
	}
	for i, p := range x.List() {
		want := (*p.Ptr).Float32()
		q := y.List()[i]
		have := *q.Ptr
		if len(p.Shape) >= 2 && have.DType() != tensor.F16 {
			t.Fatalf("%s: stored as %v, want f16 kept in memory", q.Name, have.DType())
		}
		// f16 rounding: relative error below 2^-11.
		wd, hd := want.Data(), have.Float32().Data()
		for j := range wd {
			d := wd[j] - hd[j]
			if d < 0 {
				d = -d
			}
			if d > 1e-3*(1+abs32(wd[j])) {
				t.Fatalf("%s[%d]: %g after round trip, want %g", q.Name, j, hd[j], wd[j])
			}
		}
	}
}

// TestSingleFileRoundTrip writes the tiny models as an LDM single file (f16)
// and loads them back through the checkpoint mapping.
func TestSingleFileRoundTrip(t *testing.T) {
	c, m := tinyModels(t)
	path := filepath.Join(t.TempDir(), "tiny.safetensors")
	if err := WriteLDM(path, m, c, tensor.F16); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := loadLDM(f, m, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if got.Scheduler != nil {
		t.Errorf("SD 1.x file got scheduler config %s", got.Scheduler)
	}
	for i, p := range c.parts() {
		sameWeights(t, p.m, got.parts()[i].m)
	}
}

// TestSD2SingleFile writes the tiny SD 2.x as an LDM file with OpenCLIP
// names, adds what real SD 2.x files hold beyond diffusers' model (a last
// layer and the projection), and loads it back: the extra tensors are
// left, the v-prediction scheduler config comes with it.
func TestSD2SingleFile(t *testing.T) {
	c, m := tinySD2(t)
	path := filepath.Join(t.TempDir(), "tiny-sd2.safetensors")
	if err := WriteLDM(path, m, c, tensor.F16); err != nil {
		t.Fatal(err)
	}
	n, h := m.TextEncoder.NumHiddenLayers, m.TextEncoder.HiddenSize
	last := fmt.Sprintf("%stransformer.resblocks.%d.", checkpoint.OpenCLIPPrefix, n)
	path = rewrite(t, path, func(ts []safetensors.Tensor) []safetensors.Tensor {
		return append(ts,
			safetensors.F32Tensor(last+"ln_1.weight", []int{h}, make([]float32, h)),
			safetensors.F32Tensor(last+"attn.in_proj_weight", []int{3 * h, h}, make([]float32, 3*h*h)),
			safetensors.F32Tensor(checkpoint.OpenCLIPPrefix+"text_projection", []int{h, h}, make([]float32, h*h)),
			safetensors.F32Tensor(checkpoint.OpenCLIPPrefix+"logit_scale", nil, []float32{4.6}))
	})
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{checkpoint.OpenCLIPPrefix + "transformer.resblocks.0.attn.in_proj_weight",
		checkpoint.UNetPrefix + "input_blocks.1.1.proj_in.weight", checkpoint.OpenCLIPPrefix + "positional_embedding"} {
		if !f.Has(name) {
			t.Errorf("written file lacks %s", name)
		}
	}
	got, err := loadLDM(f, m, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if !strings.Contains(string(got.Scheduler), `"v_prediction"`) {
		t.Errorf("scheduler config %s, want v_prediction", got.Scheduler)
	}
	for i, p := range c.parts() {
		sameWeights(t, p.m, got.parts()[i].m)
	}
}

func abs32(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.safetensors"), LoadOptions{}); err == nil {
		t.Error("missing file: no error")
	}
	p := filepath.Join(dir, "model.ckpt")
	if err := safetensors.WriteFile(p, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p, LoadOptions{}); err == nil || !strings.Contains(err.Error(), "pickle") {
		t.Errorf("ckpt: got %v, want a refusal naming pickle", err)
	}
	// A safetensors file that is not a checkpoint.
	q := filepath.Join(dir, "x.safetensors")
	if err := safetensors.WriteFile(q, []safetensors.Tensor{safetensors.F32Tensor("foo", []int{1}, []float32{1})}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(q, LoadOptions{}); err == nil || !strings.Contains(err.Error(), "model.diffusion_model") {
		t.Errorf("non-checkpoint: got %v", err)
	}
	if _, err := Load(dir, LoadOptions{}); err == nil || !strings.Contains(err.Error(), "model_index.json") {
		t.Errorf("folder without model_index.json: got %v", err)
	}
}
