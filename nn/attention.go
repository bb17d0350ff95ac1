package nn

import (
	"math"

	"github.com/diffuse-go/diffuse/tensor"
)

// Attention is diffusers' Attention module: multi-head attention with
// to_q/to_k/to_v/to_out.0 projections, optional group norm on the input and
// residual connection (the VAE's mid-block form), and optional cross-attention.
type Attention struct {
	QueryDim, CrossDim, Heads, HeadDim int
	Bias, OutBias                      bool
	ResidualConnection                 bool
	RescaleOutput                      float32
	GroupNorm                          *GroupNorm // applied to the input when set (VAE form)

	ToQ, ToK, ToV, ToOut *Linear
}

// NewAttention builds diffusers' Attention(query_dim, cross_attention_dim,
// heads, dim_head, bias, out_bias). crossDim 0 means self-attention.
func NewAttention(queryDim, crossDim, heads, headDim int, bias, outBias bool) *Attention {
	inner := heads * headDim
	kv := queryDim
	if crossDim > 0 {
		kv = crossDim
	}
	return &Attention{QueryDim: queryDim, CrossDim: crossDim, Heads: heads, HeadDim: headDim, Bias: bias, OutBias: outBias, RescaleOutput: 1,
		ToQ: NewLinear(queryDim, inner, bias), ToK: NewLinear(kv, inner, bias), ToV: NewLinear(kv, inner, bias),
		ToOut: NewLinear(inner, queryDim, outBias)}
}

// Params registers the projections under diffusers' names.
func (a *Attention) Params(prefix string, p *Params) {
	if a.GroupNorm != nil {
		a.GroupNorm.Params(prefix+"group_norm.", p)
	}
	a.ToQ.Params(prefix+"to_q.", p)
	a.ToK.Params(prefix+"to_k.", p)
	a.ToV.Params(prefix+"to_v.", p)
	a.ToOut.Params(prefix+"to_out.0.", p)
}

// splitHeads turns [B, L, H·D] into [B, H, L, D].
func splitHeads(x *tensor.Tensor, heads int) *tensor.Tensor {
	b, l, d := x.Dim(0), x.Dim(1), x.Dim(2)
	return x.Reshape(b, l, heads, d/heads).Permute(0, 2, 1, 3)
}

// mergeHeads turns [B, H, L, D] into [B, L, H·D].
func mergeHeads(x *tensor.Tensor) *tensor.Tensor {
	b, h, l, d := x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3)
	return x.Permute(0, 2, 1, 3).Reshape(b, l, h*d)
}

// Forward attends from x [B, L, QueryDim] (or [B, C, H, W] for the spatial
// VAE form) to context [B, S, CrossDim] (nil: self-attention). mask, when
// given, is an additive bias broadcastable to [B, Heads, L, S].
func (a *Attention) Forward(x, context, mask *tensor.Tensor) *tensor.Tensor {
	residual := x
	spatial := x.Rank() == 4
	var b, c, h, w int
	if spatial {
		b, c, h, w = x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3)
	}
	if a.GroupNorm != nil {
		x = a.GroupNorm.Forward(x)
	}
	if spatial {
		x = x.Reshape(b, c, h*w).Transpose(1, 2)
	}
	if context == nil {
		context = x
	}
	q := splitHeads(a.ToQ.Forward(x), a.Heads)
	k := splitHeads(a.ToK.Forward(context), a.Heads)
	v := splitHeads(a.ToV.Forward(context), a.Heads)
	o := tensor.Attention(q, k, v, mask, float32(1/math.Sqrt(float64(a.HeadDim))))
	out := a.ToOut.Forward(mergeHeads(o))
	if spatial {
		out = out.Transpose(1, 2).Reshape(b, c, h, w)
	}
	if a.ResidualConnection {
		out = tensor.Add(out, residual)
	}
	if a.RescaleOutput != 1 && a.RescaleOutput != 0 {
		out = tensor.Scale(out, 1/a.RescaleOutput)
	}
	return out
}

// FeedForward is diffusers' FeedForward: net.0 (an activation with its own
// projection: GEGLU, GELU, GELU-tanh) then net.2 (Linear back to dim).
type FeedForward struct {
	Dim, Inner, Out int
	Act             string // "geglu", "gelu", "gelu-approximate"
	Proj, Down      *Linear
}

// NewFeedForward builds FeedForward(dim, dim_out, mult, activation_fn).
func NewFeedForward(dim, out, inner int, act string, bias bool) *FeedForward {
	projOut := inner
	if act == "geglu" || act == "geglu-approximate" {
		projOut = 2 * inner
	}
	return &FeedForward{Dim: dim, Inner: inner, Out: out, Act: act,
		Proj: NewLinear(dim, projOut, bias), Down: NewLinear(inner, out, bias)}
}

// Params registers net.0.proj and net.2.
func (f *FeedForward) Params(prefix string, p *Params) {
	f.Proj.Params(prefix+"net.0.proj.", p)
	f.Down.Params(prefix+"net.2.", p)
}

// Forward applies the feed-forward network.
func (f *FeedForward) Forward(x *tensor.Tensor) *tensor.Tensor {
	h := f.Proj.Forward(x)
	switch f.Act {
	case "geglu":
		h = tensor.GEGLU(h)
	case "geglu-approximate":
		parts := h.Chunk(2, -1)
		h = tensor.Mul(parts[0], tensor.GELUTanh(parts[1]))
	case "gelu":
		h = tensor.GELU(h)
	case "gelu-approximate":
		h = tensor.GELUTanh(h)
	default:
		panic("nn: unknown feed-forward activation " + f.Act)
	}
	return f.Down.Forward(h)
}
