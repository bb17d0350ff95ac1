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
	// OnUNetOutput sees the UNet output of each step (CFG rows included).
	OnUNetOutput func(step int, out *tensor.Tensor)
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

// ifLoop is the denoising loop both IF stages share: a pixel-space UNet
// whose output is [epsilon; variance] channels, guided on epsilon only.
type ifLoop struct {
	unet  *unet.Model
	sched scheduler.Scheduler // timesteps already set
	// ehs are the text states in the UNet's batch order (negative rows
	// first under CFG).
	ehs      *tensor.Tensor
	cfg      bool
	guidance float64
	// cond, when set, is concatenated to the sample's channels (stage II's
	// noised upscaled image); classLabels go to the UNet as class labels.
	cond, classLabels *tensor.Tensor
	noise             scheduler.NoiseSource

	progress     func(step, total int, elapsed time.Duration)
	onUNetInput  func(step int, x *tensor.Tensor)
	onUNetOutput func(step int, out *tensor.Tensor)
	onStep       func(step int, t float64, images *tensor.Tensor)
}

// run denoises images [B, C, H, W] over the scheduler's timesteps. Under
// CFG the UNet batch is [negative; positive]; guidance acts on the first C
// output channels (epsilon) while the conditional rows' other channels
// (the predicted variance) are kept, and the variance goes on to the
// scheduler only when it learns it (IFPipeline.__call__). It stops between
// steps when ctx is cancelled.
func (l *ifLoop) run(ctx context.Context, images *tensor.Tensor) (*tensor.Tensor, error) {
	loop := &Loop{Scheduler: l.sched, Noise: l.noise, Guide: l.guide(images.Shape()),
		Callbacks: Callbacks{Progress: l.progress, OnModelInput: l.onUNetInput, OnStep: l.onStep}}
	loop.Batch = func(x *tensor.Tensor) *tensor.Tensor {
		if l.cond != nil {
			x = tensor.Concat(1, x, l.cond)
		}
		if l.cfg {
			x = doubled(x)
		}
		return x
	}
	loop.Model = func(st Step) (*tensor.Tensor, error) {
		out, err := l.unet.Forward(st.Input, []float32{float32(st.T)}, unet.Cond{EncoderHiddenStates: l.ehs, ClassLabels: l.classLabels})
		if err == nil && l.onUNetOutput != nil {
			l.onUNetOutput(st.I, out)
		}
		return out, err
	}
	images, _, err := loop.Run(ctx, images)
	return images, err
}

// guide is IF's guidance: CFG on the noise channels over [uncond; cond]
// rows, the conditional rows' predicted variance kept, and the variance
// passed on only to a scheduler that learns it.
func (l *ifLoop) guide(shape []int) Guide {
	b, ch := shape[0], shape[1]
	learned := learnedVariance(l.sched)
	return func(out *tensor.Tensor) (*tensor.Tensor, error) {
		if out.Dim(1) < ch {
			return nil, fmt.Errorf("pipeline: UNet gives %d channels for an image of %d", out.Dim(1), ch)
		}
		eps := out.Narrow(1, 0, ch)
		variance := out.Narrow(1, ch, out.Dim(1)-ch)
		if l.cfg {
			e := eps.Contiguous().Data()
			g, err := scheduler.GuidePair(e[:len(e)/2], e[len(e)/2:], l.guidance)
			if err != nil {
				return nil, err
			}
			eps = tensor.FromSlice(g, shape...)
			variance = variance.Narrow(0, b, b)
		}
		if learned {
			return tensor.Concat(1, eps, variance), nil
		}
		return eps, nil
	}
}

// ifSize is the requested size, else the UNet's sample_size.
func ifSize(uc unet.Config, height, width int) (int, int, error) {
	if height > 0 && width > 0 {
		return height, width, nil
	}
	if len(uc.SampleSize) == 0 {
		return 0, 0, errors.New("pipeline: no output size and no sample_size in the UNet config")
	}
	size := uc.SampleSize.For(2)
	return size[0], size[1], nil
}

// cfgStates checks the text states and puts them in the UNet's batch
// order: [negative; positive] under CFG.
func cfgStates(pe, ne *tensor.Tensor, cfg bool) (*tensor.Tensor, error) {
	if pe == nil || pe.Rank() != 3 {
		return nil, errors.New("pipeline: prompt embeds must be [B, S, D]")
	}
	if !cfg {
		return pe, nil
	}
	if ne == nil || !tensor.SameShape(ne.Shape(), pe.Shape()) {
		return nil, fmt.Errorf("pipeline: guidance needs negative embeds of shape %v", pe.Shape())
	}
	return tensor.Concat(0, ne, pe), nil
}

// Generate runs the pipeline as IFSuperResolutionPipeline.__call__ does
// (see ifLoop.run for the guidance). It stops between steps when ctx is
// cancelled.
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
	cfg := r.Guidance > 1
	ehs, err := cfgStates(r.PromptEmbeds, r.NegativeEmbeds, cfg)
	if err != nil {
		return nil, err
	}
	b := r.PromptEmbeds.Dim(0)
	uc := p.UNet.Cfg
	ch := uc.InChannels / 2
	if img := r.Image; img == nil || img.Rank() != 4 || img.Dim(0) != b || img.Dim(1) != ch {
		return nil, fmt.Errorf("pipeline: low-resolution image must be [%d, %d, h, w]", b, ch)
	}
	h, w, err := ifSize(uc, r.Height, r.Width)
	if err != nil {
		return nil, err
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
	res := &IFSuperResResult{Upscaled: upscaled, Timesteps: s.Timesteps()}
	classLabels := make([]float32, ehs.Dim(0))
	for i := range classLabels {
		classLabels[i] = float32(r.NoiseLevel)
		res.ClassLabels = append(res.ClassLabels, int64(r.NoiseLevel))
	}
	loop := &ifLoop{unet: p.UNet, sched: s, ehs: ehs, cfg: cfg, guidance: r.Guidance,
		cond: upscaled, classLabels: tensor.FromSlice(classLabels, len(classLabels)), noise: r.Noise,
		progress: r.Progress, onUNetInput: r.OnUNetInput, onUNetOutput: r.OnUNetOutput, onStep: r.OnStep}
	if res.Images, err = loop.run(ctx, images); err != nil {
		return nil, err
	}
	return res, nil
}

// IFImages turns IF's model-space images [B, 3, H, W] in [-1, 1] into
// images [B, H, W, 3] in [0, 1] (diffusers' output_type "np").
func IFImages(x *tensor.Tensor) *tensor.Tensor {
	img := tensor.Clamp(tensor.AddScalar(tensor.Scale(x, 0.5), 0.5), 0, 1)
	return img.Permute(0, 2, 3, 1).Contiguous()
}
