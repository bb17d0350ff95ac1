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

// JointAttention is diffusers' Attention with added_kv_proj_dim as the
// JointAttnProcessor uses it: the image tokens through to_q/to_k/to_v and
// the text tokens through add_q_proj/add_k_proj/add_v_proj attend together
// (image first); the outputs are split again and projected by to_out.0 and,
// unless the block is context_pre_only, to_add_out.
type JointAttention struct {
	Heads, HeadDim             int
	ToQ, ToK, ToV, ToOut       *nn.Linear
	AddQ, AddK, AddV, ToAddOut *nn.Linear // ToAddOut nil when context_pre_only
}

// NewJointAttention builds the attention of a block of width dim.
func NewJointAttention(dim, heads int, contextPreOnly bool) *JointAttention {
	l := func() *nn.Linear { return nn.NewLinear(dim, dim, true) }
	a := &JointAttention{Heads: heads, HeadDim: dim / heads,
		ToQ: l(), ToK: l(), ToV: l(), ToOut: l(), AddQ: l(), AddK: l(), AddV: l()}
	if !contextPreOnly {
		a.ToAddOut = l()
	}
	return a
}

// Params registers the projections under diffusers' names.
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
}

// Forward attends over the image tokens x [B, N, D] and text tokens ctx
// [B, L, D] jointly and returns both outputs (the text one nil when the
// block is context_pre_only).
func (a *JointAttention) Forward(x, ctx *tensor.Tensor) (xo, co *tensor.Tensor) {
	n := x.Dim(1)
	heads := func(img, txt *nn.Linear) *tensor.Tensor {
		j := tensor.Concat(1, img.Forward(x), txt.Forward(ctx))
		b, l, d := j.Dim(0), j.Dim(1), j.Dim(2)
		return j.Reshape(b, l, a.Heads, d/a.Heads).Permute(0, 2, 1, 3)
	}
	q, k, v := heads(a.ToQ, a.AddQ), heads(a.ToK, a.AddK), heads(a.ToV, a.AddV)
	o := tensor.Attention(q, k, v, nil, float32(1/math.Sqrt(float64(a.HeadDim))))
	b, h, l, d := o.Dim(0), o.Dim(1), o.Dim(2), o.Dim(3)
	o = o.Permute(0, 2, 1, 3).Reshape(b, l, h*d)
	xo = a.ToOut.Forward(o.Narrow(1, 0, n))
	if a.ToAddOut != nil {
		co = a.ToAddOut.Forward(o.Narrow(1, n, l-n))
	}
	return xo, co
}

// JointBlock is diffusers' JointTransformerBlock (SD3 MMDiT block). The
// image stream is modulated by norm1 (adaLN-Zero); the text stream by
// norm1_context, adaLN-Zero too except in the last block
// (context_pre_only), which uses AdaLayerNormContinuous and drops the text
// output (no to_add_out, no ff_context).
type JointBlock struct {
	ContextPreOnly bool
	Norm1          *nn.AdaLayerNormZero
	Norm1Context   *nn.AdaLayerNormZero    // nil when ContextPreOnly
	Norm1CtxCont   *AdaLayerNormContinuous // set when ContextPreOnly
	Attn           *JointAttention
	Norm2          *nn.LayerNorm
	FF             *nn.FeedForward
	Norm2Context   *nn.LayerNorm // nil when ContextPreOnly
	FFContext      *nn.FeedForward
}

// NewJointBlock builds JointTransformerBlock(dim, heads, context_pre_only).
func NewJointBlock(dim, heads int, contextPreOnly bool) *JointBlock {
	ff := func() *nn.FeedForward { return nn.NewFeedForward(dim, dim, 4*dim, "gelu-approximate", true) }
	b := &JointBlock{ContextPreOnly: contextPreOnly, Norm1: nn.NewAdaLayerNormZero(dim, 0),
		Attn: NewJointAttention(dim, heads, contextPreOnly), Norm2: plainNorm(dim), FF: ff()}
	if contextPreOnly {
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
	b.Norm1.Params(prefix+"norm1.", p)
	if b.ContextPreOnly {
		b.Norm1CtxCont.Params(prefix+"norm1_context.", p)
	} else {
		b.Norm1Context.Params(prefix+"norm1_context.", p)
		b.FFContext.Params(prefix+"ff_context.", p)
	}
	b.Attn.Params(prefix+"attn.", p)
	b.FF.Params(prefix+"ff.", p)
}

// Forward runs the block on image tokens x [B, N, D] and text tokens ctx
// [B, L, D] conditioned by temb [B, D]; it returns the new text tokens
// (nil for a context_pre_only block) and image tokens.
func (b *JointBlock) Forward(x, ctx, temb *tensor.Tensor) (ctxOut, xOut *tensor.Tensor) {
	mx := b.Norm1.Modulation(temb)
	nx := modulate(b.Norm1.Norm.Forward(x), mx.ShiftMSA, mx.ScaleMSA)
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
	ff := b.FF.Forward(modulate(b.Norm2.Forward(x), mx.ShiftMLP, mx.ScaleMLP))
	x = tensor.Add(x, tensor.Mul(mx.GateMLP, ff))
	if b.ContextPreOnly {
		return nil, x
	}
	ctx = tensor.Add(ctx, tensor.Mul(mc.GateMSA, ac))
	fc := b.FFContext.Forward(modulate(b.Norm2Context.Forward(ctx), mc.ShiftMLP, mc.ScaleMLP))
	return tensor.Add(ctx, tensor.Mul(mc.GateMLP, fc)), x
}
