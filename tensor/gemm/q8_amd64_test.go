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

// TestQuantizeRowAsm checks the assembly quantiser against quantizeRowGo
// bit for bit (scales and values), with zero blocks, exact halves,
// infinities, and a NaN (whose block's scale is NaN either way).
func TestQuantizeRowAsm(t *testing.T) {
	if !hasAVX2FMA {
		t.Skip("no AVX2 on this CPU: the Go quantiser is the only one")
	}
	rng := rand.New(rand.NewPCG(10, 0))
	const nkb = 7
	x := make([]float32, nkb*q8Block)
	for i := range x {
		x[i] = float32(rng.NormFloat64()) * float32(1+i%5)
	}
	clear(x[q8Block : 2*q8Block])
	for i := 2 * q8Block; i < 3*q8Block; i++ { // step 1: exact halves
		x[i] = float32(i%9) - 4.5
	}
	x[2*q8Block] = 127
	x[3*q8Block+4] = float32(math.Inf(-1))
	x[4*q8Block+9] = float32(math.NaN())
	x[5*q8Block] = 1e-40 // a denormal alone in its block
	q0 := make([]int32, nkb*q8MR*q8Pairs)
	q1 := make([]int32, nkb*q8MR*q8Pairs)
	s0 := make([]float32, nkb*q8MR)
	s1 := make([]float32, nkb*q8MR)
	quantizeRowGo(nkb, x, q0, s0)
	quantizeRowAVX2(nkb, x, q1, s1)
	for i := range q0 {
		if q0[i] != q1[i] {
			t.Fatalf("pair %d (block %d): asm %#x, Go %#x", i, i/(q8MR*q8Pairs), q1[i], q0[i])
		}
	}
	for b := range nkb {
		g, w := s1[b*q8MR], s0[b*q8MR]
		if math.IsNaN(float64(w)) != math.IsNaN(float64(g)) || !math.IsNaN(float64(w)) && g != w {
			t.Errorf("block %d: scale asm %v, Go %v", b, g, w)
		}
	}
	if !math.IsNaN(float64(s0[4*q8MR])) {
		t.Errorf("a block holding NaN has scale %v, want NaN", s0[4*q8MR])
	}
}

// BenchmarkQ8Kernel times the kernel alone on operands in L1/L2 (16
// blocks, as GemmQ8 runs it), against the float32 6×16 kernel's
// multiply-adds over the same k.
func BenchmarkQ8Kernel(b *testing.B) {
	const nkb = 16
	a := make([]int32, nkb*q8Pairs*q8MR)
	w := make([]int32, nkb*q8Pairs*q8NR)
	sa := make([]float32, nkb*q8MR)
	sw := make([]float32, nkb*q8NR)
	c := make([]float32, q8MR*q8NR)
	macs := float64(nkb * q8Block * q8MR * q8NR)
	b.Run("int8", func(b *testing.B) {
		for range b.N {
			q8KernelAVX2(nkb, a, sa, w, sw, c, q8NR)
		}
		b.ReportMetric(macs*float64(b.N)/b.Elapsed().Seconds()/1e9, "GMAC/s")
	})
	b.Run("f32", func(b *testing.B) {
		af := make([]float32, 6*nkb*q8Block)
		bf := make([]float32, 16*nkb*q8Block)
		for range b.N {
			avx2Kernel.fn(nkb*q8Block, af, bf, c, 16, 1, 1)
		}
		b.ReportMetric(macs*float64(b.N)/b.Elapsed().Seconds()/1e9, "GMAC/s")
	})
}
