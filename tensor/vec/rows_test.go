package vec

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestCopyRowsPad(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, tc := range []struct{ rows, lead, n, trail int }{
		{1, 0, 8, 0}, {3, 1, 63, 0}, {3, 0, 63, 1}, {2, 2, 9, 3}, {4, 0, 64, 0},
		{1, 1, 15, 1}, {2, 0, 7, 1}, {2, 3, 0, 2}, {5, 1, 255, 0}, {1, 0, 16, 0},
	} {
		w := tc.lead + tc.n + tc.trail
		ds, ss := w+3, tc.n+5
		src := make([]float32, max(0, (tc.rows-1)*ss+tc.n))
		for i := range src {
			src[i] = rng.Float32() + 1
		}
		want := slices.Repeat([]float32{-1}, (tc.rows-1)*ds+w+2)
		copyRowsPadGeneric(want, ds, src, ss, tc.rows, tc.lead, tc.n, tc.trail)
		for r := 0; r < tc.rows; r++ { // the reference itself, checked by hand
			for i := 0; i < w; i++ {
				v, exp := want[r*ds+i], float32(0)
				if i >= tc.lead && i < tc.lead+tc.n {
					exp = src[r*ss+i-tc.lead]
				}
				if v != exp {
					t.Fatalf("%+v: generic row %d [%d] = %v, want %v", tc, r, i, v, exp)
				}
			}
		}
		// On amd64 with AVX2 this is the assembly for n >= 8.
		got := slices.Repeat([]float32{-1}, len(want))
		CopyRowsPad(got, ds, src, ss, tc.rows, tc.lead, tc.n, tc.trail)
		if !slices.Equal(got, want) {
			t.Fatalf("%+v: got %v, want %v", tc, got, want)
		}
	}
}

// TestCopyRowsPadNoSource checks rows that are all padding: nothing is read,
// so the source may be empty (a 1-wide input seen by a tap beside it).
func TestCopyRowsPadNoSource(t *testing.T) {
	dst := slices.Repeat([]float32{-1}, 7)
	CopyRowsPad(dst, 3, nil, 1, 2, 1, 0, 2)
	if want := []float32{0, 0, 0, 0, 0, 0, -1}; !slices.Equal(dst, want) {
		t.Fatalf("got %v, want %v", dst, want)
	}
}

func TestCopyRowsPadBounds(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic for rows past the end of dst")
		}
	}()
	CopyRowsPad(make([]float32, 20), 10, make([]float32, 40), 10, 3, 1, 8, 1)
}
