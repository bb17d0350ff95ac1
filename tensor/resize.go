package tensor

import "fmt"

// ResizeBilinear resizes x [N, C, H, W] to [N, C, oh, ow] with bilinear
// interpolation, as torch's F.interpolate(mode="bilinear") does on CPU:
// with alignCorners the corner pixels of input and output coincide (source
// position dst·(in-1)/(out-1)); without, pixel centres are aligned (source
// position (dst+0.5)·in/out - 0.5, clamped at 0). Scales, positions and
// weights are float32, and each output is
// wy0·(wx0·x[y0,x0] + wx1·x[y0,x1]) + wy1·(wx0·x[y1,x0] + wx1·x[y1,x1]).
func ResizeBilinear(x *Tensor, oh, ow int, alignCorners bool) *Tensor {
	if x.Rank() != 4 || oh <= 0 || ow <= 0 {
		panic(fmt.Sprintf("tensor: ResizeBilinear of %v to %d×%d", x.shape, oh, ow))
	}
	n, c, h, w := x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3)
	ys, xs := linearTaps(h, oh, alignCorners), linearTaps(w, ow, alignCorners)
	xc := x.Float32().Contiguous()
	src := xc.f32[xc.offset:]
	out := Zeros(n, c, oh, ow)
	parallelFor(n*c, 1, func(lo, hi int) {
		for p := lo; p < hi; p++ {
			s := src[p*h*w : (p+1)*h*w]
			d := out.f32[p*oh*ow : (p+1)*oh*ow]
			for y, ty := range ys {
				r0, r1 := s[ty.i0*w:], s[ty.i1*w:]
				row := d[y*ow : (y+1)*ow]
				for xx, tx := range xs {
					top := tx.w0*r0[tx.i0] + tx.w1*r0[tx.i1]
					bot := tx.w0*r1[tx.i0] + tx.w1*r1[tx.i1]
					row[xx] = ty.w0*top + ty.w1*bot
				}
			}
		}
	})
	record(out, []*Tensor{x}, func(g *Tensor) []*Tensor {
		gs := g.Contiguous().Data()
		gx := Zeros(n, c, h, w)
		for p := 0; p < n*c; p++ {
			gi := gx.f32[p*h*w : (p+1)*h*w]
			gp := gs[p*oh*ow : (p+1)*oh*ow]
			for y, ty := range ys {
				for xx, tx := range xs {
					v := gp[y*ow+xx]
					gi[ty.i0*w+tx.i0] += ty.w0 * tx.w0 * v
					gi[ty.i0*w+tx.i1] += ty.w0 * tx.w1 * v
					gi[ty.i1*w+tx.i0] += ty.w1 * tx.w0 * v
					gi[ty.i1*w+tx.i1] += ty.w1 * tx.w1 * v
				}
			}
		}
		return []*Tensor{gx}
	})
	return out
}

// linearTap is one output position of a linear resize: the two source
// indices and their weights.
type linearTap struct {
	i0, i1 int
	w0, w1 float32
}

// linearTaps computes torch's linear-interpolation indices and weights for
// resizing in positions to out (area_pixel_compute_scale /
// area_pixel_compute_source_index, in float32).
func linearTaps(in, out int, alignCorners bool) []linearTap {
	taps := make([]linearTap, out)
	var scale float32
	switch {
	case alignCorners && out > 1:
		scale = float32(in-1) / float32(out-1)
	case !alignCorners:
		scale = float32(in) / float32(out)
	}
	for i := range taps {
		var pos float32
		if alignCorners {
			pos = scale * float32(i)
		} else {
			pos = max(scale*(float32(i)+0.5)-0.5, 0)
		}
		i0 := min(int(pos), in-1) // pos >= 0: truncation is floor
		i1 := i0
		if i0 < in-1 {
			i1 = i0 + 1
		}
		l1 := min(max(pos-float32(i0), 0), 1)
		taps[i] = linearTap{i0: i0, i1: i1, w0: 1 - l1, w1: l1}
	}
	return taps
}
