package vec

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// TestAVX2Paths runs the public functions with the AVX-512 kernels switched
// off, so on an AVX-512 machine the AVX2 kernels (the path on CPUs without
// AVX-512) are still covered.
func TestAVX2Paths(t *testing.T) {
	if !useAVX512 {
		t.Skip("AVX-512 not in use: the other tests already ran the AVX2 or Go paths")
	}
	useAVX512 = false
	defer func() { useAVX512 = true }()
	t.Run("exp", TestExpAccuracy)
	t.Run("exp-lengths", TestExpLengths)
	t.Run("sigmoid-silu", TestSigmoidSiLU)
	t.Run("softmax", TestSoftmaxRow)
	t.Run("max", TestMax)
	t.Run("gelu", TestGELU)
	t.Run("gelu-mul", TestGELUMul)
	t.Run("gelu-tanh", TestGELUTanh)
	t.Run("reductions", TestReductions)
}

// specialInputs returns n float32s mixing normal values of all scales with
// the edge cases the exp kernels clamp or pass through: ±0, ±Inf, NaN,
// subnormals, the overflow and underflow thresholds.
func specialInputs(r *rand.Rand, n int) []float32 {
	specials := []float32{0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)),
		float32(math.NaN()), 1e-45, -1e-45, 1e-40, 88.72, 88.73, -87.3, -103.9, -104, 89, -150, 1e30, -1e30}
	x := make([]float32, n)
	for i := range x {
		switch r.IntN(4) {
		case 0:
			x[i] = specials[r.IntN(len(specials))]
		case 1:
			x[i] = float32(r.NormFloat64() * 60)
		default:
			x[i] = float32(r.NormFloat64() * 3)
		}
	}
	return x
}

// sameBits reports whether a and b are the same float32, any NaN matching
// any NaN.
func sameBits(a, b float32) bool {
	return math.Float32bits(a) == math.Float32bits(b) || (a != a && b != b)
}

// TestAVX512MatchesAVX2 holds the AVX-512 kernels to the AVX2 ones bit for
// bit, element by element, over every tail length the opmask handles, and
// checks that the masked stores leave the elements past n alone.
func TestAVX512MatchesAVX2(t *testing.T) {
	if !useAVX512 {
		t.Skip("no AVX-512 on this CPU")
	}
	r := rand.New(rand.NewPCG(51, 2))
	const sentinel = float32(-12345)
	elementwise := []struct {
		name string
		k512 func(dst, src *float32, n int)
		k2   func(dst, src *float32, n int)
	}{
		{"exp", expAVX512, expAVX2},
		{"sigmoid", sigmoidAVX512, sigmoidAVX2},
		{"silu", siluAVX512, siluAVX2},
		{"gelu", geluAVX512, geluAVX2},
		{"gelu-tanh", geluTanhAVX512, geluTanhAVX2},
		{"gelu-mul", func(dst, src *float32, n int) { geluMulAVX512(dst, src, src, n) },
			func(dst, src *float32, n int) { geluMulAVX2(dst, src, src, n) }},
	}
	lengths := []int{1000, 4099}
	for n := 1; n <= 80; n++ {
		lengths = append(lengths, n)
	}
	for _, n := range lengths {
		src := specialInputs(r, n)
		for _, k := range elementwise {
			got := make([]float32, n+1)
			got[n] = sentinel
			k.k512(&got[0], &src[0], n)
			want := make([]float32, n)
			tail8(want, src, k.k2)
			for i := range want {
				if !sameBits(got[i], want[i]) {
					t.Fatalf("%s n=%d: [%d] (x=%g) AVX-512 %g, AVX2 %g", k.name, n, i, src[i], got[i], want[i])
				}
			}
			if got[n] != sentinel {
				t.Fatalf("%s n=%d: wrote past the end", k.name, n)
			}
		}
		finite := make([]float32, n+1)
		for i := range n {
			finite[i] = float32(r.NormFloat64() * 4)
		}
		finite[n] = sentinel
		n8 := n &^ 7
		if m := maxAVX512(&src[0], n); n8 == n && !sameBits(m, maxAVX2(&src[0], n)) {
			t.Fatalf("max n=%d: AVX-512 %g, AVX2 %g", n, m, maxAVX2(&src[0], n))
		}
		// ExpSubSum: the same elements; the sum only regrouped.
		a := append([]float32(nil), finite...)
		s512 := expSubSumAVX512(&a[0], n, 1.5)
		if n8 > 0 {
			c := append([]float32(nil), finite...)
			s2 := expSubSumAVX2(&c[0], n8, 1.5)
			for i := range n8 {
				if !sameBits(a[i], c[i]) {
					t.Fatalf("expSubSum n=%d: [%d] AVX-512 %g, AVX2 %g", n, i, a[i], c[i])
				}
			}
			var tail float32
			for _, v := range a[n8:n] {
				tail += v
			}
			if d := math.Abs(float64(s512 - s2 - tail)); d > 1e-6*float64(s512) {
				t.Fatalf("expSubSum n=%d: sum %g, AVX2 %g + tail %g", n, s512, s2, tail)
			}
		}
		if a[n] != sentinel {
			t.Fatalf("expSubSum n=%d: wrote past the end", n)
		}
		// Axpy and Scale: one FMA or one multiply per element, as AVX2's
		// vector part does.
		y := append([]float32(nil), finite...)
		y2 := append([]float32(nil), finite...)
		axpyAVX512(-0.75, &src[0], &y[0], n)
		if n8 > 0 {
			axpyAVX2(-0.75, &src[0], &y2[0], n8)
		}
		for i := range n8 {
			if !sameBits(y[i], y2[i]) {
				t.Fatalf("axpy n=%d: [%d] AVX-512 %g, AVX2 %g", n, i, y[i], y2[i])
			}
		}
		for i := n8; i < n; i++ {
			if want := fma32(-0.75, src[i], finite[i]); !sameBits(y[i], want) {
				t.Fatalf("axpy n=%d: tail [%d] %g, want %g", n, i, y[i], want)
			}
		}
		scaleAVX512(&y2[0], n, 3.5)
		for i := range n {
			if want := finite[i] * 3.5; i >= n8 && !sameBits(y2[i], want) {
				t.Fatalf("scale n=%d: [%d] %g, want %g", n, i, y2[i], want)
			}
		}
		if y[n] != sentinel || y2[n] != sentinel {
			t.Fatalf("axpy/scale n=%d: wrote past the end", n)
		}
	}
}

// fma32 returns a·x + y rounded once to float32 (float64 FMA would round
// twice, which differs where a·x lands on a float32 midpoint).
func fma32(a, x, y float32) float32 {
	if f := float64(a) * float64(x); math.IsInf(f, 0) || math.IsNaN(f) || math.IsNaN(float64(y)) || math.IsInf(float64(y), 0) {
		return float32(f + float64(y))
	}
	p := new(big.Float).SetPrec(200).SetFloat64(float64(a))
	p.Mul(p, new(big.Float).SetPrec(200).SetFloat64(float64(x)))
	p.Add(p, new(big.Float).SetPrec(200).SetFloat64(float64(y)))
	f, _ := p.Float32()
	return f
}

// BenchmarkAVX512 times each kernel with AVX-512 and, in the same run, with
// only AVX2 (-bench AVX512 gives the pairs side by side).
func BenchmarkAVX512(b *testing.B) {
	if !useAVX512 {
		b.Skip("no AVX-512 on this CPU")
	}
	const n = 4096
	src, dst, y := benchData(n, 5), make([]float32, n), benchData(n, 1)
	row77 := make([]float32, 77)
	cases := []struct {
		name string
		f    func()
	}{
		{"Exp", func() { Exp(dst, src) }},
		{"Sigmoid", func() { Sigmoid(dst, src) }},
		{"SiLU", func() { SiLU(dst, src) }},
		{"GELU", func() { GELU(dst, src) }},
		{"GELUMul", func() { GELUMul(dst, src, y) }},
		{"GELUTanh", func() { GELUTanh(dst, src) }},
		{"SoftmaxRow4096", func() { copy(dst, src); SoftmaxRow(dst) }},
		{"SoftmaxRow77", func() { copy(row77, src); SoftmaxRow(row77) }},
		{"Sum", func() { _ = Sum(src) }},
		{"Dot", func() { _ = Dot(src, y) }},
		{"Axpy", func() { Axpy(0.5, src, y) }},
		{"Max", func() { _ = Max(src) }},
	}
	for _, c := range cases {
		for _, on := range []bool{false, true} {
			name := c.name + "/avx2"
			if on {
				name = c.name + "/avx512"
			}
			b.Run(name, func(b *testing.B) {
				useAVX512 = on
				defer func() { useAVX512 = true }()
				setBytes(b, n)
				for b.Loop() {
					c.f()
				}
			})
		}
	}
}
