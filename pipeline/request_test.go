package pipeline_test

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
	cliptok "github.com/diffuse-go/diffuse/tokenizer/clip"
)

// tinySD is the low-level SD pipeline of the tiny folder.
func tinySD(t *testing.T) *pipeline.SD {
	t.Helper()
	c, err := pipeline.Load(tinyModels(t).SD, pipeline.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	tok, err := cliptok.New(cliptok.Options{Pad: cliptok.PadEOS})
	if err != nil {
		t.Fatal(err)
	}
	return &pipeline.SD{TextEncoder: c.TextEncoder, Tokenizer: tok, UNet: c.UNet, VAE: c.VAE}
}

func euler(t *testing.T) scheduler.Scheduler {
	t.Helper()
	cfg, err := scheduler.ParseConfig([]byte(pipeline.SD15SchedulerConfig))
	if err != nil {
		t.Fatal(err)
	}
	s, err := scheduler.New("euler", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func images(n, h, w, ch int, v float32) *tensor.Tensor {
	x := tensor.Zeros(n, h, w, ch)
	for i := range x.Data() {
		x.Data()[i] = v
	}
	return x
}

// TestSDRequestErrors sends pipeline.SD requests with mismatched counts
// and shapes: each gets a named error, never a panic.
func TestSDRequestErrors(t *testing.T) {
	p := tinySD(t)
	nanLatents := tensor.Zeros(1, 4, 4, 4)
	nanLatents.Data()[3] = float32(math.NaN())
	cases := []struct {
		name string
		edit func(r *pipeline.Request)
		want string
	}{
		{"negatives for other prompts", func(r *pipeline.Request) {
			r.Prompts, r.NegativePrompts = []string{"a", "b", "c"}, []string{"x", "y"}
		}, "negative prompts"},
		{"no prompt", func(r *pipeline.Request) { r.Prompts = nil }, "no prompt"},
		{"three images two masks", func(r *pipeline.Request) {
			r.InitImage, r.Mask, r.Strength = images(3, 32, 32, 3, 0.5), images(2, 32, 32, 1, 1), 0.5
		}, "masks"},
		{"image of another size", func(r *pipeline.Request) { r.InitImage, r.Strength = images(1, 16, 32, 3, 0.5), 0.5 }, "init image shape"},
		{"mask of another size", func(r *pipeline.Request) {
			r.InitImage, r.Mask, r.Strength = images(1, 32, 32, 3, 0.5), images(1, 32, 16, 1, 1), 0.5
		}, "mask shape"},
		{"NaN in the image", func(r *pipeline.Request) {
			r.InitImage, r.Strength = images(1, 32, 32, 3, float32(math.NaN())), 0.5
		}, "NaN"},
		{"latents of the wrong shape", func(r *pipeline.Request) { r.Latents = tensor.Zeros(1, 4, 8, 8) }, "latents shape"},
		{"NaN latents", func(r *pipeline.Request) { r.Latents = nanLatents }, "NaN"},
		{"strength 0", func(r *pipeline.Request) { r.InitImage, r.Strength = images(1, 32, 32, 3, 0.5), 0 }, "strength"},
		{"no scheduler", func(r *pipeline.Request) { r.Scheduler = nil }, "scheduler"},
		{"guidance NaN", func(r *pipeline.Request) { r.Guidance = math.NaN() }, "guidance"},
		{"images per prompt huge", func(r *pipeline.Request) { r.ImagesPerPrompt = 1 << 20 }, "images per prompt"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := pipeline.Request{Prompts: []string{"x"}, Width: 32, Height: 32, Steps: 2, Guidance: 5,
				Scheduler: euler(t), Noise: rng.New(1)}
			c.edit(&r)
			_, err := p.Generate(context.Background(), r)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error mentioning %q", err, c.want)
			}
		})
	}
}

// TestBroadcastImageAndMask: one init image and one mask serve a batch of
// prompts, as diffusers repeats them.
func TestBroadcastImageAndMask(t *testing.T) {
	p := tinySD(t)
	for _, mask := range []*tensor.Tensor{nil, images(1, 32, 32, 1, 1)} {
		r := pipeline.Request{Prompts: []string{"a", "b"}, Width: 32, Height: 32, Steps: 2, Guidance: 5,
			Scheduler: euler(t), Noise: rng.New(1), InitImage: images(1, 32, 32, 3, 0.3), Mask: mask, Strength: 0.8,
			ImagesPerPrompt: 2}
		res, err := p.Generate(context.Background(), r)
		if err != nil {
			t.Fatalf("mask %v: %v", mask != nil, err)
		}
		if got := res.Images.Shape(); got[0] != 4 || got[1] != 32 || got[2] != 32 {
			t.Errorf("mask %v: images %v, want 4 of 32×32", mask != nil, got)
		}
	}
}
