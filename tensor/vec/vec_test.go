package vec

import (
	"math"
	"math/rand/v2"
	"testing"
)

// ulps is the distance between a and b in units in the last place (the
// number of float32 values between them); 0 for two NaNs, huge for a NaN
// and a number.
func ulps(a, b float32) int64 {
	if a != a || b != b {
		if a != a && b != b {
			return 0
		}
		return math.MaxInt64
	}
	key := func(f float32) int64 { // monotonic integer order of floats
		u := int64(math.Float32bits(f))
		if u&(1<<31) != 0 {
			return -(u &^ (1 << 31))
		}
		return u
	}
	d := key(a) - key(b)
	if d < 0 {
		d = -d
	}
	return d
}

// sweep returns float32 values spread over [lo, hi]: a uniform grid, every
// float of a few dense windows, and random values.
func sweep(lo, hi float32, n int) []float32 {
	r := rand.New(rand.NewPCG(1, 2))
	xs := make([]float32, 0, 2*n)
	for i := 0; i <= n; i++ {
		xs = append(xs, lo+(hi-lo)*float32(i)/float32(n))
	}
	for i := 0; i < n; i++ {
		xs = append(xs, lo+(hi-lo)*r.Float32())
	}
	return xs
}

// expEdges are the values where exp changes regime.
var expEdges = []float32{
	0, float32(math.Copysign(0, -1)), 1e-45, -1e-45, 1e-8, -1e-8, 0.5, -0.5, 0.34657359, -0.34657359, 1, -1,
	88.72283, 88.722839, 88.7228394, 88.73, 88.75, 88.76, 89, 100, 1e10, 3.4e38,
	-87.33654, -87.336548, -87.34, -100, -103, -103.2789, -103.9720, -103.97208, -103.98, -104, -105, -1e10, -3.4e38,
	float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()),
}

func expRef(x float32) float32 { return float32(math.Exp(float64(x))) }

func TestExpAccuracy(t *testing.T) {
	xs := append(sweep(-110, 90, 400000), expEdges...)
	// Every float in a few windows, including subnormal results.
	for _, c := range []float32{0, 1, -20, 60, -87.3, -100, -103.5, 88.7} {
		b := math.Float32bits(c)
		for k := uint32(0); k < 2000; k++ {
			xs = append(xs, math.Float32frombits(b+k), math.Float32frombits(b-k))
		}
	}
	got := make([]float32, len(xs))
	Exp(got, xs)
	gen := make([]float32, len(xs))
	expGeneric(gen, xs)
	worst, worstGen := int64(0), int64(0)
	for i, x := range xs {
		want := expRef(x)
		if d := ulps(got[i], want); d > worst {
			worst = d
			if d > 2 {
				t.Errorf("Exp(%g) = %g, want %g (%d ulp)", x, got[i], want, d)
			}
		}
		if d := ulps(gen[i], want); d > worstGen {
			worstGen = d
			if d > 2 {
				t.Errorf("expGeneric(%g) = %g, want %g (%d ulp)", x, gen[i], want, d)
			}
		}
		if d := ulps(got[i], gen[i]); d > 2 {
			t.Errorf("Exp(%g): assembly %g, Go %g", x, got[i], gen[i])
		}
	}
	t.Logf("max error: %d ulp (Go version %d ulp), assembly %v", worst, worstGen, useAVX2)
}

// TestExpLengths checks every length through 40 (the 8-wide body and the
// padded tail), in place and out of place, and that nothing past len(src)
// is written.
func TestExpLengths(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for n := 0; n <= 40; n++ {
		src := make([]float32, n)
		for i := range src {
			src[i] = float32(r.NormFloat64() * 10)
		}
		dst := make([]float32, n+3)
		for i := range dst {
			dst[i] = -7
		}
		Exp(dst, src)
		for i := range src {
			if d := ulps(dst[i], expRef(src[i])); d > 2 {
				t.Fatalf("n=%d: Exp(%g)[%d] = %g, %d ulp", n, src[i], i, dst[i], d)
			}
		}
		for i := n; i < len(dst); i++ {
			if dst[i] != -7 {
				t.Fatalf("n=%d: wrote dst[%d]", n, i)
			}
		}
		in := append([]float32(nil), src...)
		Exp(in, in)
		for i := range in {
			if in[i] != dst[i] {
				t.Fatalf("n=%d: in-place Exp differs at %d", n, i)
			}
		}
	}
}

func TestSigmoidSiLU(t *testing.T) {
	xs := append(sweep(-120, 120, 200000), expEdges...)
	for _, c := range []struct {
		name string
		f    func(dst, src []float32)
		gen  func(dst, src []float32)
		ref  func(x float64) float64
	}{
		{"sigmoid", Sigmoid, sigmoidGeneric, func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }},
		{"silu", SiLU, siluGeneric, func(x float64) float64 {
			if math.IsInf(x, -1) {
				return math.NaN() // -Inf/(1+Inf), as torch
			}
			return x / (1 + math.Exp(-x))
		}},
	} {
		for n := 0; n <= 17; n++ { // short lengths
			got := make([]float32, n)
			c.f(got, xs[1000:1000+n])
			for i := range got {
				if d := ulps(got[i], float32(c.ref(float64(xs[1000+i])))); d > 4 {
					t.Fatalf("%s n=%d [%d]: %d ulp", c.name, n, i, d)
				}
			}
		}
		got := make([]float32, len(xs))
		c.f(got, xs)
		gen := make([]float32, len(xs))
		c.gen(gen, xs)
		worst := int64(0)
		for i, x := range xs {
			want := float32(c.ref(float64(x)))
			d := ulps(got[i], want)
			if want != 0 && math.Abs(float64(want)) < 1e-30 {
				// x < -88.7: e^-x overflows, giving 0 as torch's
				// float32 computation does.
				d = 0
				if math.Abs(float64(got[i]-want)) > 1e-30 {
					d = 99
				}
			}
			worst = max(worst, d)
			if d > 4 {
				t.Errorf("%s(%g) = %g, want %g (%d ulp)", c.name, x, got[i], want, d)
			}
			if d := ulps(got[i], gen[i]); d > 4 && !(math.Abs(float64(want)) < 1e-30) {
				t.Errorf("%s(%g): assembly %g, Go %g", c.name, x, got[i], gen[i])
			}
		}
		t.Logf("%s: max error %d ulp", c.name, worst)
	}
}

func softmaxRef(row []float32) []float64 {
	m := math.Inf(-1)
	for _, v := range row {
		m = math.Max(m, float64(v))
	}
	out := make([]float64, len(row))
	if math.IsInf(m, -1) {
		return out
	}
	s := 0.0
	for i, v := range row {
		out[i] = math.Exp(float64(v - float32(m))) // float32 difference, as computed
		s += out[i]
	}
	for i := range out {
		out[i] /= s
	}
	return out
}

func TestSoftmaxRow(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	ninf := float32(math.Inf(-1))
	for _, n := range []int{1, 2, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 77, 128, 1000, 4096, 4103} {
		for _, scale := range []float64{0.1, 1, 30, 300} {
			row := make([]float32, n)
			for i := range row {
				row[i] = float32(r.NormFloat64() * scale)
			}
			if n > 3 {
				row[n/2] = ninf
				row[1] = 1e3 // a dominant entry: the others underflow
				if scale < 100 {
					row[1] = float32(scale)
				}
			}
			want := softmaxRef(row)
			got := append([]float32(nil), row...)
			SoftmaxRow(got)
			gen := append([]float32(nil), row...)
			softmaxRowGeneric(gen)
			for i := range got {
				tol := 2e-6*want[i] + 1e-38
				if math.Abs(float64(got[i])-want[i]) > tol || math.Abs(float64(gen[i])-want[i]) > tol {
					t.Fatalf("n=%d scale=%g [%d]: got %g (Go %g), want %g", n, scale, i, got[i], gen[i], want[i])
				}
			}
		}
	}
	// Fully masked rows become zeros; a NaN poisons its row as in torch.
	for _, n := range []int{1, 8, 13} {
		row := make([]float32, n)
		for i := range row {
			row[i] = ninf
		}
		SoftmaxRow(row)
		for i, v := range row {
			if v != 0 {
				t.Fatalf("masked row n=%d: [%d] = %g", n, i, v)
			}
		}
	}
	row := []float32{1, 2, float32(math.NaN()), 3, 4, 5, 6, 7, 8, 9}
	SoftmaxRow(row)
	if row[0] == row[0] {
		t.Errorf("NaN row gave %v", row)
	}
	SoftmaxRow(nil)
}

func TestMax(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	nan := float32(math.NaN())
	for n := 0; n <= 70; n++ {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		if n > 2 {
			x[n/3] = nan // skipped
		}
		want := float32(math.Inf(-1))
		for _, v := range x {
			if v > want {
				want = v
			}
		}
		if got := Max(x); got != want {
			t.Fatalf("n=%d: Max = %g, want %g", n, got, want)
		}
		if got := maxGeneric(x); got != Max(x) {
			t.Fatalf("n=%d: maxGeneric = %g, Max = %g", n, got, Max(x))
		}
	}
}

func TestErf(t *testing.T) {
	xs := append(sweep(-12, 12, 500000), 0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, 0.875, -0.875, 0.87499994, 4, 3.9999998, 10, 9.999999, 30, -30,
		float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()))
	got := make([]float32, len(xs))
	Erf(got, xs)
	worst := 0.0
	for i, x := range xs {
		want := math.Erf(float64(x))
		if math.IsNaN(want) {
			if got[i] == got[i] {
				t.Errorf("Erf(NaN) = %g", got[i])
			}
			continue
		}
		d := math.Abs(float64(got[i]) - want)
		worst = math.Max(worst, d)
		if d >= 1e-7 {
			t.Errorf("Erf(%g) = %.9g, want %.9g (error %.3g)", x, got[i], want, d)
		}
		if math.Abs(float64(x)) < 1e-3 && math.Abs(float64(got[i])-want) > 2e-7*math.Abs(want) {
			t.Errorf("Erf(%g) = %g, want %g: relative error near 0", x, got[i], want)
		}
	}
	t.Logf("erf: max abs error %.3g", worst)
}

func geluRef(x float64) float64 {
	if x < 0 {
		return 0.5 * x * math.Erfc(-x/math.Sqrt2)
	}
	return 0.5 * x * (1 + math.Erf(x/math.Sqrt2))
}

func TestGELU(t *testing.T) {
	xs := append(sweep(-16, 16, 500000), 0, 1e-30, -1e-30, 1.2374369, -1.2374369, 5.656854, -5.656854, 14.142136, -14.142136, 20, -20, 1e30, -1e30,
		float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()))
	got := make([]float32, len(xs))
	GELU(got, xs)
	worst := 0.0
	for i, x := range xs {
		want := geluRef(float64(x))
		if math.IsNaN(want) || math.IsInf(want, 0) {
			if math.IsInf(float64(x), -1) {
				want = math.Copysign(0, -1) // -Inf·erfc(Inf) = -Inf·0: torch gives NaN, we give 0
				if got[i] != 0 && got[i] == got[i] {
					t.Errorf("GELU(-Inf) = %g", got[i])
				}
				continue
			}
			if float64(got[i]) != want && !(math.IsNaN(want) && got[i] != got[i]) {
				t.Errorf("GELU(%g) = %g, want %g", x, got[i], want)
			}
			continue
		}
		// Relative accuracy everywhere. In the negative tail e^(-x²/2)
		// also carries the float32 rounding of x² (relative error
		// x²/2·2^-24), and results below the normal range may flush.
		tol := 1e-6*math.Abs(want) + 1e-44
		if x < 0 {
			tol = (1e-6+0x1p-24*float64(x*x)/2)*math.Abs(want) + 0x1p-126
		}
		d := math.Abs(float64(got[i]) - want)
		if want != 0 && math.Abs(want) > 1e-30 {
			worst = math.Max(worst, d/math.Abs(want))
		}
		if d > tol {
			t.Errorf("GELU(%g) = %.9g, want %.9g (relative %.3g)", x, got[i], want, d/math.Abs(want))
		}
	}
	t.Logf("gelu: max relative error %.3g", worst)
}

func TestReductions(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, n := range []int{0, 1, 7, 8, 9, 31, 32, 33, 63, 64, 65, 100, 1000, 4099} {
		x, y := make([]float32, n), make([]float32, n)
		for i := range x {
			x[i], y[i] = float32(r.NormFloat64()), float32(r.NormFloat64())
		}
		var s, sa, d, da float64
		for i := range x {
			s += float64(x[i])
			sa += math.Abs(float64(x[i]))
			d += float64(x[i]) * float64(y[i])
			da += math.Abs(float64(x[i]) * float64(y[i]))
		}
		// Each of the 32 (or 8) partial sums adds n/8 terms at most.
		bound := func(mag float64) float64 { return float64(n/8+8) * 6e-8 * mag }
		if got := Sum(x); math.Abs(float64(got)-s) > bound(sa) {
			t.Errorf("n=%d: Sum = %g, want %g", n, got, s)
		}
		if got := sumGeneric(x); math.Abs(float64(got)-s) > bound(sa) {
			t.Errorf("n=%d: sumGeneric = %g, want %g", n, got, s)
		}
		if got := Dot(x, y); math.Abs(float64(got)-d) > bound(da) {
			t.Errorf("n=%d: Dot = %g, want %g", n, got, d)
		}
		if got := dotGeneric(x, y); math.Abs(float64(got)-d) > bound(da) {
			t.Errorf("n=%d: dotGeneric = %g, want %g", n, got, d)
		}
		// Axpy and Scale are one rounding per element (FMA or not).
		y2 := append(make([]float32, 0, n+1), y...)
		y2 = append(y2, 42)[:n]
		Axpy(-0.75, x, y2)
		for i := range y2 {
			want := float64(y[i]) - 0.75*float64(x[i])
			if math.Abs(float64(y2[i])-want) > 1.2e-7*(math.Abs(float64(y[i]))+math.Abs(0.75*float64(x[i]))) {
				t.Fatalf("n=%d: Axpy[%d] = %g, want %g", n, i, y2[i], want)
			}
		}
		if y2[:n+1][n] != 42 {
			t.Fatalf("n=%d: Axpy wrote past the end", n)
		}
		x2 := append([]float32(nil), x...)
		Scale(x2, 3.5)
		for i := range x2 {
			if x2[i] != x[i]*3.5 {
				t.Fatalf("n=%d: Scale[%d] = %g, want %g", n, i, x2[i], x[i]*3.5)
			}
		}
	}
}
