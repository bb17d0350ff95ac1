package pipeline

import (
	"context"
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
	// Cache, when its Mode is CacheFirstBlock, skips the blocks after the
	// first on steps where the first one's residual barely changed.
	Cache StepCache
}

// DiTResult is what a DiT generation returns.
type DiTResult struct {
	Images  *tensor.Tensor // [B, H, W, 3] in [0, 1]
	Latents *tensor.Tensor // final latents [B, C, s, s]
	// ClassLabels is the label batch the transformer saw (conditional
	// labels first, then the null class under CFG).
	ClassLabels []int64
	Timesteps   []float64
	// Cache counts the full and cached transformer forwards.
	Cache CacheStats
}

// guide is DiT's guidance: the batch is [cond; uncond], guidance acts on
// the noise channels only and its result goes to both halves; with
// learned sigma the scheduler sees only the noise channels, otherwise the
// other channels follow unguided.
func (p *DiT) guide(cfg bool, n int, scale float64) Guide {
	tc := p.Transformer.Cfg
	ch := tc.InChannels
	learnedSigma := tc.OutChannels/2 == ch
	return func(out *tensor.Tensor) (*tensor.Tensor, error) {
		eps := out.Narrow(1, 0, ch)
		if cfg {
			e := eps.Contiguous().Data()
			half := len(e) / 2
			g, err := scheduler.GuidePair(e[half:], e[:half], scale) // conditional rows come first
			if err != nil {
				return nil, err
			}
			gt := tensor.FromSlice(g, n, ch, out.Dim(2), out.Dim(3))
			eps = doubled(gt)
		}
		if !learnedSigma && tc.OutChannels > ch {
			eps = tensor.Concat(1, eps, out.Narrow(1, ch, tc.OutChannels-ch))
		}
		return eps, nil
	}
}

// Generate runs the pipeline as DiTPipeline does: under CFG the batch is
// [latents; latents] with labels [labels; null], the guidance acts on the
// noise channels only, and with learned sigma the scheduler sees only the
// noise channels. It stops between steps when ctx is cancelled.
func (p *DiT) Generate(ctx context.Context, r DiTRequest) (*DiTResult, error) {
	if err := checkCommon(r.Scheduler, r.Steps, r.Guidance, 0); err != nil {
		return nil, err
	}
	if err := r.Cache.check("DiT", CacheFirstBlock); err != nil {
		return nil, err
	}
	n := len(r.ClassLabels)
	if n == 0 || n > MaxBatch {
		return nil, fmt.Errorf("pipeline: %d class labels; give 1 to %d", n, MaxBatch)
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
	latents, err := initialNoise(r.Latents, r.Noise, latShape)
	if err != nil {
		return nil, err
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
	s := r.Scheduler
	if err := s.SetTimesteps(r.Steps); err != nil {
		return nil, err
	}
	loop := &Loop{Scheduler: s, Noise: r.Noise, Guide: p.guide(cfg, n, r.Guidance),
		Callbacks: Callbacks{Progress: r.Progress, OnModelInput: r.OnModelInput}}
	if cfg {
		// The scheduler steps the whole doubled batch, as DiTPipeline does;
		// each step starts again from its first half.
		loop.Batch = func(b *tensor.Tensor) *tensor.Tensor { return doubled(b.Narrow(0, 0, n)) }
	}
	bc := r.Cache.blockCache()
	loop.Model = func(st Step) (*tensor.Tensor, error) {
		tv := make([]float32, len(labels))
		for j := range tv {
			tv[j] = float32(st.T)
		}
		return p.Transformer.ForwardCached(st.Input, tv, labels, bc)
	}
	batch, seen, err := loop.Run(ctx, batch)
	if err != nil {
		return nil, err
	}
	res.Timesteps = seen
	res.Cache = blockStats(bc)
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
