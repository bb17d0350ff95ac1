package gemm

import (
	"math"
	"math/rand/v2"
	"testing"
)

// blocksOf returns the float32 matrix x as a Blocks operand whose Decode
// reads it in blocks of bs stored elements: each call converts the whole
// blocks covering its range into scratch and copies the range out, as a
// quantised format's decoder does.
func blocksOf(x Mat, bs int) Mat {
	return Mat{Kind: Blocks, Trans: x.Trans, Decode: func(row, col int, dst []float32) {
		b0 := col / bs * bs
		b1 := (col + len(dst) + bs - 1) / bs * bs
		tmp := make([]float32, b1-b0)
		for i := range tmp {
			if j := b0 + i; j < x.Stride {
				tmp[i] = x.F32[row*x.Stride+j]
			}
		}
		copy(dst, tmp[col-b0:])
	}}
}

// TestGemmBlocks checks that a Blocks operand, on either side and in either
// orientation, gives the bits the same values stored as float32 give, with
// every test kernel and thread count, packed per call or by PackA/PackB
// (where Keep16 must not apply).
func TestGemmBlocks(t *testing.T) {
	oldMin, oldPer := parallelMinMACs, perThreadMinMACs
	parallelMinMACs, perThreadMinMACs = 0, 1
	defer func() { parallelMinMACs, perThreadMinMACs = oldMin, oldPer }()
	rng := rand.New(rand.NewPCG(3, 4))
	shapes := [][3]int{{1, 1, 32}, {7, 13, 64}, {13, 17, kcMax + 32}, {mcMax + 11, 20, 288}, {5, 70, 96}}
	for _, sh := range shapes {
		m, n, k := sh[0], sh[1], sh[2]
		for mode := 0; mode < 4; mode++ {
			ta, tb := mode&1 != 0, mode&2 != 0
			a := randMat(rng, F32, m, k, ta, 0)
			b := randMat(rng, F32, k, n, tb, 0)
			for _, tk := range testKernels() {
				for side := 0; side < 4; side++ {
					aa, bb := a, b
					switch side {
					case 0:
						aa = blocksOf(a, 32)
					case 1:
						bb = blocksOf(b, 32)
					case 2:
						aa = packOperand(tk.k, PackOpts{Keep16: true, Threads: tk.threads}, false, m, k, blocksOf(a, 32)).Mat()
					case 3:
						bb = packOperand(tk.k, PackOpts{Keep16: true, Threads: tk.threads}, true, n, k, blocksOf(b, 32)).Mat()
					}
					var wa, wb Mat = a, b
					if side == 2 {
						wa = packOperand(tk.k, PackOpts{Threads: tk.threads}, false, m, k, a).Mat()
					}
					if side == 3 {
						wb = packOperand(tk.k, PackOpts{Threads: tk.threads}, true, n, k, b).Mat()
					}
					want := make([]float32, m*n)
					got := make([]float32, m*n)
					gemmFast(tk.k, Opts{Threads: tk.threads}, m, n, k, 1, wa, wb, 0, want, n)
					gemmFast(tk.k, Opts{Threads: tk.threads}, m, n, k, 1, aa, bb, 0, got, n)
					for i := range want {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							t.Fatalf("%v trans %v/%v kernel %s threads %d side %d: C[%d] = %v, float32 operands give %v", sh, ta, tb, tk.k.name, tk.threads, side, i, got[i], want[i])
						}
					}
				}
			}
		}
	}
	// At reads a Blocks operand through Decode.
	x := randMat(rng, F32, 3, 40, true, 0)
	if got, want := blocksOf(x, 32).At(2, 33), x.At(2, 33); got != want {
		t.Errorf("At(2, 33) = %v, want %v", got, want)
	}
}
