package tensor

// Sum returns the sum of all elements as a 0-d tensor (accumulated in float64).
func Sum(a *Tensor) *Tensor {
	x := a.Data()
	var s float64
	for _, v := range x {
		s += float64(v)
	}
	out := Scalar(float32(s))
	shape := a.shape
	record(out, []*Tensor{a}, func(g *Tensor) []*Tensor {
		return []*Tensor{Full(g.Item(), shape...)}
	})
	return out
}

// Mean returns the mean of all elements.
func Mean(a *Tensor) *Tensor {
	return Scale(Sum(a), 1/float32(max(a.Numel(), 1)))
}

// SumDim sums over one dimension (kept as size 1 when keep).
func SumDim(a *Tensor, dim int, keep bool) *Tensor {
	dim = normDim(dim, len(a.shape))
	c := a.Float32().Contiguous()
	x := c.f32[c.offset : c.offset+c.Numel()]
	outer, n, inner := splitDims(a.shape, dim)
	oshape := cloneInts(a.shape)
	oshape[dim] = 1
	out := Zeros(oshape...)
	o := out.f32
	parallelFor(outer, 1, func(lo, hi int) {
		acc := make([]float64, inner)
		for i := lo; i < hi; i++ {
			for j := range acc {
				acc[j] = 0
			}
			for k := 0; k < n; k++ {
				row := x[(i*n+k)*inner : (i*n+k+1)*inner]
				for j, v := range row {
					acc[j] += float64(v)
				}
			}
			for j, v := range acc {
				o[i*inner+j] = float32(v)
			}
		}
	})
	if !keep {
		out = out.Squeeze(dim)
	}
	shape := a.shape
	record(out, []*Tensor{a}, func(g *Tensor) []*Tensor {
		if !keep {
			g = g.Unsqueeze(dim)
		}
		return []*Tensor{g.Expand(shape...)}
	})
	return out
}

// MeanDim averages over one dimension.
func MeanDim(a *Tensor, dim int, keep bool) *Tensor {
	return Scale(SumDim(a, dim, keep), 1/float32(a.Dim(dim)))
}

// splitDims returns (product of dims before d, dim d, product after d).
func splitDims(shape []int, d int) (outer, n, inner int) {
	outer, inner = 1, 1
	for i := 0; i < d; i++ {
		outer *= shape[i]
	}
	for i := d + 1; i < len(shape); i++ {
		inner *= shape[i]
	}
	return outer, shape[d], inner
}

// ArgMax returns the index of the largest value along the last dimension.
func ArgMax(a *Tensor) []int {
	x := a.Data()
	n := a.Dim(-1)
	out := make([]int, len(x)/n)
	for r := range out {
		row := x[r*n : (r+1)*n]
		best := 0
		for j, v := range row {
			if v > row[best] {
				best = j
			}
		}
		out[r] = best
	}
	return out
}
