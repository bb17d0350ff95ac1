package nn

import "github.com/diffuse-go/diffuse/tensor"

// ResampleResnet is diffusers' ResnetBlock2D built with up=True or
// down=True (no FIR kernel), the down/upsampler of the UnCLIP / DeepFloyd IF
// blocks (ResnetDownsampleBlock2D, SimpleCrossAttn*Block2D,
// ResnetUpsampleBlock2D): after norm1 and the activation, both the hidden
// states and the shortcut input are resampled, by a 2×2 average pool (down)
// or a 2× nearest upsample (up), before conv1. Its weights are those of a
// plain ResnetBlock2D.
type ResampleResnet struct {
	*ResnetBlock2D
	Up bool // true: upsample; false: downsample
}

// NewResampleResnet builds an unloaded up (up true) or down resampling block.
func NewResampleResnet(c ResnetConfig, up bool) *ResampleResnet {
	return &ResampleResnet{ResnetBlock2D: NewResnetBlock2D(c), Up: up}
}

// resample applies the block's up or down sampling to x [B, C, H, W].
func (r *ResampleResnet) resample(x *tensor.Tensor) *tensor.Tensor {
	if r.Up {
		return tensor.UpsampleNearest(x, 2*x.Dim(2), 2*x.Dim(3))
	}
	return tensor.AvgPool2d(x, 2, 2)
}

// Forward applies the block to x [B, In, H, W] with time embedding temb
// [B, T] (may be nil), giving [B, Out, 2H, 2W] (up) or [B, Out, H/2, W/2]
// (down).
func (r *ResampleResnet) Forward(x, temb *tensor.Tensor) *tensor.Tensor {
	act := r.Cfg.Act
	h := r.resample(tensor.Activation(act, r.Norm1.Forward(x)))
	x = r.resample(x)
	h = r.Conv1.Forward(h)
	if r.TimeEmbProj != nil && temb != nil {
		t := temb
		if !r.Cfg.SkipTimeAct {
			t = tensor.Activation(act, t)
		}
		t = r.TimeEmbProj.Forward(t)
		t = t.Reshape(t.Dim(0), t.Dim(1), 1, 1)
		if r.Cfg.TimeScaleShift {
			parts := t.Chunk(2, 1)
			h = r.Norm2.Forward(h)
			h = tensor.Add(tensor.Mul(h, tensor.AddScalar(parts[0], 1)), parts[1])
		} else {
			h = r.Norm2.Forward(tensor.Add(h, t))
		}
	} else {
		h = r.Norm2.Forward(h)
	}
	h = r.Conv2.Forward(tensor.Activation(act, h))
	if r.Shortcut != nil {
		x = r.Shortcut.Forward(x)
	}
	out := tensor.Add(x, h)
	if s := r.Cfg.OutputScale; s != 0 && s != 1 {
		out = tensor.Scale(out, 1/s)
	}
	return out
}
