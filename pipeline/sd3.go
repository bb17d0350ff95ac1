package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/sd3"
	"github.com/diffuse-go/diffuse/model/t5"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
)

// SD3 is diffusers' StableDiffusion3Pipeline: two CLIP text encoders
// (CLIP-L and CLIP-G, both with projection) and a T5 encoder condition an
// MMDiT transformer that predicts a flow velocity, sampled by a
// flow-matching scheduler; the VAE latents carry a shift and a scale.
type SD3 struct {
	TextEncoder, TextEncoder2 *clip.Model // CLIP-L, CLIP-G (CLIPTextModelWithProjection)
	Tokenizer, Tokenizer2     Tokenizer   // 77 ids each; tokenizer_2 pads with '!' in SD3
	// TextEncoder3 and Tokenizer3 are the T5 encoder; a nil TextEncoder3
	// gives zero T5 states of 77 tokens, as diffusers does without it.
	TextEncoder3 *t5.Model
	Tokenizer3   MaskedTokenizer
	Transformer  *sd3.Model
	VAE          *vae.Model
}

// SD3Request describes one SD3 generation.
type SD3Request struct {
	// Prompts go to CLIP-L; Prompts2 (CLIP-G) and Prompts3 (T5) default to
	// them. NegativePrompts default to ""; NegativePrompts2/3 to
	// NegativePrompts.
	Prompts, Prompts2, Prompts3                         []string
	NegativePrompts, NegativePrompts2, NegativePrompts3 []string
	// MaxSequenceLength is the T5 token length (0: 256).
	MaxSequenceLength int
	// ClipSkip follows A1111 (as [Request.ClipSkip]): below 3 both CLIP
	// encoders give their penultimate layer (SD3's default); k >= 3 takes
	// hidden state -k (diffusers' clip_skip = k-2).
	ClipSkip      int
	Width, Height int // 0: the transformer's sample size × the VAE factor
	Steps         int
	Guidance      float64 // classifier-free guidance scale; <= 1 disables CFG
	// Scheduler is normally a *scheduler.FlowMatchEuler.
	Scheduler scheduler.Scheduler
	// Noise draws the initial latents; Latents, when set, are used as they
	// are instead ([B, C, h, w]; flow matching starts from pure noise).
	// With InitImage, Latents is the noise mixed into the image latents and
	// Noise also samples the VAE posterior (nil Noise: its mean).
	Noise   scheduler.NoiseSource
	Latents *tensor.Tensor
	// InitImage [Bi, H, W, 3] in [0, 1] (Bi dividing the prompt count, the
	// batch tiled as diffusers does) makes the run image-to-image as
	// StableDiffusion3Img2ImgPipeline: the normalised image latents are
	// noised to the schedule's point given by Strength (in (0, 1]; 0 means
	// diffusers' default 0.6) and denoised from there. Width and Height
	// default to the image's size.
	InitImage *tensor.Tensor
	Strength  float64
	// SkipDecode returns the latents only.
	SkipDecode bool

	// Progress, when set, is called after each step.
	Progress func(step, total int, elapsed time.Duration)
	// OnModelOutput sees the transformer's output of each step (both CFG
	// halves, before guidance).
	OnModelOutput func(step int, out *tensor.Tensor)
	// OnStep sees the latents after each step.
	OnStep func(step int, t float64, latents *tensor.Tensor)
}

// SD3Result is what an SD3 generation returns.
type SD3Result struct {
	Images  *tensor.Tensor // [B, H, W, 3] in [0, 1]; nil with SkipDecode
	Latents *tensor.Tensor // the final latents, before the VAE's shift and scale
	// The token ids of each encoder ([B, L] row-major), prompts and negatives.
	CLIPIDs, CLIP2IDs, T5IDs                         []int64
	NegativeCLIPIDs, NegativeCLIP2IDs, NegativeT5IDs []int64
	// PromptEmbeds [B', 77+L, D_t5] and PooledEmbeds [B', P] are what the
	// transformer received (negative rows first under CFG).
	PromptEmbeds, PooledEmbeds *tensor.Tensor
	Timesteps                  []float64
}

// sd3Encoded is one prompt set's encoding and its ids.
type sd3Encoded struct {
	embeds, pooled         *tensor.Tensor
	clipIDs, clip2IDs, t5s []int64
}

// encodeCLIP runs one CLIP encoder: the chosen hidden state (penultimate by
// default, no final layer norm) and the projected pooled output.
func (p *SD3) encodeCLIP(enc *clip.Model, tok Tokenizer, prompts []string, clipSkip int) (states, pooled *tensor.Tensor, ids []int64, err error) {
	if enc == nil || tok == nil {
		return nil, nil, nil, errors.New("pipeline: SD3 needs both CLIP text encoders and their tokenizers")
	}
	length := 0
	for _, s := range prompts {
		row := tok.Encode(s)
		if length != 0 && len(row) != length {
			return nil, nil, nil, fmt.Errorf("pipeline: tokenizer gave rows of %d and %d ids", length, len(row))
		}
		length = len(row)
		ids = append(ids, row...)
	}
	out, err := enc.Forward(ids, len(prompts), length)
	if err != nil {
		return nil, nil, nil, err
	}
	if out.TextEmbeds == nil {
		return nil, nil, nil, errors.New("pipeline: SD3's CLIP encoders need their text_projection")
	}
	idx := len(out.HiddenStates) - max(2, clipSkip)
	if idx < 1 {
		return nil, nil, nil, fmt.Errorf("pipeline: clip skip %d exceeds the encoder's %d layers", clipSkip, len(out.HiddenStates)-1)
	}
	return out.HiddenStates[idx], out.TextEmbeds, ids, nil
}

// encodeT5 returns the T5 last hidden state [B, L, D] (no attention mask:
// SD3 attends to the padding) and the ids.
func (p *SD3) encodeT5(prompts []string, length int) (*tensor.Tensor, []int64, error) {
	if p.TextEncoder3 == nil {
		// diffusers: zeros of tokenizer_max_length tokens, joint_attention_dim wide.
		return tensor.Zeros(len(prompts), clipLength, p.Transformer.Cfg.JointAttentionDim), nil, nil
	}
	if p.Tokenizer3 == nil {
		return nil, nil, errors.New("pipeline: SD3 T5 encoder without its tokenizer")
	}
	var ids []int64
	for _, s := range prompts {
		row, _ := p.Tokenizer3.Encode(s, length)
		if len(row) != length {
			return nil, nil, fmt.Errorf("pipeline: T5 tokenizer gave %d ids, want %d", len(row), length)
		}
		ids = append(ids, row...)
	}
	out, err := p.TextEncoder3.Forward(ids, nil, len(prompts), length)
	return out, ids, err
}

// clipLength is the CLIP tokenizers' max length, which the T5-less
// fallback uses too.
const clipLength = 77

// padLast zero-pads (or, as F.pad with a negative pad, crops) the last
// dimension of x [B, L, D] to width.
func padLast(x *tensor.Tensor, width int) *tensor.Tensor {
	d := x.Dim(2)
	switch {
	case d == width:
		return x
	case d > width:
		return x.Narrow(2, 0, width).Contiguous()
	}
	return tensor.Concat(2, x, tensor.Zeros(x.Dim(0), x.Dim(1), width-d))
}

// encode is encode_prompt for one prompt set: cat(CLIP-L, CLIP-G) states
// padded to the T5 width, followed by the T5 states along the sequence;
// pooled = cat(pooled CLIP-L, pooled CLIP-G).
func (p *SD3) encode(prompts, prompts2, prompts3 []string, length, clipSkip int) (*sd3Encoded, error) {
	hl, pl, idsL, err := p.encodeCLIP(p.TextEncoder, p.Tokenizer, prompts, clipSkip)
	if err != nil {
		return nil, err
	}
	hg, pg, idsG, err := p.encodeCLIP(p.TextEncoder2, p.Tokenizer2, prompts2, clipSkip)
	if err != nil {
		return nil, err
	}
	t5s, idsT, err := p.encodeT5(prompts3, length)
	if err != nil {
		return nil, err
	}
	clipStates := padLast(tensor.Concat(2, hl, hg), t5s.Dim(2))
	return &sd3Encoded{embeds: tensor.Concat(1, clipStates, t5s), pooled: tensor.Concat(1, pl, pg),
		clipIDs: idsL, clip2IDs: idsG, t5s: idsT}, nil
}

// sd3Prompts resolves the three prompt lists of one side (positive or
// negative) to b entries each.
func sd3Prompts(b int, p1, p2, p3 []string) ([3][]string, error) {
	var out [3][]string
	for i, list := range [][]string{p1, orDefault(p2, p1), orDefault(p3, p1)} {
		l, err := broadcastPrompts(list, b)
		if err != nil {
			return out, err
		}
		out[i] = l
	}
	return out, nil
}

// encodeAll encodes the prompts and, under CFG, the negatives (first).
func (p *SD3) encodeAll(r SD3Request, res *SD3Result, cfg bool) (embeds, pooled *tensor.Tensor, err error) {
	B, length := len(r.Prompts), r.MaxSequenceLength
	if length <= 0 {
		length = 256
	}
	pos, err := sd3Prompts(B, r.Prompts, r.Prompts2, r.Prompts3)
	if err != nil {
		return nil, nil, err
	}
	e, err := p.encode(pos[0], pos[1], pos[2], length, r.ClipSkip)
	if err != nil {
		return nil, nil, err
	}
	res.CLIPIDs, res.CLIP2IDs, res.T5IDs = e.clipIDs, e.clip2IDs, e.t5s
	if !cfg {
		return e.embeds, e.pooled, nil
	}
	negs := r.NegativePrompts
	if len(negs) == 0 {
		negs = []string{""}
	}
	neg, err := sd3Prompts(B, negs, r.NegativePrompts2, r.NegativePrompts3)
	if err != nil {
		return nil, nil, fmt.Errorf("pipeline: negative prompts: %w", err)
	}
	n, err := p.encode(neg[0], neg[1], neg[2], length, r.ClipSkip)
	if err != nil {
		return nil, nil, err
	}
	res.NegativeCLIPIDs, res.NegativeCLIP2IDs, res.NegativeT5IDs = n.clipIDs, n.clip2IDs, n.t5s
	return tensor.Concat(0, n.embeds, e.embeds), tensor.Concat(0, n.pooled, e.pooled), nil
}

// sd3Size resolves and checks the image size.
func (p *SD3) sd3Size(r SD3Request) (w, h int, err error) {
	tc, f := p.Transformer.Cfg, vaeFactor(p.VAE)
	w, h = r.Width, r.Height
	if img := r.InitImage; img != nil {
		if img.Rank() != 4 || img.Dim(3) != 3 {
			return 0, 0, fmt.Errorf("pipeline: init image shape %v, want [B, H, W, 3]", img.Shape())
		}
		if (w != 0 && w != img.Dim(2)) || (h != 0 && h != img.Dim(1)) {
			return 0, 0, fmt.Errorf("pipeline: size %dx%d differs from the init image's %dx%d", w, h, img.Dim(2), img.Dim(1))
		}
		w, h = img.Dim(2), img.Dim(1)
	}
	if w == 0 {
		w = tc.SampleSize * f
	}
	if h == 0 {
		h = tc.SampleSize * f
	}
	if m := f * tc.PatchSize; w <= 0 || h <= 0 || w%m != 0 || h%m != 0 {
		return 0, 0, fmt.Errorf("pipeline: size %dx%d must be positive multiples of %d", w, h, m)
	}
	return w, h, nil
}

// beginIndexer is implemented by the schedulers with set_begin_index.
type beginIndexer interface{ SetBeginIndex(i int) error }

// imageLatents prepares img2img's starting point after SetTimesteps: the
// first step index (get_timesteps with strength, times the scheduler's
// order, also set as its begin index) and the image latents, tiled to the
// prompt batch and noised to that step (prepare_latents: the posterior
// draw, then the noise draw, then scale_noise).
func (p *SD3) imageLatents(r SD3Request, shape []int) (*tensor.Tensor, int, error) {
	s := r.Scheduler
	strength := r.Strength
	if strength == 0 {
		strength = 0.6
	}
	tStart, err := scheduler.FlowStrengthStart(r.Steps, strength)
	if err != nil {
		return nil, 0, err
	}
	start := tStart * s.Order()
	ts := s.Timesteps()
	if start >= len(ts) {
		return nil, 0, fmt.Errorf("pipeline: strength %g leaves no steps out of %d", strength, r.Steps)
	}
	if bi, ok := s.(beginIndexer); ok {
		if err := bi.SetBeginIndex(start); err != nil {
			return nil, 0, err
		}
	}
	img := r.InitImage
	if b := img.Dim(0); b == 0 || shape[0]%b != 0 {
		return nil, 0, fmt.Errorf("pipeline: cannot tile %d init images to %d prompts", b, shape[0])
	}
	var post *tensor.Tensor
	if r.Noise != nil {
		ps := []int{img.Dim(0), shape[1], shape[2], shape[3]}
		post = tensor.FromSlice(r.Noise.Randn(ps), ps...)
	}
	z, err := EncodeImage(p.VAE, img, post)
	if err != nil {
		return nil, 0, err
	}
	if !tensor.SameShape(z.Shape()[1:], shape[1:]) {
		return nil, 0, fmt.Errorf("pipeline: init image latents %v, want [*, %d, %d, %d]", z.Shape(), shape[1], shape[2], shape[3])
	}
	z = tileBatch(z, shape[0]/img.Dim(0))
	noise, err := initialNoise(r.Latents, r.Noise, shape)
	if err != nil {
		return nil, 0, err
	}
	rows := make([]float64, shape[0])
	for i := range rows {
		rows[i] = ts[start]
	}
	noised, err := s.AddNoise(z.Contiguous().Data(), noise.Data(), rows)
	if err != nil {
		return nil, 0, err
	}
	return tensor.FromSlice(noised, shape...), start, nil
}

// tileBatch is torch.cat([x] * n): the whole batch repeated n times.
func tileBatch(x *tensor.Tensor, n int) *tensor.Tensor {
	if n <= 1 {
		return x
	}
	tiles := make([]*tensor.Tensor, n)
	for i := range tiles {
		tiles[i] = x
	}
	return tensor.Concat(0, tiles...)
}

// checkSD3 validates a request against the pipeline's components.
func (p *SD3) checkSD3(r SD3Request) error {
	switch {
	case r.Scheduler == nil:
		return errors.New("pipeline: no scheduler")
	case !scheduler.IsFlowMatching(r.Scheduler):
		return fmt.Errorf("pipeline: SD3 needs a flow-matching scheduler (see scheduler.NewFlowMatch), got %s", r.Scheduler.Class())
	case r.Steps <= 0:
		return fmt.Errorf("pipeline: steps must be positive, got %d", r.Steps)
	case len(r.Prompts) == 0:
		return errors.New("pipeline: no prompt")
	case p.Transformer == nil || p.VAE == nil:
		return errors.New("pipeline: SD3 needs its transformer and VAE")
	}
	return nil
}

// Generate runs the pipeline. It stops between steps when ctx is cancelled.
func (p *SD3) Generate(ctx context.Context, r SD3Request) (*SD3Result, error) {
	if err := p.checkSD3(r); err != nil {
		return nil, err
	}
	if _, _, err := p.sd3Size(r); err != nil {
		return nil, err
	}
	res := &SD3Result{}
	embeds, pooled, err := p.encodeAll(r, res, r.Guidance > 1)
	if err != nil {
		return nil, err
	}
	res.PromptEmbeds, res.PooledEmbeds = embeds, pooled
	if err := p.sample(ctx, r, res); err != nil {
		return nil, err
	}
	return res, nil
}

// sample runs the denoising loop and the decoder from the prompt
// encodings in res (PromptEmbeds, PooledEmbeds: negatives first under
// CFG), so that the encoders need not be loaded while it runs.
func (p *SD3) sample(ctx context.Context, r SD3Request, res *SD3Result) error {
	if err := p.checkSD3(r); err != nil {
		return err
	}
	width, height, err := p.sd3Size(r)
	if err != nil {
		return err
	}
	f := vaeFactor(p.VAE)
	shape := []int{len(r.Prompts), p.Transformer.Cfg.InChannels, height / f, width / f}
	if err := r.Scheduler.SetTimesteps(r.Steps); err != nil {
		return err
	}
	var latents *tensor.Tensor
	start := 0
	if r.InitImage != nil {
		latents, start, err = p.imageLatents(r, shape)
	} else {
		latents, err = initialNoise(r.Latents, r.Noise, shape)
	}
	if err != nil {
		return err
	}
	if latents, err = p.denoise(ctx, r, res, latents, res.PromptEmbeds, res.PooledEmbeds, r.Guidance > 1, start); err != nil {
		return err
	}
	res.Latents = latents
	if r.SkipDecode {
		return nil
	}
	img, err := p.VAE.Decode(p.VAE.Denormalize(latents))
	if err != nil {
		return err
	}
	img = tensor.Clamp(tensor.AddScalar(tensor.Scale(img, 0.5), 0.5), 0, 1)
	res.Images = img.Permute(0, 2, 3, 1).Contiguous()
	return nil
}

// denoise runs the sampling loop from latents at step index start: CFG
// over [uncond; cond].
func (p *SD3) denoise(ctx context.Context, r SD3Request, res *SD3Result, latents, embeds, pooled *tensor.Tensor, cfg bool, start int) (*tensor.Tensor, error) {
	rows := latents.Dim(0)
	loop := &Loop{Scheduler: r.Scheduler, Noise: r.Noise, Start: start, Callbacks: Callbacks{Progress: r.Progress, OnStep: r.OnStep}}
	if cfg {
		rows *= 2
		loop.Batch = doubled
		loop.Guide = CFG(r.Guidance, 0, latents.Dim(0))
	}
	loop.Model = func(st Step) (*tensor.Tensor, error) {
		tv := make([]float32, rows)
		for j := range tv {
			tv[j] = float32(st.T)
		}
		out, err := p.Transformer.Forward(st.Input, embeds, pooled, tv)
		if err == nil && r.OnModelOutput != nil {
			r.OnModelOutput(st.I, out)
		}
		return out, err
	}
	latents, seen, err := loop.Run(ctx, latents)
	res.Timesteps = seen
	return latents, err
}
