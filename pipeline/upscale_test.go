package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
)

// upscaleCase is testdata/upscale/case.json: diffusers'
// StableDiffusionUpscalePipeline run on tiny random models with prompt
// embeddings given (see its "about").
type upscaleCase struct {
	UNet      json.RawMessage `json:"unet"`
	VAE       json.RawMessage `json:"vae"`
	Scheduler json.RawMessage `json:"scheduler"`
	LowRes    json.RawMessage `json:"low_res_scheduler"`
	Call      struct {
		Steps      int     `json:"num_inference_steps"`
		Guidance   float64 `json:"guidance_scale"`
		NoiseLevel int     `json:"noise_level"`
		Seed       uint64  `json:"seed"`
	} `json:"call"`
	MaxNoiseLevel int `json:"max_noise_level"`
}

// loadUpscaleCase builds the case's pipeline and reads its tensors.
func loadUpscaleCase(t *testing.T) (*upscaleCase, *SDUpscale, map[string]*tensor.Tensor) {
	t.Helper()
	dir := filepath.Join("testdata", "upscale")
	b, err := os.ReadFile(filepath.Join(dir, "case.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c upscaleCase
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	uc, err := unet.ParseConfig(c.UNet)
	if err != nil {
		t.Fatal(err)
	}
	u, err := unet.New(uc)
	if err != nil {
		t.Fatal(err)
	}
	vc, err := vae.ParseConfig(c.VAE)
	if err != nil {
		t.Fatal(err)
	}
	v, err := vae.New(vc)
	if err != nil {
		t.Fatal(err)
	}
	w, err := safetensors.Open(filepath.Join(dir, "weights.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	for prefix, m := range map[string]nn.Module{"unet.": u, "vae.": v} {
		if err := nn.Load(m, prefix, nn.FileSource{F: w}, nn.LoadOptions{AllowUnused: true}); err != nil {
			t.Fatal(err)
		}
	}
	low, err := scheduler.FromJSON(c.LowRes)
	if err != nil {
		t.Fatal(err)
	}
	io, err := safetensors.Open(filepath.Join(dir, "io.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { io.Close() })
	tensors := map[string]*tensor.Tensor{}
	for _, n := range io.Names() {
		d, shape, err := io.Float32(n)
		if err != nil {
			t.Fatal(err)
		}
		tensors[n] = tensor.FromSlice(d, shape...)
	}
	return &c, &SDUpscale{UNet: u, VAE: v, NoisingScheduler: low, MaxNoiseLevel: c.MaxNoiseLevel}, tensors
}

// TestSDUpscaleMatchesDiffusers runs the ×4 upscaler's loop on the
// reference's inputs and compares each step's latents and the images.
func TestSDUpscaleMatchesDiffusers(t *testing.T) {
	c, p, io := loadUpscaleCase(t)
	s, err := scheduler.FromJSON(c.Scheduler)
	if err != nil {
		t.Fatal(err)
	}
	var steps []*tensor.Tensor
	out, err := p.Generate(context.Background(), UpscaleRequest{PromptEmbeds: io["prompt_embeds"], NegativeEmbeds: io["negative_prompt_embeds"],
		Image: io["image"], Steps: c.Call.Steps, Guidance: c.Call.Guidance, NoiseLevel: c.Call.NoiseLevel, Scheduler: s,
		Noise: rng.New(c.Call.Seed), OnStep: func(_ int, _ float64, l *tensor.Tensor) { steps = append(steps, l) }})
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range steps {
		want, ok := io[fmt.Sprintf("latents.%d", i)]
		if !ok {
			t.Fatalf("step %d: the reference has no latents", i)
		}
		if d := tensor.MaxAbsDiff(l, want); d > 1e-4 {
			t.Errorf("step %d: latents differ by %g", i, d)
		}
	}
	if len(steps) != c.Call.Steps {
		t.Fatalf("%d steps, want %d", len(steps), c.Call.Steps)
	}
	want := io["images"]
	if !tensor.SameShape(out.Shape(), want.Shape()) {
		t.Fatalf("images %v, want %v", out.Shape(), want.Shape())
	}
	got := tensor.Clamp(tensor.AddScalar(tensor.Scale(out, 0.5), 0.5), 0, 1)
	if d := tensor.MaxAbsDiff(got, want); d > 1e-4 {
		t.Errorf("images differ by %g", d)
	}
}

// TestSDUpscaleBadRequests checks the upscaler's requests are validated.
func TestSDUpscaleBadRequests(t *testing.T) {
	c, p, io := loadUpscaleCase(t)
	good := func() UpscaleRequest {
		s, err := scheduler.FromJSON(c.Scheduler)
		if err != nil {
			t.Fatal(err)
		}
		return UpscaleRequest{PromptEmbeds: io["prompt_embeds"], NegativeEmbeds: io["negative_prompt_embeds"], Image: io["image"],
			Steps: 1, Guidance: 2, NoiseLevel: 20, Scheduler: s, Noise: rng.New(0)}
	}
	for _, tc := range []struct {
		name string
		edit func(r *UpscaleRequest)
	}{
		{"noise level above max_noise_level", func(r *UpscaleRequest) { r.NoiseLevel = c.MaxNoiseLevel + 1 }},
		{"negative noise level", func(r *UpscaleRequest) { r.NoiseLevel = -1 }},
		{"no image", func(r *UpscaleRequest) { r.Image = nil }},
		{"one image for two prompts", func(r *UpscaleRequest) { r.Image = r.Image.Narrow(0, 0, 1) }},
		{"image side not a multiple of the UNet's", func(r *UpscaleRequest) { r.Image = r.Image.Narrow(3, 0, 10) }},
		{"zero steps", func(r *UpscaleRequest) { r.Steps = 0 }},
		{"no noise source", func(r *UpscaleRequest) { r.Noise = nil }},
		{"NaN in the image", func(r *UpscaleRequest) {
			x := r.Image.Contiguous().Clone()
			x.Data()[0] = float32(math.NaN())
			r.Image = x
		}},
	} {
		r := good()
		tc.edit(&r)
		if _, err := p.Generate(context.Background(), r); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	if _, err := p.Generate(context.Background(), good()); err != nil {
		t.Fatalf("the good request fails: %v", err)
	}
}
