package pipeline

import (
	"fmt"

	"github.com/diffuse-go/diffuse/model/controlnet"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/tensor"
)

// AdapterFunc adds adapter residuals to the UNet conditioning of one step
// (Request.Adapter has this type).
type AdapterFunc = func(step, total int, t float64, x *tensor.Tensor, cond *unet.Cond) error

// ControlNetUnit is one ControlNet with its condition image and settings.
type ControlNetUnit struct {
	Net *controlnet.Model
	// Image is the condition image [B, H, W, 3] in [0, 1] at the output
	// size (B = 1 is broadcast over the batch).
	Image *tensor.Tensor
	// Scale is controlnet_conditioning_scale.
	Scale float32
	// Start and End are control_guidance_start/end as fractions of the
	// steps (End 0 means 1).
	Start, End float64
	// GuessMode runs the net on the conditional rows only and scales the
	// residuals from 0.1 to 1 (diffusers' guess_mode).
	GuessMode bool
}

// keep reports whether step i of n lies inside the unit's guidance window
// (diffusers: dropped when i/n < start or (i+1)/n > end).
func (u ControlNetUnit) keep(i, n int) bool {
	end := u.End
	if end == 0 {
		end = 1
	}
	return !(float64(i)/float64(n) < u.Start || float64(i+1)/float64(n) > end)
}

// nchwRows converts an NHWC image to NCHW and repeats its rows to n.
func nchwRows(img *tensor.Tensor, n int) (*tensor.Tensor, error) {
	if img == nil || img.Rank() != 4 || img.Dim(3) != 3 {
		return nil, fmt.Errorf("pipeline: control image shape %v, want [B, H, W, 3]", shapeOf(img))
	}
	x := img.Permute(0, 3, 1, 2).Contiguous()
	b := x.Dim(0)
	switch {
	case b == n:
		return x, nil
	case n%b == 0:
		return repeatRows(x, n/b), nil
	}
	return nil, fmt.Errorf("pipeline: %d control images for a batch of %d", b, n)
}

func shapeOf(t *tensor.Tensor) []int {
	if t == nil {
		return nil
	}
	return t.Shape()
}

// ControlNets returns the step hook that runs every unit and sums their
// residuals, as MultiControlNet does. cfg says the UNet batch holds the
// unconditional rows first. A unit outside its window still runs with
// scale 0, as diffusers does. onScales, when set, sees each step's scales.
func ControlNets(units []ControlNetUnit, cfg bool, onScales func(step int, scales []float32)) AdapterFunc {
	return func(step, total int, t float64, x *tensor.Tensor, cond *unet.Cond) error {
		var sum *controlnet.Residuals
		scales := make([]float32, len(units))
		for k, u := range units {
			s := u.Scale
			if !u.keep(step, total) {
				s = 0
			}
			scales[k] = s
			in, ehs := x, cond.EncoderHiddenStates
			n := x.Dim(0)
			if u.GuessMode && cfg {
				// Only the conditional half; zeros for the unconditional one.
				in, ehs = x.Narrow(0, n/2, n/2), ehs.Narrow(0, n/2, n/2)
			}
			img, err := nchwRows(u.Image, in.Dim(0))
			if err != nil {
				return err
			}
			c := unet.Cond{EncoderHiddenStates: ehs, EncoderMask: cond.EncoderMask, TextEmbeds: cond.TextEmbeds, TimeIDs: cond.TimeIDs}
			if u.GuessMode && cfg {
				if c.TextEmbeds != nil {
					c.TextEmbeds = c.TextEmbeds.Narrow(0, n/2, n/2)
				}
				if c.TimeIDs != nil {
					c.TimeIDs = c.TimeIDs.Narrow(0, n/2, n/2)
				}
			}
			res, err := u.Net.Forward(in, []float32{float32(t)}, c, img, s, u.GuessMode)
			if err != nil {
				return err
			}
			if u.GuessMode && cfg {
				for i, d := range res.Down {
					res.Down[i] = tensor.Concat(0, tensor.Zeros(d.Shape()...), d)
				}
				res.Mid = tensor.Concat(0, tensor.Zeros(res.Mid.Shape()...), res.Mid)
			}
			if sum == nil {
				sum = res
			} else if err := sum.Add(res); err != nil {
				return fmt.Errorf("ControlNet %d: %w", k, err)
			}
		}
		if onScales != nil {
			onScales(step, scales)
		}
		if sum != nil {
			cond.DownBlockAdditionalResiduals = sum.Down
			cond.MidBlockAdditionalResidual = sum.Mid
		}
		return nil
	}
}

// T2IAdapter returns the step hook that feeds precomputed (already scaled)
// T2I-Adapter features to the UNet for the first factor of the steps
// (adapter_conditioning_factor; 0 means 1). Features computed for B images
// are repeated to the UNet batch (CFG rows get the same features).
func T2IAdapter(features []*tensor.Tensor, factor float64) AdapterFunc {
	if factor == 0 {
		factor = 1
	}
	return func(step, total int, t float64, x *tensor.Tensor, cond *unet.Cond) error {
		if step >= int(float64(total)*factor) {
			return nil
		}
		n := x.Dim(0)
		out := make([]*tensor.Tensor, len(features))
		for i, f := range features {
			b := f.Dim(0)
			switch {
			case b == n:
				out[i] = f
			case n%b == 0:
				// [f, f] for CFG (and per-image repeats).
				parts := make([]*tensor.Tensor, n/b)
				for j := range parts {
					parts[j] = f
				}
				out[i] = tensor.Concat(0, parts...)
			default:
				return fmt.Errorf("pipeline: adapter features of batch %d for a UNet batch of %d", b, n)
			}
		}
		cond.DownIntrablockAdditionalResidual = out
		return nil
	}
}
