package rng

import "math"

// This file mirrors, one float32 operation at a time, torch's AVX2 normal
// kernel: the block transform of normal_fill_16_AVX2 and the cephes-style
// polynomial log and sincos of avx_mathfun.h that it calls. torch's build
// compiles those intrinsics with FMA enabled and floating-point contraction
// on, so the compiler fuses each multiply that feeds an add into one fused
// multiply-add; fma32 marks those places, and every other product is rounded
// to float32 on its own (explicit conversions stop the Go compiler from
// fusing them). With this the float32 draws match torch's AVX2 kernel bit
// for bit (checked on the torch_randn golden case).

// f32 rounds a float64 to float32 at run time, as C converts a double
// literal to float.
func f32(x float64) float32 { return float32(x) }

var (
	avxSqrtHF = f32(0.707106781186547524)
	avxLogP   = [9]float32{
		f32(7.0376836292e-2), f32(-1.1514610310e-1), f32(1.1676998740e-1),
		f32(-1.2420140846e-1), f32(1.4249322787e-1), f32(-1.6668057665e-1),
		f32(2.0000714765e-1), f32(-2.4999993993e-1), f32(3.3333331174e-1),
	}
	avxLogQ1 = f32(-2.12194440e-4)
	avxLogQ2 = f32(0.693359375)

	avxDP1    = f32(-0.78515625)
	avxDP2    = f32(-2.4187564849853515625e-4)
	avxDP3    = f32(-3.77489497744594108e-8)
	avxSinP0  = f32(-1.9515295891e-4)
	avxSinP1  = f32(8.3321608736e-3)
	avxSinP2  = f32(-1.6666654611e-1)
	avxCosP0  = f32(2.443315711809948e-005)
	avxCosP1  = f32(-1.388731625493765e-003)
	avxCosP2  = f32(4.166664568298827e-002)
	avxFourPi = f32(1.27323954473516) // 4/pi
	avxTwoPi  = f32(2 * math.Pi)
)

// fma32 returns a*b+c rounded once to float32, as the vfmadd instructions do.
// The float64 fused result is exact up to one rounding; when that rounding
// lands exactly on a float32 halfway point, the sign of the lost remainder
// decides the direction, so the float32 result is correctly rounded.
func fma32(a, b, c float32) float32 {
	p := float64(a) * float64(b) // exact: 24+24 bits fit in 53
	cd := float64(c)
	s := p + cd
	// Two-sum: err is exactly (p + cd) - s.
	bv := s - p
	err := (p - (s - bv)) + (cd - bv)
	if err != 0 && math.Float64bits(s)&(1<<29-1) == 1<<28 {
		// s is a float32 midpoint but the exact sum is not: move it off.
		if (err > 0) == (s > 0) {
			s = math.Nextafter(s, math.Inf(1)*s)
		} else {
			s = math.Nextafter(s, 0)
		}
	}
	return float32(s)
}

// avxLog is log256_ps for one lane and a positive argument.
func avxLog(x float32) float32 {
	const minNorm = 0x00800000
	if math.Float32bits(x) < minNorm {
		x = math.Float32frombits(minNorm)
	}
	bits := math.Float32bits(x)
	e := float32(int32(bits>>23) - 0x7f)
	x = math.Float32frombits(bits&^0x7f800000 | math.Float32bits(0.5))
	e++
	var tmp float32
	if x < avxSqrtHF {
		tmp = x
		e--
	}
	x--
	x += tmp
	z := float32(x * x)
	y := avxLogP[0]
	for _, p := range avxLogP[1:] {
		y = fma32(y, x, p)
	}
	y = float32(y * x)
	y = fma32(y, z, float32(e*avxLogQ1))
	y = fma32(-z, 0.5, y)
	x += y
	return fma32(e, avxLogQ2, x)
}

// avxSinCos is sincos256_ps for one lane.
func avxSinCos(x float32) (sin, cos float32) {
	signSin := math.Float32bits(x) & 0x80000000
	x = math.Float32frombits(math.Float32bits(x) &^ 0x80000000)
	j := int32(float32(x * avxFourPi))
	j = (j + 1) &^ 1
	y := float32(j)
	swapSin := uint32(j&4) << 29
	polySin := j&2 == 0
	x = fma32(y, avxDP1, x)
	x = fma32(y, avxDP2, x)
	x = fma32(y, avxDP3, x)
	signCos := uint32(^(j-2)&4) << 29
	signSin ^= swapSin

	z := float32(x * x)
	yc := fma32(avxCosP0, z, avxCosP1)
	yc = fma32(yc, z, avxCosP2)
	yc = float32(yc * z)
	yc = fma32(yc, z, -float32(z*0.5))
	yc++

	ys := fma32(avxSinP0, z, avxSinP1)
	ys = fma32(ys, z, avxSinP2)
	ys = float32(ys * z)
	ys = fma32(ys, x, x)

	s, c := yc, ys
	if polySin {
		s, c = ys, yc
	}
	s = math.Float32frombits(math.Float32bits(s) ^ signSin)
	c = math.Float32frombits(math.Float32bits(c) ^ signCos)
	return s, c
}

// normal16AVX2 is normal_fill_16_AVX2 for mean 0 and std 1 (its final fused
// multiply-add n*1+0 is exact, so it is left out).
func normal16AVX2(d []float32) {
	for j := 0; j < 8; j++ {
		u1 := 1 - d[j]
		u2 := d[j+8]
		radius := sqrtf(float32(-2 * avxLog(u1)))
		theta := float32(avxTwoPi * u2)
		s, c := avxSinCos(theta)
		d[j] = float32(radius * c)
		d[j+8] = float32(radius * s)
	}
}
