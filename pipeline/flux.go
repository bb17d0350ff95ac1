package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/flux"
	"github.com/diffuse-go/diffuse/model/t5"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
)

// Flux is diffusers' FluxPipeline (v0.30.3): the pooled CLIP embedding and
// the T5 states condition a Flux transformer that predicts a flow over
// packed latents (2×2 patches of the VAE latent as 4·C features per
// token); a FlowMatchEulerDiscreteScheduler integrates it. There is no
// classifier-free guidance: FLUX.1-dev embeds the guidance scale instead,
// FLUX.1-schnell ignores it.
type Flux struct {
	Tokenizer    Tokenizer // CLIP, padded to 77 with <|endoftext|>
	TextEncoder  *clip.Model
	Tokenizer2   MaskedTokenizer // T5
	TextEncoder2 *t5.Model
	Transformer  *flux.Model
	VAE          *vae.Model
}

// FluxRequest describes one generation (one image per prompt).
type FluxRequest struct {
	// Prompts go to CLIP; Prompts2 to T5 (nil: Prompts).
	Prompts, Prompts2 []string
	// MaxSequenceLength is the T5 length prompts are padded or truncated
	// to (0: 512).
	MaxSequenceLength int
	// Width and Height (0: 1024) must be multiples of 8; as upstream, the
	// image covers whole packed tokens, so its size is rounded down to a
	// multiple of the VAE scale factor (16 for FLUX.1, see VAEScaleFactor).
	Width, Height int
	Steps         int
	// Guidance is the guidance scale FLUX.1-dev embeds (guidance_embeds);
	// other transformers ignore it.
	Guidance float64
	// Scheduler is configured by Generate (explicit sigmas, and the
	// resolution-dependent mu when it shifts dynamically).
	Scheduler *scheduler.FlowMatchEuler
	// Noise draws the initial latents; Latents, when set, are the initial
	// noise [B, C, h, w] (unpacked, as randn_tensor draws it) instead.
	Noise   scheduler.NoiseSource
	Latents *tensor.Tensor
	// SkipDecode returns the latents only.
	SkipDecode bool

	// Progress, when set, is called after each step.
	Progress func(step, total int, elapsed time.Duration)
	// OnStep, when set, sees each step's transformer call and result.
	OnStep func(step int, s FluxStep)
}

// FluxStep is what one denoising step fed the transformer and produced.
type FluxStep struct {
	// Timesteps and Guidance are the per-sample values passed to the
	// transformer (t/1000 and the guidance scale; Guidance nil without
	// guidance embeds).
	Timesteps, Guidance []float32
	ModelOutput         *tensor.Tensor // [B, N, 4C]
	Latents             *tensor.Tensor // packed latents after the step
}

// FluxResult is what a Flux generation returns.
type FluxResult struct {
	Images *tensor.Tensor // [B, H, W, 3] in [0, 1]; nil with SkipDecode
	// Latents are the final latents unpacked to [B, C, h, w], as the VAE
	// input is before the scaling and shift are undone.
	Latents *tensor.Tensor
	// CLIPIDs [B, 77] and T5IDs [B, L] are the token ids, row-major.
	CLIPIDs, T5IDs []int64
	// PromptEmbeds [B, L, D] are the T5 states, PooledPromptEmbeds [B, P]
	// the pooled CLIP output.
	PromptEmbeds, PooledPromptEmbeds *tensor.Tensor
	// TxtIDs [B, L, 3] and ImgIDs [B, N, 3] are the rotary position ids.
	TxtIDs, ImgIDs *tensor.Tensor
	// PackedLatents [B, N, 4C] are the initial latents as packed.
	PackedLatents *tensor.Tensor
	// Mu is the dynamic shift (calculated even when the scheduler does not
	// use it); Timesteps and Sigmas the schedule (Sigmas ends with 0).
	Mu        float64
	Timesteps []float64
	Sigmas    []float32
	// VAEInput [B, C, h, w] is what the VAE decoded.
	VAEInput *tensor.Tensor
}

// fluxDefaultSize is FluxPipeline's default height and width (its
// default_sample_size 64 times the VAE scale factor 16).
const fluxDefaultSize = 1024

// fluxDefaultMaxSequenceLength is FluxPipeline's max_sequence_length.
const fluxDefaultMaxSequenceLength = 512

// VAEScaleFactor is FluxPipeline's vae_scale_factor in diffusers v0.30.3,
// 2^len(block_out_channels): one packed token covers this many pixels a
// side (2×2 latent pixels of an 8× VAE).
func (p *Flux) VAEScaleFactor() int { return 1 << len(p.VAE.Cfg.BlockOutChannels) }

// PackLatents is FluxPipeline._pack_latents: [B, C, h, w] to
// [B, (h/2)(w/2), 4C], token (i, j) holding its 2×2 patch with channels
// ordered (c, dy, dx).
func PackLatents(x *tensor.Tensor) (*tensor.Tensor, error) {
	if x.Rank() != 4 || x.Dim(2)%2 != 0 || x.Dim(3)%2 != 0 {
		return nil, fmt.Errorf("pipeline: latents %v must be [B, C, h, w] with even h and w", x.Shape())
	}
	b, c, h, w := x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3)
	return x.Reshape(b, c, h/2, 2, w/2, 2).Permute(0, 2, 4, 1, 3, 5).Reshape(b, (h/2)*(w/2), 4*c).Contiguous(), nil
}

// UnpackLatents is FluxPipeline._unpack_latents: packed tokens [B, N, 4C]
// of an h×w latent back to [B, C, h, w].
func UnpackLatents(x *tensor.Tensor, h, w int) (*tensor.Tensor, error) {
	if x.Rank() != 3 || x.Dim(2)%4 != 0 || h%2 != 0 || w%2 != 0 || x.Dim(1) != (h/2)*(w/2) {
		return nil, fmt.Errorf("pipeline: packed latents %v do not hold a %d×%d latent", x.Shape(), h, w)
	}
	b, c := x.Dim(0), x.Dim(2)/4
	return x.Reshape(b, h/2, w/2, c, 2, 2).Permute(0, 3, 1, 4, 2, 5).Reshape(b, c, h, w).Contiguous(), nil
}

// LatentImageIDs is FluxPipeline._prepare_latent_image_ids for an h×w
// latent: [B, (h/2)(w/2), 3] holding (0, i, j) for token (i, j), row-major.
func LatentImageIDs(batch, h, w int) *tensor.Tensor {
	n := (h / 2) * (w / 2)
	ids := tensor.Zeros(batch, n, 3)
	d := ids.Data()
	for b := 0; b < batch; b++ {
		for i := 0; i < h/2; i++ {
			for j := 0; j < w/2; j++ {
				o := (b*n + i*(w/2) + j) * 3
				d[o+1], d[o+2] = float32(i), float32(j)
			}
		}
	}
	return ids
}

// encodePrompts returns the T5 states, the pooled CLIP embedding and the
// ids of both tokenizers.
func (p *Flux) encodePrompts(r FluxRequest, length int, res *FluxResult) error {
	if p.Tokenizer == nil || p.TextEncoder == nil || p.Tokenizer2 == nil || p.TextEncoder2 == nil {
		return errors.New("pipeline: Flux needs both tokenizers and text encoders")
	}
	prompts2 := r.Prompts2
	if prompts2 == nil {
		prompts2 = r.Prompts
	}
	if len(prompts2) != len(r.Prompts) {
		return fmt.Errorf("pipeline: %d second prompts for %d prompts", len(prompts2), len(r.Prompts))
	}
	clipOut, err := p.encodeCLIP(r.Prompts, res)
	if err != nil {
		return err
	}
	res.PooledPromptEmbeds = clipOut
	var ids []int64
	for _, s := range prompts2 {
		row, _ := p.Tokenizer2.Encode(s, length)
		if len(row) != length {
			return fmt.Errorf("pipeline: T5 tokenizer gave %d ids, want %d", len(row), length)
		}
		ids = append(ids, row...)
	}
	// FluxPipeline passes no attention mask: padding tokens are attended to.
	emb, err := p.TextEncoder2.Forward(ids, nil, len(prompts2), length)
	if err != nil {
		return fmt.Errorf("pipeline: T5: %w", err)
	}
	res.T5IDs, res.PromptEmbeds = ids, emb
	return nil
}

// encodeCLIP returns CLIP's pooled output [B, D] for the prompts.
func (p *Flux) encodeCLIP(prompts []string, res *FluxResult) (*tensor.Tensor, error) {
	var ids []int64
	length := 0
	for _, s := range prompts {
		row := p.Tokenizer.Encode(s)
		if length == 0 {
			length = len(row)
		} else if len(row) != length {
			return nil, fmt.Errorf("pipeline: CLIP tokenizer gave rows of %d and %d ids", length, len(row))
		}
		ids = append(ids, row...)
	}
	out, err := p.TextEncoder.Forward(ids, len(prompts), length)
	if err != nil {
		return nil, fmt.Errorf("pipeline: CLIP: %w", err)
	}
	res.CLIPIDs = ids
	return out.Pooled, nil
}

// check validates the pipeline's parts and the request, and returns the
// image size.
func (p *Flux) check(r FluxRequest) (width, height int, err error) {
	switch {
	case p.Transformer == nil || p.VAE == nil:
		return 0, 0, errors.New("pipeline: Flux needs a transformer and a VAE")
	case r.Scheduler == nil:
		return 0, 0, errors.New("pipeline: no scheduler")
	case r.Steps <= 0:
		return 0, 0, fmt.Errorf("pipeline: steps must be positive, got %d", r.Steps)
	case len(r.Prompts) == 0:
		return 0, 0, errors.New("pipeline: no prompt")
	case p.Transformer.Cfg.InChannels%4 != 0:
		return 0, 0, fmt.Errorf("pipeline: transformer in_channels %d is not 4 × latent channels", p.Transformer.Cfg.InChannels)
	}
	width, height = r.Width, r.Height
	if width == 0 {
		width = fluxDefaultSize
	}
	if height == 0 {
		height = fluxDefaultSize
	}
	// FluxPipeline's check_inputs asks for multiples of 8, then the latent
	// size rounds down to whole packed tokens (an image 8 pixels short).
	f := p.VAEScaleFactor()
	if width < f || height < f || width%8 != 0 || height%8 != 0 {
		return 0, 0, fmt.Errorf("pipeline: size %dx%d must be multiples of 8, at least %d", width, height, f)
	}
	return width, height, nil
}

// schedule sets the scheduler up as FluxPipeline does: sigmas
// linspace(1, 1/n, n) and mu = calculate_shift of the token count.
func (p *Flux) schedule(r FluxRequest, tokens int, res *FluxResult) error {
	s := r.Scheduler
	res.Mu = s.Mu(tokens)
	mu := res.Mu
	if err := s.SetSchedule(r.Steps, scheduler.LinspaceSigmas(r.Steps), &mu); err != nil {
		return err
	}
	res.Timesteps, res.Sigmas = s.Timesteps(), s.Sigmas()
	return nil
}

// Generate runs the pipeline. It stops between steps when ctx is cancelled.
func (p *Flux) Generate(ctx context.Context, r FluxRequest) (*FluxResult, error) {
	width, height, err := p.check(r)
	if err != nil {
		return nil, err
	}
	length := r.MaxSequenceLength
	if length <= 0 {
		length = fluxDefaultMaxSequenceLength
	}
	res := &FluxResult{}
	if err := p.encodePrompts(r, length, res); err != nil {
		return nil, err
	}
	if err := p.sample(ctx, r, res, width, height); err != nil {
		return nil, err
	}
	return res, nil
}

// sample runs the denoising loop and the decoder from the prompt
// encodings in res (PromptEmbeds, PooledPromptEmbeds), so that the
// encoders need not be loaded while it runs.
func (p *Flux) sample(ctx context.Context, r FluxRequest, res *FluxResult, width, height int) error {
	B, f := len(r.Prompts), p.VAEScaleFactor()
	if res.PromptEmbeds == nil || res.PooledPromptEmbeds == nil || res.PromptEmbeds.Dim(0) != B {
		return errors.New("pipeline: Flux sampling needs the prompt encodings of every prompt")
	}
	length := res.PromptEmbeds.Dim(1)
	h, w := 2*(height/f), 2*(width/f)
	noise, err := initialNoise(r.Latents, r.Noise, []int{B, p.Transformer.Cfg.InChannels / 4, h, w})
	if err != nil {
		return err
	}
	latents, err := PackLatents(noise)
	if err != nil {
		return err
	}
	res.PackedLatents = latents
	res.TxtIDs = tensor.Zeros(B, length, 3)
	res.ImgIDs = LatentImageIDs(B, h, w)
	if err := p.schedule(r, latents.Dim(1), res); err != nil {
		return err
	}
	cond := flux.Cond{EncoderHiddenStates: res.PromptEmbeds, PooledProjections: res.PooledPromptEmbeds,
		TxtIDs: res.TxtIDs, ImgIDs: res.ImgIDs}
	if p.Transformer.Cfg.GuidanceEmbeds {
		cond.Guidance = fill(B, float32(r.Guidance))
	}
	if latents, err = p.denoise(ctx, r, cond, latents, res.Timesteps); err != nil {
		return err
	}
	if res.Latents, err = UnpackLatents(latents, h, w); err != nil {
		return err
	}
	if r.SkipDecode {
		return nil
	}
	res.VAEInput = p.VAE.Denormalize(res.Latents)
	img, err := p.VAE.Decode(res.VAEInput)
	if err != nil {
		return err
	}
	res.Images = tensor.Clamp(tensor.AddScalar(tensor.Scale(img, 0.5), 0.5), 0, 1).Permute(0, 2, 3, 1).Contiguous()
	return nil
}

// fill returns n copies of v.
func fill(n int, v float32) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// denoise runs the sampling loop over the packed latents (FLUX.1 dev
// distils guidance into the model: there is no CFG batch).
func (p *Flux) denoise(ctx context.Context, r FluxRequest, cond flux.Cond, latents *tensor.Tensor, _ []float64) (*tensor.Tensor, error) {
	B := latents.Dim(0)
	loop := &Loop{Scheduler: r.Scheduler, Noise: r.Noise, Callbacks: Callbacks{Progress: r.Progress}}
	var out *tensor.Tensor
	loop.Model = func(st Step) (*tensor.Tensor, error) {
		// The pipeline divides the float32 timestep by 1000 and the model
		// multiplies it back, both in float32.
		cond.Timesteps = fill(B, float32(st.T)/1000)
		var err error
		out, err = p.Transformer.Forward(st.Input, cond)
		return out, err
	}
	if r.OnStep != nil {
		loop.OnStep = func(i int, _ float64, latents *tensor.Tensor) {
			r.OnStep(i, FluxStep{Timesteps: cond.Timesteps, Guidance: cond.Guidance, ModelOutput: out, Latents: latents})
		}
	}
	latents, _, err := loop.Run(ctx, latents)
	return latents, err
}
