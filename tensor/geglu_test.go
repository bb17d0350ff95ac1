package tensor

import (
	"fmt"
	"math"
	"math/rand"
	"testing"
)

// TestForwardGEGLU checks the fused gate against float64 and against the
// unfused Chunk, GELU, Mul it replaces (same roundings, so equal), on
// contiguous input, a strided view that must be copied first, and f16
// storage; and that an odd last dimension is refused.
func TestForwardGEGLU(t *testing.T) {
	r := rand.New(rand.NewSource(43))
	for _, c := range []struct {
		name string
		h    *Tensor
	}{
		{"rows", Scale(randT(r, 2, 5, 2*37), 3)},
		{"single", randT(r, 2)},
		{"strided", Scale(randT(r, 2*19, 3, 4), 2).Permute(1, 2, 0)},
		{"f16", randT(r, 4, 2*16).ToDType(F16)},
	} {
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
