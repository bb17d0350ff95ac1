package nn

import (
	"github.com/diffuse-go/diffuse/tensor"
)

// ResnetConfig configures a ResnetBlock2D.
type ResnetConfig struct {
	In, Out        int
	TembChannels   int // 0: no time embedding (VAE)
	Groups         int
	GroupsOut      int // 0: Groups
	Eps            float64
	Act            string  // "silu"
	TimeScaleShift bool    // resnet_time_scale_shift == "scale_shift"
	OutputScale    float32 // output_scale_factor (0 means 1)
	SkipTimeAct    bool
	ConvShortcut   bool // force a 1x1 shortcut even when In == Out
}

// ResnetBlock2D is diffusers' ResnetBlock2D: norm, act, conv, add time
// embedding, norm, act, conv, plus a (1×1-projected) shortcut.
type ResnetBlock2D struct {
	Cfg          ResnetConfig
	Norm1, Norm2 *GroupNorm
	Conv1, Conv2 *Conv2d
	TimeEmbProj  *Linear
	Shortcut     *Conv2d
}

// NewResnetBlock2D builds an unloaded block.
func NewResnetBlock2D(c ResnetConfig) *ResnetBlock2D {
	if c.GroupsOut == 0 {
		c.GroupsOut = c.Groups
	}
	if c.Act == "" {
		c.Act = "silu"
	}
	r := &ResnetBlock2D{Cfg: c,
		Norm1: NewGroupNorm(c.Groups, c.In, c.Eps), Conv1: NewConv2d(c.In, c.Out, 3, 1, 1, true),
		Norm2: NewGroupNorm(c.GroupsOut, c.Out, c.Eps), Conv2: NewConv2d(c.Out, c.Out, 3, 1, 1, true)}
	if c.TembChannels > 0 {
		out := c.Out
		if c.TimeScaleShift {
			out *= 2
		}
		r.TimeEmbProj = NewLinear(c.TembChannels, out, true)
	}
	if c.In != c.Out || c.ConvShortcut {
		r.Shortcut = NewConv2d(c.In, c.Out, 1, 1, 0, true)
	}
	return r
}

// Params registers the weights.
func (r *ResnetBlock2D) Params(prefix string, p *Params) {
	r.Norm1.Params(prefix+"norm1.", p)
	r.Conv1.Params(prefix+"conv1.", p)
	if r.TimeEmbProj != nil {
		r.TimeEmbProj.Params(prefix+"time_emb_proj.", p)
	}
	r.Norm2.Params(prefix+"norm2.", p)
	r.Conv2.Params(prefix+"conv2.", p)
	if r.Shortcut != nil {
		r.Shortcut.Params(prefix+"conv_shortcut.", p)
	}
}

// Forward applies the block to x [B, In, H, W] with time embedding temb [B, T] (may be nil).
func (r *ResnetBlock2D) Forward(x, temb *tensor.Tensor) *tensor.Tensor {
	act := r.Cfg.Act
	h := r.Norm1.ForwardAct(x, act)
	h = r.Conv1.Forward(h)
	var scale, shift *tensor.Tensor
	if r.TimeEmbProj != nil && temb != nil {
		t := temb
		if !r.Cfg.SkipTimeAct {
			t = tensor.Activation(act, t)
		}
		t = r.TimeEmbProj.Forward(t)
		t = t.Reshape(t.Dim(0), t.Dim(1), 1, 1)
		if r.Cfg.TimeScaleShift {
			parts := t.Chunk(2, 1)
			scale, shift = parts[0], parts[1]
		} else {
			h = tensor.Add(h, t)
		}
	}
	if scale != nil {
		h = r.Norm2.Forward(h)
		h = tensor.Add(tensor.Mul(h, tensor.AddScalar(scale, 1)), shift)
		h = tensor.Activation(act, h)
	} else {
		h = r.Norm2.ForwardAct(h, act)
	}
	h = r.Conv2.Forward(h)
	sc := x
	if r.Shortcut != nil {
		sc = r.Shortcut.Forward(x)
	}
	out := tensor.Add(sc, h)
	if s := r.Cfg.OutputScale; s != 0 && s != 1 {
		out = tensor.Scale(out, 1/s)
	}
	return out
}

// Downsample2D halves the resolution with a stride-2 3×3 convolution
// (diffusers pads (0,1,0,1) first when padding is 0, as the VAE does).
type Downsample2D struct {
	Padding int
	Conv    *Conv2d
}

// NewDownsample2D builds downsamplers.0.
func NewDownsample2D(in, out, padding int) *Downsample2D {
	return &Downsample2D{Padding: padding, Conv: NewConv2d(in, out, 3, 2, padding, true)}
}

// Params registers conv.
func (d *Downsample2D) Params(prefix string, p *Params) { d.Conv.Params(prefix+"conv.", p) }

// Forward downsamples x.
func (d *Downsample2D) Forward(x *tensor.Tensor) *tensor.Tensor {
	if d.Padding == 0 {
		x = PadRightBottom(x)
	}
	return d.Conv.Forward(x)
}

// PadRightBottom zero-pads one row at the bottom and one column at the right.
func PadRightBottom(x *tensor.Tensor) *tensor.Tensor {
	b, c, h, w := x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3)
	x = tensor.Concat(3, x, tensor.Zeros(b, c, h, 1))
	return tensor.Concat(2, x, tensor.Zeros(b, c, 1, w+1))
}

// Upsample2D doubles the resolution (nearest) and applies a 3×3 convolution.
type Upsample2D struct {
	Conv *Conv2d
}

// NewUpsample2D builds upsamplers.0.
func NewUpsample2D(in, out int) *Upsample2D {
	return &Upsample2D{Conv: NewConv2d(in, out, 3, 1, 1, true)}
}

// Params registers conv.
func (u *Upsample2D) Params(prefix string, p *Params) { u.Conv.Params(prefix+"conv.", p) }

// Forward upsamples x to (h, w) when given (non-zero), else by 2.
func (u *Upsample2D) Forward(x *tensor.Tensor, h, w int) *tensor.Tensor {
	if h == 0 {
		h, w = 2*x.Dim(2), 2*x.Dim(3)
	}
	return u.Conv.Forward(tensor.UpsampleNearest(x, h, w))
}

// TimestepEmbedding is diffusers' TimestepEmbedding: linear_1, act, linear_2
// (with an optional cond_proj added to the input, as LCM uses).
type TimestepEmbedding struct {
	Act              string
	Linear1, Linear2 *Linear
	CondProj         *Linear
	PostAct          string
}

// NewTimestepEmbedding builds TimestepEmbedding(in, timeEmbedDim, act, out_dim, cond_proj_dim).
func NewTimestepEmbedding(in, dim, outDim, condProjDim int, act string) *TimestepEmbedding {
	if outDim == 0 {
		outDim = dim
	}
	if act == "" {
		act = "silu"
	}
	t := &TimestepEmbedding{Act: act, Linear1: NewLinear(in, dim, true), Linear2: NewLinear(dim, outDim, true)}
	if condProjDim > 0 {
		t.CondProj = NewLinear(condProjDim, in, false)
	}
	return t
}

// Params registers the weights.
func (t *TimestepEmbedding) Params(prefix string, p *Params) {
	t.Linear1.Params(prefix+"linear_1.", p)
	t.Linear2.Params(prefix+"linear_2.", p)
	if t.CondProj != nil {
		t.CondProj.Params(prefix+"cond_proj.", p)
	}
}

// Forward embeds x [B, in]; cond may be nil.
func (t *TimestepEmbedding) Forward(x, cond *tensor.Tensor) *tensor.Tensor {
	if cond != nil && t.CondProj != nil {
		x = tensor.Add(x, t.CondProj.Forward(cond))
	}
	h := t.Linear2.Forward(tensor.Activation(t.Act, t.Linear1.Forward(x)))
	if t.PostAct != "" {
		h = tensor.Activation(t.PostAct, h)
	}
	return h
}
