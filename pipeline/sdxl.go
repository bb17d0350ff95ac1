package pipeline

import (
	"context"
	"errors"
	"fmt"

	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/tensor"
)

// SDXL is the SDXL pipeline: two text encoders (the first absent for the
// refiner), pooled text and micro-conditioning through the UNet's
// text_time addition embedding.
type SDXL struct {
	TextEncoder, TextEncoder2 *clip.Model // TextEncoder is nil for the refiner
	Tokenizer, Tokenizer2     Tokenizer
	UNet                      *unet.Model
	VAE                       *vae.Model
	// ForceZerosForEmptyPrompt uses zero embeddings for the unconditional
	// rows when no negative prompt is given (the SDXL base config's default).
	ForceZerosForEmptyPrompt bool
	// RequiresAestheticsScore selects the refiner's 5 time ids
	// (size, crop, aesthetic score) instead of size, crop, target size.
	RequiresAestheticsScore bool
}

// Size is a (height, width) or (top, left) pair as diffusers orders them.
type Size [2]int

// XLRequest adds SDXL's inputs to a Request.
type XLRequest struct {
	Request
	// Prompts2 / NegativePrompts2 go to the second encoder (default: the first ones).
	Prompts2, NegativePrompts2 []string
	// Micro-conditioning; zero values mean (height, width) and (0, 0).
	OriginalSize, CropsTopLeft, TargetSize Size
	// The unconditional rows' values; nil means the positive ones.
	NegativeOriginalSize, NegativeCropsTopLeft, NegativeTargetSize *Size
	// Refiner only.
	AestheticScore, NegativeAestheticScore float64
}

// Embeddings are SDXL's encoded prompts.
type Embeddings struct {
	PromptEmbeds, NegativeEmbeds *tensor.Tensor // [B, 77, D1+D2]
	Pooled, NegativePooled       *tensor.Tensor // [B, projection]
}

// encodeXL runs the encoders as diffusers' SDXL encode_prompt does: the
// penultimate hidden states of each encoder concatenated (no final layer
// norm), and the pooled projection of the last encoder. clipSkip (A1111's
// convention, see Request.ClipSkip) of 3 or more takes earlier layers of
// both encoders, hidden state -clipSkip, which is diffusers' clip_skip =
// clipSkip-2; below 3 it is the penultimate layer, SDXL's default.
func (p *SDXL) encodeXL(prompts, prompts2 []string, clipSkip int) (*tensor.Tensor, *tensor.Tensor, error) {
	type pair struct {
		enc *clip.Model
		tok Tokenizer
		txt []string
	}
	var parts []pair
	if p.TextEncoder != nil {
		parts = append(parts, pair{p.TextEncoder, p.Tokenizer, prompts}, pair{p.TextEncoder2, p.Tokenizer2, prompts2})
	} else {
		// diffusers zips [prompt, prompt_2] with the one remaining encoder,
		// so the refiner encodes the first prompt.
		parts = append(parts, pair{p.TextEncoder2, p.Tokenizer2, prompts})
	}
	var states []*tensor.Tensor
	var pooled *tensor.Tensor
	for _, pt := range parts {
		if pt.enc == nil || pt.tok == nil {
			return nil, nil, errors.New("pipeline: SDXL text encoder or tokenizer missing")
		}
		var ids []int64
		length := 0
		for _, s := range pt.txt {
			row := pt.tok.Encode(s)
			length = len(row)
			ids = append(ids, row...)
		}
		out, err := pt.enc.Forward(ids, len(pt.txt), length)
		if err != nil {
			return nil, nil, err
		}
		hs := out.HiddenStates
		idx := len(hs) - max(2, clipSkip)
		if idx < 1 {
			return nil, nil, fmt.Errorf("pipeline: clip skip %d exceeds the SDXL encoder's %d layers", clipSkip, len(hs)-1)
		}
		states = append(states, hs[idx])
		pooled = out.TextEmbeds
		if pooled == nil {
			pooled = out.Pooled
		}
	}
	return tensor.Concat(2, states...), pooled, nil
}

func orDefault(list []string, def []string) []string {
	if len(list) == 0 {
		return def
	}
	return list
}

func broadcastPrompts(list []string, n int) ([]string, error) {
	if len(list) == 1 && n > 1 {
		out := make([]string, n)
		for i := range out {
			out[i] = list[0]
		}
		return out, nil
	}
	if len(list) != n {
		return nil, fmt.Errorf("pipeline: %d prompts where %d are needed", len(list), n)
	}
	return list, nil
}

// Encode computes the prompt embeddings of a request.
func (p *SDXL) Encode(r *XLRequest) (*Embeddings, error) {
	if len(r.Prompts) == 0 {
		return nil, errors.New("pipeline: no prompt")
	}
	B := len(r.Prompts)
	p2, err := broadcastPrompts(orDefault(r.Prompts2, r.Prompts), B)
	if err != nil {
		return nil, err
	}
	e := &Embeddings{}
	if e.PromptEmbeds, e.Pooled, err = p.encodeXL(r.Prompts, p2, r.ClipSkip); err != nil {
		return nil, err
	}
	if r.Guidance <= 1 {
		return e, nil
	}
	if len(r.NegativePrompts) == 0 && p.ForceZerosForEmptyPrompt {
		e.NegativeEmbeds = tensor.Zeros(e.PromptEmbeds.Shape()...)
		e.NegativePooled = tensor.Zeros(e.Pooled.Shape()...)
		return e, nil
	}
	neg := r.NegativePrompts
	if len(neg) == 0 {
		neg = []string{""}
	}
	if neg, err = broadcastPrompts(neg, B); err != nil {
		return nil, err
	}
	neg2, err := broadcastPrompts(orDefault(r.NegativePrompts2, neg), B)
	if err != nil {
		return nil, err
	}
	if e.NegativeEmbeds, e.NegativePooled, err = p.encodeXL(neg, neg2, r.ClipSkip); err != nil {
		return nil, err
	}
	return e, nil
}

func (s Size) or(def Size) Size {
	if s == (Size{}) {
		return def
	}
	return s
}

// timeIDs builds the micro-conditioning rows in the UNet's batch order,
// reproducing diffusers' row orders: the base pipeline repeats the pair
// [neg, pos] per image ([neg, pos, neg, pos, ...], an upstream quirk that
// mismatches rows for 2+ prompts), the refiner repeats each row first
// ([neg, neg, ..., pos, pos, ...]).
func (p *SDXL) timeIDs(r *XLRequest, n int, cfg bool) *tensor.Tensor {
	hw := Size{r.Height, r.Width}
	orig, crop, target := r.OriginalSize.or(hw), r.CropsTopLeft, r.TargetSize.or(hw)
	var pos, neg []float32
	if p.RequiresAestheticsScore {
		nOrig, nCrop := orig, crop
		if r.NegativeOriginalSize != nil {
			nOrig = *r.NegativeOriginalSize
		}
		if r.NegativeCropsTopLeft != nil {
			nCrop = *r.NegativeCropsTopLeft
		}
		pos = []float32{float32(orig[0]), float32(orig[1]), float32(crop[0]), float32(crop[1]), float32(r.AestheticScore)}
		neg = []float32{float32(nOrig[0]), float32(nOrig[1]), float32(nCrop[0]), float32(nCrop[1]), float32(r.NegativeAestheticScore)}
	} else {
		pos = []float32{float32(orig[0]), float32(orig[1]), float32(crop[0]), float32(crop[1]), float32(target[0]), float32(target[1])}
		neg = pos
		if r.NegativeOriginalSize != nil && r.NegativeTargetSize != nil {
			nCrop := crop
			if r.NegativeCropsTopLeft != nil {
				nCrop = *r.NegativeCropsTopLeft
			}
			no, nt := *r.NegativeOriginalSize, *r.NegativeTargetSize
			neg = []float32{float32(no[0]), float32(no[1]), float32(nCrop[0]), float32(nCrop[1]), float32(nt[0]), float32(nt[1])}
		}
	}
	k := len(pos)
	var rows []float32
	switch {
	case !cfg:
		for i := 0; i < n; i++ {
			rows = append(rows, pos...)
		}
	case p.RequiresAestheticsScore:
		for i := 0; i < n; i++ {
			rows = append(rows, neg...)
		}
		for i := 0; i < n; i++ {
			rows = append(rows, pos...)
		}
	default:
		for i := 0; i < n; i++ {
			rows = append(rows, neg...)
			rows = append(rows, pos...)
		}
	}
	return tensor.FromSlice(rows, len(rows)/k, k)
}

// XLResult adds SDXL's conditioning to a Result.
type XLResult struct {
	*Result
	AddTextEmbeds, AddTimeIDs *tensor.Tensor
}

// Generate runs SDXL (base, or refiner when TextEncoder is nil).
func (p *SDXL) Generate(ctx context.Context, r XLRequest) (*XLResult, error) {
	cfg := r.Guidance > 1
	emb, err := p.Encode(&r)
	if err != nil {
		return nil, err
	}
	per := max(r.ImagesPerPrompt, 1)
	n := emb.PromptEmbeds.Dim(0) * per
	pooled := repeatRows(emb.Pooled, per)
	if cfg {
		pooled = tensor.Concat(0, repeatRows(emb.NegativePooled, per), pooled)
	}
	ids := p.timeIDs(&r, n, cfg)
	req := r.Request
	req.PromptEmbeds, req.NegativeEmbeds = emb.PromptEmbeds, emb.NegativeEmbeds
	req.AddTextEmbeds, req.AddTimeIDs = pooled, ids
	sd := &SD{UNet: p.UNet, VAE: p.VAE}
	res, err := sd.Generate(ctx, req)
	if err != nil {
		return nil, err
	}
	return &XLResult{Result: res, AddTextEmbeds: pooled, AddTimeIDs: ids}, nil
}
