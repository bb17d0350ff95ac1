package gemm

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestQ8KernelAsm checks the assembly kernel against q8KernelGo bit for
// bit, with the extreme int8 values (−128 included, which ggml's
// quantiser never writes but a file may hold).
func TestQ8KernelAsm(t *testing.T) {
	if !hasAVX2FMA {
		t.Skip("no AVX2 on this CPU: the Go kernel is the only one")
	}
	rng := rand.New(rand.NewPCG(9, 0))
	for _, nkb := range []int{1, 2, 8} {
		a := make([]int32, nkb*q8Pairs*q8MR)
		w := make([]int32, nkb*q8Pairs*q8NR)
		sa := make([]float32, nkb*q8MR)
		sw := make([]float32, nkb*q8NR)
		for i := range a {
			a[i] = pair(int16(rng.IntN(255)-127), int16(rng.IntN(255)-127))
		}
		for i := range w {
			w[i] = pair(int16(rng.IntN(256)-128), int16(rng.IntN(256)-128))
		}
		if nkb == 2 { // the largest block sums
			for i := range a {
				a[i] = pair(-127, -127)
			}
			for i := range w {
				w[i] = pair(-128, -128)
			}
		}
		for i := range sa {
			sa[i] = float32(rng.ExpFloat64())
		}
		for i := range sw {
			sw[i] = float32(rng.ExpFloat64()) / 1000
		}
		const ldc = 21
		c0 := make([]float32, 5*ldc+q8NR)
		for i := range c0 {
			c0[i] = float32(rng.NormFloat64())
		}
		c1 := append([]float32(nil), c0...)
		q8KernelGo(nkb, a, sa, w, sw, c0, ldc)
		q8KernelAVX2(nkb, a, sa, w, sw, c1, ldc)
		for i := range c0 {
			if math.Float32bits(c0[i]) != math.Float32bits(c1[i]) {
				t.Fatalf("nkb %d: c[%d] asm %v, Go %v", nkb, i, c1[i], c0[i])
			}
		}
	}
}
