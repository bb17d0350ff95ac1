package tensor

import (
	"fmt"
	"math"
)

// normRows normalises each of rows rows of length l in x: (x-mean)·rstd, or
// x·rstd for RMS norm. It returns the normalised values and each row's rstd.
func normRows(x []float32, rows, l int, eps float64, rms bool) (xhat []float32, rstd []float32) {
	xhat = make([]float32, len(x))
	rstd = make([]float32, rows)
	parallelFor(rows, max(1, 4096/max(l, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := x[r*l : (r+1)*l]
			var mean float64
			if !rms {
				var s float64
				for _, v := range row {
					s += float64(v)
				}
				mean = s / float64(l)
			}
			var ss float64
			for _, v := range row {
				d := float64(v) - mean
				ss += d * d
			}
			rs := 1 / math.Sqrt(ss/float64(l)+eps)
			rstd[r] = float32(rs)
			dst := xhat[r*l : (r+1)*l]
			m32, r32 := float32(mean), float32(rs)
			for i, v := range row {
				dst[i] = (v - m32) * r32
			}
		}
	})
	return xhat, rstd
}

// normBackward turns the gradient w.r.t. xhat into the gradient w.r.t. x.
func normBackward(gxhat, xhat, rstd []float32, rows, l int, rms bool) []float32 {
	gx := make([]float32, len(gxhat))
	parallelFor(rows, max(1, 4096/max(l, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			g := gxhat[r*l : (r+1)*l]
			xh := xhat[r*l : (r+1)*l]
			var mg, mgx float64
			for i := range g {
				mg += float64(g[i])
				mgx += float64(g[i]) * float64(xh[i])
			}
			mg /= float64(l)
			mgx /= float64(l)
			if rms {
				mg = 0
			}
			rs := float64(rstd[r])
			dst := gx[r*l : (r+1)*l]
			for i := range g {
				dst[i] = float32(rs * (float64(g[i]) - mg - float64(xh[i])*mgx))
			}
		}
	})
	return gx
}

// normalize normalises x over rows of length l and applies the per-channel
// affine map (chanOf gives the channel of position i within a row, w/b may be nil).
func normalize(x, weight, bias *Tensor, rows, l int, eps float64, rms bool, chanLen int) *Tensor {
	xc := x.Float32().Contiguous()
	xs := xc.f32[xc.offset : xc.offset+xc.Numel()]
	xhat, rstd := normRows(xs, rows, l, eps, rms)
	var wd, bd []float32
	if weight != nil {
		wd = weight.Data()
	}
	if bias != nil {
		bd = bias.Data()
	}
	out := Zeros(x.shape...)
	o := out.f32
	// Position i of a row belongs to channel (i / chanLen) % channels.
	parallelFor(rows, 1, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			for i := 0; i < l; i++ {
				v := xhat[r*l+i]
				if wd != nil || bd != nil {
					c := (r*l + i) / chanLen % max(len(wd), len(bd))
					if wd != nil {
						v *= wd[c]
					}
					if bd != nil {
						v += bd[c]
					}
				}
				o[r*l+i] = v
			}
		}
	})
	record(out, []*Tensor{x, weight, bias}, func(g *Tensor) []*Tensor {
		gs := g.Data()
		nch := 0
		if wd != nil {
			nch = len(wd)
		} else if bd != nil {
			nch = len(bd)
		}
		var gw, gb *Tensor
		gxhat := gs
		if wd != nil {
			gxhat = make([]float32, len(gs))
			for i, v := range gs {
				gxhat[i] = v * wd[i/chanLen%nch]
			}
		}
		if weight != nil && weight.requiresGrad {
			acc := make([]float64, nch)
			for i, v := range gs {
				acc[i/chanLen%nch] += float64(v) * float64(xhat[i])
			}
			gw = Zeros(weight.shape...)
			for i, v := range acc {
				gw.f32[i] = float32(v)
			}
		}
		if bias != nil && bias.requiresGrad {
			acc := make([]float64, nch)
			for i, v := range gs {
				acc[i/chanLen%nch] += float64(v)
			}
			gb = Zeros(bias.shape...)
			for i, v := range acc {
				gb.f32[i] = float32(v)
			}
		}
		var gx *Tensor
		if x.requiresGrad {
			gx = FromSlice(normBackward(gxhat, xhat, rstd, rows, l, rms), x.shape...)
		}
		return []*Tensor{gx, gw, gb}
	})
	return out
}

// GroupNorm normalises x [N, C, ...] over groups of C/groups channels, then
// applies per-channel weight and bias (either may be nil).
func GroupNorm(x *Tensor, groups int, weight, bias *Tensor, eps float64) *Tensor {
	if x.Rank() < 2 || x.Dim(1)%groups != 0 {
		panic(fmt.Sprintf("tensor: GroupNorm of %v into %d groups", x.shape, groups))
	}
	n, c := x.Dim(0), x.Dim(1)
	spatial := x.Numel() / (n * c)
	return normalize(x, weight, bias, n*groups, c/groups*spatial, eps, false, spatial)
}

// LayerNorm normalises over the last dimension with optional weight and bias.
func LayerNorm(x, weight, bias *Tensor, eps float64) *Tensor {
	d := x.Dim(-1)
	return normalize(x, weight, bias, x.Numel()/d, d, eps, false, 1)
}

// RMSNorm scales by the root mean square over the last dimension (T5 style:
// no mean subtraction), then by weight (may be nil).
func RMSNorm(x, weight *Tensor, eps float64) *Tensor {
	d := x.Dim(-1)
	return normalize(x, weight, nil, x.Numel()/d, d, eps, true, 1)
}
