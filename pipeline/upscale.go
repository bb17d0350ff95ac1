package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
)

// upscaleScalingFactor is the latent scale diffusers imposes on the ×4
// upscaler's VAE whatever its config says (StableDiffusionUpscalePipeline
// re-registers scaling_factor 0.08333).
const upscaleScalingFactor = 0.08333

// SDUpscale is diffusers' StableDiffusionUpscalePipeline (Stable Diffusion
// ×4 upscaler, also DeepFloyd IF's stage III): latents at the input
// image's size are denoised by a UNet that sees the noised input image as
// extra channels and its noise level as class label, then a VAE that
// upsamples by 2^(levels-1) decodes them.
type SDUpscale struct {
	TextEncoder *clip.Model
	Tokenizer   Tokenizer
	UNet        *unet.Model
	VAE         *vae.Model
	// NoisingScheduler is low_res_scheduler, whose AddNoise noises the
	// input image (a DDPMScheduler in the released model).
	NoisingScheduler scheduler.Scheduler
	// MaxNoiseLevel bounds the request's noise level (model_index.json's
	// max_noise_level, 350 by default).
	MaxNoiseLevel int
}

// UpscaleRequest describes one upscaling run.
type UpscaleRequest struct {
	Prompts, NegativePrompts []string
	// PromptEmbeds and NegativeEmbeds replace the text encoder when set.
	PromptEmbeds, NegativeEmbeds *tensor.Tensor
	ClipSkip                     int
	// Image [B, 3, h, w] in model space ([-1, 1]), one per prompt.
	Image    *tensor.Tensor
	Steps    int
	Guidance float64 // classifier-free guidance scale; <= 1 disables CFG
	// NoiseLevel is the timestep of the noise added to Image (diffusers'
	// default is 20).
	NoiseLevel int
	Scheduler  scheduler.Scheduler
	// Noise draws, in diffusers' order, the image's noise, the initial
	// latents and the sampler's noise.
	Noise scheduler.NoiseSource

	// Progress, when set, is called after each step.
	Progress func(step, total int, elapsed time.Duration)
	// OnUNetInput sees the UNet input of each step (CFG rows included).
	OnUNetInput func(step int, x *tensor.Tensor)
	// OnStep sees the latents after each step.
	OnStep func(step int, t float64, latents *tensor.Tensor)
}

// Factor is the upscaling factor: the VAE decoder's.
func (p *SDUpscale) Factor() int { return vaeFactor(p.VAE) }

// Generate upscales r.Image and returns [B, 3, f·h, f·w] in model space
// (decoded, neither clamped nor rescaled). It stops between steps when ctx
// is cancelled.
func (p *SDUpscale) Generate(ctx context.Context, r UpscaleRequest) (*tensor.Tensor, error) {
	if err := p.check(&r); err != nil {
		return nil, err
	}
	cfg := r.Guidance > 1
	sd := &SD{TextEncoder: p.TextEncoder, Tokenizer: p.Tokenizer, UNet: p.UNet, VAE: p.VAE}
	text, err := sd.encodeText(&Request{Prompts: r.Prompts, NegativePrompts: r.NegativePrompts,
		PromptEmbeds: r.PromptEmbeds, NegativeEmbeds: r.NegativeEmbeds, ClipSkip: r.ClipSkip}, 1, cfg)
	if err != nil {
		return nil, err
	}
	b := text.rows
	if r.Image.Dim(0) != b {
		return nil, fmt.Errorf("pipeline: %d images to upscale for %d prompts", r.Image.Dim(0), b)
	}
	s := r.Scheduler
	if err := s.SetTimesteps(r.Steps); err != nil {
		return nil, err
	}
	img := r.Image.Contiguous()
	noised, err := p.NoisingScheduler.AddNoise(img.Data(), r.Noise.Randn(img.Shape()), repeatT(float64(r.NoiseLevel), b))
	if err != nil {
		return nil, err
	}
	cond := tensor.FromSlice(noised, img.Shape()...)
	latShape := []int{b, p.VAE.Cfg.LatentChannels, img.Dim(2), img.Dim(3)}
	latents := tensor.FromSlice(scheduler.Scale(r.Noise.Randn(latShape), s.InitNoiseSigma()), latShape...)
	loop := p.loop(&r, text, cond, cfg)
	if latents, _, err = loop.Run(ctx, latents); err != nil {
		return nil, err
	}
	return p.VAE.Decode(tensor.Scale(latents, 1/float32(upscaleScalingFactor)))
}

// loop is the upscaler's denoising loop: CFG over [uncond; cond] rows, the
// noised image as extra input channels and the noise level as class label
// on every row.
func (p *SDUpscale) loop(r *UpscaleRequest, text *sdText, cond *tensor.Tensor, cfg bool) *Loop {
	l := &Loop{Scheduler: r.Scheduler, Noise: r.Noise,
		Callbacks: Callbacks{Progress: r.Progress, OnModelInput: r.OnUNetInput, OnStep: r.OnStep}}
	if cfg {
		l.Batch = doubled
		l.Guide = CFG(r.Guidance, 0, text.rows)
		cond = doubled(cond)
	}
	labels := make([]float32, cond.Dim(0))
	for i := range labels {
		labels[i] = float32(r.NoiseLevel)
	}
	classLabels := tensor.FromSlice(labels, len(labels))
	l.Input = func(scaled *tensor.Tensor) *tensor.Tensor { return tensor.Concat(1, scaled, cond) }
	l.Model = func(st Step) (*tensor.Tensor, error) {
		return p.UNet.Forward(st.Input, []float32{float32(st.T)}, unet.Cond{EncoderHiddenStates: text.ehs, ClassLabels: classLabels})
	}
	return l
}

// check validates the request against the model before any work.
func (p *SDUpscale) check(r *UpscaleRequest) error {
	if p.UNet == nil || p.VAE == nil || p.NoisingScheduler == nil {
		return errors.New("pipeline: the upscaler needs a UNet, a VAE and a noising scheduler")
	}
	if r.Noise == nil {
		return errors.New("pipeline: no noise source")
	}
	if err := checkCommon(r.Scheduler, r.Steps, r.Guidance, 0); err != nil {
		return err
	}
	if r.NoiseLevel < 0 || r.NoiseLevel > p.MaxNoiseLevel {
		return fmt.Errorf("pipeline: noise level %d outside [0, %d] (max_noise_level)", r.NoiseLevel, p.MaxNoiseLevel)
	}
	if n := p.UNet.Cfg.NumClassEmbeds; n > 0 && r.NoiseLevel >= n {
		return fmt.Errorf("pipeline: noise level %d outside the UNet's %d class embeddings", r.NoiseLevel, n)
	}
	img := r.Image
	if img == nil || img.Rank() != 4 || img.Dim(1) != 3 {
		return errors.New("pipeline: the image to upscale must be [B, 3, h, w]")
	}
	if want := p.VAE.Cfg.LatentChannels + 3; p.UNet.Cfg.InChannels != want {
		return fmt.Errorf("pipeline: the UNet takes %d channels, want %d (latents and image)", p.UNet.Cfg.InChannels, want)
	}
	levels := 1 << max(len(p.UNet.Cfg.BlockOutChannels)-1, 0)
	if err := checkSize(img.Dim(3), img.Dim(2), levels); err != nil {
		return fmt.Errorf("%w (the input image's size, on a UNet of %d levels)", err, len(p.UNet.Cfg.BlockOutChannels))
	}
	return finiteData("image to upscale", img)
}
