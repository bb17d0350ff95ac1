package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
)

// Callbacks are the hooks a generation offers its caller. Every family's
// loop calls them the same way.
type Callbacks struct {
	// Progress, when set, is called after each step with the steps done,
	// the steps in all and the time since the first step began.
	Progress func(step, total int, elapsed time.Duration)
	// OnModelInput sees the network's input of each step (after scaling,
	// CFG rows and extra channels included).
	OnModelInput func(step int, x *tensor.Tensor)
	// OnStep sees the latents after each step (previews, tests).
	OnStep func(step int, t float64, latents *tensor.Tensor)
}

// Guide turns the network's output on the model batch into the prediction
// the scheduler steps on. Each family states its own: CFG over
// [uncond; cond] rows (CFG), DiT's [cond; uncond] over the noise channels,
// IF's guidance with the learned variance kept, ...
type Guide func(out *tensor.Tensor) (*tensor.Tensor, error)

// Loop is the denoising loop every family runs: scale the model input,
// call the network with the family's conditioning, guide, step the
// scheduler, and report. The family supplies its conditioning as the Model
// closure; the loop owns the order of operations, cancellation and the
// callbacks.
type Loop struct {
	// Scheduler, with SetTimesteps already called.
	Scheduler scheduler.Scheduler
	// Noise draws the sampler's noise (ancestral and SDE samplers, DDPM).
	Noise scheduler.NoiseSource
	// Start and End bound the steps run, [Start, End) of the scheduler's
	// timesteps (End 0: to the last), for img2img strength and SDXL's
	// denoising windows.
	Start, End int
	// Batch builds the model batch from the latents before scaling; nil
	// is the latents as they are.
	Batch func(latents *tensor.Tensor) *tensor.Tensor
	// Input adds what the network sees beside the scaled batch (the
	// inpainting UNet's mask channels); nil is the scaled batch.
	Input func(scaled *tensor.Tensor) *tensor.Tensor
	// Model runs the network for one step.
	Model func(s Step) (*tensor.Tensor, error)
	// Guide maps the network output to the scheduler's input; nil passes
	// it through.
	Guide Guide
	// After, when set, adjusts the latents after each scheduler step
	// (legacy inpainting's blending with the re-noised original).
	After func(i, index int, latents *tensor.Tensor) (*tensor.Tensor, error)
	Callbacks
}

// Step is what the network is given at one step of the loop.
type Step struct {
	I, Total int     // step index from the window's start, and steps in the window
	T        float64 // timestep
	// Scaled is the scheduler-scaled model batch; Input is Scaled with any
	// extra channels (what the network gets).
	Scaled, Input *tensor.Tensor
}

// Run denoises latents and returns them with the timesteps the network
// saw. It stops between steps when ctx is cancelled.
func (l *Loop) Run(ctx context.Context, latents *tensor.Tensor) (*tensor.Tensor, []float64, error) {
	s := l.Scheduler
	if s == nil || l.Model == nil {
		return nil, nil, errors.New("pipeline: denoising loop needs a scheduler and a model")
	}
	ts := s.Timesteps()
	end := l.End
	if end <= 0 || end > len(ts) {
		end = len(ts)
	}
	if l.Start < 0 || l.Start >= end {
		return nil, nil, fmt.Errorf("pipeline: denoising window [%d, %d) of %d steps is empty", l.Start, end, len(ts))
	}
	shape := latents.Shape()
	total := end - l.Start
	seen := make([]float64, 0, total)
	t0 := time.Now()
	for idx := l.Start; idx < end; idx++ {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		i, t := idx-l.Start, ts[idx]
		x := latents
		if l.Batch != nil {
			x = l.Batch(latents)
		}
		xs, err := s.ScaleModelInput(x.Data(), idx)
		if err != nil {
			return nil, nil, err
		}
		st := Step{I: i, Total: total, T: t, Scaled: tensor.FromSlice(xs, x.Shape()...)}
		st.Input = st.Scaled
		if l.Input != nil {
			st.Input = l.Input(st.Scaled)
		}
		if l.OnModelInput != nil {
			l.OnModelInput(i, st.Input)
		}
		out, err := l.Model(st)
		if err != nil {
			return nil, nil, err
		}
		if l.Guide != nil {
			if out, err = l.Guide(out); err != nil {
				return nil, nil, err
			}
		}
		step, err := s.Step(out.Contiguous().Data(), idx, latents.Data(), shape, l.Noise)
		if err != nil {
			return nil, nil, err
		}
		latents = tensor.FromSlice(step.PrevSample, shape...)
		if l.After != nil {
			if latents, err = l.After(i, idx, latents); err != nil {
				return nil, nil, err
			}
		}
		if err := finite(latents); err != nil {
			return nil, nil, fmt.Errorf("pipeline: step %d of %d: %w", i+1, total, err)
		}
		seen = append(seen, t)
		if l.OnStep != nil {
			l.OnStep(i, t, latents)
		}
		if l.Progress != nil {
			l.Progress(i+1, total, time.Since(t0))
		}
	}
	return latents, seen, nil
}

// finite reports an error when the latents hold NaN or infinite values, so
// that a diverging model or bad input ends with an error instead of an
// image of noise.
func finite(x *tensor.Tensor) error {
	for _, v := range x.Data() {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return errors.New("the latents are no longer finite (NaN or Inf): the model or its input diverged")
		}
	}
	return nil
}

// doubled is the CFG batch [latents; latents].
func doubled(latents *tensor.Tensor) *tensor.Tensor { return tensor.Concat(0, latents, latents) }

// CFG is classifier-free guidance over a batch [uncond; cond] on every
// channel: uncond + scale·(cond − uncond), then diffusers' guidance_rescale
// when rescale > 0. rows is the number of conditional rows.
func CFG(scale, rescale float64, rows int) Guide {
	return func(out *tensor.Tensor) (*tensor.Tensor, error) {
		shape := out.Shape()
		e := out.Contiguous().Data()
		half := len(e) / 2
		g, err := scheduler.GuidePair(e[:half], e[half:], scale)
		if err != nil {
			return nil, err
		}
		if rescale > 0 {
			if g, err = scheduler.RescaleNoiseCFG(g, e[half:], rows, rescale); err != nil {
				return nil, err
			}
		}
		shape[0] /= 2
		return tensor.FromSlice(g, shape...), nil
	}
}

// initialNoise is the starting noise: the given latents (checked against
// shape) or a draw from the noise source.
func initialNoise(latents *tensor.Tensor, noise scheduler.NoiseSource, shape []int) (*tensor.Tensor, error) {
	switch {
	case latents != nil:
		if !tensor.SameShape(latents.Shape(), shape) {
			return nil, fmt.Errorf("pipeline: latents shape %v, want %v", latents.Shape(), shape)
		}
		if err := finiteData("latents", latents); err != nil {
			return nil, err
		}
		return latents.Contiguous(), nil
	case noise == nil:
		return nil, errors.New("pipeline: neither latents nor a noise source")
	}
	return tensor.FromSlice(noise.Randn(shape), shape...), nil
}
