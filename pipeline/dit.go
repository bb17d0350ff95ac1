package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/diffuse-go/diffuse/model/dit"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
)

// DiT is diffusers' DiTPipeline: class-conditional generation with a DiT
// transformer and a VAE.
type DiT struct {
	Transformer *dit.Model
	VAE         *vae.Model
}

// DiTRequest describes one class-conditional generation.
type DiTRequest struct {
	ClassLabels []int64 // one image per label
	Steps       int
	Guidance    float64 // classifier-free guidance scale; <= 1 disables CFG
	Scheduler   scheduler.Scheduler
	// Noise draws the initial latents (and any sampler noise); Latents,
	// when set, are the initial latents [len(ClassLabels), C, s, s] instead.
	Noise   scheduler.NoiseSource
	Latents *tensor.Tensor
	// SkipDecode returns the latents only.
	SkipDecode bool

	// Progress, when set, is called after each step.
	Progress func(step, total int, elapsed time.Duration)
	// OnModelInput sees the transformer's input batch of each step.
	OnModelInput func(step int, x *tensor.Tensor)
}

// DiTResult is what a DiT generation returns.
type DiTResult struct {
	Images  *tensor.Tensor // [B, H, W, 3] in [0, 1]
	Latents *tensor.Tensor // final latents [B, C, s, s]
	// ClassLabels is the label batch the transformer saw (conditional
	// labels first, then the null class under CFG).
	ClassLabels []int64
	Timesteps   []float64
}

// Generate runs the pipeline as DiTPipeline does: under CFG the batch is
// [latents; latents] with labels [labels; null], the guidance acts on the
// noise channels only, and with learned sigma the scheduler sees only the
// noise channels. It stops between steps when ctx is cancelled.
func (p *DiT) Generate(ctx context.Context, r DiTRequest) (*DiTResult, error) {
	if r.Scheduler == nil {
		return nil, errors.New("pipeline: no scheduler")
	}
	if r.Steps <= 0 {
		return nil, fmt.Errorf("pipeline: steps must be positive, got %d", r.Steps)
	}
	n := len(r.ClassLabels)
	if n == 0 {
		return nil, errors.New("pipeline: no class labels")
	}
	tc := p.Transformer.Cfg
	null := p.Transformer.NullClass()
	for _, l := range r.ClassLabels {
		if l < 0 || l >= null {
			return nil, fmt.Errorf("pipeline: class label %d outside [0, %d)", l, null)
		}
	}
	ch, size := tc.InChannels, tc.SampleSize
	latShape := []int{n, ch, size, size}
	var latents *tensor.Tensor
	switch {
	case r.Latents != nil:
		if !tensor.SameShape(r.Latents.Shape(), latShape) {
			return nil, fmt.Errorf("pipeline: latents shape %v, want %v", r.Latents.Shape(), latShape)
		}
		latents = r.Latents
	case r.Noise != nil:
		latents = tensor.FromSlice(r.Noise.Randn(latShape), latShape...)
	default:
		return nil, errors.New("pipeline: neither latents nor a noise source")
	}
	cfg := r.Guidance > 1
	labels := append([]int64(nil), r.ClassLabels...)
	batch := latents
	if cfg {
		for i := 0; i < n; i++ {
			labels = append(labels, null)
		}
		batch = tensor.Concat(0, latents, latents)
	}
	res := &DiTResult{ClassLabels: labels}
	bshape := batch.Shape()
	learnedSigma := tc.OutChannels/2 == ch
	s := r.Scheduler
	if err := s.SetTimesteps(r.Steps); err != nil {
		return nil, err
	}
	ts := s.Timesteps()
	t0 := time.Now()
	for i, t := range ts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if cfg {
			half := batch.Narrow(0, 0, n)
			batch = tensor.Concat(0, half, half)
		}
		xs, err := s.ScaleModelInput(batch.Data(), i)
		if err != nil {
			return nil, err
		}
		x := tensor.FromSlice(xs, bshape...)
		if r.OnModelInput != nil {
			r.OnModelInput(i, x)
		}
		tv := make([]float32, len(labels))
		for j := range tv {
			tv[j] = float32(t)
		}
		out, err := p.Transformer.Forward(x, tv, labels)
		if err != nil {
			return nil, err
		}
		eps := out.Narrow(1, 0, ch)
		if cfg {
			e := eps.Contiguous().Data()
			half := len(e) / 2
			g, err := scheduler.GuidePair(e[half:], e[:half], r.Guidance) // conditional rows come first
			if err != nil {
				return nil, err
			}
			gt := tensor.FromSlice(g, n, ch, size, size)
			eps = tensor.Concat(0, gt, gt)
		}
		if !learnedSigma && tc.OutChannels > ch {
			// The scheduler steps the whole output (guided noise channels
			// plus the others).
			eps = tensor.Concat(1, eps, out.Narrow(1, ch, tc.OutChannels-ch))
		}
		step, err := s.Step(eps.Contiguous().Data(), i, batch.Data(), bshape, r.Noise)
		if err != nil {
			return nil, err
		}
		batch = tensor.FromSlice(step.PrevSample, bshape...)
		res.Timesteps = append(res.Timesteps, t)
		if r.Progress != nil {
			r.Progress(i+1, len(ts), time.Since(t0))
		}
	}
	res.Latents = batch.Narrow(0, 0, n).Contiguous()
	if r.SkipDecode {
		return res, nil
	}
	img, err := DecodeLatents(p.VAE, res.Latents)
	if err != nil {
		return nil, err
	}
	res.Images = img
	return res, nil
}
