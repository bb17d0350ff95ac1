package pipeline

import (
	"encoding/json"
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

// tinyModels loads the golden cases' tiny UNet, VAE and CLIP (diffusers names).
func tinyModels(t *testing.T) (*Components, checkpoint.Model, Configs) {
	t.Helper()
	var layout checkpoint.Model
	var cfgs Configs
	c := &Components{}
	for _, part := range []string{"unet_sd15", "vae", "clip_text"} {
		gc, err := golden.Find(part)
		if err != nil {
			t.Fatal(err)
		}
		w, err := gc.Weights("")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(gc.Close)
		var m nn.Module
		switch part {
		case "unet_sd15":
			cfgs.UNet, err = unet.ParseConfig(gc.Config)
			if err == nil {
				c.UNet, err = unet.New(cfgs.UNet)
				m = c.UNet
			}
			if err == nil {
				err = json.Unmarshal(gc.Config, &layout.UNet)
			}
		case "vae":
			cfgs.VAE, err = vae.ParseConfig(gc.Config)
			if err == nil {
				c.VAE, err = vae.New(cfgs.VAE)
				m = c.VAE
			}
			if err == nil {
				err = json.Unmarshal(gc.Config, &layout.VAE)
			}
		case "clip_text":
			cfgs.TextEncoder, err = clip.ParseConfig(gc.Config)
			if err == nil {
				c.TextEncoder, err = clip.New(cfgs.TextEncoder)
				m = c.TextEncoder
			}
			if err == nil {
				err = json.Unmarshal(gc.Config, &layout.TextEncoder)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := nn.Load(m, "", nn.FileSource{F: w}, nn.LoadOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	layout.Name = "tiny"
	return c, layout, cfgs
}

// TestSingleFileRoundTrip writes the tiny models as an LDM single file (f16)
// and loads them back through the checkpoint mapping.
func TestSingleFileRoundTrip(t *testing.T) {
	c, layout, cfgs := tinyModels(t)
	path := filepath.Join(t.TempDir(), "tiny.safetensors")
	if err := WriteLDM(path, layout, c, tensor.F16); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := loadLDM(f, layout, cfgs, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	for _, pair := range [][2]nn.Module{{c.UNet, got.UNet}, {c.VAE, got.VAE}, {c.TextEncoder, got.TextEncoder}} {
		var a, b nn.Params
		pair[0].Params("", &a)
		pair[1].Params("", &b)
		for i, p := range a.List() {
			want := (*p.Ptr).Float32()
			q := b.List()[i]
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
