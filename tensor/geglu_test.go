package tensor

import (
	"fmt"
	"math"
	"math/rand"
	"testing"
)

type gegluCase struct {
	name string
	h    *Tensor
}

// gegluInputs are the GEGLU tests' inputs: rows, a single pair, a strided
// view that must be copied first, and f16 storage with halves longer than
// one chunk of the vector derivatives.
func gegluInputs(r *rand.Rand) []gegluCase {
	return []gegluCase{
		{"rows", Scale(randT(r, 2, 5, 2*37), 3)},
		{"single", randT(r, 2)},
		{"strided", Scale(randT(r, 2*19, 3, 4), 2).Permute(1, 2, 0)},
		{"f16", randT(r, 4, 2*300).ToDType(F16)},
	}
}

// TestForwardGEGLU checks the fused gate against float64 and against the
// unfused Chunk, GELU, Mul it replaces (same roundings, so equal), on
// contiguous input, a strided view that must be copied first, and f16
// storage; and that an odd last dimension is refused.
func TestForwardGEGLU(t *testing.T) {
	for _, c := range gegluInputs(rand.New(rand.NewSource(43))) {
		h := c.h
		n := h.Dim(-1) / 2
		hd := f64s(h.Float32().Contiguous().Data())
		want := make([]float64, len(hd)/2)
		for i := range want {
			row, j := i/n, i%n
			a, x := hd[row*2*n+j], hd[row*2*n+n+j]
			want[i] = a * 0.5 * x * (1 + math.Erf(x/math.Sqrt2))
		}
		got := GEGLU(h)
		name := fmt.Sprintf("geglu %s", c.name)
		shapeEq(t, name, got.shape, append(cloneInts(h.shape[:h.Rank()-1]), n))
		checkNear(t, name, got.Data(), want, nil, 2e-6, 1e-7)
		parts := h.Float32().Chunk(2, -1)
		if d := MaxAbsDiff(got, Mul(parts[0], GELU(parts[1]))); d != 0 {
			t.Errorf("%s: differs from Chunk, GELU, Mul by %g", name, d)
		}
	}
	defer func() {
		if recover() == nil {
			t.Errorf("GEGLU of an odd last dimension did not panic")
		}
	}()
	GEGLU(Zeros(2, 3))
}

// TestBackwardGEGLU checks the fused backward against the backward of the
// Chunk, GELU, Mul composition: the same products in the same order, so
// the same bits, on gegluInputs.
func TestBackwardGEGLU(t *testing.T) {
	r := rand.New(rand.NewSource(44))
	for _, c := range gegluInputs(r) {
		n := c.h.Dim(-1) / 2
		seed := randT(r, append(cloneInts(c.h.shape[:c.h.Rank()-1]), n)...)
		h1 := c.h.Float32().Contiguous().Clone().SetRequiresGrad(true)
		GEGLU(h1).Backward(seed)
		h2 := c.h.Float32().Contiguous().Clone().SetRequiresGrad(true)
		parts := h2.Chunk(2, -1)
		Mul(parts[0], GELU(parts[1])).Backward(seed)
		if d := MaxAbsDiff(h1.Grad(), h2.Grad()); d != 0 || h1.Grad() == nil {
			t.Errorf("%s: GEGLU's gradient differs from the composition's by %g", c.name, d)
		}
	}
}

// BenchmarkGEGLU times the gate at the SD 1.5 64² shape (batch 2): fused
// against the Chunk, GELU and Mul it replaces.
func BenchmarkGEGLU(b *testing.B) {
	h := benchRand(1, 2, 4096, 2*1280)
	b.Run("unfused", func(b *testing.B) {
		b.SetBytes(int64(4 * h.Numel()))
		for b.Loop() {
			parts := h.Chunk(2, -1)
			Mul(parts[0], GELU(parts[1]))
		}
	})
	b.Run("fused", func(b *testing.B) {
		b.SetBytes(int64(4 * h.Numel()))
		for b.Loop() {
			GEGLU(h)
		}
	})
}

// TestActivationGrads checks the vectorised derivatives of GELU and SiLU
// against their float64 formulas, over a range that reaches both tails and
// a length that is not a whole number of chunks.
func TestActivationGrads(t *testing.T) {
	n := 2*gradChunk + 7
	x := make([]float32, n)
	for i := range x {
		x[i] = -12 + 24*float32(i)/float32(n-1)
	}
	x[0], x[1] = 0, -0.0
	got := make([]float32, n)
	for name, c := range map[string]struct {
		f    func(dst, src []float32)
		want func(float64) float64
	}{
		"gelu": {geluGradSlice, func(x float64) float64 {
			return 0.5*(1+math.Erf(x/math.Sqrt2)) + x*math.Exp(-x*x/2)/math.Sqrt(2*math.Pi)
		}},
		"silu": {siluGrad, func(x float64) float64 { s := 1 / (1 + math.Exp(-x)); return s * (1 + x*(1-s)) }},
	} {
		c.f(got, x)
		for i, v := range x {
			w := c.want(float64(v))
			if d := math.Abs(float64(got[i]) - w); d > 2e-6*(1+math.Abs(w)) {
				t.Errorf("%s'(%v) = %v, want %v", name, v, got[i], w)
			}
		}
	}
}
