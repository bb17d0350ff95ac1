package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
)

// IFSuperResolution is diffusers' IFSuperResolutionPipeline, DeepFloyd IF's
// stage II: a pixel-space UNet that denoises a high-resolution image
// conditioned on T5 text states and on the low-resolution image, which is
// upscaled (bilinear, aligned corners), noised to a noise level by
// NoisingScheduler and concatenated to the sample's channels; the noise
// level is the UNet's class label.
type IFSuperResolution struct {
	UNet *unet.Model
	// NoisingScheduler is image_noising_scheduler, whose AddNoise noises the
	// upscaled image (a DDPMScheduler in IF's releases).
	NoisingScheduler scheduler.Scheduler
}

// IFSuperResRequest describes one stage-II run.
type IFSuperResRequest struct {
	// PromptEmbeds [B, S, D] are the text encoder's states (T5 width);
	// NegativeEmbeds (same shape) are required under CFG.
	PromptEmbeds, NegativeEmbeds *tensor.Tensor
	// Image [B, C, h, w] is the low-resolution image in model space
	// ([-1, 1]), C = in_channels / 2.
	Image *tensor.Tensor
	// Width and Height of the output (0: the UNet's sample_size).
	Width, Height int
	Steps         int
	Guidance      float64 // classifier-free guidance scale; <= 1 disables CFG
	// NoiseLevel is the augmentation timestep of the upscaled image
	// (diffusers' default is 250).
	NoiseLevel int
	// Scheduler runs the denoising loop (IF uses DDPM with learned_range
	// variance and dynamic thresholding).
	Scheduler scheduler.Scheduler
	// Noise draws, in diffusers' order, the initial image, the
	// augmentation noise and the sampler's noise.
	Noise scheduler.NoiseSource

	// Progress, when set, is called after each step.
	Progress func(step, total int, elapsed time.Duration)
	// OnUNetInput sees the UNet input of each step (CFG rows included).
	OnUNetInput func(step int, x *tensor.Tensor)
	// OnStep sees the intermediate images after each step.
	OnStep func(step int, t float64, images *tensor.Tensor)
}

// IFSuperResResult is what a stage-II run returns.
type IFSuperResResult struct {
	// Images [B, C, H, W] are the final images in model space (diffusers'
	// output_type "pt": neither clamped nor rescaled).
	Images *tensor.Tensor
	// Upscaled is the noised, upscaled low-resolution image the UNet saw.
	Upscaled *tensor.Tensor
	// ClassLabels is the noise-level batch the UNet saw (CFG rows included).
	ClassLabels []int64
	Timesteps   []float64
}

// learnedVariance reports whether s takes the model's variance channels
// (a scheduler whose variance_type is "learned" or "learned_range").
func learnedVariance(s scheduler.Scheduler) bool {
	v, ok := s.(interface{ VarianceType() string })
	return ok && (v.VarianceType() == "learned" || v.VarianceType() == "learned_range")
}

// Generate runs the pipeline as IFSuperResolutionPipeline.__call__ does.
// Under CFG the UNet batch is [negative; positive]; guidance acts on the
// first half of the output channels (epsilon) while the conditional rows'
// second half (the predicted variance) is kept, and the variance goes on
// to the scheduler only when it learns it. It stops between steps when ctx
// is cancelled.
func (p *IFSuperResolution) Generate(ctx context.Context, r IFSuperResRequest) (*IFSuperResResult, error) {
	if r.Scheduler == nil || p.NoisingScheduler == nil {
		return nil, errors.New("pipeline: IF super-resolution needs a scheduler and a noising scheduler")
	}
	if r.Steps <= 0 {
		return nil, fmt.Errorf("pipeline: steps must be positive, got %d", r.Steps)
	}
	if r.Noise == nil {
		return nil, errors.New("pipeline: no noise source")
	}
	pe := r.PromptEmbeds
	if pe == nil || pe.Rank() != 3 {
		return nil, errors.New("pipeline: prompt embeds must be [B, S, D]")
	}
	b := pe.Dim(0)
	cfg := r.Guidance > 1
	if cfg && (r.NegativeEmbeds == nil || !tensor.SameShape(r.NegativeEmbeds.Shape(), pe.Shape())) {
		return nil, fmt.Errorf("pipeline: guidance needs negative embeds of shape %v", pe.Shape())
	}
	uc := p.UNet.Cfg
	ch := uc.InChannels / 2
	if img := r.Image; img == nil || img.Rank() != 4 || img.Dim(0) != b || img.Dim(1) != ch {
		return nil, fmt.Errorf("pipeline: low-resolution image must be [%d, %d, h, w]", b, ch)
	}
	h, w := r.Height, r.Width
	if h == 0 || w == 0 {
		if len(uc.SampleSize) == 0 {
			return nil, errors.New("pipeline: no output size and no sample_size in the UNet config")
		}
		size := uc.SampleSize.For(2)
		h, w = size[0], size[1]
	}
	ehs := pe
	if cfg {
		ehs = tensor.Concat(0, r.NegativeEmbeds, pe)
	}
	s := r.Scheduler
	if err := s.SetTimesteps(r.Steps); err != nil {
		return nil, err
	}
	imgShape := []int{b, ch, h, w}
	images := tensor.FromSlice(scheduler.Scale(r.Noise.Randn(imgShape), s.InitNoiseSigma()), imgShape...)

	up := tensor.ResizeBilinear(r.Image, h, w, true)
	levels := make([]float64, b)
	for i := range levels {
		levels[i] = float64(r.NoiseLevel)
	}
	noised, err := p.NoisingScheduler.AddNoise(up.Data(), r.Noise.Randn(imgShape), levels)
	if err != nil {
		return nil, err
	}
	upscaled := tensor.FromSlice(noised, imgShape...)
	rows := b
	if cfg {
		rows = 2 * b
	}
	res := &IFSuperResResult{Upscaled: upscaled, Timesteps: s.Timesteps()}
	classLabels := make([]float32, rows)
	for i := range classLabels {
		classLabels[i] = float32(r.NoiseLevel)
		res.ClassLabels = append(res.ClassLabels, int64(r.NoiseLevel))
	}
	learned := learnedVariance(s)
	t0 := time.Now()
	for i, t := range res.Timesteps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		x := tensor.Concat(1, images, upscaled)
		if cfg {
			x = tensor.Concat(0, x, x)
		}
		xs, err := s.ScaleModelInput(x.Data(), i)
		if err != nil {
			return nil, err
		}
		x = tensor.FromSlice(xs, x.Shape()...)
		if r.OnUNetInput != nil {
			r.OnUNetInput(i, x)
		}
		out, err := p.UNet.Forward(x, []float32{float32(t)}, unet.Cond{EncoderHiddenStates: ehs,
			ClassLabels: tensor.FromSlice(classLabels, rows)})
		if err != nil {
			return nil, err
		}
		if out.Dim(1) < ch {
			return nil, fmt.Errorf("pipeline: UNet gives %d channels for an image of %d", out.Dim(1), ch)
		}
		eps := out.Narrow(1, 0, ch)
		variance := out.Narrow(1, ch, out.Dim(1)-ch)
		if cfg {
			e := eps.Contiguous().Data()
			g, err := scheduler.GuidePair(e[:len(e)/2], e[len(e)/2:], r.Guidance)
			if err != nil {
				return nil, err
			}
			eps = tensor.FromSlice(g, imgShape...)
			variance = variance.Narrow(0, b, b)
		}
		pred := eps
		if learned {
			pred = tensor.Concat(1, eps, variance)
		}
		step, err := s.Step(pred.Contiguous().Data(), i, images.Data(), imgShape, r.Noise)
		if err != nil {
			return nil, err
		}
		images = tensor.FromSlice(step.PrevSample, imgShape...)
		if r.OnStep != nil {
			r.OnStep(i, t, images)
		}
		if r.Progress != nil {
			r.Progress(i+1, len(res.Timesteps), time.Since(t0))
		}
	}
	res.Images = images
	return res, nil
}
