package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/diffuse-go/diffuse/model/bert"
	"github.com/diffuse-go/diffuse/model/hunyuan"
	"github.com/diffuse-go/diffuse/model/t5"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
)

// Hunyuan is diffusers' HunyuanDiTPipeline: a BERT text encoder (CLIP-like
// states, 77 tokens) and an mT5 encoder (256 tokens), both run with their
// attention masks, a Hunyuan-DiT transformer with image-meta sizes, a style
// id and 2-D rotary positions, and a VAE.
type Hunyuan struct {
	Tokenizer    MaskedTokenizer // BertTokenizer (e.g. *tokenizer/bert.Tokenizer)
	TextEncoder  *bert.Model
	Tokenizer2   MaskedTokenizer // MT5Tokenizer (e.g. *tokenizer/t5.Tokenizer)
	TextEncoder2 *t5.Model
	Transformer  *hunyuan.Model
	VAE          *vae.Model
}

// HunyuanRequest describes one generation.
type HunyuanRequest struct {
	Prompts, NegativePrompts []string // NegativePrompts may be empty: ""
	// ImagesPerPrompt (0: 1) generates that many images per prompt.
	ImagesPerPrompt int
	// Width and Height (0: the transformer's sample size × the VAE factor)
	// are rounded down to multiples of 16.
	Width, Height int
	// ResolutionBinning maps a size Hunyuan-DiT was not trained at to the
	// nearest trained one (diffusers' use_resolution_binning, on by default
	// there, off here unless set); the image keeps that size.
	ResolutionBinning bool
	Steps             int
	Guidance          float64 // classifier-free guidance scale; <= 1 disables CFG
	// GuidanceRescale > 0 applies rescale_noise_cfg (under CFG only).
	GuidanceRescale float64
	// OriginalSize and TargetSize are (height, width) image-meta sizes;
	// zero OriginalSize means diffusers' default (1024, 1024), zero
	// TargetSize the generated size. CropsCoordsTopLeft is (top, left).
	OriginalSize, TargetSize, CropsCoordsTopLeft [2]int
	Scheduler                                    scheduler.Scheduler
	// Noise draws the initial latents and the sampler's noise; Latents,
	// when set, are the initial noise [B, C, h, w] instead (unscaled).
	Noise   scheduler.NoiseSource
	Latents *tensor.Tensor
	// SkipDecode returns the latents only.
	SkipDecode bool

	Callbacks
	// OnModelOutput sees each step's transformer output [B', 2C, h, w] and
	// the guided prediction [B, C, h, w] the sampler receives.
	OnModelOutput func(step int, out, guided *tensor.Tensor)
}

// HunyuanEncoding is one text encoder's tokens and states.
type HunyuanEncoding struct {
	// IDs and Mask are the prompts' token ids and attention masks
	// ([B, L] row-major); NegativeIDs and NegativeMask the negative
	// prompts' (nil without CFG).
	IDs, Mask, NegativeIDs, NegativeMask []int64
	// States [B', L, D] and StatesMask are what the transformer received
	// (negative rows first under CFG). With several images per prompt the
	// states repeat each prompt's row while the masks repeat the whole
	// block of rows, as diffusers does (the two orders agree for one
	// prompt).
	States     *tensor.Tensor
	StatesMask []int64
}

// HunyuanResult is what a Hunyuan-DiT generation returns.
type HunyuanResult struct {
	Images  *tensor.Tensor // [B, H, W, 3] in [0, 1]
	Latents *tensor.Tensor
	// Text is the BERT encoding, TextT5 the mT5 one.
	Text, TextT5 HunyuanEncoding
	// ImageMetaSize (six values a row) and Style (one a row) are the
	// transformer's extra conditions; Rotary its rotary table.
	ImageMetaSize []float32
	Style         []int64
	Rotary        *nn.Rotary
	Timesteps     []float64
}

// hunyuanDefaultOriginalSize is HunyuanDiTPipeline's original_size default.
var hunyuanDefaultOriginalSize = [2]int{1024, 1024}

// tokenizeRows encodes prompts to [B, length] ids and masks.
func tokenizeRows(tok MaskedTokenizer, prompts []string, length int) (ids, mask []int64, err error) {
	for _, s := range prompts {
		i, m := tok.Encode(s, length)
		if len(i) != length || len(m) != length {
			return nil, nil, fmt.Errorf("pipeline: tokenizer gave %d ids, want %d", len(i), length)
		}
		ids, mask = append(ids, i...), append(mask, m...)
	}
	return ids, mask, nil
}

// encodeText runs both text encoders on prompts (and, under CFG, on the
// negative prompts, whose rows come first), per images per prompt.
func (p *Hunyuan) encodeText(prompts, negs []string, per int) (bertEnc, t5Enc HunyuanEncoding, err error) {
	tc := p.Transformer.Cfg
	bertRun := func(s []string) (*tensor.Tensor, []int64, []int64, error) {
		ids, mask, err := tokenizeRows(p.Tokenizer, s, tc.TextLen)
		if err != nil {
			return nil, nil, nil, err
		}
		out, err := p.TextEncoder.Forward(ids, mask, len(s), tc.TextLen)
		if err != nil {
			return nil, nil, nil, err
		}
		return out.LastHiddenState, ids, mask, nil
	}
	t5Run := func(s []string) (*tensor.Tensor, []int64, []int64, error) {
		ids, mask, err := tokenizeRows(p.Tokenizer2, s, tc.TextLenT5)
		if err != nil {
			return nil, nil, nil, err
		}
		out, err := p.TextEncoder2.Forward(ids, mask, len(s), tc.TextLenT5)
		return out, ids, mask, err
	}
	for _, enc := range []struct {
		run func([]string) (*tensor.Tensor, []int64, []int64, error)
		dst *HunyuanEncoding
	}{{bertRun, &bertEnc}, {t5Run, &t5Enc}} {
		d := enc.dst
		var pos, neg *tensor.Tensor
		if pos, d.IDs, d.Mask, err = enc.run(prompts); err != nil {
			return bertEnc, t5Enc, err
		}
		// encode_prompt: embeds.repeat(1, n, 1).view(B·n, ...) repeats each
		// row, mask.repeat(n, 1) the whole block.
		d.States, d.StatesMask = repeatRows(pos, per), slices.Repeat(d.Mask, per)
		if negs == nil {
			continue
		}
		if neg, d.NegativeIDs, d.NegativeMask, err = enc.run(negs); err != nil {
			return bertEnc, t5Enc, err
		}
		d.States = tensor.Concat(0, repeatRows(neg, per), d.States) // unconditional first
		d.StatesMask = append(slices.Repeat(d.NegativeMask, per), d.StatesMask...)
	}
	return bertEnc, t5Enc, nil
}

// check validates the components and the request.
func (p *Hunyuan) check(r HunyuanRequest) error {
	if err := checkCommon(r.Scheduler, r.Steps, r.Guidance, r.GuidanceRescale); err != nil {
		return err
	}
	switch {
	case len(r.Prompts) == 0 || len(r.Prompts) > MaxBatch:
		return fmt.Errorf("pipeline: %d prompts, want 1 to %d", len(r.Prompts), MaxBatch)
	case r.ImagesPerPrompt < 0 || len(r.Prompts)*max(r.ImagesPerPrompt, 1) > MaxBatch:
		return fmt.Errorf("pipeline: %d images per prompt for %d prompts exceed %d images", r.ImagesPerPrompt, len(r.Prompts), MaxBatch)
	case p.Tokenizer == nil || p.TextEncoder == nil || p.Tokenizer2 == nil || p.TextEncoder2 == nil:
		return errors.New("pipeline: Hunyuan-DiT needs both tokenizers and text encoders")
	case p.Transformer == nil || p.VAE == nil:
		return errors.New("pipeline: no transformer or VAE")
	}
	tc := p.Transformer.Cfg
	if tc.OutChannels() != 2*tc.InChannels {
		// The pipeline keeps the first half of the output channels.
		return fmt.Errorf("pipeline: Hunyuan-DiT needs learn_sigma (out channels %d, in %d)", tc.OutChannels(), tc.InChannels)
	}
	return nil
}

// hunyuanSize is the generated size: the default sample size when zero,
// rounded down to multiples of 16 as the pipeline does.
func (p *Hunyuan) hunyuanSize(r HunyuanRequest) (width, height int, err error) {
	f := vaeFactor(p.VAE)
	width, height = r.Width, r.Height
	if width == 0 {
		width = p.Transformer.Cfg.SampleSize * f
	}
	if height == 0 {
		height = p.Transformer.Cfg.SampleSize * f
	}
	width, height = width/16*16, height/16*16
	if r.ResolutionBinning {
		width, height = hunyuanStandardSize(width, height)
	}
	if err := checkSize(width, height, f*p.Transformer.Cfg.PatchSize); err != nil {
		return 0, 0, fmt.Errorf("%w (after rounding down to multiples of 16)", err)
	}
	return width, height, nil
}

// hunyuanShapes are the (width, height) sizes Hunyuan-DiT was trained at,
// grouped by aspect ratio (STANDARD_SHAPE), with the ratios
// (STANDARD_RATIO).
var (
	hunyuanRatios = []float64{1, 4.0 / 3.0, 3.0 / 4.0, 16.0 / 9.0, 9.0 / 16.0}
	hunyuanShapes = [][][2]int{
		{{1024, 1024}, {1280, 1280}},
		{{1024, 768}, {1152, 864}, {1280, 960}},
		{{768, 1024}, {864, 1152}, {960, 1280}},
		{{1280, 768}},
		{{768, 1280}},
	}
)

// hunyuanStandardSize is the pipeline's resolution binning: a trained size
// stays, another maps to the trained size of the closest aspect ratio,
// then the closest area (map_to_standard_shapes; the first on ties, as
// np.argmin).
func hunyuanStandardSize(width, height int) (int, int) {
	for _, group := range hunyuanShapes {
		for _, s := range group {
			// SUPPORTED_SHAPE is compared with (height, width) but lists
			// (width, height) pairs; the list is symmetric, so either reads.
			if s == [2]int{height, width} {
				return width, height
			}
		}
	}
	ratio := float64(width) / float64(height)
	best := 0
	for i, r := range hunyuanRatios {
		if math.Abs(r-ratio) < math.Abs(hunyuanRatios[best]-ratio) {
			best = i
		}
	}
	group, area := hunyuanShapes[best], width*height
	pick := 0
	for i, s := range group {
		if hunyuanAbs(s[0]*s[1]-area) < hunyuanAbs(group[pick][0]*group[pick][1]-area) {
			pick = i
		}
	}
	return group[pick][0], group[pick][1]
}

func hunyuanAbs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// hunyuanRotary is the pipeline's rotary table: the token grid is the
// size / 8 / patch (the pipeline assumes the 8× VAE), placed in the 512-px
// base grid.
func (p *Hunyuan) hunyuanRotary(width, height int, latShape []int) (*nn.Rotary, error) {
	tc := p.Transformer.Cfg
	gh, gw := height/8/tc.PatchSize, width/8/tc.PatchSize
	if gh != latShape[2]/tc.PatchSize || gw != latShape[3]/tc.PatchSize {
		return nil, fmt.Errorf("pipeline: Hunyuan-DiT's rotary grid %dx%d assumes an 8× VAE; latent grid is %dx%d",
			gh, gw, latShape[2]/tc.PatchSize, latShape[3]/tc.PatchSize)
	}
	crop := hunyuan.ResizeCropRegionForGrid(gh, gw, hunyuan.PipelineBaseSize(tc.PatchSize))
	cos, sin, err := hunyuan.RotaryPosEmbed2D(tc.AttentionHeadDim, crop, gh, gw)
	if err != nil {
		return nil, err
	}
	return &nn.Rotary{Cos: cos, Sin: sin, Interleaved: true}, nil
}

// hunyuanMeta returns image_meta_size (original size, target size,
// crop top-left: six values a row) and the style ids (0) for rows rows.
func hunyuanMeta(r HunyuanRequest, width, height, rows int) ([]float32, []int64) {
	orig, target := r.OriginalSize, r.TargetSize
	if orig == [2]int{} {
		orig = hunyuanDefaultOriginalSize
	}
	if target == [2]int{} {
		target = [2]int{height, width}
	}
	row := []float32{float32(orig[0]), float32(orig[1]), float32(target[0]), float32(target[1]),
		float32(r.CropsCoordsTopLeft[0]), float32(r.CropsCoordsTopLeft[1])}
	var meta []float32
	for i := 0; i < rows; i++ {
		meta = append(meta, row...)
	}
	return meta, make([]int64, rows)
}

// Generate runs the pipeline. It stops between steps when ctx is cancelled.
func (p *Hunyuan) Generate(ctx context.Context, r HunyuanRequest) (*HunyuanResult, error) {
	if err := p.check(r); err != nil {
		return nil, err
	}
	width, height, err := p.hunyuanSize(r)
	if err != nil {
		return nil, err
	}
	per := max(r.ImagesPerPrompt, 1)
	cfg := r.Guidance > 1
	var negs []string
	if cfg {
		if negs, err = negativePrompts(r.NegativePrompts, len(r.Prompts)); err != nil {
			return nil, err
		}
	}
	res := &HunyuanResult{}
	if res.Text, res.TextT5, err = p.encodeText(r.Prompts, negs, per); err != nil {
		return nil, err
	}
	B := len(r.Prompts) * per // images
	tc := p.Transformer.Cfg
	f := vaeFactor(p.VAE)
	latShape := []int{B, tc.InChannels, height / f, width / f}
	if res.Rotary, err = p.hunyuanRotary(width, height, latShape); err != nil {
		return nil, err
	}
	rows := B
	if cfg {
		rows = 2 * B
	}
	res.ImageMetaSize, res.Style = hunyuanMeta(r, width, height, rows)
	s := r.Scheduler
	if err := s.SetTimesteps(r.Steps); err != nil {
		return nil, err
	}
	noise, err := initialNoise(r.Latents, r.Noise, latShape)
	if err != nil {
		return nil, err
	}
	loop := p.loop(r, res, B, rows, cfg)
	if res.Latents, res.Timesteps, err = loop.Run(ctx, tensor.Scale(noise, float32(s.InitNoiseSigma()))); err != nil {
		return nil, err
	}
	if r.SkipDecode {
		return res, nil
	}
	if res.Images, err = decodeDivided(p.VAE, res.Latents); err != nil {
		return nil, err
	}
	return res, nil
}

// loop builds the denoising loop: the transformer on [negative; positive]
// rows under CFG with every condition of res, the learned-sigma channels
// dropped, then guidance (and guidance rescale) on the noise channels.
func (p *Hunyuan) loop(r HunyuanRequest, res *HunyuanResult, B, rows int, cfg bool) *Loop {
	cond := hunyuan.Cond{EncoderHiddenStates: res.Text.States, TextMask: res.Text.StatesMask,
		EncoderHiddenStatesT5: res.TextT5.States, TextMaskT5: res.TextT5.StatesMask,
		ImageMetaSize: res.ImageMetaSize, Style: res.Style, Rotary: res.Rotary}
	loop := &Loop{Scheduler: r.Scheduler, Noise: r.Noise, Callbacks: r.Callbacks}
	var cfgGuide Guide
	if cfg {
		loop.Batch = doubled
		cfgGuide = CFG(r.Guidance, r.GuidanceRescale, B)
	}
	step := 0
	loop.Model = func(st Step) (*tensor.Tensor, error) {
		step = st.I
		c := cond
		c.Timesteps = make([]float32, rows)
		for j := range c.Timesteps {
			c.Timesteps[j] = float32(st.T)
		}
		return p.Transformer.Forward(st.Input, c)
	}
	ch := p.Transformer.Cfg.InChannels
	loop.Guide = func(out *tensor.Tensor) (*tensor.Tensor, error) {
		// noise_pred.chunk(2, dim=1): the variance channels are dropped
		// before guidance, so that the rescale sees the noise only.
		g := out.Narrow(1, 0, ch).Contiguous()
		if cfgGuide != nil {
			var err error
			if g, err = cfgGuide(g); err != nil {
				return nil, err
			}
		}
		if r.OnModelOutput != nil {
			r.OnModelOutput(step, out, g)
		}
		return g, nil
	}
	return loop
}

// decodeDivided decodes latents divided by the VAE's scaling factor (as
// the DiT-family pipelines do; SD multiplies by its inverse) to images
// [B, H, W, 3] in [0, 1].
func decodeDivided(v *vae.Model, latents *tensor.Tensor) (*tensor.Tensor, error) {
	img, err := v.Decode(tensor.Div(latents, tensor.Scalar(v.Cfg.ScalingFactor)))
	if err != nil {
		return nil, err
	}
	img = tensor.Clamp(tensor.AddScalar(tensor.Scale(img, 0.5), 0.5), 0, 1)
	return img.Permute(0, 2, 3, 1).Contiguous(), nil
}
