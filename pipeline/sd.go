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
	// Cache, when its Mode is CacheDeep, reuses the UNet's deep features
	// across steps (DeepCache); off, the result is exactly the uncached one.
	Cache StepCache
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
	// Cache counts the full and cached UNet forwards (zero without a
	// step cache).
	Cache CacheStats
}

// repeatRows repeats each row n times in place (torch's repeat_interleave
// on dim 0): [a, b] -> [a, a, b, b], the order of images per prompt.
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

// tileRows repeats the whole batch until it has n rows (torch's repeat on
// dim 0): [a, b] -> [a, b, a, b]. diffusers broadcasts init images, masks
// and their latents to the batch this way; n must be a multiple of the rows.
func tileRows(x *tensor.Tensor, n int, what string) (*tensor.Tensor, error) {
	b := x.Dim(0)
	if b == n {
		return x, nil
	}
	if b == 0 || n%b != 0 {
		return nil, fmt.Errorf("pipeline: %d %s for a batch of %d images: give one, or a number that divides the batch", b, what, n)
	}
	rows := make([]*tensor.Tensor, n/b)
	for i := range rows {
		rows[i] = x
	}
	return tensor.Concat(0, rows...), nil
}

// sdText is the SD conditioning: the text states, unconditional rows
// first under CFG, per image.
type sdText struct {
	pos, neg *tensor.Tensor // per prompt, before repeating per image
	ehs      *tensor.Tensor // the UNet's encoder_hidden_states
	rows     int            // conditional rows (prompts × images per prompt)
}

// encodeText encodes the prompts (or takes the given embeddings).
func (p *SD) encodeText(r *Request, per int, cfg bool) (*sdText, error) {
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
	if pos.Rank() != 3 {
		return nil, fmt.Errorf("pipeline: prompt embeddings %v, want [B, L, D]", pos.Shape())
	}
	B := pos.Dim(0)
	if cfg && neg == nil {
		if p.Tokenizer == nil || p.TextEncoder == nil {
			return nil, errors.New("pipeline: guidance needs negative embeddings or a text encoder")
		}
		negs, err := negativePrompts(r.NegativePrompts, B)
		if err != nil {
			return nil, err
		}
		if neg, _, err = EncodePrompts(p.TextEncoder, p.Tokenizer, negs, r.ClipSkip); err != nil {
			return nil, err
		}
	}
	if cfg && !tensor.SameShape(neg.Shape(), pos.Shape()) {
		return nil, fmt.Errorf("pipeline: negative embeddings %v, prompt embeddings %v", neg.Shape(), pos.Shape())
	}
	t := &sdText{pos: pos, neg: neg, rows: B * per}
	t.ehs = repeatRows(pos, per)
	if cfg {
		t.ehs = tensor.Concat(0, repeatRows(neg, per), t.ehs) // unconditional first, as diffusers orders it
	}
	return t, nil
}

// sdImage is the image conditioning of img2img and inpainting, at the
// batch's size.
type sdImage struct {
	latents      *tensor.Tensor // encoded init image (nil: none or not needed)
	mask, masked *tensor.Tensor // inpainting mask and masked-image latents
	noise        *tensor.Tensor // the initial noise (for legacy inpainting's blending)
	inpaint9     bool
	strength     float64
	start, end   int
	addNoise     bool
	latShape     []int
	resultMask   *tensor.Tensor
	resultMasked *tensor.Tensor
}

// Generate runs the pipeline. It stops between steps when ctx is cancelled.
func (p *SD) Generate(ctx context.Context, r Request) (*Result, error) {
	if err := p.check(&r); err != nil {
		return nil, err
	}
	per := max(r.ImagesPerPrompt, 1)
	cfg := r.Guidance > 1
	text, err := p.encodeText(&r, per, cfg)
	if err != nil {
		return nil, err
	}
	s := r.Scheduler
	if err := s.SetTimesteps(r.Steps); err != nil {
		return nil, err
	}
	im, latents, err := p.prepareLatents(&r, text.rows)
	if err != nil {
		return nil, err
	}
	dc, err := r.Cache.unetCache(p.UNet)
	if err != nil {
		return nil, err
	}
	loop := p.loop(&r, text, im, cfg, dc)
	latents, seen, err := loop.Run(ctx, latents)
	if err != nil {
		return nil, err
	}
	res := &Result{PromptEmbeds: text.pos, NegativeEmbeds: text.neg, Timesteps: seen, Latents: latents,
		MaskLatent: im.resultMask, MaskedImageLatents: im.resultMasked, Cache: unetStats(dc)}
	if r.SkipDecode {
		return res, nil
	}
	if res.Images, err = DecodeLatents(p.VAE, latents); err != nil {
		return nil, err
	}
	return res, nil
}

// check validates the request against the model before any work.
func (p *SD) check(r *Request) error {
	if p.UNet == nil || p.VAE == nil {
		return errors.New("pipeline: SD needs a UNet and a VAE")
	}
	if err := checkCommon(r.Scheduler, r.Steps, r.Guidance, r.GuidanceRescale); err != nil {
		return err
	}
	if err := checkSize(r.Width, r.Height, vaeFactor(p.VAE)); err != nil {
		return err
	}
	if r.ImagesPerPrompt < 0 || r.ImagesPerPrompt > MaxBatch {
		return fmt.Errorf("pipeline: images per prompt %d outside [1, %d]", r.ImagesPerPrompt, MaxBatch)
	}
	if len(r.Prompts) > MaxBatch {
		return fmt.Errorf("pipeline: %d prompts; at most %d in one request", len(r.Prompts), MaxBatch)
	}
	if r.InitImage != nil || r.Mask != nil || r.InitLatents != nil {
		if err := checkFraction("strength", r.Strength, r.InitLatents == nil && r.DenoisingStart == 0); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"denoising end", r.DenoisingEnd}, {"denoising start", r.DenoisingStart}} {
		if f.v != 0 {
			if err := checkFraction(f.name, f.v, false); err != nil {
				return err
			}
		}
	}
	if r.Mask != nil && r.InitImage == nil {
		return errors.New("pipeline: a mask needs an init image")
	}
	for _, im := range []struct {
		name     string
		t        *tensor.Tensor
		channels int
	}{{"init image", r.InitImage, 3}, {"mask", r.Mask, 1}} {
		if im.t == nil {
			continue
		}
		if im.t.Rank() != 4 || im.t.Dim(1) != r.Height || im.t.Dim(2) != r.Width || im.t.Dim(3) != im.channels {
			return fmt.Errorf("pipeline: %s shape %v, want [N, %d, %d, %d] (the output size)", im.name, im.t.Shape(), r.Height, r.Width, im.channels)
		}
		if err := finiteData(im.name, im.t); err != nil {
			return err
		}
	}
	if err := r.Cache.check("a UNet", CacheDeep); err != nil {
		return err
	}
	if r.Cache.Mode == CacheDeep && r.Adapter != nil {
		return fmt.Errorf("pipeline: %w: deepcache cannot serve adapters (their residuals act on the features it reuses)", ErrCacheMode)
	}
	inpaint9 := p.UNet.Cfg.InChannels == p.VAE.Cfg.LatentChannels*2+1
	if inpaint9 && r.Mask == nil {
		return errors.New("pipeline: this is an inpainting UNet (9 input channels): give an image and a mask")
	}
	return nil
}

// prepareLatents encodes the image conditioning and draws the initial
// latents, in diffusers' order of draws: init image posterior, initial
// noise, masked-image posterior.
func (p *SD) prepareLatents(r *Request, batch int) (*sdImage, *tensor.Tensor, error) {
	s := r.Scheduler
	latCh := p.VAE.Cfg.LatentChannels
	f := vaeFactor(p.VAE)
	im := &sdImage{inpaint9: p.UNet.Cfg.InChannels == latCh*2+1, strength: 1, end: len(s.Timesteps()), addNoise: true,
		latShape: []int{batch, latCh, r.Height / f, r.Width / f}}
	img := r.InitImage
	var mask, masked *tensor.Tensor
	if r.Mask != nil {
		var err error
		if img, mask, err = broadcastPair(img, r.Mask); err != nil {
			return nil, nil, err
		}
		lm, mi, err := PrepareMask(mask, img, f)
		if err != nil {
			return nil, nil, err
		}
		if im.mask, err = tileRows(lm, batch, "masks"); err != nil {
			return nil, nil, err
		}
		masked = mi
	}
	hasImage := img != nil || r.InitLatents != nil
	if hasImage && r.Strength > 0 {
		im.strength = r.Strength
	}
	var err error
	switch {
	case r.InitLatents != nil:
		im.latents, err = tileRows(r.InitLatents, batch, "init latents")
	case img != nil && (r.Mask == nil || !im.inpaint9 || im.strength < 1):
		im.latents, err = p.encode(img, r.Noise, batch)
	}
	if err != nil {
		return nil, nil, err
	}
	if err := im.window(r, s); err != nil {
		return nil, nil, err
	}
	latents, err := im.initial(r, s)
	if err != nil {
		return nil, nil, err
	}
	if masked != nil {
		if im.masked, err = p.encode(masked, r.Noise, batch); err != nil {
			return nil, nil, err
		}
		im.resultMask, im.resultMasked = im.mask, im.masked
	}
	return im, latents, nil
}

// broadcastPair gives the init image and the mask the same number of
// rows, repeating a single one.
func broadcastPair(img, mask *tensor.Tensor) (*tensor.Tensor, *tensor.Tensor, error) {
	var err error
	switch {
	case img.Dim(0) == mask.Dim(0):
	case img.Dim(0) == 1:
		img, err = tileRows(img, mask.Dim(0), "init images")
	case mask.Dim(0) == 1:
		mask, err = tileRows(mask, img.Dim(0), "masks")
	default:
		err = fmt.Errorf("pipeline: %d init images and %d masks: give one mask per image, or one for all", img.Dim(0), mask.Dim(0))
	}
	return img, mask, err
}

// window sets the steps to run from strength or the denoising window.
func (im *sdImage) window(r *Request, s scheduler.Scheduler) error {
	var err error
	if r.DenoisingEnd > 0 && r.DenoisingEnd < 1 {
		if im.end, err = scheduler.DenoisingEnd(s, r.DenoisingEnd); err != nil {
			return err
		}
	}
	switch {
	case r.DenoisingStart > 0:
		if im.latents == nil {
			return errors.New("pipeline: denoising_start needs init latents or an init image")
		}
		if im.start, err = scheduler.DenoisingStart(s, r.DenoisingStart); err != nil {
			return err
		}
		im.addNoise = false
	case im.latents != nil:
		if im.start, err = scheduler.StrengthStart(s, r.Steps, im.strength); err != nil {
			return err
		}
	}
	if im.start >= im.end {
		return fmt.Errorf("pipeline: strength %g / denoising window leaves no steps out of %d", im.strength, r.Steps)
	}
	return nil
}

// initial draws the noise and returns the starting latents.
func (im *sdImage) initial(r *Request, s scheduler.Scheduler) (*tensor.Tensor, error) {
	if !im.addNoise {
		return im.latents, nil // the refiner continues from the given latents
	}
	var err error
	if im.noise, err = initialNoise(r.Latents, r.Noise, im.latShape); err != nil {
		return nil, err
	}
	if im.latents != nil && (im.strength < 1 || r.Mask == nil) {
		noised, err := s.AddNoise(im.latents.Data(), im.noise.Data(), repeatT(s.Timesteps()[im.start], im.latShape[0]))
		if err != nil {
			return nil, err
		}
		return tensor.FromSlice(noised, im.latShape...), nil
	}
	return tensor.Scale(im.noise, float32(s.InitNoiseSigma())), nil
}

// loop is the SD denoising loop: CFG over [uncond; cond], the 9-channel
// UNet's mask channels, adapters, legacy inpainting's blending, and
// DeepCache's full and cached steps when dc is set.
func (p *SD) loop(r *Request, text *sdText, im *sdImage, cfg bool, dc *unet.Cache) *Loop {
	l := &Loop{Scheduler: r.Scheduler, Noise: r.Noise, Start: im.start, End: im.end,
		Callbacks: Callbacks{Progress: r.Progress, OnModelInput: r.OnUNetInput, OnStep: r.OnStep}}
	var extra *tensor.Tensor // the 9-channel UNet's mask and masked-image latents
	if im.inpaint9 {
		extra = tensor.Concat(1, im.mask, im.masked)
		if cfg {
			extra = doubled(extra)
		}
	}
	if cfg {
		l.Batch = doubled
		l.Guide = CFG(r.Guidance, r.GuidanceRescale, text.rows)
	}
	if extra != nil {
		l.Input = func(scaled *tensor.Tensor) *tensor.Tensor { return tensor.Concat(1, scaled, extra) }
	}
	l.Model = func(st Step) (*tensor.Tensor, error) {
		cond := unet.Cond{EncoderHiddenStates: text.ehs, TextEmbeds: r.AddTextEmbeds, TimeIDs: r.AddTimeIDs}
		if r.Adapter != nil {
			// Adapters see the latent input without the inpainting channels,
			// as diffusers gives the ControlNet the 4-channel latents.
			if err := r.Adapter(st.I, st.Total, st.T, st.Scaled, &cond); err != nil {
				return nil, err
			}
		}
		return p.UNet.ForwardCached(st.Input, []float32{float32(st.T)}, cond, dc, r.Cache.full(st.I))
	}
	if im.mask != nil && !im.inpaint9 {
		l.After = im.blend(r.Scheduler)
	}
	return l
}

// blend is legacy inpainting with a 4-channel UNet: outside the mask the
// latents are replaced by the original, re-noised to the next timestep.
func (im *sdImage) blend(s scheduler.Scheduler) func(i, idx int, latents *tensor.Tensor) (*tensor.Tensor, error) {
	ts := s.Timesteps()
	keep := tensor.AddScalar(tensor.Neg(im.mask), 1)
	return func(_, idx int, latents *tensor.Tensor) (*tensor.Tensor, error) {
		proper := im.latents
		if idx < len(ts)-1 {
			pn, err := s.AddNoise(im.latents.Data(), im.noise.Data(), repeatT(ts[idx+1], im.latShape[0]))
			if err != nil {
				return nil, err
			}
			proper = tensor.FromSlice(pn, im.latShape...)
		}
		return tensor.Add(tensor.Mul(keep, proper), tensor.Mul(im.mask, latents)), nil
	}
}

func repeatT(t float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = t
	}
	return out
}

// encode VAE-encodes images [N, H, W, 3], sampling the posterior with the
// noise source (nil: the mean), and tiles the latents to the batch as
// diffusers does.
func (p *SD) encode(img *tensor.Tensor, noise scheduler.NoiseSource, batch int) (*tensor.Tensor, error) {
	f := vaeFactor(p.VAE)
	shape := []int{img.Dim(0), p.VAE.Cfg.LatentChannels, img.Dim(1) / f, img.Dim(2) / f}
	var n *tensor.Tensor
	if noise != nil {
		n = tensor.FromSlice(noise.Randn(shape), shape...)
	}
	z, err := EncodeImage(p.VAE, img, n)
	if err != nil {
		return nil, err
	}
	return tileRows(z, batch, "init images")
}
