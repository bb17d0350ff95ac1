package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// linesOf returns x as a Lines operand of the given side, so the implicit
// path can be compared with the stored one on the same values.
func linesOf(x Mat, isB bool) Mat {
	return LinesMat(isB, func(p, x0 int, dst []float32) {
		for i := range dst {
			if isB {
				dst[i] = x.At(p, x0+i)
			} else {
				dst[i] = x.At(x0+i, p)
			}
		}
	})
}

// TestGemmPacked checks pre-packed and Lines operands, alone and together,
// against the exact product for every test kernel, including packings made
// for another kernel geometry (which the driver must repack from source).
func TestGemmPacked(t *testing.T) {
	oldMin, oldPer := parallelMinMACs, perThreadMinMACs
	parallelMinMACs, perThreadMinMACs = 0, 1
	defer func() { parallelMinMACs, perThreadMinMACs = oldMin, oldPer }()

	shapes := [][3]int{
		{1, 1, 1}, {7, 13, 5}, {12, 32, 17}, {6, 40, 7},
		{13, 17, kcMax + 9}, {mcMax + 11, 20, 30}, {3, ncMax + 21, 3}, {40, 2*ncMax + 5, 2},
	}
	kinds := []Kind{F32, F16, BF16}
	rng := rand.New(rand.NewPCG(7, 8))
	for si, sh := range shapes {
		m, n, k := sh[0], sh[1], sh[2]
		for mode := 0; mode < 6; mode++ {
			ta, tb := mode&1 != 0, si%2 != 0
			a := randMat(rng, kinds[(si+mode)%3], m, k, ta, si%2)
			b := randMat(rng, kinds[(si+2*mode)%3], k, n, tb, mode%2)
			alpha, beta := float32(1), float32(0)
			if mode%3 == 1 {
				alpha, beta = -0.5, 1
			}
			ldc := n + 1
			c0 := make([]float32, m*ldc)
			for i := range c0 {
				c0[i] = rng.Float32()*2 - 1
				if i%ldc == n {
					c0[i] = -7
				}
			}
			want, tol := exact(m, n, k, alpha, a, b, beta, c0, ldc)
			for _, tk := range testKernels() {
				for _, packer := range []microKernel{tk.k, activeKernel} {
					// modes: 0,1 packed A; 2,3 packed B; 4 both; 5 packed A and Lines B.
					var aa, bb Mat = a, b
					keep16 := (si+mode)%2 == 0
					switch mode {
					case 0, 1:
						aa = packOperand(packer, PackOpts{Threads: tk.threads, OffHeap: mode == 4, Keep16: keep16}, false, m, k, a).Mat()
						bb = linesOf(b, true)
					case 2, 3:
						aa = linesOf(a, false)
						bb = packOperand(packer, PackOpts{Threads: tk.threads, OffHeap: mode == 4, Keep16: keep16}, true, n, k, b).Mat()
					case 4:
						aa = packOperand(packer, PackOpts{Threads: tk.threads, OffHeap: mode == 4, Keep16: keep16}, false, m, k, a).Mat()
						bb = packOperand(packer, PackOpts{Threads: 1}, true, n, k, b).Mat()
					case 5:
						aa = packOperand(packer, PackOpts{Threads: 1}, false, m, k, linesOf(a, false)).Mat()
						bb = linesOf(b, true)
					}
					if si > 3 && mode%2 == 1 {
						bb = b // keep the big shapes fast: Lines via At is slow
					}
					c := append([]float32(nil), c0...)
					restore := func() {}
					if tk.noAsm {
						restore = disableAsm()
					}
					gemmFast(tk.k, Opts{Threads: tk.threads}, m, n, k, alpha, aa, bb, beta, c, ldc)
					restore()
					checkC(t, fmt.Sprintf("%dx%dx%d mode %d %s/%dT packed for %s keep16=%v", m, n, k, mode, tk.k.name, tk.threads, packer.name, keep16), m, n, c, ldc, want, tol, -7)
					if t.Failed() {
						t.FailNow()
					}
				}
			}
		}
	}
}

func TestGemmThreadsPacked(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	m, n, k := 77, 300, 600
	a := randMat(rng, F32, m, k, false, 0)
	b := randMat(rng, F16, k, n, true, 0)
	want, tol := exact(m, n, k, 1, a, b, 0, nil, n)
	pb := PackB(k, n, b)
	if got := pb.Bytes(); got != int64(packedLen(n, k, activeKernel.nr))*4 {
		t.Errorf("Bytes() = %d", got)
	}
	for _, th := range []int{0, 1, 2} {
		c := make([]float32, m*n)
		GemmThreads(th, m, n, k, 1, a, pb.Mat(), 0, c, n)
		checkC(t, fmt.Sprintf("GemmThreads(%d)", th), m, n, c, n, want, tol, 0)
	}
	pa := PackA(m, k, a)
	c := make([]float32, m*n)
	Gemm(m, n, k, 1, pa.Mat(), PackBWith(PackOpts{Threads: 1, OffHeap: true}, k, n, b).Mat(), 0, c, n)
	checkC(t, "PackA·PackBWith", m, n, c, n, want, tol, 0)
	defer func() {
		if recover() == nil {
			t.Error("a packed A used as B did not panic")
		}
	}()
	// A valid A (5×m) times pa, an m×k matrix packed as A, used as B.
	Gemm(5, k, m, 1, randMat(rng, F32, 5, m, false, 0), pa.Mat(), 0, make([]float32, 5*k), k)
}

// TestPanelsB checks B operands written in the packed layout against the
// exact product, on the active kernel (which reads them directly) and on
// kernels of other geometries (which repack them from their source).
func TestPanelsB(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	w := NR()
	for _, k := range []int{1, 30, kcMax + 9, 600} {
		for _, n := range []int{1, 5, w, w + 3, 3 * w} {
			m := 41
			npad := (n + w - 1) / w * w
			kcb := KBlock(k)
			dense := make([]float32, k*n)
			data := make([]float32, k*npad)
			for p := 0; p < k; p++ {
				pc := p / kcb * kcb
				kc := min(kcb, k-pc)
				for j := 0; j < n; j++ {
					v := rng.Float32()*2 - 1
					dense[p*n+j] = v
					data[pc*npad+j/w*w*kc+(p-pc)*w+j%w] = v
				}
			}
			a := randMat(rng, F32, m, k, false, 0)
			want, tol := exact(m, n, k, 1, a, F32Mat(dense, n, false), 0, nil, n)
			pb := PanelsB(k, n, data)
			for _, tk := range testKernels() {
				c := make([]float32, m*n)
				restore := func() {}
				if tk.noAsm {
					restore = disableAsm()
				}
				gemmFast(tk.k, Opts{Threads: tk.threads}, m, n, k, 1, a, pb.Mat(), 0, c, n)
				restore()
				checkC(t, fmt.Sprintf("PanelsB %dx%dx%d %s", m, n, k, tk.k.name), m, n, c, n, want, tol, 0)
			}
		}
	}
}

// TestPanelsA checks A operands written in the packed layout through
// PanelIndex against the exact product for every test kernel (those of
// another geometry read them through the operand's source).
func TestPanelsA(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	w := MR()
	for _, k := range []int{1, 30, kcMax + 9, 600} {
		for _, m := range []int{1, 5, w, w + 3, 7 * w} {
			n := 37
			mpad := (m + w - 1) / w * w
			dense := make([]float32, m*k)
			data := make([]float32, k*mpad)
			for i := range data {
				data[i] = float32(math.NaN()) // padding must only reach discarded rows
			}
			for i := 0; i < m; i++ {
				for p := 0; p < k; p++ {
					v := rng.Float32()*2 - 1
					dense[i*k+p] = v
					data[PanelIndex(false, m, k, i, p)] = v
				}
			}
			b := randMat(rng, F32, k, n, false, 0)
			want, tol := exact(m, n, k, 1, F32Mat(dense, k, false), b, 0, nil, n)
			pa := PanelsA(m, k, data)
			for _, tk := range testKernels() {
				c := make([]float32, m*n)
				gemmFast(tk.k, Opts{Threads: tk.threads}, m, n, k, 1, pa.Mat(), b, 0, c, n)
				checkC(t, fmt.Sprintf("PanelsA %dx%dx%d %s", m, n, k, tk.k.name), m, n, c, n, want, tol, 0)
			}
		}
	}
}

// TestKeep16 checks that 16-bit panels give exactly the products of float32
// panels of the same values, at half the memory, for weights in both of
// their layouts (A untransposed, B transposed), with and without AVX2.
func TestKeep16(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for _, kind := range []Kind{F16, BF16} {
		for _, isB := range []bool{false, true} {
			for _, asm := range []bool{true, false} {
				m, n, k := 37, 70, kcMax+30
				a := randMat(rng, F32, m, k, false, 0)
				b := randMat(rng, F32, k, n, true, 0)
				x, w := m, randMat(rng, kind, m, k, false, 0)
				if isB {
					x, w = n, randMat(rng, kind, k, n, true, 0)
				}
				p32 := packOperand(activeKernel, PackOpts{}, isB, x, k, w)
				p16 := packOperand(activeKernel, PackOpts{Keep16: true, OffHeap: true}, isB, x, k, w)
				if p16.half == nil || p16.Bytes()*2 != p32.Bytes() {
					t.Fatalf("%v isB=%v: 16-bit panels not kept (%d vs %d bytes)", kind, isB, p16.Bytes(), p32.Bytes())
				}
				// Also through the bf16 driver (its software mode), which
				// reads the same panels.
				for _, mode := range []BF16Mode{BF16Off, BF16Round} {
					c32, c16 := make([]float32, m*n), make([]float32, m*n)
					restore := func() {}
					if !asm {
						restore = disableAsm()
					}
					withBF16(t, mode, func() {
						if isB {
							gemmFast(activeKernel, Opts{Threads: 2}, m, n, k, 1, a, p32.Mat(), 0, c32, n)
							gemmFast(activeKernel, Opts{Threads: 2}, m, n, k, 1, a, p16.Mat(), 0, c16, n)
						} else {
							gemmFast(activeKernel, Opts{Threads: 2}, m, n, k, 1, p32.Mat(), b, 0, c32, n)
							gemmFast(activeKernel, Opts{Threads: 2}, m, n, k, 1, p16.Mat(), b, 0, c16, n)
						}
					})
					restore()
					for i := range c32 {
						if math.Float32bits(c32[i]) != math.Float32bits(c16[i]) {
							t.Fatalf("%v isB=%v asm=%v bf16 mode %v: C[%d] = %v with 16-bit panels, %v with float32", kind, isB, asm, mode, i, c16[i], c32[i])
						}
					}
				}
			}
		}
	}
}

// TestPackBuf checks packing into a caller's buffer that holds old values
// (NaN): the panels, padding included, are all written.
func TestPackBuf(t *testing.T) {
	rng := rand.New(rand.NewPCG(50, 51))
	for _, sh := range [][3]int{{7, 13, 5}, {mcMax + 3, 40, kcMax + 9}} {
		m, n, k := sh[0], sh[1], sh[2]
		a, b := randMat(rng, F32, m, k, false, 0), randMat(rng, F32, k, n, false, 0)
		buf := make([]float32, PackedBytes(false, m, k)/4)
		for i := range buf {
			buf[i] = float32(math.NaN())
		}
		pa := PackAWith(PackOpts{Buf: buf}, m, k, a)
		if &pa.data[0] != &buf[0] {
			t.Fatalf("%v: panels not in the buffer", sh)
		}
		got, want := make([]float32, m*n), make([]float32, m*n)
		Gemm(m, n, k, 1, pa.Mat(), b, 0, got, n)
		Gemm(m, n, k, 1, PackA(m, k, a).Mat(), b, 0, want, n)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%v: C[%d] = %v, want %v", sh, i, got[i], want[i])
			}
		}
	}
}
