package vec

import "math"

// Pure Go kernels. They are written for the scalar code the Go compiler
// emits (it does not vectorise): independent partial results and unrolled
// loops so consecutive iterations do not wait on each other.

// exp constants (Cephes expf): e^x = 2^n·e^r, n = round(x·log2 e),
// r = x - n·ln 2 in [-ln2/2, ln2/2] (ln 2 split in two so n·ln2Hi is
// exact), e^r ≈ 1 + r + r²·P(r).
const (
	expMax  = 88.75 // e^x overflows above 88.7228…: clamp here gives +Inf
	expMin  = -104  // e^x rounds to 0 below -103.97…
	log2e   = 1.44269504088896341
	ln2Hi   = 0.693359375
	ln2Lo   = -2.12194440e-4
	expP0   = 1.9875691500e-4
	expP1   = 1.3981999507e-3
	expP2   = 8.3334519073e-3
	expP3   = 4.1665795894e-2
	expP4   = 1.6666665459e-1
	expP5   = 5.0000001201e-1
	roundOf = 12582912 // 1.5·2²³: x+roundOf-roundOf rounds |x| < 2²² to an integer
)

// exp32 is e^x in float32 arithmetic, the scalar twin of the AVX2 kernel.
func exp32(x float32) float32 {
	if !(x < expMax) { // large, +Inf or NaN
		if x != x {
			return x
		}
		return float32(math.Inf(1))
	}
	if x < expMin {
		return 0
	}
	n := float32(x*log2e) + roundOf
	n -= roundOf
	r := x - n*ln2Hi
	r -= n * ln2Lo
	p := ((((expP0*r+expP1)*r+expP2)*r+expP3)*r+expP4)*r + expP5
	y := float32(p*(r*r)) + r + 1
	// 2^n as two factors so subnormal results (n < -126) round only once.
	ni := int32(n)
	n1 := ni >> 1
	n2 := ni - n1
	return y * math.Float32frombits(uint32(n1+127)<<23) * math.Float32frombits(uint32(n2+127)<<23)
}

func expGeneric(dst, src []float32) {
	dst = dst[:len(src)]
	for i, x := range src {
		dst[i] = exp32(x)
	}
}

func sigmoidGeneric(dst, src []float32) {
	dst = dst[:len(src)]
	for i, x := range src {
		dst[i] = 1 / (1 + exp32(-x))
	}
}

func siluGeneric(dst, src []float32) {
	dst = dst[:len(src)]
	for i, x := range src {
		dst[i] = x / (1 + exp32(-x))
	}
}

func maxGeneric(x []float32) float32 {
	m0, m1 := float32(math.Inf(-1)), float32(math.Inf(-1))
	i := 0
	for ; i+2 <= len(x); i += 2 {
		if x[i] > m0 {
			m0 = x[i]
		}
		if x[i+1] > m1 {
			m1 = x[i+1]
		}
	}
	if i < len(x) && x[i] > m0 {
		m0 = x[i]
	}
	return max(m0, m1)
}

func expSubSumGeneric(x []float32, m float32) float32 {
	var s0, s1 float32
	i := 0
	for ; i+2 <= len(x); i += 2 {
		e0, e1 := exp32(x[i]-m), exp32(x[i+1]-m)
		x[i], x[i+1] = e0, e1
		s0 += e0
		s1 += e1
	}
	if i < len(x) {
		e := exp32(x[i] - m)
		x[i] = e
		s0 += e
	}
	return s0 + s1
}

// softmaxRowGeneric is SoftmaxRow on the pure Go kernels.
func softmaxRowGeneric(row []float32) {
	if len(row) == 0 {
		return
	}
	m := maxGeneric(row)
	if m < -maxFloat32 {
		clear(row)
		return
	}
	scaleGeneric(row, 1/expSubSumGeneric(row, m))
}

func sumGeneric(x []float32) float32 {
	var s [8]float32
	i := 0
	for ; i+8 <= len(x); i += 8 {
		v := x[i : i+8 : i+8]
		s[0] += v[0]
		s[1] += v[1]
		s[2] += v[2]
		s[3] += v[3]
		s[4] += v[4]
		s[5] += v[5]
		s[6] += v[6]
		s[7] += v[7]
	}
	for j := 0; i < len(x); i, j = i+1, j+1 {
		s[j] += x[i]
	}
	return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))
}

func dotGeneric(x, y []float32) float32 {
	y = y[:len(x)]
	var s [8]float32
	i := 0
	for ; i+8 <= len(x); i += 8 {
		a, b := x[i:i+8:i+8], y[i:i+8:i+8]
		s[0] += a[0] * b[0]
		s[1] += a[1] * b[1]
		s[2] += a[2] * b[2]
		s[3] += a[3] * b[3]
		s[4] += a[4] * b[4]
		s[5] += a[5] * b[5]
		s[6] += a[6] * b[6]
		s[7] += a[7] * b[7]
	}
	for j := 0; i < len(x); i, j = i+1, j+1 {
		s[j] += x[i] * y[i]
	}
	return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))
}

func axpyGeneric(a float32, x, y []float32) {
	y = y[:len(x)]
	i := 0
	for ; i+4 <= len(x); i += 4 {
		u, v := x[i:i+4:i+4], y[i:i+4:i+4]
		v[0] += a * u[0]
		v[1] += a * u[1]
		v[2] += a * u[2]
		v[3] += a * u[3]
	}
	for ; i < len(x); i++ {
		y[i] += a * x[i]
	}
}

func scaleGeneric(x []float32, a float32) {
	i := 0
	for ; i+4 <= len(x); i += 4 {
		v := x[i : i+4 : i+4]
		v[0] *= a
		v[1] *= a
		v[2] *= a
		v[3] *= a
	}
	for ; i < len(x); i++ {
		x[i] *= a
	}
}
