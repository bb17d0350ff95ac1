package vec

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestGELUKernelsAgree holds the assembly GELU to the Go one it replaces:
// both evaluate the same polynomials, the assembly with fused multiply-adds,
// so they differ by a few float32 roundings (relative), or by less than the
// smallest normal where the result is subnormal.
func TestGELUKernelsAgree(t *testing.T) {
	if !useAVX2 {
		t.Skip("no assembly on this CPU")
	}
	xs := append(sweep(-16, 16, 200000), 0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, 1.2374369, -1.2374369, 1.2374368, 5.656854, -5.656854, 5.6568537, 14.142136, -14.142136,
		-14.142135, 20, -20, 1e30, -1e30, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()))
	asm := make([]float32, len(xs))
	GELU(asm, xs)
	gen := make([]float32, len(xs))
	geluGeneric(gen, xs)
	worst := 0.0
	for i, x := range xs {
		a, g := float64(asm[i]), float64(gen[i])
		if a != a || g != g {
			if (a != a) != (g != g) {
				t.Errorf("GELU(%g): assembly %g, Go %g", x, a, g)
			}
			continue
		}
		if a == g { // equal, infinities included
			continue
		}
		d := math.Abs(a - g)
		if g != 0 {
			worst = math.Max(worst, d/math.Abs(g))
		}
		if !(d <= 1e-6*math.Abs(g)+0x1p-126) {
			t.Errorf("GELU(%g): assembly %.9g, Go %.9g", x, a, g)
		}
	}
	t.Logf("assembly vs Go: max relative difference %.3g", worst)
}

// TestGELUMul checks a·GELU(x) against its two steps for every length
// through 40 (the 8-wide body and the padded tail), in place over either
// input, and that nothing past len(src) is written.
func TestGELUMul(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for n := 0; n <= 40; n++ {
		src, a := make([]float32, n), make([]float32, n)
		for i := range src {
			src[i] = float32(r.NormFloat64() * 3)
			a[i] = float32(r.NormFloat64())
		}
		want := make([]float32, n)
		GELU(want, src)
		for i := range want {
			want[i] *= a[i]
		}
		dst := make([]float32, n+3)
		for i := range dst {
			dst[i] = -7
		}
		GELUMul(dst, src, a)
		for i := range src {
			if dst[i] != want[i] {
				t.Fatalf("n=%d: GELUMul[%d] = %g, want %g", n, i, dst[i], want[i])
			}
		}
		for i := n; i < len(dst); i++ {
			if dst[i] != -7 {
				t.Fatalf("n=%d: wrote dst[%d]", n, i)
			}
		}
		x, y := append([]float32(nil), src...), append([]float32(nil), a...)
		GELUMul(x, x, a)
		GELUMul(y, src, y)
		for i := range src {
			if x[i] != want[i] || y[i] != want[i] {
				t.Fatalf("n=%d: in place [%d]: over src %g, over a %g, want %g", n, i, x[i], y[i], want[i])
			}
		}
	}
}

func geluTanhRef(x float64) float64 {
	return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
}

// TestGELUTanh checks the tanh GELU against float64 over the float32 range
// that matters and its edges. The argument of the exp, -2u, carries a few
// roundings relative to u, so where e^(-2u) matters (negative x) the
// relative error grows with |u|; there the result is also tiny, and an
// absolute 1e-7·|x| (far below what torch's own float32 1 + tanh loses)
// bounds it.
func TestGELUTanh(t *testing.T) {
	xs := append(sweep(-20, 20, 200000), 0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, 1e6, -1e6, 1e13, -1e13, 3e38, -3e38,
		float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()))
	got := make([]float32, len(xs))
	GELUTanh(got, xs)
	gen := make([]float32, len(xs))
	geluTanhGeneric(gen, xs)
	for i, x := range xs {
		want := geluTanhRef(float64(x))
		switch {
		case math.IsNaN(float64(x)) || math.IsInf(float64(x), -1):
			// NaN, and -Inf·0 = NaN as torch gives.
			if got[i] == got[i] {
				t.Errorf("GELUTanh(%g) = %g, want NaN", x, got[i])
			}
			continue
		case math.IsInf(float64(x), 1) || math.Abs(float64(x)) > 1e12:
			// x³ overflows: torch and we give x (or -0) from here on.
			want = math.Max(float64(x), 0)
		}
		d := math.Abs(float64(got[i]) - want)
		if !(d <= 1e-6*math.Abs(want)+1e-7*math.Abs(float64(x))) && float64(got[i]) != want {
			t.Errorf("GELUTanh(%g) = %.9g, want %.9g", x, got[i], want)
		}
		if useAVX2 && got[i] != gen[i] && !(got[i] != got[i] && gen[i] != gen[i]) {
			if d := math.Abs(float64(got[i] - gen[i])); !(d <= 1e-6*math.Abs(float64(gen[i]))+1e-7*math.Abs(float64(x))) {
				t.Errorf("GELUTanh(%g): assembly %.9g, Go %.9g", x, got[i], gen[i])
			}
		}
	}
	// Every length through 20 (body and padded tail), nothing written past.
	for n := 0; n <= 20; n++ {
		dst := make([]float32, n+2)
		dst[n], dst[n+1] = -7, -7
		GELUTanh(dst[:n], xs[:n])
		for i := 0; i < n; i++ {
			if dst[i] != got[i] {
				t.Fatalf("n=%d: [%d] = %g, want %g", n, i, dst[i], got[i])
			}
		}
		if dst[n] != -7 || dst[n+1] != -7 {
			t.Fatalf("n=%d: wrote past the end", n)
		}
	}
}
