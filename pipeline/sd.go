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

// SD is a Stable Diffusion 1.x/2.x pipeline: text-to-image, image-to-image
// and inpainting (4-channel UNets by latent blending, 9-channel inpainting
// UNets by their extra inputs).
type SD struct {
	TextEncoder *clip.Model
	Tokenizer   Tokenizer
	UNet        *unet.Model
	VAE         *vae.Model
}

// Request describes one generation. Prompts and NegativePrompts are per
// batch row (NegativePrompts may be empty: unconditional = "").
type Request struct {
	Prompts, NegativePrompts []string
	// PromptEmbeds and NegativeEmbeds replace the text encoder when set.
	PromptEmbeds, NegativeEmbeds *tensor.Tensor
	ImagesPerPrompt              int
	Width, Height                int
	Steps                        int
	Guidance                     float64 // classifier-free guidance scale; <= 1 disables CFG
	GuidanceRescale              float64 // diffusers guidance_rescale (0 = off)
	ClipSkip                     int     // A1111 convention: 2 = penultimate layer (SDXL: the default; 3+ earlier layers)
	Scheduler                    scheduler.Scheduler
	// Noise draws every random tensor, in diffusers' order (initial
	// latents, VAE posterior samples, img2img noise, sampler noise).
	Noise scheduler.NoiseSource
	// Latents, when set, are the initial noise [B, 4, H/8, W/8] (unscaled).
	Latents *tensor.Tensor

	// InitImage [B, H, W, 3] in [0, 1] enables image-to-image with Strength.
	InitImage *tensor.Tensor
	Strength  float64
	// Mask [B, H, W, 1] in [0, 1] (1 = repaint) enables inpainting of InitImage.
	Mask *tensor.Tensor

	// AddTextEmbeds and AddTimeIDs are SDXL's pooled text and
	// micro-conditioning, already in the UNet's batch order (CFG rows
	// included).
	AddTextEmbeds, AddTimeIDs *tensor.Tensor
	// DenoisingEnd in (0, 1) stops early (SDXL base before a refiner);
	// DenoisingStart in (0, 1) starts late from InitLatents without adding
	// noise (the refiner).
	DenoisingEnd, DenoisingStart float64
	// InitLatents [B, 4, h, w] are scaled latents to start from instead of
	// encoding InitImage (image-to-image on latents).
	InitLatents *tensor.Tensor
	// SkipDecode returns the latents only (output_type "latent").
	SkipDecode bool

	// Progress, when set, is called after each step.
	Progress func(step, total int, elapsed time.Duration)
	// OnStep, when set, sees the latents after each step (tests, previews).
	OnStep func(step int, t float64, latents *tensor.Tensor)
	// OnUNetInput sees the UNet input of each step (after scaling and concatenation).
	OnUNetInput func(step int, x *tensor.Tensor)
	// Adapter, when set, may add ControlNet / T2I-Adapter residuals to the
	// UNet conditioning of each step.
	Adapter func(step, total int, t float64, x *tensor.Tensor, cond *unet.Cond) error
}

// Result is what a generation returns.
type Result struct {
	Images         *tensor.Tensor // [B, H, W, 3] in [0, 1]
	PromptEmbeds   *tensor.Tensor
	NegativeEmbeds *tensor.Tensor
	Timesteps      []float64 // the timesteps the UNet saw
	Latents        *tensor.Tensor
	// Inpainting intermediates (nil otherwise).
	MaskLatent, MaskedImageLatents *tensor.Tensor
}

func repeatRows(x *tensor.Tensor, n int) *tensor.Tensor {
	if n <= 1 {
		return x
	}
	rows := make([]*tensor.Tensor, 0, x.Dim(0)*n)
	for b := 0; b < x.Dim(0); b++ {
		r := x.Narrow(0, b, 1)
		for i := 0; i < n; i++ {
			rows = append(rows, r)
		}
	}
	return tensor.Concat(0, rows...)
}

// Generate runs the pipeline. It stops between steps when ctx is cancelled.
func (p *SD) Generate(ctx context.Context, r Request) (*Result, error) {
	if r.Scheduler == nil {
		return nil, errors.New("pipeline: no scheduler")
	}
	if r.Steps <= 0 {
		return nil, fmt.Errorf("pipeline: steps must be positive, got %d", r.Steps)
	}
	if r.Width%8 != 0 || r.Height%8 != 0 || r.Width <= 0 || r.Height <= 0 {
		return nil, fmt.Errorf("pipeline: size %dx%d must be positive multiples of 8", r.Width, r.Height)
	}
	per := max(r.ImagesPerPrompt, 1)
	cfg := r.Guidance > 1
	res := &Result{}
	// Text conditioning.
	pos, neg := r.PromptEmbeds, r.NegativeEmbeds
	if pos == nil {
		if len(r.Prompts) == 0 {
			return nil, errors.New("pipeline: no prompt")
		}
		if p.Tokenizer == nil || p.TextEncoder == nil {
			return nil, errors.New("pipeline: no tokenizer/text encoder for the prompts")
		}
		var err error
		if pos, _, err = EncodePrompts(p.TextEncoder, p.Tokenizer, r.Prompts, r.ClipSkip); err != nil {
			return nil, err
		}
	}
	B := pos.Dim(0)
	if cfg && neg == nil {
		negs := r.NegativePrompts
		if len(negs) == 0 {
			negs = make([]string, B)
		} else if len(negs) == 1 && B > 1 {
			for len(negs) < B {
				negs = append(negs, negs[0])
			}
		}
		if len(negs) != B {
			return nil, fmt.Errorf("pipeline: %d negative prompts for %d prompts", len(negs), B)
		}
		var err error
		if neg, _, err = EncodePrompts(p.TextEncoder, p.Tokenizer, negs, r.ClipSkip); err != nil {
			return nil, err
		}
	}
	res.PromptEmbeds, res.NegativeEmbeds = pos, neg
	pos = repeatRows(pos, per)
	if neg != nil {
		neg = repeatRows(neg, per)
	}
	B *= per
	ehs := pos
	if cfg {
		ehs = tensor.Concat(0, neg, pos) // unconditional first, as diffusers orders it
	}
	s := r.Scheduler
	if err := s.SetTimesteps(r.Steps); err != nil {
		return nil, err
	}
	ts := s.Timesteps()
	start := 0
	lc := p.UNet.Cfg.InChannels
	latCh := p.VAE.Cfg.LatentChannels
	inpaint9 := lc == latCh*2+1
	h, w := r.Height/8, r.Width/8
	latShape := []int{B, latCh, h, w}
	// Image conditioning (img2img, inpainting).
	var imageLatents, maskLatent, maskedLatents *tensor.Tensor
	if r.Mask != nil {
		if r.InitImage == nil {
			return nil, errors.New("pipeline: a mask needs an init image")
		}
		lm, masked, err := PrepareMask(r.Mask, r.InitImage, r.Height/h)
		if err != nil {
			return nil, err
		}
		if maskLatent, err = tileRows(lm, B, "mask"); err != nil {
			return nil, err
		}
		if !inpaint9 {
			// Legacy inpainting: the UNet sees only latents; the image latents
			// are drawn first, then the masked image's.
			if imageLatents, err = p.encode(r.InitImage, r.Noise, B); err != nil {
				return nil, err
			}
		}
		if maskedLatents, err = p.encode(masked, r.Noise, B); err != nil {
			return nil, err
		}
		res.MaskLatent, res.MaskedImageLatents = maskLatent, maskedLatents
	} else if r.InitLatents != nil {
		var err error
		if imageLatents, err = tileRows(r.InitLatents, B, "init latents"); err != nil {
			return nil, err
		}
	} else if r.InitImage != nil {
		var err error
		if imageLatents, err = p.encode(r.InitImage, r.Noise, B); err != nil {
			return nil, err
		}
	}
	strength := 1.0
	if imageLatents != nil && r.Strength > 0 {
		strength = r.Strength
	}
	end := len(ts)
	if r.DenoisingEnd > 0 && r.DenoisingEnd < 1 {
		var err error
		if end, err = scheduler.DenoisingEnd(s, r.DenoisingEnd); err != nil {
			return nil, err
		}
	}
	addNoise := true
	switch {
	case r.DenoisingStart > 0:
		if imageLatents == nil {
			return nil, errors.New("pipeline: denoising_start needs init latents or an init image")
		}
		var err error
		if start, err = scheduler.DenoisingStart(s, r.DenoisingStart); err != nil {
			return nil, err
		}
		addNoise = false
	case imageLatents != nil:
		var err error
		if start, err = scheduler.StrengthStart(s, r.Steps, strength); err != nil {
			return nil, err
		}
	}
	if start >= end {
		return nil, fmt.Errorf("pipeline: strength %g / denoising window leaves no steps out of %d", strength, r.Steps)
	}
	// Initial latents.
	var noise *tensor.Tensor
	if !addNoise {
		// Start from the given latents as they are.
	} else if r.Latents != nil {
		if !tensor.SameShape(r.Latents.Shape(), latShape) {
			return nil, fmt.Errorf("pipeline: latents shape %v, want %v", r.Latents.Shape(), latShape)
		}
		noise = r.Latents
	} else {
		if r.Noise == nil {
			return nil, errors.New("pipeline: neither latents nor a noise source")
		}
		noise = tensor.FromSlice(r.Noise.Randn(latShape), latShape...)
	}
	var latents *tensor.Tensor
	if !addNoise {
		latents = imageLatents
	} else if imageLatents != nil && (strength < 1 || r.Mask == nil) {
		noised, err := s.AddNoise(imageLatents.Data(), noise.Data(), repeatT(ts[start], B))
		if err != nil {
			return nil, err
		}
		latents = tensor.FromSlice(noised, latShape...)
	} else {
		latents = tensor.Scale(noise, float32(s.InitNoiseSigma()))
	}
	var mask2, masked2 *tensor.Tensor
	if inpaint9 && maskLatent != nil {
		mask2, masked2 = maskLatent, maskedLatents
		if cfg {
			mask2, masked2 = tensor.Concat(0, maskLatent, maskLatent), tensor.Concat(0, maskedLatents, maskedLatents)
		}
	} else if inpaint9 {
		return nil, errors.New("pipeline: this is an inpainting UNet (9 input channels): give an image and a mask")
	}
	t0 := time.Now()
	total := end - start
	for i := start; i < end; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		x := latents
		if cfg {
			x = tensor.Concat(0, latents, latents)
		}
		xs, err := s.ScaleModelInput(x.Data(), i)
		if err != nil {
			return nil, err
		}
		scaled := tensor.FromSlice(xs, x.Shape()...)
		in := scaled
		if mask2 != nil {
			in = tensor.Concat(1, in, mask2, masked2)
		}
		if r.OnUNetInput != nil {
			r.OnUNetInput(i-start, in)
		}
		cond := unet.Cond{EncoderHiddenStates: ehs, TextEmbeds: r.AddTextEmbeds, TimeIDs: r.AddTimeIDs}
		if r.Adapter != nil {
			// Adapters see the latent input without the inpainting channels,
			// as diffusers gives the ControlNet the 4-channel latents.
			if err := r.Adapter(i-start, total, ts[i], scaled, &cond); err != nil {
				return nil, err
			}
		}
		eps, err := p.UNet.Forward(in, []float32{float32(ts[i])}, cond)
		if err != nil {
			return nil, err
		}
		e := eps.Data()
		if cfg {
			half := len(e) / 2
			g, err := scheduler.GuidePair(e[:half], e[half:], r.Guidance)
			if err != nil {
				return nil, err
			}
			if r.GuidanceRescale > 0 {
				if g, err = scheduler.RescaleNoiseCFG(g, e[half:], B, r.GuidanceRescale); err != nil {
					return nil, err
				}
			}
			e = g
		}
		out, err := s.Step(e, i, latents.Data(), latShape, r.Noise)
		if err != nil {
			return nil, err
		}
		latents = tensor.FromSlice(out.PrevSample, latShape...)
		if imageLatents != nil && r.Mask != nil && !inpaint9 {
			// Legacy inpainting: keep the (re-noised) original outside the mask.
			proper := imageLatents
			if i < len(ts)-1 {
				pn, err := s.AddNoise(imageLatents.Data(), noise.Data(), repeatT(ts[i+1], B))
				if err != nil {
					return nil, err
				}
				proper = tensor.FromSlice(pn, latShape...)
			}
			m := maskLatent
			latents = tensor.Add(tensor.Mul(tensor.AddScalar(tensor.Neg(m), 1), proper), tensor.Mul(m, latents))
		}
		res.Timesteps = append(res.Timesteps, ts[i])
		if r.OnStep != nil {
			r.OnStep(i-start, ts[i], latents)
		}
		if r.Progress != nil {
			r.Progress(i-start+1, total, time.Since(t0))
		}
	}
	res.Latents = latents
	if r.SkipDecode {
		return res, nil
	}
	img, err := DecodeLatents(p.VAE, latents)
	if err != nil {
		return nil, err
	}
	res.Images = img
	return res, nil
}

func repeatT(t float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = t
	}
	return out
}

// encode VAE-encodes images [b, H, W, 3], sampling the posterior with the
// noise source (nil: the mean; one draw for the b images), and tiles the
// latents to the batch (see tileRows).
func (p *SD) encode(img *tensor.Tensor, noise scheduler.NoiseSource, batch int) (*tensor.Tensor, error) {
	h, w := img.Dim(1)/8, img.Dim(2)/8
	shape := []int{img.Dim(0), p.VAE.Cfg.LatentChannels, h, w}
	var n *tensor.Tensor
	if noise != nil {
		n = tensor.FromSlice(noise.Randn(shape), shape...)
	}
	z, err := EncodeImage(p.VAE, img, n)
	if err != nil {
		return nil, err
	}
	return tileRows(z, batch, "init image")
}

// tileRows repeats the whole batch x until it has n rows, as diffusers
// broadcasts init images, their latents and masks to the prompts' batch
// (image_latents.repeat(n // b, 1, 1, 1), torch.cat([init_latents] * k)):
// one image serves every prompt; b images serve n = k·b rows as
// [x0..xb-1, x0..xb-1, ...].
func tileRows(x *tensor.Tensor, n int, what string) (*tensor.Tensor, error) {
	b := x.Dim(0)
	if b == n {
		return x, nil
	}
	if b == 0 || n%b != 0 {
		return nil, fmt.Errorf("pipeline: %d %s rows cannot be repeated to a batch of %d", b, what, n)
	}
	rows := make([]*tensor.Tensor, n/b)
	for i := range rows {
		rows[i] = x
	}
	return tensor.Concat(0, rows...), nil
}
