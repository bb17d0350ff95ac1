// Package vec holds float32 kernels for the tensor package's non-GEMM hot
// loops: exp, softmax rows, SiLU, GELU and the basic BLAS-1 reductions.
//
// Every kernel has a pure Go version (always built, and the reference the
// tests hold the assembly to); on amd64 with AVX2 and FMA, Exp, SoftmaxRow,
// SiLU, Sigmoid, GELU, GELUMul, GELUTanh, Sum, Dot, Axpy, Scale and the
// column and normalisation kernels run AVX2 assembly instead. Where the
// CPU also has AVX-512F, Exp, SoftmaxRow (Max, ExpSubSum), SiLU, Sigmoid,
// GELU, GELUMul, GELUTanh, Sum, Dot, Axpy and Scale run 16-lane AVX-512
// versions of the same code (bit-identical per element to the AVX2 ones;
// sums differ only in how their partial sums are grouped).
//
// Accuracy: Exp is within 2 ulp of the correctly rounded result over the
// whole float32 range (subnormal results included; large negative inputs
// give 0, large positive +Inf, NaN stays NaN). Erf is within 1e-7 absolute
// of math.Erf. Sums accumulate in float32 across several independent
// partial sums; callers that need more take them in blocks.
package vec

// blk is the element count of the stack buffers used to hand a ragged tail
// to the 8-wide kernels.
const blk = 8

// Exp sets dst[i] = e^src[i] for i < len(src). dst must be at least as long
// as src; it may be src itself.
func Exp(dst, src []float32) {
	dst = dst[:len(src)]
	if useAVX512 {
		if len(src) > 0 {
			expAVX512(&dst[0], &src[0], len(src))
		}
		return
	}
	if useAVX2 {
		tail8(dst, src, expAVX2)
		return
	}
	expGeneric(dst, src)
}

// Sigmoid sets dst[i] = 1/(1+e^-src[i]).
func Sigmoid(dst, src []float32) {
	dst = dst[:len(src)]
	if useAVX512 {
		if len(src) > 0 {
			sigmoidAVX512(&dst[0], &src[0], len(src))
		}
		return
	}
	if useAVX2 {
		tail8(dst, src, sigmoidAVX2)
		return
	}
	sigmoidGeneric(dst, src)
}

// SiLU sets dst[i] = src[i]·sigmoid(src[i]) = src[i]/(1+e^-src[i]).
func SiLU(dst, src []float32) {
	dst = dst[:len(src)]
	if useAVX512 {
		if len(src) > 0 {
			siluAVX512(&dst[0], &src[0], len(src))
		}
		return
	}
	if useAVX2 {
		tail8(dst, src, siluAVX2)
		return
	}
	siluGeneric(dst, src)
}

// SoftmaxRow replaces row with its softmax: e^(x-max) / Σ e^(x-max). A row
// whose entries are all -Inf (fully masked) becomes all zeros rather than
// NaN.
func SoftmaxRow(row []float32) {
	if len(row) == 0 {
		return
	}
	m := Max(row)
	if m < -maxFloat32 { // -Inf: every entry masked
		clear(row)
		return
	}
	s := ExpSubSum(row, m)
	Scale(row, 1/s)
}

const maxFloat32 = 3.40282346638528859811704183484516925440e+38

// Max returns the largest element of x (-Inf for an empty x). NaNs are
// skipped unless every element is NaN.
func Max(x []float32) float32 {
	if useAVX512 && len(x) > 0 {
		return maxAVX512(&x[0], len(x))
	}
	if useAVX2 && len(x) >= 8 {
		n := len(x) &^ 7
		m := maxAVX2(&x[0], n)
		for _, v := range x[n:] {
			if v > m {
				m = v
			}
		}
		return m
	}
	return maxGeneric(x)
}

// ExpSubSum replaces x[i] with e^(x[i]-m) and returns the sum of the new
// values.
func ExpSubSum(x []float32, m float32) float32 {
	if useAVX512 && len(x) > 0 {
		return expSubSumAVX512(&x[0], len(x), m)
	}
	if useAVX2 && len(x) >= 8 {
		n := len(x) &^ 7
		s := expSubSumAVX2(&x[0], n, m)
		return s + expSubSumGeneric(x[n:], m)
	}
	return expSubSumGeneric(x, m)
}

// Sum returns Σ x[i], accumulated in float32 in 64 (AVX-512), 32 (AVX2)
// or 8 (Go) independent partial sums.
func Sum(x []float32) float32 {
	if useAVX512 && len(x) > 0 {
		return sumAVX512(&x[0], len(x))
	}
	if useAVX2 && len(x) >= 32 {
		n := len(x) &^ 31
		return sumAVX2(&x[0], n) + sumGeneric(x[n:])
	}
	return sumGeneric(x)
}

// Dot returns Σ x[i]·y[i] over len(x) elements (y must be at least as long).
func Dot(x, y []float32) float32 {
	y = y[:len(x)]
	if useAVX512 && len(x) > 0 {
		return dotAVX512(&x[0], &y[0], len(x))
	}
	if useAVX2 && len(x) >= 32 {
		n := len(x) &^ 31
		return dotAVX2(&x[0], &y[0], n) + dotGeneric(x[n:], y[n:])
	}
	return dotGeneric(x, y)
}

// Axpy sets y[i] += a·x[i] over len(x) elements.
func Axpy(a float32, x, y []float32) {
	y = y[:len(x)]
	if useAVX512 && len(x) > 0 {
		axpyAVX512(a, &x[0], &y[0], len(x))
		return
	}
	if useAVX2 && len(x) >= 8 {
		n := len(x) &^ 7
		axpyAVX2(a, &x[0], &y[0], n)
		axpyGeneric(a, x[n:], y[n:])
		return
	}
	axpyGeneric(a, x, y)
}

// Scale sets x[i] *= a.
func Scale(x []float32, a float32) {
	if useAVX512 && len(x) > 0 {
		scaleAVX512(&x[0], len(x), a)
		return
	}
	if useAVX2 && len(x) >= 8 {
		n := len(x) &^ 7
		scaleAVX2(&x[0], n, a)
		scaleGeneric(x[n:], a)
		return
	}
	scaleGeneric(x, a)
}

// tail8 runs an 8-wide elementwise kernel over dst, src (equal lengths):
// whole groups of 8 directly, the last len%8 through a padded buffer, so
// every element sees the same code.
func tail8(dst, src []float32, k func(dst, src *float32, n int)) {
	n := len(src) &^ 7
	if n > 0 {
		k(&dst[0], &src[0], n)
	}
	if r := len(src) - n; r > 0 {
		var buf [blk]float32
		copy(buf[:], src[n:])
		k(&buf[0], &buf[0], blk)
		copy(dst[n:], buf[:r])
	}
}
