package hunyuan

import (
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// TextProjection is diffusers' PixArtAlphaTextProjection: linear_1, an
// activation, linear_2.
type TextProjection struct {
	Act              string // tensor.Activation name ("silu" for Hunyuan's silu_fp32)
	Linear1, Linear2 *nn.Linear
}

// NewTextProjection builds the projection in -> hidden -> out.
func NewTextProjection(in, hidden, out int, act string) *TextProjection {
	return &TextProjection{Act: act, Linear1: nn.NewLinear(in, hidden, true), Linear2: nn.NewLinear(hidden, out, true)}
}

// Params registers linear_1 and linear_2.
func (p *TextProjection) Params(prefix string, ps *nn.Params) {
	p.Linear1.Params(prefix+"linear_1.", ps)
	p.Linear2.Params(prefix+"linear_2.", ps)
}

// Forward projects x [..., in].
func (p *TextProjection) Forward(x *tensor.Tensor) *tensor.Tensor {
	return p.Linear2.Forward(tensor.Activation(p.Act, p.Linear1.Forward(x)))
}

// AttentionPool is diffusers' HunyuanDiTAttentionPool (CLIP-style
// attention pooling): the mean token is prepended to the sequence, learned
// positions are added, and the mean token alone attends to all of them with
// Heads heads; c_proj maps the result to the output width.
type AttentionPool struct {
	SeqLen, Dim, OutDim, Heads int
	PositionalEmbedding        *tensor.Tensor // [SeqLen+1, Dim]
	Q, K, V, C                 *nn.Linear
}

// NewAttentionPool builds HunyuanDiTAttentionPool(seqLen, dim, heads, outDim).
func NewAttentionPool(seqLen, dim, heads, outDim int) *AttentionPool {
	return &AttentionPool{SeqLen: seqLen, Dim: dim, OutDim: outDim, Heads: heads,
		Q: nn.NewLinear(dim, dim, true), K: nn.NewLinear(dim, dim, true), V: nn.NewLinear(dim, dim, true),
		C: nn.NewLinear(dim, outDim, true)}
}

// Params registers positional_embedding and the q/k/v/c projections.
func (a *AttentionPool) Params(prefix string, p *nn.Params) {
	p.Add(prefix+"positional_embedding", []int{a.SeqLen + 1, a.Dim}, &a.PositionalEmbedding)
	a.K.Params(prefix+"k_proj.", p)
	a.Q.Params(prefix+"q_proj.", p)
	a.V.Params(prefix+"v_proj.", p)
	a.C.Params(prefix+"c_proj.", p)
}

// heads turns [B, L, Dim] into [B, Heads, L, Dim/Heads].
func (a *AttentionPool) heads(x *tensor.Tensor) *tensor.Tensor {
	return x.Reshape(x.Dim(0), x.Dim(1), a.Heads, a.Dim/a.Heads).Permute(0, 2, 1, 3)
}

// Forward pools x [B, SeqLen, Dim] into [B, OutDim].
func (a *AttentionPool) Forward(x *tensor.Tensor) (*tensor.Tensor, error) {
	if x.Rank() != 3 || x.Dim(1) != a.SeqLen || x.Dim(2) != a.Dim {
		return nil, fmt.Errorf("hunyuan: attention pool input %v, want [B, %d, %d]", x.Shape(), a.SeqLen, a.Dim)
	}
	b := x.Dim(0)
	x = tensor.Add(tensor.Concat(1, tensor.MeanDim(x, 1, true), x), a.PositionalEmbedding.Unsqueeze(0))
	q := a.heads(a.Q.Forward(x.Narrow(1, 0, 1)))
	k, v := a.heads(a.K.Forward(x)), a.heads(a.V.Forward(x))
	o := tensor.Attention(q, k, v, nil, float32(1/math.Sqrt(float64(a.Dim/a.Heads))))
	o = o.Permute(0, 2, 1, 3).Reshape(b, a.Dim)
	return a.C.Forward(o), nil
}

// timeProjDim is the width of the sinusoidal timestep and image-size
// projections.
const timeProjDim = 256

// metaSizeLen is the number of image-meta-size values per sample
// (original size, target size, crop top-left).
const metaSizeLen = 6

// poolerHeads is the head count of the T5 attention pooling.
const poolerHeads = 8

// TimestepTextSizeStyleEmbedding is diffusers'
// HunyuanCombinedTimestepTextSizeStyleEmbedding: the embedded timestep plus
// extra_embedder of [attention-pooled T5 states, six sinusoid-embedded
// image-meta sizes, style embedding] (the last two only with
// use_style_cond_and_image_meta_size).
type TimestepTextSizeStyleEmbedding struct {
	TimestepEmbedder *nn.TimestepEmbedding
	Pooler           *AttentionPool
	StyleEmbedder    *nn.Embedding // nil without style and meta-size conditioning
	ExtraEmbedder    *TextProjection
}

// NewTimestepTextSizeStyleEmbedding builds the embedder for width dim.
func NewTimestepTextSizeStyleEmbedding(dim, pooledDim, seqLen, t5Dim int, styleAndMeta bool) *TimestepTextSizeStyleEmbedding {
	e := &TimestepTextSizeStyleEmbedding{TimestepEmbedder: nn.NewTimestepEmbedding(timeProjDim, dim, 0, 0, "silu"),
		Pooler: NewAttentionPool(seqLen, t5Dim, poolerHeads, pooledDim)}
	extra := pooledDim
	if styleAndMeta {
		e.StyleEmbedder = &nn.Embedding{Num: 1, Dim: dim}
		extra += timeProjDim*metaSizeLen + dim
	}
	e.ExtraEmbedder = NewTextProjection(extra, 4*dim, dim, "silu")
	return e
}

// Params registers the embedders.
func (e *TimestepTextSizeStyleEmbedding) Params(prefix string, p *nn.Params) {
	e.TimestepEmbedder.Params(prefix+"timestep_embedder.", p)
	e.Pooler.Params(prefix+"pooler.", p)
	if e.StyleEmbedder != nil {
		e.StyleEmbedder.Params(prefix+"style_embedder.", p)
	}
	e.ExtraEmbedder.Params(prefix+"extra_embedder.", p)
}

// Forward returns the conditioning [B, dim] from one timestep per sample,
// the raw T5 states [B, seqLen, t5Dim], six image-meta sizes per sample and
// one style id per sample (the last two ignored, and may be nil, without
// style and meta-size conditioning).
func (e *TimestepTextSizeStyleEmbedding) Forward(timesteps []float32, t5 *tensor.Tensor, metaSize []float32, style []int64) (*tensor.Tensor, error) {
	b := len(timesteps)
	temb := e.TimestepEmbedder.Forward(tensor.TimestepEmbedding(timesteps, timeProjDim, true, 0, 1, 10000), nil)
	pooled, err := e.Pooler.Forward(t5)
	if err != nil {
		return nil, err
	}
	extra := pooled
	if e.StyleEmbedder != nil {
		if len(metaSize) != metaSizeLen*b || len(style) != b {
			return nil, fmt.Errorf("hunyuan: %d image-meta sizes and %d style ids for batch %d (want %d and %d)",
				len(metaSize), len(style), b, metaSizeLen*b, b)
		}
		meta := tensor.TimestepEmbedding(metaSize, timeProjDim, true, 0, 1, 10000).Reshape(b, metaSizeLen*timeProjDim)
		st, err := e.StyleEmbedder.Forward(style, b)
		if err != nil {
			return nil, fmt.Errorf("hunyuan: style: %w", err)
		}
		extra = tensor.Concat(1, pooled, meta, st)
	}
	return tensor.Add(temb, e.ExtraEmbedder.Forward(extra)), nil
}

// AdaLayerNormContinuous is diffusers' AdaLayerNormContinuous with a plain
// (non-affine) layer norm: linear(silu(cond)) splits into scale and shift,
// and x is normed then modulated by them.
type AdaLayerNormContinuous struct {
	Dim    int
	Linear *nn.Linear
	Norm   *nn.LayerNorm
}

// NewAdaLayerNormContinuous builds AdaLayerNormContinuous(dim, condDim,
// elementwise_affine=False, eps).
func NewAdaLayerNormContinuous(dim, condDim int, eps float64) *AdaLayerNormContinuous {
	n := nn.NewLayerNorm(dim, eps)
	n.Affine = false
	return &AdaLayerNormContinuous{Dim: dim, Linear: nn.NewLinear(condDim, 2*dim, true), Norm: n}
}

// Params registers linear (the norm has no weights).
func (a *AdaLayerNormContinuous) Params(prefix string, p *nn.Params) {
	a.Linear.Params(prefix+"linear.", p)
}

// Forward modulates norm(x) for x [B, L, Dim] and cond [B, condDim].
func (a *AdaLayerNormContinuous) Forward(x, cond *tensor.Tensor) *tensor.Tensor {
	emb := a.Linear.Forward(tensor.SiLU(cond)).Unsqueeze(1)
	scale, shift := emb.Narrow(2, 0, a.Dim), emb.Narrow(2, a.Dim, a.Dim)
	return tensor.Add(tensor.Mul(a.Norm.Forward(x), tensor.AddScalar(scale, 1)), shift)
}
