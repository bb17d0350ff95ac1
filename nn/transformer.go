package nn

import (
	"fmt"

	"github.com/diffuse-go/diffuse/tensor"
)

// BlockConfig configures a BasicTransformerBlock.
type BlockConfig struct {
	Dim, Heads, HeadDim int
	CrossAttentionDim   int    // 0: no cross-attention
	OnlyCrossAttention  bool   // attn1 attends to the context too
	DoubleSelfAttention bool   // attn2 without context
	AttentionBias       bool   // bias on q/k/v
	ActivationFn        string // feed-forward activation ("geglu" in UNets)
	NormType            string // "layer_norm" (UNet), "ada_norm_zero" (DiT), "ada_norm_single" (PixArt)
	NormEps             float64
	NormAffine          bool
	FFInnerDim          int // 0: 4·Dim
	FFBias              bool
	// NumEmbedsAdaNorm is the class count of ada_norm_zero's label
	// embedding (num_embeds_ada_norm).
	NumEmbedsAdaNorm int
}

// BasicTransformerBlock is diffusers' transformer block: self-attention,
// cross-attention and feed-forward, each pre-normed with a residual. The
// same block serves UNets (plain LayerNorm) and DiTs (adaLN variants).
//
// norm_type "ada_norm_zero" (DiT) makes norm1 an AdaLayerNormZero
// (Norm1Zero) whose conditioning modulates and gates both the attention and
// the feed-forward. "ada_norm_single" (PixArt-alpha) modulates with the
// shared adaLN-single output plus the block's ScaleShiftTable [6, Dim];
// there norm2 (not norm3) normalises the feed-forward input and the
// cross-attention sees the un-normed states.
type BasicTransformerBlock struct {
	Cfg                 BlockConfig
	Norm1, Norm2, Norm3 *LayerNorm // Norm1 nil for ada_norm_zero, Norm3 nil for ada_norm_single
	Norm1Zero           *AdaLayerNormZero
	ScaleShiftTable     *tensor.Tensor
	Attn1, Attn2        *Attention
	FF                  *FeedForward
}

// BlockCond is the conditioning adaptive-norm blocks read.
type BlockCond struct {
	// Timesteps and ClassLabels (one per sample) feed ada_norm_zero's
	// own embedder.
	Timesteps   []float32
	ClassLabels []int64
	// Modulation is adaLN-single's output [B, 6·Dim] (ada_norm_single).
	Modulation *tensor.Tensor
}

// NewBasicTransformerBlock builds an unloaded block.
func NewBasicTransformerBlock(c BlockConfig) (*BasicTransformerBlock, error) {
	if c.NormType == "" {
		c.NormType = "layer_norm"
	}
	switch c.NormType {
	case "layer_norm", "ada_norm_single":
	case "ada_norm_zero":
		if c.NumEmbedsAdaNorm <= 0 {
			return nil, fmt.Errorf("nn: transformer block norm_type ada_norm_zero needs num_embeds_ada_norm")
		}
	default:
		return nil, fmt.Errorf("nn: transformer block norm_type %q not supported", c.NormType)
	}
	if c.ActivationFn == "" {
		c.ActivationFn = "geglu"
	}
	if err := CheckFeedForwardActivation(c.ActivationFn); err != nil {
		return nil, fmt.Errorf("nn: transformer block %w", err)
	}
	if c.Heads <= 0 || c.HeadDim <= 0 {
		return nil, fmt.Errorf("nn: transformer block with %d heads of %d features", c.Heads, c.HeadDim)
	}
	if c.NormEps == 0 {
		c.NormEps = 1e-5
	}
	b := &BasicTransformerBlock{Cfg: c}
	ln := func() *LayerNorm { l := NewLayerNorm(c.Dim, c.NormEps); l.Affine = c.NormAffine; return l }
	if c.NormType == "ada_norm_zero" {
		b.Norm1Zero = NewAdaLayerNormZero(c.Dim, c.NumEmbedsAdaNorm)
	} else {
		b.Norm1 = ln()
	}
	cross1 := 0
	if c.OnlyCrossAttention {
		cross1 = c.CrossAttentionDim
	}
	b.Attn1 = NewAttention(c.Dim, cross1, c.Heads, c.HeadDim, c.AttentionBias, true)
	if c.CrossAttentionDim > 0 || c.DoubleSelfAttention {
		b.Norm2 = ln()
		cross2 := c.CrossAttentionDim
		if c.DoubleSelfAttention {
			cross2 = 0
		}
		b.Attn2 = NewAttention(c.Dim, cross2, c.Heads, c.HeadDim, c.AttentionBias, true)
	} else if c.NormType == "ada_norm_single" {
		b.Norm2 = ln()
	}
	if c.NormType != "ada_norm_single" {
		b.Norm3 = ln()
	}
	inner := c.FFInnerDim
	if inner == 0 {
		inner = 4 * c.Dim
	}
	b.FF = NewFeedForward(c.Dim, c.Dim, inner, c.ActivationFn, true)
	return b, nil
}

// Params registers the block's weights.
func (b *BasicTransformerBlock) Params(prefix string, p *Params) {
	if b.Norm1Zero != nil {
		b.Norm1Zero.Params(prefix+"norm1.", p)
	} else {
		b.Norm1.Params(prefix+"norm1.", p)
	}
	b.Attn1.Params(prefix+"attn1.", p)
	if b.Norm2 != nil {
		b.Norm2.Params(prefix+"norm2.", p)
	}
	if b.Attn2 != nil {
		b.Attn2.Params(prefix+"attn2.", p)
	}
	if b.Norm3 != nil {
		b.Norm3.Params(prefix+"norm3.", p)
	}
	b.FF.Params(prefix+"ff.", p)
	if b.Cfg.NormType == "ada_norm_single" {
		p.Add(prefix+"scale_shift_table", []int{6, b.Cfg.Dim}, &b.ScaleShiftTable)
	}
}

// Forward runs the block on x [B, L, Dim] with context [B, S, CrossDim].
// contextMask is an additive bias for cross-attention (may be nil). Blocks
// with adaptive norms need ForwardCond.
func (b *BasicTransformerBlock) Forward(x, context, contextMask *tensor.Tensor) *tensor.Tensor {
	if b.Cfg.NormType != "layer_norm" {
		panic("nn: BasicTransformerBlock with norm_type " + b.Cfg.NormType + " needs ForwardCond")
	}
	var ctx1 *tensor.Tensor
	if b.Cfg.OnlyCrossAttention {
		ctx1 = context
	}
	x = tensor.Add(b.Attn1.Forward(b.Norm1.Forward(x), ctx1, nil), x)
	if b.Attn2 != nil {
		ctx := context
		if b.Cfg.DoubleSelfAttention {
			ctx = nil
		}
		x = tensor.Add(b.Attn2.Forward(b.Norm2.Forward(x), ctx, contextMask), x)
	}
	return tensor.Add(b.FF.Forward(b.Norm3.Forward(x)), x)
}

// ForwardCond runs the block with the conditioning its norm type needs
// (plain layer_norm blocks ignore cond).
func (b *BasicTransformerBlock) ForwardCond(x, context, contextMask *tensor.Tensor, cond BlockCond) (*tensor.Tensor, error) {
	var m Modulation
	switch b.Cfg.NormType {
	case "layer_norm":
		return b.Forward(x, context, contextMask), nil
	case "ada_norm_zero":
		c, err := b.Norm1Zero.Emb.Forward(cond.Timesteps, cond.ClassLabels)
		if err != nil {
			return nil, err
		}
		m = b.Norm1Zero.Modulation(c)
	case "ada_norm_single":
		if cond.Modulation == nil {
			return nil, fmt.Errorf("nn: ada_norm_single block without modulation")
		}
		t := tensor.Add(b.ScaleShiftTable.Unsqueeze(0), cond.Modulation.Reshape(x.Dim(0), 6, b.Cfg.Dim))
		ch := t.Chunk(6, 1)
		m = Modulation{ShiftMSA: ch[0], ScaleMSA: ch[1], GateMSA: ch[2], ShiftMLP: ch[3], ScaleMLP: ch[4], GateMLP: ch[5]}
	}
	var h *tensor.Tensor
	if b.Norm1Zero != nil {
		h = b.Norm1Zero.Norm.Forward(x)
	} else {
		h = b.Norm1.Forward(x)
	}
	var ctx1 *tensor.Tensor
	if b.Cfg.OnlyCrossAttention {
		ctx1 = context
	}
	a := b.Attn1.Forward(modulate(h, m.ShiftMSA, m.ScaleMSA), ctx1, nil)
	x = tensor.Add(tensor.Mul(m.GateMSA, a), x)
	if b.Attn2 != nil {
		ctx := context
		if b.Cfg.DoubleSelfAttention {
			ctx = nil
		}
		h = x // PixArt's cross-attention reads the un-normed states
		if b.Cfg.NormType != "ada_norm_single" {
			h = b.Norm2.Forward(x)
		}
		x = tensor.Add(b.Attn2.Forward(h, ctx, contextMask), x)
	}
	if b.Cfg.NormType == "ada_norm_single" {
		h = b.Norm2.Forward(x)
	} else {
		h = b.Norm3.Forward(x)
	}
	f := b.FF.Forward(modulate(h, m.ShiftMLP, m.ScaleMLP))
	return tensor.Add(tensor.Mul(m.GateMLP, f), x), nil
}

// Transformer2DConfig configures the spatial transformer of UNets.
type Transformer2DConfig struct {
	InChannels, Heads, HeadDim, Layers int
	CrossAttentionDim                  int
	NormGroups                         int
	UseLinearProjection                bool
	OnlyCrossAttention                 bool
	UpcastAttention                    bool
}

// Transformer2D is diffusers' Transformer2DModel for continuous (spatial)
// input: group norm, proj_in, transformer blocks, proj_out, residual.
type Transformer2D struct {
	Cfg              Transformer2DConfig
	Norm             *GroupNorm
	ProjIn, ProjOut  Module // *Linear or *Conv2d
	TransformerBlock []*BasicTransformerBlock
}

// NewTransformer2D builds an unloaded spatial transformer.
func NewTransformer2D(c Transformer2DConfig) (*Transformer2D, error) {
	inner := c.Heads * c.HeadDim
	t := &Transformer2D{Cfg: c, Norm: NewGroupNorm(c.NormGroups, c.InChannels, 1e-6)}
	if c.UseLinearProjection {
		t.ProjIn, t.ProjOut = NewLinear(c.InChannels, inner, true), NewLinear(inner, c.InChannels, true)
	} else {
		t.ProjIn, t.ProjOut = NewConv2d(c.InChannels, inner, 1, 1, 0, true), NewConv2d(inner, c.InChannels, 1, 1, 0, true)
	}
	for i := 0; i < c.Layers; i++ {
		b, err := NewBasicTransformerBlock(BlockConfig{Dim: inner, Heads: c.Heads, HeadDim: c.HeadDim,
			CrossAttentionDim: c.CrossAttentionDim, OnlyCrossAttention: c.OnlyCrossAttention, NormAffine: true})
		if err != nil {
			return nil, err
		}
		t.TransformerBlock = append(t.TransformerBlock, b)
	}
	return t, nil
}

// Params registers the weights.
func (t *Transformer2D) Params(prefix string, p *Params) {
	t.Norm.Params(prefix+"norm.", p)
	t.ProjIn.Params(prefix+"proj_in.", p)
	for i, b := range t.TransformerBlock {
		b.Params(Join(prefix+"transformer_blocks.", i), p)
	}
	t.ProjOut.Params(prefix+"proj_out.", p)
}

// Forward runs the transformer on x [B, C, H, W] with context [B, S, D].
func (t *Transformer2D) Forward(x, context, contextMask *tensor.Tensor) *tensor.Tensor {
	b, c, h, w := x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3)
	residual := x
	x = t.Norm.Forward(x)
	var hs *tensor.Tensor
	if wt, bias, ok := plainProjection(t.ProjIn); ok {
		// The NCHW → tokens transpose is folded into the projection.
		hs = tensor.ChannelsToTokens(x, wt, bias)
	} else if conv, ok := t.ProjIn.(*Conv2d); ok {
		hs = conv.Forward(x)
		hs = hs.Permute(0, 2, 3, 1).Reshape(b, h*w, hs.Dim(1))
	} else {
		hs = x.Permute(0, 2, 3, 1).Reshape(b, h*w, c)
		hs = t.ProjIn.(*Linear).Forward(hs)
	}
	for _, blk := range t.TransformerBlock {
		hs = blk.Forward(hs, context, contextMask)
	}
	if wt, bias, ok := plainProjection(t.ProjOut); ok {
		// The tokens → NCHW transpose and the residual add are folded
		// into the projection.
		return tensor.TokensToChannels(hs, wt, bias, residual, h, w)
	}
	inner := hs.Dim(2)
	var out *tensor.Tensor
	if conv, ok := t.ProjOut.(*Conv2d); ok {
		out = conv.Forward(hs.Reshape(b, h, w, inner).Permute(0, 3, 1, 2))
	} else {
		out = t.ProjOut.(*Linear).Forward(hs).Reshape(b, h, w, c).Permute(0, 3, 1, 2)
	}
	return tensor.Add(out, residual)
}

// plainProjection returns the weight and bias of a spatial transformer's
// proj_in or proj_out, a Linear or a 1×1 convolution, when its Forward is
// just that product (no active LoRA adapter to add), so that the caller can
// fuse it with the layout change around it.
func plainProjection(m Module) (weight, bias *tensor.Tensor, ok bool) {
	switch p := m.(type) {
	case *Linear:
		for _, a := range p.LoRA {
			if a.active() {
				return nil, nil, false
			}
		}
		return p.Weight, p.Bias, true
	case *Conv2d:
		for _, a := range p.LoRA {
			if a.active() {
				return nil, nil, false
			}
		}
		// A 1×1 kernel ignores dilation; stride, padding and groups
		// would make it more than a per-position product.
		o := p.Opts
		plain := p.Kernel == 1 && o.Stride[0] <= 1 && o.Stride[1] <= 1 && o.Padding == [2]int{} && o.Groups <= 1
		return p.Weight, p.Bias, plain
	}
	return nil, nil, false
}
