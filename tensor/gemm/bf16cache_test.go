package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestBF16PairCache checks that products with Packed operands give the
// same bits with the pair cache on (pairs converted once and reused) as
// off (converted per call), for float32 and kept-16-bit panels, several k
// blocks with an odd last one, and a second call that reuses the cache.
func TestBF16PairCache(t *testing.T) {
	defer SetBF16PairCache(SetBF16PairCache(true))
	defer SetThreads(0)
	SetThreads(2)
	rng := rand.New(rand.NewPCG(40, 41))
	geom32 := genericKernel(6, 32, true)
	modes := []BF16Mode{BF16Exact}
	if HasBF16() {
		modes = append(modes, BF16Native)
	}
	for _, sh := range [][3]int{{7, 33, 3}, {13, 40, kcMax + 9}, {mcMax + 5, 70, 2*kcMax + 3}} {
		m, n, k := sh[0], sh[1], sh[2]
		for _, kind := range []Kind{F32, F16} {
			a := randMat(rng, kind, m, k, false, 0) // along k: A untransposed
			b := randMat(rng, kind, k, n, true, 0)  // and B transposed
			o := PackOpts{Keep16: kind != F32}
			pa := packOperand(geom32, o, false, m, k, a)
			pb := packOperand(geom32, o, true, n, k, b)
			c0 := randF32(rng, m*n)
			for _, mode := range modes {
				var got [3][]float32
				for i, on := range []bool{false, true, true} { // the third call reads built pairs
					SetBF16PairCache(on)
					got[i] = slices.Clone(c0)
					withBF16(t, mode, func() { Gemm(m, n, k, 1.5, pa.Mat(), pb.Mat(), 0.5, got[i], n) })
				}
				what := fmt.Sprintf("%v %v kind %d", sh, mode, kind)
				if pa.pairs == nil || pb.pairs == nil {
					t.Fatalf("%s: no pairs cached", what)
				}
				for i := range got[0] {
					for j := 1; j < 3; j++ {
						if math.Float32bits(got[0][i]) != math.Float32bits(got[j][i]) {
							t.Fatalf("%s: C[%d] cache off %v, on (call %d) %v", what, i, got[0][i], j, got[j][i])
						}
					}
				}
			}
		}
	}
}
