package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/diffuse-go/diffuse/model/pixart"
	"github.com/diffuse-go/diffuse/model/t5"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
)

// MaskedTokenizer turns a prompt into ids and an attention mask padded (and
// truncated) to maxLength, as T5 tokenizers do (e.g. *tokenizer/t5.Tokenizer).
type MaskedTokenizer interface {
	Encode(text string, maxLength int) (ids, mask []int64)
}

// PixArt is diffusers' PixArtAlphaPipeline: T5 text conditioning, a
// PixArt-alpha transformer and a VAE.
type PixArt struct {
	Tokenizer   MaskedTokenizer
	TextEncoder *t5.Model
	Transformer *pixart.Model
	VAE         *vae.Model
}

// PixArtRequest describes one generation. Caption cleaning is not
// implemented: prompts are lower-cased and trimmed, as diffusers does with
// clean_caption=False.
type PixArtRequest struct {
	Prompts, NegativePrompts []string // NegativePrompts may be empty: ""
	// MaxSequenceLength is the token length prompts are padded to (0: 120).
	MaxSequenceLength int
	Width, Height     int // 0: the transformer's sample size × the VAE factor
	Steps             int
	Guidance          float64 // classifier-free guidance scale; <= 1 disables CFG
	Scheduler         scheduler.Scheduler
	// Noise draws the initial latents (and any sampler noise); Latents,
	// when set, are the initial noise [B, C, h, w] instead (unscaled).
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

// PixArtResult is what a PixArt generation returns.
type PixArtResult struct {
	Images  *tensor.Tensor // [B, H, W, 3] in [0, 1]
	Latents *tensor.Tensor
	// PromptIDs and NegativeIDs are the token ids ([B, L] row-major).
	PromptIDs, NegativeIDs []int64
	// PromptEmbeds [B', L, D] and PromptMask (B'·L values) are what the
	// transformer received (negative rows first under CFG).
	PromptEmbeds *tensor.Tensor
	PromptMask   []int64
	Timesteps    []float64
	// Cache counts the full and cached transformer forwards.
	Cache CacheStats
}

// pixartPreprocess is PixArtAlphaPipeline's caption preprocessing with
// clean_caption=False.
func pixartPreprocess(s string) string { return strings.TrimSpace(strings.ToLower(s)) }

// encodeT5 tokenizes prompts (lower-cased and trimmed, as diffusers'
// T5 pipelines do with clean_caption=False) to length tokens and encodes
// them with their attention mask: [B, L, D] plus the ids and the mask.
func encodeT5(tok MaskedTokenizer, enc *t5.Model, prompts []string, length int) (*tensor.Tensor, []int64, []int64, error) {
	var ids, mask []int64
	for _, s := range prompts {
		i, m := tok.Encode(pixartPreprocess(s), length)
		if len(i) != length || len(m) != length {
			return nil, nil, nil, fmt.Errorf("pipeline: tokenizer gave %d ids and %d mask values, want %d", len(i), len(m), length)
		}
		ids, mask = append(ids, i...), append(mask, m...)
	}
	emb, err := enc.Forward(ids, mask, len(prompts), length)
	if err != nil {
		return nil, nil, nil, err
	}
	return emb, ids, mask, nil
}

// negativePrompts gives one negative prompt per prompt row: "" for each
// when none is given, a single one repeated.
func negativePrompts(negs []string, b int) ([]string, error) {
	switch {
	case len(negs) == 0:
		negs = make([]string, b)
	case len(negs) == 1 && b > 1:
		negs = slices.Repeat(negs, b)
	}
	if len(negs) != b {
		return nil, fmt.Errorf("pipeline: %d negative prompts for %d prompts", len(negs), b)
	}
	return negs, nil
}

// vaeFactor is the VAE's spatial downscale, 2^(blocks-1).
func vaeFactor(v *vae.Model) int { return 1 << max(len(v.Cfg.BlockOutChannels)-1, 0) }

// Generate runs the pipeline. It stops between steps when ctx is cancelled.
func (p *PixArt) Generate(ctx context.Context, r PixArtRequest) (*PixArtResult, error) {
	if err := checkCommon(r.Scheduler, r.Steps, r.Guidance, 0); err != nil {
		return nil, err
	}
	if err := r.Cache.check("PixArt", CacheFirstBlock); err != nil {
		return nil, err
	}
	if len(r.Prompts) == 0 {
		return nil, errors.New("pipeline: no prompt")
	}
	if p.Tokenizer == nil || p.TextEncoder == nil {
		return nil, errors.New("pipeline: no tokenizer/text encoder for the prompts")
	}
	tc := p.Transformer.Cfg
	f := vaeFactor(p.VAE)
	width, height := r.Width, r.Height
	if width == 0 {
		width = tc.SampleSize * f
	}
	if height == 0 {
		height = tc.SampleSize * f
	}
	if err := checkSize(width, height, f*tc.PatchSize); err != nil {
		return nil, err
	}
	length := r.MaxSequenceLength
	if length <= 0 {
		length = 120
	}
	B := len(r.Prompts)
	cfg := r.Guidance > 1
	res := &PixArtResult{}
	ehs, ids, mask, err := encodeT5(p.Tokenizer, p.TextEncoder, r.Prompts, length)
	if err != nil {
		return nil, err
	}
	res.PromptIDs = ids
	if cfg {
		negs, err := negativePrompts(r.NegativePrompts, B)
		if err != nil {
			return nil, err
		}
		nehs, nids, nmask, err := encodeT5(p.Tokenizer, p.TextEncoder, negs, length)
		if err != nil {
			return nil, err
		}
		res.NegativeIDs = nids
		ehs = tensor.Concat(0, nehs, ehs) // unconditional first
		mask = append(nmask, mask...)
	}
	res.PromptEmbeds, res.PromptMask = ehs, mask
	rows := B
	if cfg {
		rows = 2 * B
	}
	var resolution, aspect []float32
	if tc.AdditionalConditions() {
		for i := 0; i < rows; i++ {
			resolution = append(resolution, float32(height), float32(width))
			aspect = append(aspect, float32(float64(height)/float64(width)))
		}
	}
	s := r.Scheduler
	if err := s.SetTimesteps(r.Steps); err != nil {
		return nil, err
	}
	ch := tc.InChannels
	latShape := []int{B, ch, height / f, width / f}
	noise, err := initialNoise(r.Latents, r.Noise, latShape)
	if err != nil {
		return nil, err
	}
	latents := tensor.Scale(noise, float32(s.InitNoiseSigma()))
	outCh := tc.OutChannels
	if outCh == 0 {
		outCh = ch
	}
	loop := &Loop{Scheduler: s, Noise: r.Noise, Callbacks: Callbacks{Progress: r.Progress, OnModelInput: r.OnModelInput}}
	if cfg {
		loop.Batch = doubled
		loop.Guide = CFG(r.Guidance, 0, B)
	}
	learnedSigma := outCh/2 == ch
	bc := r.Cache.blockCache()
	loop.Model = func(st Step) (*tensor.Tensor, error) {
		tv := make([]float32, rows)
		for j := range tv {
			tv[j] = float32(st.T)
		}
		return p.Transformer.Forward(st.Input, pixart.Cond{EncoderHiddenStates: ehs, EncoderMask: mask, Timesteps: tv,
			Resolution: resolution, AspectRatio: aspect, Cache: bc})
	}
	if learnedSigma {
		guide := loop.Guide
		loop.Guide = func(out *tensor.Tensor) (*tensor.Tensor, error) {
			var err error
			if guide != nil {
				if out, err = guide(out); err != nil {
					return nil, err
				}
			}
			return out.Narrow(1, 0, ch), nil // the variance channels are dropped
		}
	}
	latents, seen, err := loop.Run(ctx, latents)
	if err != nil {
		return nil, err
	}
	res.Timesteps = seen
	res.Latents = latents
	res.Cache = blockStats(bc)
	if r.SkipDecode {
		return res, nil
	}
	// PixArt divides by the scaling factor (SD multiplies by its inverse).
	img, err := p.VAE.Decode(tensor.Div(latents, tensor.Scalar(p.VAE.Cfg.ScalingFactor)))
	if err != nil {
		return nil, err
	}
	img = tensor.Clamp(tensor.AddScalar(tensor.Scale(img, 0.5), 0.5), 0, 1)
	res.Images = img.Permute(0, 2, 3, 1).Contiguous()
	return res, nil
}
