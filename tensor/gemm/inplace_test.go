package gemm

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// inPlaceMat builds a k×n B operand in InPlace form (rows at random offsets,
// runs of run consecutive columns spaced gap apart) with the Lines that
// define the same values, for the fallback paths and the reference.
func inPlaceMat(rng *rand.Rand, k, n, run, gap int) Mat {
	runs := (n + run - 1) / run
	var off []int
	maxOff := 0
	for range k {
		o := rng.IntN(50)
		off = append(off, o)
		maxOff = max(maxOff, o)
	}
	data := randF32(rng, (runs-1)*gap+run+maxOff)
	col := func(j int) int { return j/run*gap + j%run }
	m := LinesMat(true, func(p, x0 int, dst []float32) {
		for i := range dst {
			dst[i] = data[col(x0+i)+off[p]]
		}
	})
	m.InPlace = &InPlace{Data: data, Off: off, Run: run, Col: col}
	return m
}

func TestGemmInPlace(t *testing.T) {
	oldMin, oldPer := parallelMinMACs, perThreadMinMACs
	parallelMinMACs, perThreadMinMACs = 0, 1
	defer func() { parallelMinMACs, perThreadMinMACs = oldMin, oldPer }()
	rng := rand.New(rand.NewPCG(7, 8))
	for _, tc := range []struct{ m, n, k, run, gap int }{
		{6, 16, 5, 16, 16},
		{13, 64, 37, 32, 40},         // rows not a multiple of 6; runs with gaps
		{7, 96, kcMax + 20, 96, 100}, // several k blocks
		{20, 40, 9, 40, 41},          // n not a multiple of 16: packed fallback
		{5, 64, 3, 64, 64},
	} {
		b := inPlaceMat(rng, tc.k, tc.n, tc.run, tc.gap)
		a := randMat(rng, F16, tc.m, tc.k, false, 0)
		c0 := randF32(rng, tc.m*tc.n)
		for _, beta := range []float32{0, 0.5} {
			want, tol := exact(tc.m, tc.n, tc.k, 1.5, a, b, beta, c0, tc.n)
			for _, tk := range testKernels() {
				bk := b
				if tk.k.indirect != nil && tc.run%tk.k.nr == 0 && tc.n%tk.k.nr == 0 {
					// The kernel must read B in place: packing it would panic.
					bk.Lines = func(p, x0 int, dst []float32) { panic("in-place B packed") }
				}
				for _, threads := range []int{1, 2, 3} {
					c := append([]float32(nil), c0...)
					gemmFast(tk.k, Opts{Threads: threads}, tc.m, tc.n, tc.k, 1.5, a, bk, beta, c, tc.n)
					checkC(t, fmt.Sprintf("%+v β=%v %s/%dT", tc, beta, tk.k.name, threads), tc.m, tc.n, c, tc.n, want, tol, 0)
				}
			}
		}
	}
}

func TestGemmInPlaceBounds(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	b := inPlaceMat(rng, 4, 32, 16, 16)
	b.InPlace.Data = b.InPlace.Data[:len(b.InPlace.Data)-1] // last column's last row now outside
	defer func() {
		if r, _ := recover().(string); !strings.Contains(r, "in-place B columns 16..31") {
			t.Errorf("in-place B reaching past its data: panic %q", r)
		}
	}()
	c := make([]float32, 6*32)
	gemmFast(genericKernel(6, 16, false), Opts{Threads: 1}, 6, 32, 4, 1, randMat(rng, F32, 6, 4, false, 0), b, 0, c, 32)
}
