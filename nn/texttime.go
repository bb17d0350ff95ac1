package nn

import (
	"math"

	"github.com/diffuse-go/diffuse/tensor"
)

// AttentionPooling is diffusers' (DeepFloyd IF's) AttentionPooling: a
// class token (the mean token plus a learned positional embedding) attends,
// with Heads heads, over itself and the sequence; its output is the pooled
// vector.
type AttentionPooling struct {
	Heads, Dim          int
	Positional          *tensor.Tensor // positional_embedding [1, Dim]
	QProj, KProj, VProj *Linear
}

// NewAttentionPooling builds an unloaded AttentionPooling(heads, dim).
func NewAttentionPooling(heads, dim int) *AttentionPooling {
	return &AttentionPooling{Heads: heads, Dim: dim,
		QProj: NewLinear(dim, dim, true), KProj: NewLinear(dim, dim, true), VProj: NewLinear(dim, dim, true)}
}

// Params registers positional_embedding and q_proj/k_proj/v_proj.
func (a *AttentionPooling) Params(prefix string, p *Params) {
	p.Add(prefix+"positional_embedding", []int{1, a.Dim}, &a.Positional)
	a.QProj.Params(prefix+"q_proj.", p)
	a.KProj.Params(prefix+"k_proj.", p)
	a.VProj.Params(prefix+"v_proj.", p)
}

// Forward pools x [B, L, Dim] into [B, Dim].
func (a *AttentionPooling) Forward(x *tensor.Tensor) *tensor.Tensor {
	b := x.Dim(0)
	cls := tensor.Add(tensor.MeanDim(x, 1, true), a.Positional) // [B, 1, Dim]
	seq := tensor.Concat(1, cls, x)
	q := splitHeads(a.QProj.Forward(cls), a.Heads)
	k := splitHeads(a.KProj.Forward(seq), a.Heads)
	v := splitHeads(a.VProj.Forward(seq), a.Heads)
	o := tensor.Attention(q, k, v, nil, float32(1/math.Sqrt(float64(a.Dim/a.Heads))))
	return mergeHeads(o).Reshape(b, a.Dim)
}

// TextTimeEmbedding is diffusers' TextTimeEmbedding (addition_embed_type
// "text"): LayerNorm, attention pooling over the tokens, a projection to
// the time-embedding width and a second LayerNorm.
type TextTimeEmbedding struct {
	Norm1 *LayerNorm
	Pool  *AttentionPooling
	Proj  *Linear
	Norm2 *LayerNorm
}

// NewTextTimeEmbedding builds TextTimeEmbedding(encoder_dim, time_embed_dim, num_heads).
func NewTextTimeEmbedding(encoderDim, timeDim, heads int) *TextTimeEmbedding {
	return &TextTimeEmbedding{Norm1: NewLayerNorm(encoderDim, 1e-5), Pool: NewAttentionPooling(heads, encoderDim),
		Proj: NewLinear(encoderDim, timeDim, true), Norm2: NewLayerNorm(timeDim, 1e-5)}
}

// Params registers norm1, pool, proj and norm2.
func (t *TextTimeEmbedding) Params(prefix string, p *Params) {
	t.Norm1.Params(prefix+"norm1.", p)
	t.Pool.Params(prefix+"pool.", p)
	t.Proj.Params(prefix+"proj.", p)
	t.Norm2.Params(prefix+"norm2.", p)
}

// Forward embeds the encoder states x [B, L, encoder_dim] into [B, time_embed_dim].
func (t *TextTimeEmbedding) Forward(x *tensor.Tensor) *tensor.Tensor {
	return t.Norm2.Forward(t.Proj.Forward(t.Pool.Forward(t.Norm1.Forward(x))))
}
