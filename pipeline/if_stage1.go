package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/diffuse-go/diffuse/model/t5"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
)

// ifMaxLength is the token length IFPipeline.encode_prompt pads and
// truncates prompts to (the T5 encoder was trained on 77 tokens).
const ifMaxLength = 77

// IF is diffusers' IFPipeline, DeepFloyd IF's stage I: T5 text states
// condition a pixel-space UNet that denoises a low-resolution image from
// pure noise. Its output goes on to IFSuperResolution.
type IF struct {
	Tokenizer   MaskedTokenizer
	TextEncoder *t5.Model
	UNet        *unet.Model
}

// IFRequest describes one stage-I run. Prompts are lower-cased and
// trimmed (clean_caption=False; caption cleaning is not implemented).
type IFRequest struct {
	Prompts, NegativePrompts []string // NegativePrompts may be empty: ""
	// PromptEmbeds and NegativeEmbeds [B, S, D] replace the text encoder
	// when set.
	PromptEmbeds, NegativeEmbeds *tensor.Tensor
	// Width and Height of the image (0: the UNet's sample_size).
	Width, Height int
	Steps         int
	Guidance      float64 // classifier-free guidance scale; <= 1 disables CFG
	// Scheduler runs the denoising loop (IF uses DDPM with learned_range
	// variance and dynamic thresholding).
	Scheduler scheduler.Scheduler
	// Noise draws, in diffusers' order, the initial image and the
	// sampler's noise.
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

// IFResult is what a stage-I run returns.
type IFResult struct {
	// Images [B, C, h, w] are the final images in model space (diffusers'
	// output_type "pt": neither clamped nor rescaled), the input of stage II.
	Images *tensor.Tensor
	// PromptEmbeds and NegativeEmbeds [B, S, D] are the text states (stage
	// II takes them too); NegativeEmbeds is nil without CFG.
	PromptEmbeds, NegativeEmbeds *tensor.Tensor
	// PromptIDs, PromptMask, NegativeIDs and NegativeMask are the tokenizer's
	// output ([B, S] row-major; nil when the embeds were given).
	PromptIDs, PromptMask, NegativeIDs, NegativeMask []int64
	Timesteps                                        []float64
}

// encodePrompts fills the result's text states from the request: the
// given embeds, else the prompts through the tokenizer and the T5 encoder.
func (p *IF) encodePrompts(r IFRequest, cfg bool, res *IFResult) error {
	res.PromptEmbeds, res.NegativeEmbeds = r.PromptEmbeds, r.NegativeEmbeds
	if res.PromptEmbeds == nil {
		if len(r.Prompts) == 0 {
			return errors.New("pipeline: no prompt")
		}
		if p.Tokenizer == nil || p.TextEncoder == nil {
			return errors.New("pipeline: no tokenizer/text encoder for the prompts")
		}
		var err error
		if res.PromptEmbeds, res.PromptIDs, res.PromptMask, err = encodeT5(p.Tokenizer, p.TextEncoder, r.Prompts, ifMaxLength); err != nil {
			return err
		}
	}
	if !cfg || res.NegativeEmbeds != nil {
		return nil
	}
	if p.Tokenizer == nil || p.TextEncoder == nil {
		return errors.New("pipeline: guidance needs negative embeds or a tokenizer/text encoder")
	}
	negs, err := negativePrompts(r.NegativePrompts, res.PromptEmbeds.Dim(0))
	if err != nil {
		return err
	}
	// encode_prompt pads the negative prompts to the positive states' length.
	res.NegativeEmbeds, res.NegativeIDs, res.NegativeMask, err = encodeT5(p.Tokenizer, p.TextEncoder, negs, res.PromptEmbeds.Dim(1))
	return err
}

// Generate runs the pipeline as IFPipeline.__call__ does (see ifLoop.run
// for the guidance on the epsilon channels). It stops between steps when
// ctx is cancelled.
func (p *IF) Generate(ctx context.Context, r IFRequest) (*IFResult, error) {
	if r.Scheduler == nil {
		return nil, errors.New("pipeline: no scheduler")
	}
	if p.UNet == nil {
		return nil, errors.New("pipeline: IF needs a UNet")
	}
	if r.Steps <= 0 {
		return nil, fmt.Errorf("pipeline: steps must be positive, got %d", r.Steps)
	}
	if r.Noise == nil {
		return nil, errors.New("pipeline: no noise source")
	}
	cfg := r.Guidance > 1
	res := &IFResult{}
	if err := p.encodePrompts(r, cfg, res); err != nil {
		return nil, err
	}
	ehs, err := cfgStates(res.PromptEmbeds, res.NegativeEmbeds, cfg)
	if err != nil {
		return nil, err
	}
	h, w, err := ifSize(p.UNet.Cfg, r.Height, r.Width)
	if err != nil {
		return nil, err
	}
	s := r.Scheduler
	if err := s.SetTimesteps(r.Steps); err != nil {
		return nil, err
	}
	res.Timesteps = s.Timesteps()
	shape := []int{res.PromptEmbeds.Dim(0), p.UNet.Cfg.InChannels, h, w}
	images := tensor.FromSlice(scheduler.Scale(r.Noise.Randn(shape), s.InitNoiseSigma()), shape...)
	loop := &ifLoop{unet: p.UNet, sched: s, ehs: ehs, cfg: cfg, guidance: r.Guidance, noise: r.Noise,
		progress: r.Progress, onUNetInput: r.OnUNetInput, onUNetOutput: r.OnUNetOutput, onStep: r.OnStep}
	if res.Images, err = loop.run(ctx, images); err != nil {
		return nil, err
	}
	return res, nil
}
