package flux

import (
	"math"

	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// normEps is the epsilon of every Flux norm: the block layer norms, the
// adaptive norms and the query/key RMS norms.
const normEps = 1e-6

// plainNorm is LayerNorm(dim, elementwise_affine=False, eps=1e-6).
func plainNorm(dim int) *nn.LayerNorm {
	n := nn.NewLayerNorm(dim, normEps)
	n.Affine = false
	return n
}

// modulate returns x·(1 + scale) + shift, diffusers' order of operations.
func modulate(x, shift, scale *tensor.Tensor) *tensor.Tensor {
	return tensor.Add(tensor.Mul(x, tensor.AddScalar(scale, 1)), shift)
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

// qkv is one stream's query, key and value projections with RMS norms on
// the per-head queries and keys (diffusers' Attention with
// qk_norm="rms_norm").
type qkv struct {
	Heads        int
	Q, K, V      *nn.Linear
	NormQ, NormK *nn.RMSNorm
}

func newQKV(dim, heads, headDim int) qkv {
	inner := heads * headDim
	return qkv{Heads: heads, Q: nn.NewLinear(dim, inner, true), K: nn.NewLinear(dim, inner, true), V: nn.NewLinear(dim, inner, true),
		NormQ: &nn.RMSNorm{Dim: headDim, Eps: normEps}, NormK: &nn.RMSNorm{Dim: headDim, Eps: normEps}}
}

// params registers the projections and norms under the given names.
func (a qkv) params(prefix, q, k, v, nq, nk string, p *nn.Params) {
	a.Q.Params(prefix+q+".", p)
	a.K.Params(prefix+k+".", p)
	a.V.Params(prefix+v+".", p)
	a.NormQ.Params(prefix+nq+".", p)
	a.NormK.Params(prefix+nk+".", p)
}

// forward returns the normed queries and keys and the values of x, each
// [B, H, L, headDim].
func (a qkv) forward(x *tensor.Tensor) (q, k, v *tensor.Tensor) {
	return a.NormQ.Forward(splitHeads(a.Q.Forward(x), a.Heads)),
		a.NormK.Forward(splitHeads(a.K.Forward(x), a.Heads)),
		splitHeads(a.V.Forward(x), a.Heads)
}

// attend rotates q and k and returns softmax(q·kᵀ/√d)·v with the heads
// merged, [B, S, H·D].
func attend(q, k, v *tensor.Tensor, rot *nn.Rotary) *tensor.Tensor {
	q = tensor.ApplyRotary(q, rot.Cos, rot.Sin, rot.Interleaved)
	k = tensor.ApplyRotary(k, rot.Cos, rot.Sin, rot.Interleaved)
	o := tensor.Attention(q, k, v, nil, float32(1/math.Sqrt(float64(q.Dim(3)))))
	return mergeHeads(o)
}

// JointAttention is the double-stream blocks' attention (diffusers'
// Attention with added_kv_proj_dim and FluxAttnProcessor2_0): text and
// image tokens have their own projections and norms and attend jointly,
// text first.
type JointAttention struct {
	Image, Text     qkv
	ToOut, ToAddOut *nn.Linear
}

func newJointAttention(dim, heads, headDim int) *JointAttention {
	inner := heads * headDim
	return &JointAttention{Image: newQKV(dim, heads, headDim), Text: newQKV(dim, heads, headDim),
		ToOut: nn.NewLinear(inner, dim, true), ToAddOut: nn.NewLinear(inner, dim, true)}
}

// Params registers to_q/k/v, norm_q/k, add_q/k/v_proj, norm_added_q/k,
// to_out.0 and to_add_out.
func (a *JointAttention) Params(prefix string, p *nn.Params) {
	a.Image.params(prefix, "to_q", "to_k", "to_v", "norm_q", "norm_k", p)
	a.Text.params(prefix, "add_q_proj", "add_k_proj", "add_v_proj", "norm_added_q", "norm_added_k", p)
	a.ToOut.Params(prefix+"to_out.0.", p)
	a.ToAddOut.Params(prefix+"to_add_out.", p)
}

// Forward attends over the text tokens c [B, L, D] followed by the image
// tokens x [B, N, D] with the rotary table of those L+N positions, and
// returns the image and text outputs.
func (a *JointAttention) Forward(x, c *tensor.Tensor, rot *nn.Rotary) (xOut, cOut *tensor.Tensor) {
	q, k, v := a.Image.forward(x)
	cq, ck, cv := a.Text.forward(c)
	o := attend(tensor.Concat(2, cq, q), tensor.Concat(2, ck, k), tensor.Concat(2, cv, v), rot)
	l, n := c.Dim(1), x.Dim(1)
	return a.ToOut.Forward(o.Narrow(1, l, n)), a.ToAddOut.Forward(o.Narrow(1, 0, l))
}

// TransformerBlock is diffusers' FluxTransformerBlock (double stream):
// adaLN-Zero modulated joint attention and feed-forward, one set of
// weights per stream.
type TransformerBlock struct {
	Norm1, Norm1Context *nn.AdaLayerNormZero
	Attn                *JointAttention
	Norm2, Norm2Context *nn.LayerNorm
	FF, FFContext       *nn.FeedForward
}

// NewTransformerBlock builds an unloaded double-stream block.
func NewTransformerBlock(dim, heads, headDim int) *TransformerBlock {
	return &TransformerBlock{Norm1: nn.NewAdaLayerNormZero(dim, 0), Norm1Context: nn.NewAdaLayerNormZero(dim, 0),
		Attn: newJointAttention(dim, heads, headDim), Norm2: plainNorm(dim), Norm2Context: plainNorm(dim),
		FF: nn.NewFeedForward(dim, dim, 4*dim, "gelu-approximate", true), FFContext: nn.NewFeedForward(dim, dim, 4*dim, "gelu-approximate", true)}
}

// Params registers the block's weights under diffusers' names.
func (b *TransformerBlock) Params(prefix string, p *nn.Params) {
	b.Norm1.Params(prefix+"norm1.", p)
	b.Norm1Context.Params(prefix+"norm1_context.", p)
	b.Attn.Params(prefix+"attn.", p)
	b.FF.Params(prefix+"ff.", p)
	b.FFContext.Params(prefix+"ff_context.", p)
}

// Forward updates the image tokens x [B, N, D] and the text tokens c
// [B, L, D] under the conditioning temb [B, D].
func (b *TransformerBlock) Forward(x, c, temb *tensor.Tensor, rot *nn.Rotary) (xOut, cOut *tensor.Tensor) {
	m, mc := b.Norm1.Modulation(temb), b.Norm1Context.Modulation(temb)
	nx := modulate(b.Norm1.Norm.Forward(x), m.ShiftMSA, m.ScaleMSA)
	nc := modulate(b.Norm1Context.Norm.Forward(c), mc.ShiftMSA, mc.ScaleMSA)
	ax, ac := b.Attn.Forward(nx, nc, rot)
	x = tensor.Add(x, tensor.Mul(m.GateMSA, ax))
	x = tensor.Add(x, tensor.Mul(m.GateMLP, b.FF.Forward(modulate(b.Norm2.Forward(x), m.ShiftMLP, m.ScaleMLP))))
	c = tensor.Add(c, tensor.Mul(mc.GateMSA, ac))
	c = tensor.Add(c, tensor.Mul(mc.GateMLP, b.FFContext.Forward(modulate(b.Norm2Context.Forward(c), mc.ShiftMLP, mc.ScaleMLP))))
	return x, c
}

// AdaLayerNormZeroSingle is diffusers' AdaLayerNormZeroSingle:
// linear(silu(emb)) splits into shift, scale and gate; x is layer-normed
// (no affine) and modulated by the shift and scale.
type AdaLayerNormZeroSingle struct {
	Dim    int
	Linear *nn.Linear
	Norm   *nn.LayerNorm
}

// Params registers linear.
func (a *AdaLayerNormZeroSingle) Params(prefix string, p *nn.Params) {
	a.Linear.Params(prefix+"linear.", p)
}

// Forward returns the modulated norm of x [B, S, Dim] and the gate
// [B, 1, Dim] for the conditioning emb [B, Dim].
func (a *AdaLayerNormZeroSingle) Forward(x, emb *tensor.Tensor) (normed, gate *tensor.Tensor) {
	e := a.Linear.Forward(tensor.SiLU(emb))
	ch := e.Reshape(e.Dim(0), 3, a.Dim).Chunk(3, 1)
	return modulate(a.Norm.Forward(x), ch[0], ch[1]), ch[2]
}

// SingleTransformerBlock is diffusers' FluxSingleTransformerBlock: on the
// concatenated text and image tokens, self-attention (no output
// projection) and a GELU-tanh MLP side by side, concatenated and projected
// back, gated.
type SingleTransformerBlock struct {
	Norm    *AdaLayerNormZeroSingle
	Attn    qkv
	ProjMLP *nn.Linear
	ProjOut *nn.Linear
}

// NewSingleTransformerBlock builds an unloaded single-stream block
// (mlp_ratio 4).
func NewSingleTransformerBlock(dim, heads, headDim int) *SingleTransformerBlock {
	mlp := 4 * dim
	return &SingleTransformerBlock{
		Norm:    &AdaLayerNormZeroSingle{Dim: dim, Linear: nn.NewLinear(dim, 3*dim, true), Norm: plainNorm(dim)},
		Attn:    newQKV(dim, heads, headDim),
		ProjMLP: nn.NewLinear(dim, mlp, true), ProjOut: nn.NewLinear(heads*headDim+mlp, dim, true)}
}

// Params registers the block's weights under diffusers' names.
func (b *SingleTransformerBlock) Params(prefix string, p *nn.Params) {
	b.Norm.Params(prefix+"norm.", p)
	b.Attn.params(prefix+"attn.", "to_q", "to_k", "to_v", "norm_q", "norm_k", p)
	b.ProjMLP.Params(prefix+"proj_mlp.", p)
	b.ProjOut.Params(prefix+"proj_out.", p)
}

// Forward updates the tokens h [B, S, D] under the conditioning temb.
func (b *SingleTransformerBlock) Forward(h, temb *tensor.Tensor, rot *nn.Rotary) *tensor.Tensor {
	nh, gate := b.Norm.Forward(h, temb)
	mlp := tensor.GELUTanh(b.ProjMLP.Forward(nh))
	q, k, v := b.Attn.forward(nh)
	attn := attend(q, k, v, rot)
	return tensor.Add(h, tensor.Mul(gate, b.ProjOut.Forward(tensor.Concat(2, attn, mlp))))
}
