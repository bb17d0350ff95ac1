package nn

import (
	"math"

	"github.com/diffuse-go/diffuse/tensor"
)

// AddedKVAttention is diffusers' Attention with added_kv_proj_dim, run by
// AttnAddedKVProcessor (the UnCLIP / DeepFloyd IF SimpleCrossAttn blocks):
// the spatial input [B, C, H, W] is group-normed into queries; the encoder
// states (group-normed by norm_cross when set) go through add_k_proj /
// add_v_proj and are prepended to the self-attention keys and values
// (to_k / to_v of the normed input), or are the only keys and values when
// OnlyCross is set. The output projection is added to the input.
type AddedKVAttention struct {
	Channels, Heads, HeadDim int
	AddedKVDim               int // width of the encoder states
	OnlyCross                bool

	GroupNorm *GroupNorm // group_norm over the input
	NormCross *GroupNorm // norm_cross over the encoder states (nil: none)

	ToQ, ToK, ToV, ToOut *Linear // ToK/ToV nil when OnlyCross
	AddK, AddV           *Linear
}

// AddedKVConfig configures an AddedKVAttention.
type AddedKVConfig struct {
	Channels   int     // query_dim (= cross_attention_dim of these blocks)
	HeadDim    int     // dim_head; heads = Channels / HeadDim
	AddedKVDim int     // added_kv_proj_dim (the encoder states' width)
	Groups     int     // norm_num_groups of group_norm
	Eps        float64 // group_norm eps (diffusers' Attention default 1e-5)
	OnlyCross  bool
	// CrossNormGroups > 0 adds norm_cross = GroupNorm(CrossNormGroups,
	// AddedKVDim, 1e-5) (cross_attention_norm "group_norm").
	CrossNormGroups int
}

// NewAddedKVAttention builds an unloaded added-KV attention (bias everywhere).
func NewAddedKVAttention(c AddedKVConfig) *AddedKVAttention {
	if c.Eps == 0 {
		c.Eps = 1e-5
	}
	heads := c.Channels / c.HeadDim
	inner := heads * c.HeadDim
	a := &AddedKVAttention{Channels: c.Channels, Heads: heads, HeadDim: c.HeadDim, AddedKVDim: c.AddedKVDim, OnlyCross: c.OnlyCross,
		GroupNorm: NewGroupNorm(c.Groups, c.Channels, c.Eps),
		ToQ:       NewLinear(c.Channels, inner, true), ToOut: NewLinear(inner, c.Channels, true),
		AddK: NewLinear(c.AddedKVDim, inner, true), AddV: NewLinear(c.AddedKVDim, inner, true)}
	if !c.OnlyCross {
		a.ToK, a.ToV = NewLinear(c.Channels, inner, true), NewLinear(c.Channels, inner, true)
	}
	if c.CrossNormGroups > 0 {
		a.NormCross = NewGroupNorm(c.CrossNormGroups, c.AddedKVDim, 1e-5)
	}
	return a
}

// Params registers the weights under diffusers' names.
func (a *AddedKVAttention) Params(prefix string, p *Params) {
	a.GroupNorm.Params(prefix+"group_norm.", p)
	if a.NormCross != nil {
		a.NormCross.Params(prefix+"norm_cross.", p)
	}
	a.ToQ.Params(prefix+"to_q.", p)
	if a.ToK != nil {
		a.ToK.Params(prefix+"to_k.", p)
		a.ToV.Params(prefix+"to_v.", p)
	}
	a.AddK.Params(prefix+"add_k_proj.", p)
	a.AddV.Params(prefix+"add_v_proj.", p)
	a.ToOut.Params(prefix+"to_out.0.", p)
}

// Forward attends from x [B, C, H, W] to the encoder states context
// [B, S, AddedKVDim] (and, unless OnlyCross, to x itself). mask, when
// given, is an additive bias broadcastable to [B, Heads, H·W, S] over the
// encoder tokens; the self-attention keys are never masked.
func (a *AddedKVAttention) Forward(x, context, mask *tensor.Tensor) *tensor.Tensor {
	b, c, h, w := x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3)
	hs := a.GroupNorm.Forward(x).Reshape(b, c, h*w).Transpose(1, 2)
	if a.NormCross != nil {
		context = a.NormCross.Forward(context.Transpose(1, 2).Contiguous()).Transpose(1, 2)
	}
	q := splitHeads(a.ToQ.Forward(hs), a.Heads)
	k := splitHeads(a.AddK.Forward(context), a.Heads)
	v := splitHeads(a.AddV.Forward(context), a.Heads)
	if !a.OnlyCross {
		k = tensor.Concat(2, k, splitHeads(a.ToK.Forward(hs), a.Heads))
		v = tensor.Concat(2, v, splitHeads(a.ToV.Forward(hs), a.Heads))
		if mask != nil {
			// Pad the bias with zeros over the self-attention keys.
			ms := mask.Shape()
			pad := append([]int(nil), ms...)
			pad[len(pad)-1] = h * w
			mask = tensor.Concat(len(ms)-1, mask, tensor.Zeros(pad...))
		}
	}
	o := tensor.Attention(q, k, v, mask, float32(1/math.Sqrt(float64(a.HeadDim))))
	out := a.ToOut.Forward(mergeHeads(o))
	out = out.Transpose(1, 2).Reshape(b, c, h, w)
	return tensor.Add(out, x)
}
