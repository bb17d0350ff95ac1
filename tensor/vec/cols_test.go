package vec

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestColumnKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, cols := range []int{1, 4, 8, 13, 16, 32} {
		for _, rows := range []int{1, 7, 256, 300, 1000} {
			for _, pad := range []int{0, 3} {
				ss, ds := cols+pad, cols+2*pad
				x := make([]float32, rows*ss)
				for i := range x {
					x[i] = r.Float32()*40 - 20
				}
				if cols > 3 && rows > 5 {
					x[5*ss+3] = float32(math.NaN()) // skipped by the max
				}
				m := make([]float32, cols)
				for c := range m {
					m[c] = float32(math.Inf(-1))
				}
				MaxCols(x, ss, rows, cols, m)
				for c := 0; c < cols; c++ {
					want := float32(math.Inf(-1))
					for i := 0; i < rows; i++ {
						if v := x[i*ss+c]; v > want {
							want = v
						}
					}
					if m[c] != want {
						t.Fatalf("MaxCols cols=%d rows=%d col %d: %g, want %g", cols, rows, c, m[c], want)
					}
				}
				if cols > 3 && rows > 5 {
					x[5*ss+3] = 0
				}
				dst := x
				if pad > 0 {
					dst = make([]float32, rows*ds)
				}
				orig := append([]float32(nil), x...)
				sums := make([]float64, cols)
				ExpSubSumCols(dst, ds, x, ss, rows, cols, m, sums)
				for c := 0; c < cols; c++ {
					s := 0.0
					for i := 0; i < rows; i++ {
						e := math.Exp(float64(orig[i*ss+c] - m[c]))
						s += e
						if d := ulps(dst[i*ds+c], float32(e)); d > 3 {
							t.Fatalf("ExpSubSumCols cols=%d rows=%d [%d,%d]: %g, want %g", cols, rows, i, c, dst[i*ds+c], e)
						}
					}
					if math.Abs(sums[c]-s) > 1e-6*s {
						t.Fatalf("ExpSubSumCols cols=%d rows=%d col %d sum %g, want %g", cols, rows, c, sums[c], s)
					}
				}
			}
		}
	}
}

func TestNormAffine(t *testing.T) {
	xs := sweep(-30, 30, 5000)
	for _, silu := range []bool{false, true} {
		for _, n := range []int{0, 1, 7, 8, 9, 31, len(xs)} {
			const mhi, mlo, a, b = 1.5, 1e-8, 0.75, -0.25
			got := make([]float32, n)
			NormAffine(got, xs[:n], mhi, mlo, a, b, silu)
			gen := make([]float32, n)
			normAffineGeneric(gen, xs[:n], mhi, mlo, a, b, silu)
			for i, x := range xs[:n] {
				y := (float64(x)-mhi-mlo)*a + b
				if silu {
					y /= 1 + math.Exp(-y)
				}
				tol := 1e-6 * math.Max(1, math.Abs(y))
				if math.Abs(float64(got[i])-y) > tol || math.Abs(float64(gen[i])-y) > tol {
					t.Fatalf("NormAffine silu=%v n=%d x=%g: asm %g, Go %g, want %g", silu, n, x, got[i], gen[i], y)
				}
			}
		}
	}
	// In place.
	x := append([]float32(nil), xs[:100]...)
	want := make([]float32, 100)
	NormAffine(want, x, 0.5, 0, 2, 1, true)
	NormAffine(x, x, 0.5, 0, 2, 1, true)
	for i := range x {
		if x[i] != want[i] {
			t.Fatalf("in place [%d]: %g, want %g", i, x[i], want[i])
		}
	}
}

// TestNormAffineRow checks the per-element affine normalisation against
// float64 for every length through 40 and a long row, in place too.
func TestNormAffineRow(t *testing.T) {
	xs := sweep(-30, 30, 500)
	w, b := sweep(-2, 2, 500), sweep(-1, 3, 500)
	const mhi, mlo, a = 1.5, 1e-8, 0.75
	for n := 0; n <= len(xs); n++ {
		if n > 40 && n != len(xs) {
			continue
		}
		got := make([]float32, n+1)
		got[n] = -7
		NormAffineRow(got[:n], xs[:n], mhi, mlo, a, w, b)
		gen := make([]float32, n)
		normAffineRowGeneric(gen, xs[:n], mhi, mlo, a, w, b)
		for i, x := range xs[:n] {
			y := (float64(x)-mhi-mlo)*a*float64(w[i]) + float64(b[i])
			tol := 1e-6 * math.Max(1, math.Abs((float64(x)-mhi)*a*float64(w[i])))
			if math.Abs(float64(got[i])-y) > tol || math.Abs(float64(gen[i])-y) > tol {
				t.Fatalf("n=%d x=%g: asm %g, Go %g, want %g", n, x, got[i], gen[i], y)
			}
		}
		if got[n] != -7 {
			t.Fatalf("n=%d: wrote past the end", n)
		}
	}
	x := append([]float32(nil), xs...)
	want := make([]float32, len(x))
	NormAffineRow(want, x, mhi, mlo, a, w, b)
	NormAffineRow(x, x, mhi, mlo, a, w, b)
	for i := range x {
		if x[i] != want[i] {
			t.Fatalf("in place [%d]: %g, want %g", i, x[i], want[i])
		}
	}
}
