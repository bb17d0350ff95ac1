package vec

// erf and GELU. erf is split in three ranges of z = |x|, each a polynomial
// (fitted by Chebyshev interpolation, coefficients in the variable s mapped
// to [-1, 1]):
//
//	z < 0.875:  erf(z)  = z·A(s),               s = 2z²/0.875² - 1
//	z < 4:      erfc(z) = e^(-z²)·B(s),         s = (2z - 4.875)/3.125
//	z < 10:     erfc(z) = e^(-z²)·C(s)/z,       s = (2/z² - 0.0725)/0.0525
//
// and erfc(z) = 0 beyond (it is below the smallest float32). The absolute
// error of erf is under 1e-7 (float32 rounding included); erfc keeps a
// relative error of a few 1e-6 in the tail, which GELU uses for x < 0.

const (
	erfZA = 0.875
	erfZB = 4
	erfZC = 10
)

var (
	erfA = [...]float32{0.999527514, -0.115019888, 0.0126225334, -0.00112169178, 8.21600988e-05, -5.1123011e-06, 2.73633731e-07}
	erfB = [...]float32{0.215552479, -0.121188767, 0.0646922216, -0.0329906233, 0.0161486678, -0.00760877179, 0.00346775446,
		-0.00155888044, 0.000670966052, -0.000235758533, 9.4518502e-05, -7.32620392e-05, 2.89133495e-05}
	erfC = [...]float32{0.554474831, -0.00669371011, 0.000228179182, -1.22601214e-05, 8.8775738e-07, -7.82607614e-08}
)

// erfParts returns erf(z) and erfc(z) for z >= 0 (or NaN), given
// e = e^(-z²) (only read when z >= erfZA).
func erfParts(z, e float32) (erf, erfc float32) {
	switch {
	case z < erfZA:
		s := z*z*(2/(erfZA*erfZA)) - 1
		a := &erfA
		p := a[6]
		p = p*s + a[5]
		p = p*s + a[4]
		p = p*s + a[3]
		p = p*s + a[2]
		p = p*s + a[1]
		p = p*s + a[0]
		erf = z * p
		return erf, 1 - erf
	case z < erfZB:
		s := (z*2 - (erfZA + erfZB)) * (1 / (erfZB - erfZA))
		b := &erfB
		p := b[12]
		for i := 11; i >= 0; i-- {
			p = p*s + b[i]
		}
		erfc = e * p
		return 1 - erfc, erfc
	case z < erfZC:
		u := 1 / (z * z)
		s := (u*2 - (1.0/100 + 1.0/16)) * (1 / (1.0/16 - 1.0/100))
		c := &erfC
		p := c[5]
		p = p*s + c[4]
		p = p*s + c[3]
		p = p*s + c[2]
		p = p*s + c[1]
		p = p*s + c[0]
		erfc = e * (p / z)
		return 1 - erfc, erfc
	case z >= erfZC:
		return 1, 0
	}
	return z, z // NaN
}

// gaussBlock is the number of elements whose e^(-z²) Erf and GELU compute
// at once with Exp.
const gaussBlock = 64

// Erf sets dst[i] = erf(src[i]).
func Erf(dst, src []float32) {
	dst = dst[:len(src)]
	var e [gaussBlock]float32
	for lo := 0; lo < len(src); lo += gaussBlock {
		xs := src[lo:min(lo+gaussBlock, len(src))]
		for i, x := range xs {
			e[i] = -(x * x)
		}
		Exp(e[:len(xs)], e[:len(xs)])
		d := dst[lo : lo+len(xs)]
		for i, x := range xs {
			z := x
			if z < 0 {
				z = -z
			}
			v, _ := erfParts(z, e[i])
			if x < 0 {
				v = -v
			}
			d[i] = v
		}
	}
}

// GELU sets dst[i] = x·Φ(x) = x/2·(1 + erf(x/√2)), the exact (erf) GELU.
// Negative x use erfc directly, so the small negative tail keeps its
// relative accuracy instead of cancelling in 1 + erf. dst may be src.
func GELU(dst, src []float32) {
	dst = dst[:len(src)]
	if useAVX512 {
		if len(src) > 0 {
			geluAVX512(&dst[0], &src[0], len(src))
		}
		return
	}
	if useAVX2 {
		tail8(dst, src, geluAVX2)
		return
	}
	geluGeneric(dst, src)
}

// GELUMul sets dst[i] = a[i]·GELU(src[i]), the gated product of GEGLU,
// in one pass. a must be at least as long as src; dst may be src or a.
func GELUMul(dst, src, a []float32) {
	dst, a = dst[:len(src)], a[:len(src)]
	if useAVX512 {
		if len(src) > 0 {
			geluMulAVX512(&dst[0], &src[0], &a[0], len(src))
		}
		return
	}
	if !useAVX2 {
		geluMulGeneric(dst, src, a)
		return
	}
	n := len(src) &^ 7
	if n > 0 {
		geluMulAVX2(&dst[0], &src[0], &a[0], n)
	}
	if r := len(src) - n; r > 0 {
		var x, y [blk]float32
		copy(x[:], src[n:])
		copy(y[:], a[n:])
		geluMulAVX2(&x[0], &x[0], &y[0], blk)
		copy(dst[n:], x[:r])
	}
}

func geluGeneric(dst, src []float32) {
	const rsqrt2 = 0.70710678118654752440
	dst = dst[:len(src)]
	var e [gaussBlock]float32
	for lo := 0; lo < len(src); lo += gaussBlock {
		xs := src[lo:min(lo+gaussBlock, len(src))]
		for i, x := range xs {
			e[i] = -0.5 * (x * x) // -z², with one rounding
		}
		expGeneric(e[:len(xs)], e[:len(xs)])
		d := dst[lo : lo+len(xs)]
		for i, x := range xs {
			z := x * rsqrt2
			if x < 0 {
				_, c := erfParts(-z, e[i])
				d[i] = 0.5 * x * c
			} else {
				erf, _ := erfParts(z, e[i])
				d[i] = 0.5 * x * (1 + erf)
			}
		}
	}
}

func geluMulGeneric(dst, src, a []float32) {
	var g [gaussBlock]float32
	for lo := 0; lo < len(src); lo += gaussBlock {
		hi := min(lo+gaussBlock, len(src))
		geluGeneric(g[:hi-lo], src[lo:hi])
		for i, v := range g[:hi-lo] {
			dst[lo+i] = a[lo+i] * v
		}
	}
}

// GELUTanh sets dst[i] to the tanh approximation of GELU,
// x/2·(1 + tanh(u)) with u = √(2/π)·(x + 0.044715·x³), computed as the
// equal x/(1 + e^(-2u)): one exp, and no cancellation in 1 + tanh for
// negative x. dst may be src.
func GELUTanh(dst, src []float32) {
	dst = dst[:len(src)]
	if useAVX512 {
		if len(src) > 0 {
			geluTanhAVX512(&dst[0], &src[0], len(src))
		}
		return
	}
	if useAVX2 {
		tail8(dst, src, geluTanhAVX2)
		return
	}
	geluTanhGeneric(dst, src)
}

func geluTanhGeneric(dst, src []float32) {
	const (
		k   = 0.044715
		m2c = -1.5957691216057308 // -2·√(2/π)
	)
	dst = dst[:len(src)]
	for i, x := range src {
		dst[i] = x / (1 + exp32(m2c*(x+k*(x*x*x))))
	}
}
