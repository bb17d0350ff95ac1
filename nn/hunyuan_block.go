package nn

import (
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/tensor"
)

// Rotary holds a rotary position table: Cos and Sin are [L, HeadDim] for the
// L query (and, in self-attention, key) positions. Interleaved selects the
// pairing of channels rotated together: (0, 1), (2, 3), ... when set (the
// repeat-interleaved tables diffusers' apply_rotary_emb reads by default),
// else the two halves.
type Rotary struct {
	Cos, Sin    *tensor.Tensor
	Interleaved bool
}

// apply rotates x [B, H, L, HeadDim].
func (r *Rotary) apply(x *tensor.Tensor) *tensor.Tensor {
	return tensor.ApplyRotary(x, r.Cos, r.Sin, r.Interleaved)
}

// QKNormAttention is diffusers' Attention with qk_norm="layer_norm": the
// per-head queries and keys are layer-normed (norm_q, norm_k over HeadDim)
// before an optional rotary embedding, as HunyuanAttnProcessor2_0 computes
// it. The rotary table rotates the queries always and the keys only in
// self-attention (diffusers' behaviour for cross-attention).
type QKNormAttention struct {
	*Attention
	NormQ, NormK *LayerNorm
}

// NewQKNormAttention builds Attention(query_dim, cross_attention_dim, heads,
// dim_head, bias, qk_norm="layer_norm", eps). crossDim 0 means
// self-attention.
func NewQKNormAttention(queryDim, crossDim, heads, headDim int, bias bool, eps float64) *QKNormAttention {
	return &QKNormAttention{Attention: NewAttention(queryDim, crossDim, heads, headDim, bias, true),
		NormQ: NewLayerNorm(headDim, eps), NormK: NewLayerNorm(headDim, eps)}
}

// Params registers the projections, norm_q and norm_k.
func (a *QKNormAttention) Params(prefix string, p *Params) {
	a.Attention.Params(prefix, p)
	a.NormQ.Params(prefix+"norm_q.", p)
	a.NormK.Params(prefix+"norm_k.", p)
}

// Forward attends from x [B, L, QueryDim] to context [B, S, CrossDim] (nil:
// self-attention). mask (may be nil) is an additive bias broadcastable to
// [B, Heads, L, S]; rot (may be nil) is the rotary table of the L query
// positions.
func (a *QKNormAttention) Forward(x, context, mask *tensor.Tensor, rot *Rotary) *tensor.Tensor {
	self := context == nil
	if self {
		context = x
	}
	q := a.NormQ.Forward(splitHeads(a.ToQ.Forward(x), a.Heads))
	k := a.NormK.Forward(splitHeads(a.ToK.Forward(context), a.Heads))
	v := splitHeads(a.ToV.Forward(context), a.Heads)
	if rot != nil {
		q = rot.apply(q)
		if self {
			k = rot.apply(k)
		}
	}
	o := tensor.Attention(q, k, v, mask, float32(1/math.Sqrt(float64(a.HeadDim))))
	return a.ToOut.Forward(mergeHeads(o))
}

// AdaLayerNormShift is Hunyuan-DiT's norm1: LayerNorm(x) plus a shift
// linear(silu(emb)) per sample.
type AdaLayerNormShift struct {
	Linear *Linear
	Norm   *LayerNorm
}

// NewAdaLayerNormShift builds AdaLayerNormShift(dim, elementwise_affine, eps).
func NewAdaLayerNormShift(dim int, affine bool, eps float64) *AdaLayerNormShift {
	n := NewLayerNorm(dim, eps)
	n.Affine = affine
	return &AdaLayerNormShift{Linear: NewLinear(dim, dim, true), Norm: n}
}

// Params registers linear and norm.
func (a *AdaLayerNormShift) Params(prefix string, p *Params) {
	a.Linear.Params(prefix+"linear.", p)
	a.Norm.Params(prefix+"norm.", p)
}

// Forward returns norm(x) + shift for x [B, L, Dim] and emb [B, Dim].
func (a *AdaLayerNormShift) Forward(x, emb *tensor.Tensor) *tensor.Tensor {
	shift := a.Linear.Forward(tensor.SiLU(emb))
	return tensor.Add(a.Norm.Forward(x), shift.Unsqueeze(1))
}

// HunyuanBlockConfig configures a HunyuanDiTBlock.
type HunyuanBlockConfig struct {
	Dim, Heads        int
	CrossAttentionDim int
	ActivationFn      string // feed-forward activation ("gelu-approximate")
	NormAffine        bool   // norm_elementwise_affine
	NormEps           float64
	FFInnerDim        int // 0: 4·Dim
	// Skip adds the long-skip input: skip_norm over the concatenation of the
	// states and the skip, then skip_linear back to Dim.
	Skip bool
}

// HunyuanDiTBlock is diffusers' HunyuanDiTBlock: an optional long-skip
// merge, then self-attention (norm1 = AdaLayerNormShift), cross-attention
// (norm2) and feed-forward (norm3), each with a residual; both attentions
// layer-norm their queries and keys and take the image rotary table.
type HunyuanDiTBlock struct {
	Cfg          HunyuanBlockConfig
	Norm1        *AdaLayerNormShift
	Attn1, Attn2 *QKNormAttention
	Norm2, Norm3 *LayerNorm
	FF           *FeedForward
	SkipNorm     *LayerNorm // nil without Skip
	SkipLinear   *Linear
}

// qkNormEps is the epsilon of the query and key layer norms (diffusers
// builds the Hunyuan attentions with eps=1e-6).
const qkNormEps = 1e-6

// NewHunyuanDiTBlock builds an unloaded block.
func NewHunyuanDiTBlock(c HunyuanBlockConfig) (*HunyuanDiTBlock, error) {
	if c.Dim <= 0 || c.Heads <= 0 || c.Dim%c.Heads != 0 || c.CrossAttentionDim <= 0 {
		return nil, fmt.Errorf("nn: Hunyuan block dim %d, heads %d, cross-attention dim %d", c.Dim, c.Heads, c.CrossAttentionDim)
	}
	if c.ActivationFn == "" {
		c.ActivationFn = "geglu"
	}
	if err := CheckFeedForwardActivation(c.ActivationFn); err != nil {
		return nil, fmt.Errorf("nn: Hunyuan block %w", err)
	}
	if c.NormEps == 0 {
		c.NormEps = 1e-6
	}
	inner := c.FFInnerDim
	if inner == 0 {
		inner = 4 * c.Dim
	}
	hd := c.Dim / c.Heads
	ln := func(dim int, affine bool) *LayerNorm { l := NewLayerNorm(dim, c.NormEps); l.Affine = affine; return l }
	b := &HunyuanDiTBlock{Cfg: c,
		Norm1: NewAdaLayerNormShift(c.Dim, c.NormAffine, c.NormEps),
		Attn1: NewQKNormAttention(c.Dim, 0, c.Heads, hd, true, qkNormEps),
		Norm2: ln(c.Dim, c.NormAffine),
		Attn2: NewQKNormAttention(c.Dim, c.CrossAttentionDim, c.Heads, hd, true, qkNormEps),
		Norm3: ln(c.Dim, c.NormAffine),
		FF:    NewFeedForward(c.Dim, c.Dim, inner, c.ActivationFn, true)}
	if c.Skip {
		b.SkipNorm = ln(2*c.Dim, true)
		b.SkipLinear = NewLinear(2*c.Dim, c.Dim, true)
	}
	return b, nil
}

// Params registers the block's weights under diffusers' names.
func (b *HunyuanDiTBlock) Params(prefix string, p *Params) {
	b.Norm1.Params(prefix+"norm1.", p)
	b.Attn1.Params(prefix+"attn1.", p)
	b.Norm2.Params(prefix+"norm2.", p)
	b.Attn2.Params(prefix+"attn2.", p)
	b.Norm3.Params(prefix+"norm3.", p)
	b.FF.Params(prefix+"ff.", p)
	if b.SkipLinear != nil {
		b.SkipNorm.Params(prefix+"skip_norm.", p)
		b.SkipLinear.Params(prefix+"skip_linear.", p)
	}
}

// Forward runs the block on x [B, L, Dim] with the text states ehs
// [B, S, CrossAttentionDim], the conditioning temb [B, Dim], the rotary
// table of the L image tokens (may be nil) and, for skip blocks, the long
// skip [B, L, Dim] (nil otherwise).
func (b *HunyuanDiTBlock) Forward(x, ehs, temb *tensor.Tensor, rot *Rotary, skip *tensor.Tensor) (*tensor.Tensor, error) {
	if (skip != nil) != (b.SkipLinear != nil) {
		return nil, fmt.Errorf("nn: Hunyuan block skip input given %v, block has skip %v", skip != nil, b.SkipLinear != nil)
	}
	if skip != nil {
		x = b.SkipLinear.Forward(b.SkipNorm.Forward(tensor.Concat(2, x, skip)))
	}
	x = tensor.Add(x, b.Attn1.Forward(b.Norm1.Forward(x, temb), nil, nil, rot))
	x = tensor.Add(x, b.Attn2.Forward(b.Norm2.Forward(x), ehs, nil, rot))
	return tensor.Add(x, b.FF.Forward(b.Norm3.Forward(x))), nil
}
