package tensor

import (
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/tensor/vec"
)

// normBlock is the length of the float32 partial sums normRows takes with
// vec.Sum and vec.Dot before accumulating them in float64.
const normBlock = 256

// normRows normalises each of rows rows of length l of x into xhat:
// (x-mean)·rstd, or x·rstd for RMS norm. It returns xhat (dst when it is
// non-nil, else a new slice) and each row's rstd.
//
// Sums are float32 over blocks of normBlock (vec kernels), float64 across
// blocks. The mean is corrected in a second pass over the deviations
// d = x - mean, which are small when the row is, so a row far from zero
// (|mean| ≫ std) keeps full precision: mean' = mean + Σd/l and
// var = Σd²/l - (Σd/l)².
func normRows(x, dst []float32, rows, l int, eps float64, rms bool) (xhat []float32, rstd []float32) {
	xhat = dst
	if xhat == nil {
		xhat = make([]float32, len(x))
	}
	rstd = make([]float32, rows)
	parallelFor(rows, max(1, 4096/max(l, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := x[r*l : (r+1)*l]
			d := xhat[r*l : (r+1)*l]
			if rms {
				var ss float64
				for b := 0; b < l; b += normBlock {
					blk := row[b:min(b+normBlock, l)]
					ss += float64(vec.Dot(blk, blk))
				}
				rs := 1 / math.Sqrt(ss/float64(l)+eps)
				rstd[r] = float32(rs)
				r32 := float32(rs)
				for i, v := range row {
					d[i] = v * r32
				}
				continue
			}
			var s float64
			for b := 0; b < l; b += normBlock {
				s += float64(vec.Sum(row[b:min(b+normBlock, l)]))
			}
			mean := s / float64(l)
			// The mean as two float32s: v-mhi is exact when v is near it.
			mhi := float32(mean)
			mlo := float32(mean - float64(mhi))
			var s1, s2 float64
			for b := 0; b < l; b += normBlock {
				e := min(b+normBlock, l)
				db := d[b:e]
				for i, v := range row[b:e] {
					db[i] = v - mhi - mlo
				}
				s1 += float64(vec.Sum(db))
				s2 += float64(vec.Dot(db, db))
			}
			c := s1 / float64(l)
			variance := max(s2/float64(l)-c*c, 0)
			rs := 1 / math.Sqrt(variance+eps)
			rstd[r] = float32(rs)
			c32, r32 := float32(c), float32(rs)
			for i, v := range d {
				d[i] = (v - c32) * r32
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
// affine map: position i of the flattened tensor belongs to channel
// (i / chanLen) % channels (w/b may be nil).
func normalize(x, weight, bias *Tensor, rows, l int, eps float64, rms bool, chanLen int) *Tensor {
	xc := x.Float32().Contiguous()
	xs := xc.f32[xc.offset : xc.offset+xc.Numel()]
	out := Zeros(x.shape...)
	o := out.f32
	_, rstd := normRows(xs, o, rows, l, eps, rms)
	var wd, bd []float32
	if weight != nil {
		wd = weight.Data()
	}
	if bias != nil {
		bd = bias.Data()
	}
	xhat := o
	grad := anyRequiresGrad([]*Tensor{x, weight, bias})
	if grad && (wd != nil || bd != nil) {
		xhat = append([]float32(nil), o...) // kept for the backward pass
	}
	if wd != nil || bd != nil {
		nch := max(len(wd), len(bd))
		parallelFor(rows, max(1, 4096/max(l, 1)), func(lo, hi int) {
			if chanLen == 1 && l == nch { // LayerNorm: the row is the channels
				for r := lo; r < hi; r++ {
					affineRow(o[r*l:(r+1)*l], wd, bd)
				}
				return
			}
			// Walk the rows' elements in runs of one channel.
			for p := lo * l; p < hi*l; {
				c := p / chanLen % nch
				e := min((p/chanLen+1)*chanLen, hi*l)
				seg := o[p:e]
				switch {
				case wd != nil && bd != nil:
					w, b := wd[c], bd[c]
					for i, v := range seg {
						seg[i] = v*w + b
					}
				case wd != nil:
					vec.Scale(seg, wd[c])
				default:
					b := bd[c]
					for i, v := range seg {
						seg[i] = v + b
					}
				}
				p = e
			}
		})
	}
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
	if !anyRequiresGrad([]*Tensor{x, weight, bias}) {
		return groupNormFused(x, groups, weight, bias, eps, false)
	}
	return normalize(x, weight, bias, n*groups, c/groups*spatial, eps, false, spatial)
}

// GroupNormAct is Activation(act, GroupNorm(x, groups, weight, bias, eps)),
// act "" meaning none. For act "silu" (or none) with no input requiring
// gradients it runs fused: the statistics are read from x, then one pass
// writes the normalised, affine-mapped and activated output, with no
// intermediate tensor. Otherwise it records the unfused ops.
func GroupNormAct(x *Tensor, groups int, weight, bias *Tensor, eps float64, act string) *Tensor {
	silu := act == "silu" || act == "swish"
	if act != "" && !silu || anyRequiresGrad([]*Tensor{x, weight, bias}) {
		h := GroupNorm(x, groups, weight, bias, eps)
		if act != "" {
			h = Activation(act, h)
		}
		return h
	}
	if x.Rank() < 2 || x.Dim(1)%groups != 0 {
		panic(fmt.Sprintf("tensor: GroupNorm of %v into %d groups", x.shape, groups))
	}
	return groupNormFused(x, groups, weight, bias, eps, silu)
}

// groupNormFused is the inference GroupNorm (and SiLU): per group, a pass for
// the mean and one for the variance of the deviations (as normRows: float32
// sums over normBlock values, float64 across them, the mean corrected by the
// deviations' mean), then vec.NormAffine over each channel's plane.
func groupNormFused(x *Tensor, groups int, weight, bias *Tensor, eps float64, silu bool) *Tensor {
	n, c := x.Dim(0), x.Dim(1)
	spatial := x.Numel() / (n * c)
	cg := c / groups
	l := cg * spatial
	xc := x.Float32().Contiguous()
	xs := xc.f32[xc.offset : xc.offset+xc.Numel()]
	out := Zeros(x.shape...)
	o := out.f32
	var wd, bd []float32
	if weight != nil {
		wd = weight.Data()
	}
	if bias != nil {
		bd = bias.Data()
	}
	// Rows are (image, group) pairs.
	parallelFor(n*groups, max(1, 4096/max(l, 1)), func(lo, hi int) {
		var tmp [normBlock]float32
		for r := lo; r < hi; r++ {
			row := xs[r*l : (r+1)*l]
			mhi, lo2, rs := rowMoments(row, eps, &tmp)
			for ci := 0; ci < cg; ci++ {
				ch := r%groups*cg + ci
				a, b := float32(rs), float32(0)
				if wd != nil {
					a = float32(rs * float64(wd[ch]))
				}
				if bd != nil {
					b = bd[ch]
				}
				seg := row[ci*spatial : (ci+1)*spatial]
				vec.NormAffine(o[r*l+ci*spatial:r*l+(ci+1)*spatial], seg, mhi, lo2, a, b, silu)
			}
		}
	})
	return out
}

// rowMoments returns the mean of row as mhi + mlo (two float32s, so that
// values near a large mean keep their precision in x - mhi - mlo) and
// 1/√(variance + eps). As normRows: float32 sums over normBlock values
// (tmp holds one block's deviations), float64 across them, and the mean
// corrected by the mean of the deviations from its first estimate.
func rowMoments(row []float32, eps float64, tmp *[normBlock]float32) (mhi, mlo float32, rs float64) {
	l := len(row)
	var s float64
	for b := 0; b < l; b += normBlock {
		s += float64(vec.Sum(row[b:min(b+normBlock, l)]))
	}
	mean := s / float64(l)
	mhi = float32(mean)
	mlo = float32(mean - float64(mhi))
	var s1, s2 float64
	for b := 0; b < l; b += normBlock {
		d := tmp[:min(normBlock, l-b)]
		vec.NormAffine(d, row[b:b+len(d)], mhi, mlo, 1, 0, false)
		s1 += float64(vec.Sum(d))
		s2 += float64(vec.Dot(d, d))
	}
	cm := s1 / float64(l)
	variance := max(s2/float64(l)-cm*cm, 0)
	return mhi, float32(float64(mlo) + cm), 1 / math.Sqrt(variance+eps)
}

// LayerNorm normalises over the last dimension with optional weight and bias.
func LayerNorm(x, weight, bias *Tensor, eps float64) *Tensor {
	d := x.Dim(-1)
	if weight != nil && bias != nil && !anyRequiresGrad([]*Tensor{x, weight, bias}) {
		return layerNormFused(x, weight, bias, eps)
	}
	return normalize(x, weight, bias, x.Numel()/d, d, eps, false, 1)
}

// layerNormFused is the inference LayerNorm with weight and bias: the
// statistics of each row as groupNormFused takes them, then one vector pass
// (vec.NormAffineRow) that writes the normalised, affine-mapped row, where
// normalize makes three scalar passes and keeps x̂ for a backward pass.
func layerNormFused(x, weight, bias *Tensor, eps float64) *Tensor {
	l := x.Dim(-1)
	wd, bd := weight.Data(), bias.Data()
	if len(wd) != l || len(bd) != l {
		panic(fmt.Sprintf("tensor: LayerNorm of %v with weight %v, bias %v", x.shape, weight.shape, bias.shape))
	}
	xc := x.Float32().Contiguous()
	xs := xc.f32[xc.offset : xc.offset+xc.Numel()]
	out := Zeros(x.shape...)
	o := out.f32
	parallelFor(len(o)/max(l, 1), max(1, 4096/max(l, 1)), func(lo, hi int) {
		var tmp [normBlock]float32
		for r := lo; r < hi; r++ {
			row := xs[r*l : (r+1)*l]
			mhi, mlo, rs := rowMoments(row, eps, &tmp)
			vec.NormAffineRow(o[r*l:(r+1)*l], row, mhi, mlo, float32(rs), wd, bd)
		}
	})
	return out
}

// RMSNorm scales by the root mean square over the last dimension (T5 style:
// no mean subtraction), then by weight (may be nil).
func RMSNorm(x, weight *Tensor, eps float64) *Tensor {
	d := x.Dim(-1)
	return normalize(x, weight, nil, x.Numel()/d, d, eps, true, 1)
}

// affineRow sets o[i] = o[i]·w[i] + b[i] (w or b may be nil).
func affineRow(o, w, b []float32) {
	switch {
	case w != nil && b != nil:
		w, b = w[:len(o)], b[:len(o)]
		for i, v := range o {
			o[i] = v*w[i] + b[i]
		}
	case w != nil:
		w = w[:len(o)]
		for i, v := range o {
			o[i] = v * w[i]
		}
	default:
		b = b[:len(o)]
		for i, v := range o {
			o[i] = v + b[i]
		}
	}
}
