package rng

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

func TestMT19937Reference(t *testing.T) {
	// The reference mt19937 seeded with 5489 produces 3499211612 first and
	// 4123659995 as its 10000th output (C++ std::mt19937 requirement).
	g := New(5489)
	if v := g.Uint32(); v != 3499211612 {
		t.Fatalf("first output %d, want 3499211612", v)
	}
	for i := 2; i < 10000; i++ {
		g.Uint32()
	}
	if v := g.Uint32(); v != 4123659995 {
		t.Fatalf("10000th output %d, want 4123659995", v)
	}
}

func TestSeedModulo(t *testing.T) {
	a := New(1<<32 - 1).RandnN(40)
	for _, s := range []uint64{1<<63 - 1, math.MaxUint64, 1<<33 | (1<<32 - 1)} {
		b := New(s).RandnN(40)
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("seed %d differs from 2^32-1 at %d", s, i)
			}
		}
	}
	if New(7).InitialSeed() != 7 {
		t.Fatal("InitialSeed")
	}
}

func TestCacheSurvivesBlockPathAndRand(t *testing.T) {
	g := New(3)
	g.RandnN(1) // leaves a cached value
	h := g.Clone()
	first := g.RandnN(1)[0]
	// The block path and rand neither use nor clear the cache.
	h.RandnN(32)
	h.Rand(3)
	if got := h.RandnN(1)[0]; got != first {
		t.Fatalf("cached value %g, want %g", got, first)
	}
	g.ManualSeed(3)
	if g.hasCached {
		t.Fatal("ManualSeed must clear the cache")
	}
}

func TestEmptyAndInvalid(t *testing.T) {
	g := New(0)
	if v := g.RandnN(0); len(v) != 0 {
		t.Fatal("RandnN(0)")
	}
	if g.RandnN(-1) != nil || g.Rand(-1) != nil || g.RandF64(-1) != nil || g.RandnF64(-1) != nil || g.RandnF16(-1) != nil {
		t.Fatal("negative n must give nil")
	}
	if g.Randn([]int{2, -1}) != nil {
		t.Fatal("negative dim must give nil")
	}
	if _, err := Numel([]int{math.MaxInt / 2, 3}); err == nil {
		t.Fatal("overflow not reported")
	}
	if v := g.Randn(nil); len(v) != 1 {
		t.Fatal("scalar shape must give one value")
	}
}

func TestRandnTensor(t *testing.T) {
	shape := []int{3, 2, 5}
	gens := []*Generator{New(0), New(1), New(2)}
	v, err := RandnTensor(shape, gens...)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range []uint64{0, 1, 2} {
		row := New(s).RandnN(10)
		for j := range row {
			if v[10*i+j] != row[j] {
				t.Fatalf("row %d differs", i)
			}
		}
	}
	if _, err := RandnTensor([]int{2, 5}, New(0), New(1), New(2)); err == nil {
		t.Fatal("batch mismatch not reported")
	}
	if _, err := RandnTensor([]int{2}); err == nil {
		t.Fatal("no generator not reported")
	}
	if _, err := RandnTensor([]int{2}, nil); err == nil {
		t.Fatal("nil generator not reported")
	}
	if (Generators{New(0)}).Randn([]int{1, -2}) != nil {
		t.Fatal("bad shape must give nil")
	}
}

func TestStateRoundTrip(t *testing.T) {
	g := New(42)
	g.RandnN(700)
	b := g.State()
	h := New(0)
	if err := h.SetState(b); err != nil {
		t.Fatal(err)
	}
	x, y := g.RandnN(50), h.RandnN(50)
	for i := range x {
		if x[i] != y[i] {
			t.Fatal("restored state draws differently")
		}
	}
	if err := h.SetState(b[:100]); err == nil {
		t.Fatal("short state accepted")
	}
	bad := append([]byte(nil), b...)
	copy(bad[offLeft:offLeft+4], []byte{0, 0, 0, 0})
	if err := h.SetState(bad); err == nil {
		t.Fatal("left=0 accepted")
	}
}

func TestFMA32CorrectlyRounded(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	check := func(a, b, c float32) {
		exact := new(big.Float).SetPrec(200).SetFloat64(float64(a))
		exact.Mul(exact, new(big.Float).SetFloat64(float64(b)))
		exact.Add(exact, new(big.Float).SetFloat64(float64(c)))
		want, _ := exact.Float32()
		if got := fma32(a, b, c); got != want {
			t.Fatalf("fma32(%g, %g, %g) = %g, want %g", a, b, c, got, want)
		}
	}
	for i := 0; i < 100000; i++ {
		a := float32(r.NormFloat64())
		b := float32(r.NormFloat64())
		c := float32(r.NormFloat64() * math.Pow(2, float64(r.IntN(60)-30)))
		check(a, b, c)
	}
	// A sum that rounds in float64 onto a float32 halfway point.
	check(1+1.0/(1<<23), 1+1.0/(1<<23), -1.0/(1<<30))
}

func TestNormalMoments(t *testing.T) {
	for _, k := range []Kernel{KernelAVX2, KernelScalar} {
		v := NewWithKernel(9, k).RandnN(1 << 16)
		var s, s2 float64
		for _, x := range v {
			s += float64(x)
			s2 += float64(x) * float64(x)
		}
		n := float64(len(v))
		if m, sd := s/n, math.Sqrt(s2/n); math.Abs(m) > 0.02 || math.Abs(sd-1) > 0.02 {
			t.Fatalf("%v: mean %g std %g", k, m, sd)
		}
	}
}

func TestAVXMathClose(t *testing.T) {
	for i := 1; i < 1<<12; i++ {
		x := float32(i) / (1 << 12)
		if d := math.Abs(float64(avxLog(x)) - math.Log(float64(x))); d > 1e-6 {
			t.Fatalf("avxLog(%g) off by %g", x, d)
		}
		th := x * avxTwoPi
		s, c := avxSinCos(th)
		if math.Abs(float64(s)-math.Sin(float64(th))) > 1e-6 || math.Abs(float64(c)-math.Cos(float64(th))) > 1e-6 {
			t.Fatalf("avxSinCos(%g) = %g, %g", th, s, c)
		}
	}
}
