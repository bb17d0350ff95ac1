package sd3

import (
	"math"

	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// normEps is the epsilon of every LayerNorm of the MMDiT (no affine).
const normEps = 1e-6

// plainNorm returns a LayerNorm without weight or bias.
func plainNorm(d int) *nn.LayerNorm {
	n := nn.NewLayerNorm(d, normEps)
	n.Affine = false
	return n
}

// AdaLayerNormContinuous is diffusers' AdaLayerNormContinuous with a
// LayerNorm without affine: emb = linear(silu(cond)) splits into SCALE then
// SHIFT (the reverse of adaLN-Zero's order), x = LN(x)·(1+scale) + shift.
type AdaLayerNormContinuous struct {
	Dim    int
	Linear *nn.Linear
	Norm   *nn.LayerNorm
}

// NewAdaLayerNormContinuous builds AdaLayerNormContinuous(dim, dim,
// elementwise_affine=False, eps=1e-6).
func NewAdaLayerNormContinuous(dim int) *AdaLayerNormContinuous {
	return &AdaLayerNormContinuous{Dim: dim, Linear: nn.NewLinear(dim, 2*dim, true), Norm: plainNorm(dim)}
}

// Params registers linear.
func (a *AdaLayerNormContinuous) Params(prefix string, p *nn.Params) {
	a.Linear.Params(prefix+"linear.", p)
}

// Forward modulates x [B, L, Dim] by cond [B, Dim].
func (a *AdaLayerNormContinuous) Forward(x, cond *tensor.Tensor) *tensor.Tensor {
	emb := a.Linear.Forward(tensor.SiLU(cond))
	ch := emb.Reshape(emb.Dim(0), 2, a.Dim).Chunk(2, 1) // [B, 1, Dim] each
	return modulate(a.Norm.Forward(x), ch[1], ch[0])
}

// modulate returns x·(1 + scale) + shift.
func modulate(x, shift, scale *tensor.Tensor) *tensor.Tensor {
	return tensor.Add(tensor.Mul(x, tensor.AddScalar(scale, 1)), shift)
}

// headNorm applies norm (one head's RMSNorm) to every head of x
// [B, L, heads·d]; nil norm returns x.
func headNorm(x *tensor.Tensor, norm *nn.RMSNorm, heads int) *tensor.Tensor {
	if norm == nil {
		return x
	}
	b, l, d := x.Dim(0), x.Dim(1), x.Dim(2)
	return norm.Forward(x.Reshape(b, l, heads, d/heads)).Reshape(b, l, d)
}

// newQKNorm is the RMSNorm(head_dim, eps=1e-6) of qk_norm "rms_norm", or
// nil without it.
func newQKNorm(on bool, headDim int) *nn.RMSNorm {
	if !on {
		return nil
	}
	return &nn.RMSNorm{Dim: headDim, Eps: normEps}
}

// paramsIf registers a norm that may be absent.
func paramsIf(n *nn.RMSNorm, prefix string, p *nn.Params) {
	if n != nil {
		n.Params(prefix, p)
	}
}

// attend is scaled dot-product attention of q, k, v [B, L, heads·d] (the
// heads split, attended and merged again).
func attend(q, k, v *tensor.Tensor, heads int) *tensor.Tensor {
	split := func(j *tensor.Tensor) *tensor.Tensor {
		b, l, d := j.Dim(0), j.Dim(1), j.Dim(2)
		return j.Reshape(b, l, heads, d/heads).Permute(0, 2, 1, 3)
	}
	hd := q.Dim(2) / heads
	o := tensor.Attention(split(q), split(k), split(v), nil, float32(1/math.Sqrt(float64(hd))))
	b, h, l, d := o.Dim(0), o.Dim(1), o.Dim(2), o.Dim(3)
	return o.Permute(0, 2, 1, 3).Reshape(b, l, h*d)
}

// JointAttention is diffusers' Attention with added_kv_proj_dim as the
// JointAttnProcessor uses it: the image tokens through to_q/to_k/to_v and
// the text tokens through add_q_proj/add_k_proj/add_v_proj attend together
// (image first); the outputs are split again and projected by to_out.0 and,
// unless the block is context_pre_only, to_add_out. With qk_norm
// "rms_norm" (SD3.5) each head's queries and keys are RMS-normalised after
// the projections, by norm_q/norm_k for the image and
// norm_added_q/norm_added_k for the text.
type JointAttention struct {
	Heads, HeadDim             int
	ToQ, ToK, ToV, ToOut       *nn.Linear
	AddQ, AddK, AddV, ToAddOut *nn.Linear // ToAddOut nil when context_pre_only
	// The qk norms, nil without qk_norm.
	NormQ, NormK, NormAddedQ, NormAddedK *nn.RMSNorm
}

// NewJointAttention builds the attention of a block of width dim.
func NewJointAttention(dim, heads int, contextPreOnly, qkNorm bool) *JointAttention {
	l := func() *nn.Linear { return nn.NewLinear(dim, dim, true) }
	hd := dim / heads
	a := &JointAttention{Heads: heads, HeadDim: hd,
		ToQ: l(), ToK: l(), ToV: l(), ToOut: l(), AddQ: l(), AddK: l(), AddV: l(),
		NormQ: newQKNorm(qkNorm, hd), NormK: newQKNorm(qkNorm, hd),
		NormAddedQ: newQKNorm(qkNorm, hd), NormAddedK: newQKNorm(qkNorm, hd)}
	if !contextPreOnly {
		a.ToAddOut = l()
	}
	return a
}

// Params registers the projections and norms under diffusers' names.
func (a *JointAttention) Params(prefix string, p *nn.Params) {
	a.ToQ.Params(prefix+"to_q.", p)
	a.ToK.Params(prefix+"to_k.", p)
	a.ToV.Params(prefix+"to_v.", p)
	a.ToOut.Params(prefix+"to_out.0.", p)
	a.AddQ.Params(prefix+"add_q_proj.", p)
	a.AddK.Params(prefix+"add_k_proj.", p)
	a.AddV.Params(prefix+"add_v_proj.", p)
	if a.ToAddOut != nil {
		a.ToAddOut.Params(prefix+"to_add_out.", p)
	}
	paramsIf(a.NormQ, prefix+"norm_q.", p)
	paramsIf(a.NormK, prefix+"norm_k.", p)
	paramsIf(a.NormAddedQ, prefix+"norm_added_q.", p)
	paramsIf(a.NormAddedK, prefix+"norm_added_k.", p)
}

// Forward attends over the image tokens x [B, N, D] and text tokens ctx
// [B, L, D] jointly and returns both outputs (the text one nil when the
// block is context_pre_only).
func (a *JointAttention) Forward(x, ctx *tensor.Tensor) (xo, co *tensor.Tensor) {
	n := x.Dim(1)
	joint := func(img, txt *nn.Linear, ni, nt *nn.RMSNorm) *tensor.Tensor {
		return tensor.Concat(1, headNorm(img.Forward(x), ni, a.Heads), headNorm(txt.Forward(ctx), nt, a.Heads))
	}
	o := attend(joint(a.ToQ, a.AddQ, a.NormQ, a.NormAddedQ), joint(a.ToK, a.AddK, a.NormK, a.NormAddedK),
		joint(a.ToV, a.AddV, nil, nil), a.Heads)
	l := o.Dim(1)
	xo = a.ToOut.Forward(o.Narrow(1, 0, n))
	if a.ToAddOut != nil {
		co = a.ToAddOut.Forward(o.Narrow(1, n, l-n))
	}
	return xo, co
}

// SelfAttention is the second attention of SD3.5's dual-attention blocks
// (attn2: diffusers' Attention without added projections, run by
// JointAttnProcessor2_0 with no text): the image tokens attend among
// themselves, with the qk norms norm_q/norm_k when qk_norm is set.
type SelfAttention struct {
	Heads, HeadDim       int
	ToQ, ToK, ToV, ToOut *nn.Linear
	NormQ, NormK         *nn.RMSNorm // nil without qk_norm
}

// NewSelfAttention builds attn2 of a block of width dim.
func NewSelfAttention(dim, heads int, qkNorm bool) *SelfAttention {
	l := func() *nn.Linear { return nn.NewLinear(dim, dim, true) }
	hd := dim / heads
	return &SelfAttention{Heads: heads, HeadDim: hd, ToQ: l(), ToK: l(), ToV: l(), ToOut: l(),
		NormQ: newQKNorm(qkNorm, hd), NormK: newQKNorm(qkNorm, hd)}
}

// Params registers to_q, to_k, to_v, to_out.0 and the qk norms.
func (a *SelfAttention) Params(prefix string, p *nn.Params) {
	a.ToQ.Params(prefix+"to_q.", p)
	a.ToK.Params(prefix+"to_k.", p)
	a.ToV.Params(prefix+"to_v.", p)
	a.ToOut.Params(prefix+"to_out.0.", p)
	paramsIf(a.NormQ, prefix+"norm_q.", p)
	paramsIf(a.NormK, prefix+"norm_k.", p)
}

// Forward attends over the image tokens x [B, N, D].
func (a *SelfAttention) Forward(x *tensor.Tensor) *tensor.Tensor {
	q := headNorm(a.ToQ.Forward(x), a.NormQ, a.Heads)
	k := headNorm(a.ToK.Forward(x), a.NormK, a.Heads)
	return a.ToOut.Forward(attend(q, k, a.ToV.Forward(x), a.Heads))
}

// AdaLayerNormZeroX is diffusers' SD35AdaLayerNormZeroX, the image norm of
// a dual-attention block: emb = linear(silu(cond)) splits into nine
// chunks, shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp,
// shift_msa2, scale_msa2, gate_msa2; one LayerNorm (no affine, eps 1e-6)
// of the input is modulated twice, for attn and for attn2.
type AdaLayerNormZeroX struct {
	Dim    int
	Linear *nn.Linear
	Norm   *nn.LayerNorm
}

// NewAdaLayerNormZeroX builds SD35AdaLayerNormZeroX(dim).
func NewAdaLayerNormZeroX(dim int) *AdaLayerNormZeroX {
	return &AdaLayerNormZeroX{Dim: dim, Linear: nn.NewLinear(dim, 9*dim, true), Norm: plainNorm(dim)}
}

// Params registers linear.
func (a *AdaLayerNormZeroX) Params(prefix string, p *nn.Params) { a.Linear.Params(prefix+"linear.", p) }

// ModulationX is adaLN-Zero's modulation plus the shift, scale and gate of
// the second attention.
type ModulationX struct {
	nn.Modulation
	ShiftMSA2, ScaleMSA2, GateMSA2 *tensor.Tensor
}

// Modulation computes the nine modulation tensors ([B, 1, Dim]) from the
// conditioning cond [B, Dim].
func (a *AdaLayerNormZeroX) Modulation(cond *tensor.Tensor) ModulationX {
	emb := a.Linear.Forward(tensor.SiLU(cond))
	ch := emb.Reshape(emb.Dim(0), 9, a.Dim).Chunk(9, 1)
	return ModulationX{Modulation: nn.Modulation{ShiftMSA: ch[0], ScaleMSA: ch[1], GateMSA: ch[2],
		ShiftMLP: ch[3], ScaleMLP: ch[4], GateMLP: ch[5]}, ShiftMSA2: ch[6], ScaleMSA2: ch[7], GateMSA2: ch[8]}
}

// BlockOptions are the variants of a JointBlock.
type BlockOptions struct {
	// ContextPreOnly marks the last block: its text stream is only read.
	ContextPreOnly bool
	// QKNorm adds the qk norms (qk_norm "rms_norm").
	QKNorm bool
	// DualAttention adds attn2 and the nine-chunk image norm (SD3.5
	// Medium's MMDiT-X blocks).
	DualAttention bool
}

// JointBlock is diffusers' JointTransformerBlock (SD3 MMDiT block). The
// image stream is modulated by norm1 (adaLN-Zero, or SD35AdaLayerNormZeroX
// in a dual-attention block); the text stream by norm1_context, adaLN-Zero
// too except in the last block (context_pre_only), which uses
// AdaLayerNormContinuous and drops the text output (no to_add_out, no
// ff_context). A dual-attention block adds gate_msa2 · attn2(x normed and
// modulated by shift_msa2, scale_msa2) after the joint attention.
type JointBlock struct {
	ContextPreOnly bool
	Norm1          *nn.AdaLayerNormZero    // nil in a dual-attention block
	Norm1X         *AdaLayerNormZeroX      // set in a dual-attention block
	Norm1Context   *nn.AdaLayerNormZero    // nil when ContextPreOnly
	Norm1CtxCont   *AdaLayerNormContinuous // set when ContextPreOnly
	Attn           *JointAttention
	Attn2          *SelfAttention // nil unless dual attention
	Norm2          *nn.LayerNorm
	FF             *nn.FeedForward
	Norm2Context   *nn.LayerNorm // nil when ContextPreOnly
	FFContext      *nn.FeedForward
}

// NewJointBlock builds JointTransformerBlock(dim, heads, context_pre_only,
// qk_norm, use_dual_attention).
func NewJointBlock(dim, heads int, o BlockOptions) *JointBlock {
	ff := func() *nn.FeedForward { return nn.NewFeedForward(dim, dim, 4*dim, "gelu-approximate", true) }
	b := &JointBlock{ContextPreOnly: o.ContextPreOnly,
		Attn: NewJointAttention(dim, heads, o.ContextPreOnly, o.QKNorm), Norm2: plainNorm(dim), FF: ff()}
	if o.DualAttention {
		b.Norm1X, b.Attn2 = NewAdaLayerNormZeroX(dim), NewSelfAttention(dim, heads, o.QKNorm)
	} else {
		b.Norm1 = nn.NewAdaLayerNormZero(dim, 0)
	}
	if o.ContextPreOnly {
		b.Norm1CtxCont = NewAdaLayerNormContinuous(dim)
	} else {
		b.Norm1Context = nn.NewAdaLayerNormZero(dim, 0)
		b.Norm2Context = plainNorm(dim)
		b.FFContext = ff()
	}
	return b
}

// Params registers the block's weights under diffusers' names.
func (b *JointBlock) Params(prefix string, p *nn.Params) {
	if b.Norm1X != nil {
		b.Norm1X.Params(prefix+"norm1.", p)
	} else {
		b.Norm1.Params(prefix+"norm1.", p)
	}
	if b.ContextPreOnly {
		b.Norm1CtxCont.Params(prefix+"norm1_context.", p)
	} else {
		b.Norm1Context.Params(prefix+"norm1_context.", p)
		b.FFContext.Params(prefix+"ff_context.", p)
	}
	b.Attn.Params(prefix+"attn.", p)
	if b.Attn2 != nil {
		b.Attn2.Params(prefix+"attn2.", p)
	}
	b.FF.Params(prefix+"ff.", p)
}

// imageNorm is norm1: the image stream's modulation, its input to the
// joint attention and, in a dual-attention block, its input to attn2 and
// gate_msa2.
func (b *JointBlock) imageNorm(x, temb *tensor.Tensor) (m nn.Modulation, nx, nx2, gate2 *tensor.Tensor) {
	if b.Norm1X == nil {
		m = b.Norm1.Modulation(temb)
		return m, modulate(b.Norm1.Norm.Forward(x), m.ShiftMSA, m.ScaleMSA), nil, nil
	}
	mx := b.Norm1X.Modulation(temb)
	n := b.Norm1X.Norm.Forward(x)
	return mx.Modulation, modulate(n, mx.ShiftMSA, mx.ScaleMSA), modulate(n, mx.ShiftMSA2, mx.ScaleMSA2), mx.GateMSA2
}

// Forward runs the block on image tokens x [B, N, D] and text tokens ctx
// [B, L, D] conditioned by temb [B, D]; it returns the new text tokens
// (nil for a context_pre_only block) and image tokens.
func (b *JointBlock) Forward(x, ctx, temb *tensor.Tensor) (ctxOut, xOut *tensor.Tensor) {
	mx, nx, nx2, gate2 := b.imageNorm(x, temb)
	var mc nn.Modulation
	var nc *tensor.Tensor
	if b.ContextPreOnly {
		nc = b.Norm1CtxCont.Forward(ctx, temb)
	} else {
		mc = b.Norm1Context.Modulation(temb)
		nc = modulate(b.Norm1Context.Norm.Forward(ctx), mc.ShiftMSA, mc.ScaleMSA)
	}
	ax, ac := b.Attn.Forward(nx, nc)
	x = tensor.Add(x, tensor.Mul(mx.GateMSA, ax))
	if b.Attn2 != nil {
		x = tensor.Add(x, tensor.Mul(gate2, b.Attn2.Forward(nx2)))
	}
	ff := b.FF.Forward(modulate(b.Norm2.Forward(x), mx.ShiftMLP, mx.ScaleMLP))
	x = tensor.Add(x, tensor.Mul(mx.GateMLP, ff))
	if b.ContextPreOnly {
		return nil, x
	}
	ctx = tensor.Add(ctx, tensor.Mul(mc.GateMSA, ac))
	fc := b.FFContext.Forward(modulate(b.Norm2Context.Forward(ctx), mc.ShiftMLP, mc.ScaleMLP))
	return tensor.Add(ctx, tensor.Mul(mc.GateMLP, fc)), x
}
