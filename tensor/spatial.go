package tensor

import (
	"fmt"
	"math"
)

// UpsampleNearest resizes x [N, C, H, W] to [N, C, oh, ow] with nearest
// neighbour (torch's "nearest": source index floor(dst * in/out), computed in
// float32 as torch does).
func UpsampleNearest(x *Tensor, oh, ow int) *Tensor {
	n, c, h, w := x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3)
	xc := x.Float32().Contiguous()
	xs := xc.f32[xc.offset:]
	out := Zeros(n, c, oh, ow)
	sy, sx := nearestIndex(h, oh), nearestIndex(w, ow)
	parallelFor(n*c, 1, func(lo, hi int) {
		for p := lo; p < hi; p++ {
			src := xs[p*h*w:]
			dst := out.f32[p*oh*ow:]
			for y := 0; y < oh; y++ {
				row := src[sy[y]*w:]
				d := dst[y*ow : (y+1)*ow]
				for xx := range d {
					d[xx] = row[sx[xx]]
				}
			}
		}
	})
	record(out, []*Tensor{x}, func(g *Tensor) []*Tensor {
		gs := g.Data()
		gx := Zeros(n, c, h, w)
		for p := 0; p < n*c; p++ {
			for y := 0; y < oh; y++ {
				for xx := 0; xx < ow; xx++ {
					gx.f32[p*h*w+sy[y]*w+sx[xx]] += gs[p*oh*ow+y*ow+xx]
				}
			}
		}
		return []*Tensor{gx}
	})
	return out
}

// nearestIndex gives the source index of each of out positions resized from
// in, exactly as torch's nearest_idx: the scale in/out and its product with
// the position are float32, so the floor can land one below the exact
// floor(i·in/out) (e.g. in 2, out 82, position 41 reads index 0).
func nearestIndex(in, out int) []int {
	idx := make([]int, out)
	scale := float32(in) / float32(out)
	for i := range idx {
		switch {
		case out == in:
			idx[i] = i
		case out == 2*in:
			idx[i] = i >> 1
		default:
			idx[i] = min(int(float32(i)*scale), in-1) // non-negative: truncation is floor
		}
	}
	return idx
}

// AvgPool2d averages k×k windows with the given stride (no padding).
func AvgPool2d(x *Tensor, k, stride int) *Tensor {
	n, c, h, w := x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3)
	oh, ow := (h-k)/stride+1, (w-k)/stride+1
	xc := x.Float32().Contiguous()
	xs := xc.f32[xc.offset:]
	out := Zeros(n, c, oh, ow)
	inv := 1 / float32(k*k)
	parallelFor(n*c, 1, func(lo, hi int) {
		for p := lo; p < hi; p++ {
			for y := 0; y < oh; y++ {
				for xx := 0; xx < ow; xx++ {
					var s float32
					for dy := 0; dy < k; dy++ {
						for dx := 0; dx < k; dx++ {
							s += xs[p*h*w+(y*stride+dy)*w+xx*stride+dx]
						}
					}
					out.f32[p*oh*ow+y*ow+xx] = s * inv
				}
			}
		}
	})
	record(out, []*Tensor{x}, func(g *Tensor) []*Tensor {
		gs := g.Data()
		gx := Zeros(n, c, h, w)
		for p := 0; p < n*c; p++ {
			for y := 0; y < oh; y++ {
				for xx := 0; xx < ow; xx++ {
					v := gs[p*oh*ow+y*ow+xx] * inv
					for dy := 0; dy < k; dy++ {
						for dx := 0; dx < k; dx++ {
							gx.f32[p*h*w+(y*stride+dy)*w+xx*stride+dx] += v
						}
					}
				}
			}
		}
		return []*Tensor{gx}
	})
	return out
}

// PixelUnshuffle turns [N, C, H·r, W·r] into [N, C·r², H, W] (torch order:
// output channel = c·r² + dy·r + dx).
func PixelUnshuffle(x *Tensor, r int) *Tensor {
	n, c, h, w := x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3)
	if h%r != 0 || w%r != 0 {
		panic(fmt.Sprintf("tensor: PixelUnshuffle(%d) of %v", r, x.shape))
	}
	return x.Reshape(n, c, h/r, r, w/r, r).Permute(0, 1, 3, 5, 2, 4).Reshape(n, c*r*r, h/r, w/r)
}

// PixelShuffle is the inverse of PixelUnshuffle.
func PixelShuffle(x *Tensor, r int) *Tensor {
	n, c, h, w := x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3)
	return x.Reshape(n, c/(r*r), r, r, h, w).Permute(0, 1, 4, 2, 5, 3).Reshape(n, c/(r*r), h*r, w*r)
}

// Embedding looks up rows of table [V, D] for integer ids, giving [ids..., D].
func Embedding(table *Tensor, ids []int64, shape ...int) (*Tensor, error) {
	V, D := table.Dim(0), table.Dim(1)
	tc := table.Contiguous()
	out := Zeros(append(cloneInts(shape), D)...)
	if len(ids) != numel(shape) {
		return nil, fmt.Errorf("tensor: Embedding: %d ids for shape %v", len(ids), shape)
	}
	for i, id := range ids {
		if id < 0 || int(id) >= V {
			return nil, fmt.Errorf("tensor: Embedding: id %d out of range [0, %d)", id, V)
		}
		dst := out.f32[i*D : (i+1)*D]
		for j := range dst {
			dst[j] = tc.at(tc.offset + int(id)*D + j)
		}
	}
	record(out, []*Tensor{table}, func(g *Tensor) []*Tensor {
		gs := g.Data()
		gt := Zeros(V, D)
		for i, id := range ids {
			for j := 0; j < D; j++ {
				gt.f32[int(id)*D+j] += gs[i*D+j]
			}
		}
		return []*Tensor{gt}
	})
	return out, nil
}

// TimestepEmbedding is diffusers' get_timestep_embedding: for each timestep
// t, [sin(t·f), cos(t·f)] with f_i = exp(-ln(maxPeriod)·i/(half-shift)),
// swapped to [cos, sin] when flipSinToCos. Computed as torch does in float32.
func TimestepEmbedding(timesteps []float32, dim int, flipSinToCos bool, shift float64, scale float64, maxPeriod float64) *Tensor {
	halfDim := dim / 2
	freqs := make([]float32, halfDim)
	for i := range freqs {
		// exponent = -ln(max_period) * arange(half) / (half - shift), in float32
		e := float32(-math.Log(maxPeriod)) * float32(i)
		e /= float32(float64(halfDim) - shift)
		freqs[i] = float32(math.Exp(float64(e)))
	}
	out := Zeros(len(timesteps), dim)
	for r, t := range timesteps {
		row := out.f32[r*dim : (r+1)*dim]
		for i, f := range freqs {
			arg := t * f
			arg *= float32(scale)
			s := float32(math.Sin(float64(arg)))
			c := float32(math.Cos(float64(arg)))
			if flipSinToCos {
				row[i], row[halfDim+i] = c, s
			} else {
				row[i], row[halfDim+i] = s, c
			}
		}
	}
	return out
}

// ApplyRotary rotates pairs of channels of x [..., L, D] by per-position
// angles: out = x·cos + rotate_half(x)·sin, where cos and sin are [L, D]
// and rotate_half pairs (x0, x1) -> (-x1, x0) on interleaved channels when
// interleaved, else on the two halves.
func ApplyRotary(x, cos, sin *Tensor, interleaved bool) *Tensor {
	D := x.Dim(-1)
	var rot *Tensor
	if interleaved {
		L := x.Numel() / D
		pairs := x.Reshape(L, D/2, 2)
		a, b := pairs.Narrow(2, 0, 1), pairs.Narrow(2, 1, 1)
		rot = Concat(2, Neg(b), a).Reshape(x.shape...)
	} else {
		a, b := x.Narrow(-1, 0, D/2), x.Narrow(-1, D/2, D/2)
		rot = Concat(x.Rank()-1, Neg(b), a)
	}
	return Add(Mul(x, cos), Mul(rot, sin))
}
