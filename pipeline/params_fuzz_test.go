package pipeline

import (
	"image"
	"math"
	"testing"
)

// FuzzParams drives request validation with arbitrary values: it must
// never panic, and what it accepts must be within the limits.
func FuzzParams(f *testing.F) {
	f.Add(512, 512, 20, 7.0, 0.0, 0.75, "euler_a", "a cat", 1, int64(42), false)
	f.Add(-8, 100000, 0, math.NaN(), 2.0, -1.0, "", "", -3, int64(-1), true)
	f.Add(64, 64, 1<<30, math.Inf(1), 0.5, 1.0, "DPM++ 2M Karras", "<lora:x:y>", 1<<20, int64(1), true)
	info := Info{Family: "sd", Name: "fuzz", Width: 512, Height: 512, Steps: 20, Guidance: 7, Sampler: "euler_a",
		Accepts: unetAccepts}
	f.Fuzz(func(t *testing.T, w, h, steps int, guidance, rescale, strength float64, sampler, prompt string, count int, seed int64, withImage bool) {
		p := Params{Prompt: prompt, Width: w, Height: h, Steps: steps, Guidance: guidance, GuidanceRescale: rescale,
			Strength: strength, Sampler: sampler, Count: count, Seed: seed}
		if withImage {
			p.InitImage = image.NewGray(image.Rect(0, 0, 4, 4))
		}
		if err := p.resolve(info); err != nil {
			return
		}
		if p.Width <= 0 || p.Width > MaxSide || p.Height <= 0 || p.Height > MaxSide || p.Steps < 1 || p.Steps > MaxSteps ||
			p.Count < 1 || p.Count > MaxBatch || math.IsNaN(p.Guidance) || p.Guidance < 0 || p.Seed < 0 ||
			p.Strength < 0 || p.Strength > 1 || math.IsNaN(p.Strength) {
			t.Fatalf("accepted out-of-range request %+v", p)
		}
	})
}
