package server

import (
	"context"
	"image"
	"sync"
	"sync/atomic"
	"time"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/tensor"
)

// fakeModel stands in for a model where timing matters: every step takes
// delay, reports latents and honours cancellation; images are coloured by
// seed so that tests can tell them apart.
type fakeModel struct {
	delay   time.Duration
	panicOn string // a prompt that panics
	mu      sync.Mutex
	calls   []pipeline.Params
	running atomic.Int32
	maxRun  atomic.Int32
}

func (f *fakeModel) Info() pipeline.Info {
	return pipeline.Info{Family: "sd", Kind: "fake", Name: "fake", Width: 64, Height: 64, Steps: 4, Guidance: 7, Sampler: "euler_a",
		Accepts: []string{"img2img", "inpaint", "lora", "controlnet", "negative-prompt"}}
}

func (f *fakeModel) Generate(ctx context.Context, p pipeline.Params) (*pipeline.Output, error) {
	n := f.running.Add(1)
	defer f.running.Add(-1)
	for {
		m := f.maxRun.Load()
		if n <= m || f.maxRun.CompareAndSwap(m, n) {
			break
		}
	}
	if p.Prompt == f.panicOn && f.panicOn != "" {
		panic("fake engine failure")
	}
	f.mu.Lock()
	f.calls = append(f.calls, p)
	f.mu.Unlock()
	w, h, steps := p.Width, p.Height, p.Steps
	if w == 0 {
		w, h = 64, 64
	}
	if steps == 0 {
		steps = 4
	}
	lat := tensor.FromSlice(make([]float32, 4*(h/8)*(w/8)), 1, 4, h/8, w/8)
	start := time.Now()
	for i := 1; i <= steps; i++ {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(f.delay):
		}
		if p.OnProgress != nil {
			p.OnProgress(pipeline.Event{Image: 0, Images: 1, Step: i, Steps: steps, Elapsed: time.Since(start), Latents: lat})
		}
	}
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8(p.Seed)
	}
	params := imageio.Params{Prompt: p.Prompt, NegativePrompt: p.NegativePrompt, Steps: steps, Sampler: "Euler a", CFGScale: 7, Seed: p.Seed, Width: w, Height: h, Model: "fake"}
	return &pipeline.Output{Images: []pipeline.Image{{Image: img, Seed: p.Seed, Params: params}}}, nil
}

func (f *fakeModel) Close() error { return nil }

// fakeOpen makes Config.Open return m for every path.
func fakeOpen(m *fakeModel) func(context.Context, string, pipeline.Options) (pipeline.Model, error) {
	return func(context.Context, string, pipeline.Options) (pipeline.Model, error) { return m, nil }
}
