package nn

import (
	"math"

	"github.com/diffuse-go/diffuse/tensor"
)

func sqrt(x float64) float64 { return math.Sqrt(x) }

// Linear is y = x·Wᵀ + b (diffusers/torch nn.Linear: weight [out, in]).
type Linear struct {
	In, Out      int
	HasBias      bool
	Weight, Bias *tensor.Tensor

	// LoRA lists low-rank adapters whose output Forward adds (see LoRA and
	// package model/lora); empty for plain inference, which then costs
	// nothing extra.
	LoRA []*LoRA
	// LoRABase is the weight as loaded while adapters are fused into
	// Weight, kept so that unfusing restores it exactly; nil otherwise.
	LoRABase *tensor.Tensor
}

// NewLinear makes an unloaded Linear.
func NewLinear(in, out int, bias bool) *Linear { return &Linear{In: in, Out: out, HasBias: bias} }

// Params registers weight and bias.
func (l *Linear) Params(prefix string, p *Params) {
	p.Add(prefix+"weight", []int{l.Out, l.In}, &l.Weight)
	if l.HasBias {
		p.Add(prefix+"bias", []int{l.Out}, &l.Bias)
	}
}

// Forward applies the layer to x [..., In].
func (l *Linear) Forward(x *tensor.Tensor) *tensor.Tensor {
	y := tensor.Linear(x, l.Weight, l.Bias)
	if len(l.LoRA) == 0 {
		return y
	}
	for _, a := range l.LoRA {
		if a.active() {
			// peft order: scale · B(A(x)), then added to the base output.
			d := tensor.Linear(tensor.Linear(x, a.Down, nil), a.Up, nil)
			y = tensor.Add(y, tensor.Scale(d, a.Scale))
		}
	}
	return y
}

// Conv2d is a 2-D convolution layer (weight [out, in/groups, k, k]).
type Conv2d struct {
	In, Out, Kernel int
	Opts            tensor.Conv2dOpts
	HasBias         bool
	Weight, Bias    *tensor.Tensor

	// LoRA lists low-rank adapters whose output Forward adds: Down is a
	// convolution [r, In, k, k] with this layer's stride and padding, Up a
	// 1×1 convolution [Out, r, 1, 1] (the kohya LoCon / peft layout). Empty
	// for plain inference.
	LoRA []*LoRA
	// LoRABase is the weight as loaded while adapters are fused into
	// Weight; nil otherwise.
	LoRABase *tensor.Tensor
}

// NewConv2d makes an unloaded square-kernel convolution with the given stride and padding.
func NewConv2d(in, out, kernel, stride, padding int, bias bool) *Conv2d {
	return &Conv2d{In: in, Out: out, Kernel: kernel, HasBias: bias,
		Opts: tensor.Conv2dOpts{Stride: [2]int{stride, stride}, Padding: [2]int{padding, padding}}}
}

// Params registers weight and bias.
func (c *Conv2d) Params(prefix string, p *Params) {
	g := max(c.Opts.Groups, 1)
	p.Add(prefix+"weight", []int{c.Out, c.In / g, c.Kernel, c.Kernel}, &c.Weight)
	if c.HasBias {
		p.Add(prefix+"bias", []int{c.Out}, &c.Bias)
	}
}

// Forward convolves x [N, In, H, W].
func (c *Conv2d) Forward(x *tensor.Tensor) *tensor.Tensor {
	y := tensor.Conv2d(x, c.Weight, c.Bias, c.Opts)
	if len(c.LoRA) == 0 {
		return y
	}
	for _, a := range c.LoRA {
		if a.active() {
			// Like peft and kohya: the base kernel, stride and padding; no
			// dilation or groups.
			down := tensor.Conv2d(x, a.Down, nil, tensor.Conv2dOpts{Stride: c.Opts.Stride, Padding: c.Opts.Padding})
			d := tensor.Conv2d(down, a.Up, nil, tensor.Conv2dOpts{})
			y = tensor.Add(y, tensor.Scale(d, a.Scale))
		}
	}
	return y
}

// LoRA is one low-rank adapter attached to a Linear or Conv2d: the layer
// adds Scale · Up(Down(x)) to its output. For a Linear, Down is [r, In] and
// Up [Out, r]; for a Conv2d, Down is [r, In, k, k] and Up [Out, r, 1, 1].
// Package model/lora builds them from LoRA files, sets Scale to
// alpha/rank · the user's weight, and fuses them into the weights.
type LoRA struct {
	Name     string // adapter name, for messages
	Down, Up *tensor.Tensor
	Scale    float32
	// Disabled adapters are skipped.
	Disabled bool
	// Fused adapters are already part of the layer's Weight (the original
	// is in LoRABase), so Forward skips them.
	Fused bool
}

// active reports whether Forward must add the adapter's output.
func (a *LoRA) active() bool { return a != nil && !a.Disabled && !a.Fused && a.Scale != 0 }

// GroupNorm normalises groups of channels with a per-channel affine map.
type GroupNorm struct {
	Groups, Channels int
	Eps              float64
	Affine           bool
	Weight, Bias     *tensor.Tensor
}

// NewGroupNorm makes an unloaded affine GroupNorm.
func NewGroupNorm(groups, channels int, eps float64) *GroupNorm {
	return &GroupNorm{Groups: groups, Channels: channels, Eps: eps, Affine: true}
}

// Params registers weight and bias.
func (g *GroupNorm) Params(prefix string, p *Params) {
	if g.Affine {
		p.Add(prefix+"weight", []int{g.Channels}, &g.Weight)
		p.Add(prefix+"bias", []int{g.Channels}, &g.Bias)
	}
}

// Forward normalises x [N, C, ...].
func (g *GroupNorm) Forward(x *tensor.Tensor) *tensor.Tensor {
	return tensor.GroupNorm(x, g.Groups, g.Weight, g.Bias, g.Eps)
}

// ForwardAct is tensor.Activation(act, g.Forward(x)), fused into one pass
// when no gradient is needed (see tensor.GroupNormAct).
func (g *GroupNorm) ForwardAct(x *tensor.Tensor, act string) *tensor.Tensor {
	return tensor.GroupNormAct(x, g.Groups, g.Weight, g.Bias, g.Eps, act)
}

// LayerNorm normalises the last dimension.
type LayerNorm struct {
	Dim          int
	Eps          float64
	Affine, Bias bool
	Weight, B    *tensor.Tensor
}

// NewLayerNorm makes an unloaded LayerNorm with weight and bias.
func NewLayerNorm(dim int, eps float64) *LayerNorm {
	return &LayerNorm{Dim: dim, Eps: eps, Affine: true, Bias: true}
}

// Params registers weight and bias.
func (l *LayerNorm) Params(prefix string, p *Params) {
	if l.Affine {
		p.Add(prefix+"weight", []int{l.Dim}, &l.Weight)
		if l.Bias {
			p.Add(prefix+"bias", []int{l.Dim}, &l.B)
		}
	}
}

// Forward normalises x [..., Dim].
func (l *LayerNorm) Forward(x *tensor.Tensor) *tensor.Tensor {
	return tensor.LayerNorm(x, l.Weight, l.B, l.Eps)
}

// RMSNorm is T5-style root-mean-square normalisation.
type RMSNorm struct {
	Dim    int
	Eps    float64
	Weight *tensor.Tensor
}

// Params registers the weight.
func (r *RMSNorm) Params(prefix string, p *Params) { p.Add(prefix+"weight", []int{r.Dim}, &r.Weight) }

// Forward normalises x [..., Dim].
func (r *RMSNorm) Forward(x *tensor.Tensor) *tensor.Tensor { return tensor.RMSNorm(x, r.Weight, r.Eps) }

// Embedding is a lookup table [Num, Dim].
type Embedding struct {
	Num, Dim int
	Weight   *tensor.Tensor
}

// Params registers the table.
func (e *Embedding) Params(prefix string, p *Params) {
	p.Add(prefix+"weight", []int{e.Num, e.Dim}, &e.Weight)
}

// Forward looks up ids laid out in shape.
func (e *Embedding) Forward(ids []int64, shape ...int) (*tensor.Tensor, error) {
	return tensor.Embedding(e.Weight, ids, shape...)
}
