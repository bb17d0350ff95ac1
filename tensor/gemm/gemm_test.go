package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"

	"github.com/diffuse-go/diffuse/half"
)

// randMat returns a rows×cols logical matrix of the given kind with values in
// [-1, 1), stored transposed if trans, with pad unused columns per stored row.
func randMat(rng *rand.Rand, kind Kind, rows, cols int, trans bool, pad int) Mat {
	sr, sc := rows, cols
	if trans {
		sr, sc = cols, rows
	}
	m := Mat{Kind: kind, Stride: sc + pad, Trans: trans}
	n := (sr-1)*m.Stride + sc
	if kind == F32 {
		m.F32 = make([]float32, n)
		for i := range m.F32 {
			m.F32[i] = rng.Float32()*2 - 1
		}
		return m
	}
	m.U16 = make([]uint16, n)
	for i := range m.U16 {
		f := rng.Float32()*2 - 1
		if kind == F16 {
			m.U16[i] = half.F32ToF16(f)
		} else {
			m.U16[i] = half.F32ToBF16(f)
		}
	}
	return m
}

// exact computes alpha·A·B + beta·C in float64 along with an error bound
// for a float32 computation summed in any order.
func exact(m, n, k int, alpha float32, a, b Mat, beta float32, c []float32, ldc int) (want, tol []float64) {
	want = make([]float64, m*n)
	tol = make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s, abs float64
			for p := 0; p < k; p++ {
				v := float64(a.At(i, p)) * float64(b.At(p, j))
				s += v
				abs += math.Abs(v)
			}
			w := float64(alpha) * s
			t := math.Abs(float64(alpha)) * abs
			if beta != 0 {
				w += float64(beta) * float64(c[i*ldc+j])
				t += math.Abs(float64(beta) * float64(c[i*ldc+j]))
			}
			want[i*n+j] = w
			// float32 rounding grows at most linearly with k.
			tol[i*n+j] = 2e-7*float64(k+4)*t + 1e-30
		}
	}
	return want, tol
}

func checkC(t *testing.T, what string, m, n int, got []float32, ldc int, want, tol []float64, sentinel float32) {
	t.Helper()
	bad := 0
	for i := 0; i < m; i++ {
		for j := 0; j < ldc; j++ {
			g := got[i*ldc+j]
			if j >= n { // padding columns must be left untouched
				if math.Float32bits(g) != math.Float32bits(sentinel) {
					t.Errorf("%s: C[%d,%d] (padding) = %v, was %v", what, i, j, g, sentinel)
					return
				}
				continue
			}
			if d := math.Abs(float64(g) - want[i*n+j]); !(d <= tol[i*n+j]) {
				if bad++; bad <= 3 {
					t.Errorf("%s: C[%d,%d] = %v, want %v (tol %.3g)", what, i, j, g, want[i*n+j], tol[i*n+j])
				}
			}
		}
	}
}

type testKernel struct {
	k       microKernel
	threads int
	noAsm   bool // also avoid the assembly packing helpers
}

func testKernels() []testKernel {
	ks := []testKernel{
		{activeKernel, 1, false}, {activeKernel, 3, false},
		{goKernel4x4, 1, true}, {goKernel4x4, 2, false},
		// The AVX-512 geometry run by Go code, so its driver paths are
		// tested on machines without AVX-512.
		{genericKernel(6, 32, true), 2, false},
		{genericKernel(3, 5, false), 1, false},
		{genericKernel(2, 6, true), 1, true},
	}
	for _, k := range runnableKernels() {
		if k.name != activeKernel.name {
			ks = append(ks, testKernel{k, 2, false})
		}
	}
	return ks
}

func TestGemm(t *testing.T) {
	gemmCases(t, [][3]int{
		{1, 1, 1}, {7, 13, 5}, {6, 16, 8}, {12, 32, 17}, {5, 3, 2}, {2, 40, 1}, {6, 40, 7}, {12, 24, 3},
		{13, 17, kcMax + 9}, {37, 70, 9}, {mcMax + 11, 20, 30}, {3, ncMax + 21, 3},
	})
}

// TestGemmDirectA runs narrow products through gemmDirectA (A read where it
// lies), made to apply from k = 1 and to cut rows into blocks of 12, so
// that small shapes reach several row blocks, several k blocks, rows left
// over after the last whole sliver, and column edges.
func TestGemmDirectA(t *testing.T) {
	oldK, oldRows := directMinK, directRows
	directMinK, directRows = 1, 12
	defer func() { directMinK, directRows = oldK, oldRows }()
	shapes := [][3]int{
		{6, 1, 1}, {7, 13, 5}, {12, 40, 17}, {31, 8, 3}, {29, 40, kcMax + 9}, {50, 17, 2*kcMax + 3}, {41, 64, 30},
	}
	a := Mat{Kind: F32}
	for _, tk := range testKernels() {
		k := tk.k
		if k.direct == nil {
			continue
		}
		for _, sh := range shapes {
			if sh[0] >= k.mr && sh[1] <= directMaxCols && !useDirectA(k, a, sh[0], sh[1], sh[2]) {
				t.Fatalf("%s: %v does not take the direct path", k.name, sh)
			}
		}
	}
	gemmCases(t, shapes)
}

// TestGemmStream runs products through the streaming-store path (see
// useStream), made to apply to small outputs, with C aligned and not.
func TestGemmStream(t *testing.T) {
	oldMin, oldPar, oldPer := streamMinBytes, parallelMinMACs, perThreadMinMACs
	streamMinBytes, parallelMinMACs, perThreadMinMACs = 0, 0, 1
	defer SetStreamMode(SetStreamMode(StreamOn))
	defer func() {
		streamMinBytes, parallelMinMACs, perThreadMinMACs = oldMin, oldPar, oldPer
	}()
	rng := rand.New(rand.NewPCG(7, 8))
	streamed := 0
	for _, tk := range testKernels() {
		kern := tk.k
		if kern.stream == nil {
			continue
		}
		vf := kern.vecBytes / 4
		for _, sh := range [][3]int{{6, 2 * vf, 3}, {13, 5 * vf, 40}, {40, 3*vf + 5, 17}, {29, 4 * vf, kcMax + 1}} {
			m, n, k := sh[0], sh[1], sh[2]
			for _, shift := range []int{0, 1} { // C aligned, then one float off
				ldc := (n + vf - 1) / vf * vf
				a := randMat(rng, F32, m, k, false, 0)
				b := randMat(rng, F32, k, n, true, 1)
				buf := make([]float32, m*ldc+2*vf)
				off := (vf-int(uintptr(unsafe.Pointer(&buf[0]))%uintptr(kern.vecBytes)/4))%vf + shift
				c := buf[off : off+m*ldc]
				for i := range c {
					c[i] = float32(math.NaN())
					if i%ldc >= n {
						c[i] = -7
					}
				}
				want, tol := exact(m, n, k, 1.5, a, b, 0, c, ldc)
				if useStream(kern, m, n, k, 0, epilogue{}, c, ldc) {
					streamed++
				} else if shift == 0 && k <= kcMax {
					t.Errorf("%s %v: aligned C does not stream", kern.name, sh)
				}
				gemmFast(kern, Opts{Threads: tk.threads}, m, n, k, 1.5, a, b, 0, c, ldc)
				checkC(t, fmt.Sprintf("%s %v shift %d", kern.name, sh, shift), m, n, c, ldc, want, tol, -7)
			}
		}
	}
	if streamed == 0 {
		t.Fatal("no product took the streaming path")
	}
}

// gemmCases checks every kernel of testKernels on each shape, with float32,
// float16 and bfloat16 operands, each transposed or not, several alpha and
// beta values, padded strides and row and column biases.
func gemmCases(t *testing.T, shapes [][3]int) {
	oldMin, oldPer := parallelMinMACs, perThreadMinMACs
	parallelMinMACs, perThreadMinMACs = 0, 1
	defer func() { parallelMinMACs, perThreadMinMACs = oldMin, oldPer }()

	type ab struct{ alpha, beta float32 }
	abs := []ab{{1, 0}, {0.5, 2}, {-1.5, 1}, {2, float32(math.Copysign(0, -1))}}
	kinds := []Kind{F32, F16, BF16}
	rng := rand.New(rand.NewPCG(1, 2))
	nan := float32(math.NaN())
	cases := 0
	for si, sh := range shapes {
		m, n, k := sh[0], sh[1], sh[2]
		for ka, kindA := range kinds {
			for kb, kindB := range kinds {
				for tr := 0; tr < 4; tr++ {
					// Big shapes get fewer combinations to keep the test fast.
					if m*n*k > 20000 && (ka+kb+tr+si)%3 != 0 {
						continue
					}
					ta, tb := tr&1 != 0, tr&2 != 0
					a := randMat(rng, kindA, m, k, ta, (si+tr)%3)
					b := randMat(rng, kindB, k, n, tb, (si+ka)%2)
					p := abs[(si+ka+kb+tr)%len(abs)]
					ldc := n + si%2
					c0 := make([]float32, m*ldc)
					sentinel := float32(-7)
					for i := range c0 {
						c0[i] = rng.Float32()*2 - 1
						if i%ldc >= n {
							c0[i] = sentinel
						} else if p.beta == 0 {
							c0[i] = nan // beta == 0 must not read C
						}
					}
					want, tol := exact(m, n, k, p.alpha, a, b, p.beta, c0, ldc)
					// Some cases add row and/or column biases.
					var ep epilogue
					if (si+tr)%3 == 1 {
						ep.row = randF32(rng, m)
					}
					if (si+ka+kb)%3 == 2 {
						ep.col = randF32(rng, n)
					}
					for i := 0; i < m; i++ {
						for j := 0; j < n; j++ {
							var bias float64
							if ep.row != nil {
								bias += float64(ep.row[i])
							}
							if ep.col != nil {
								bias += float64(ep.col[j])
							}
							want[i*n+j] += bias
							tol[i*n+j] += 2e-7 * math.Abs(bias)
						}
					}
					name := fmt.Sprintf("%dx%dx%d A=%d%v B=%d%v α=%v β=%v bias=%v,%v", m, n, k, kindA, ta, kindB, tb, p.alpha, p.beta, ep.row != nil, ep.col != nil)
					if m*n*k <= 20000 {
						c := append([]float32(nil), c0...)
						gemmRef(m, n, k, p.alpha, a, b, p.beta, c, ldc)
						ep.addTo(m, n, c, ldc)
						checkC(t, name+" ref", m, n, c, ldc, want, tol, sentinel)
					}
					for _, tk := range testKernels() {
						c := append([]float32(nil), c0...)
						restore := func() {}
						if tk.noAsm {
							restore = disableAsm()
						}
						gemmFast(tk.k, Opts{Threads: tk.threads, RowBias: ep.row, ColBias: ep.col}, m, n, k, p.alpha, a, b, p.beta, c, ldc)
						restore()
						checkC(t, fmt.Sprintf("%s %s/%dT", name, tk.k.name, tk.threads), m, n, c, ldc, want, tol, sentinel)
					}
					cases++
					if t.Failed() {
						t.FailNow()
					}
				}
			}
		}
	}
	t.Logf("%d operand cases × %d kernels", cases, len(testKernels()))
}

// TestGemmLarge checks shapes from the model at the public entry point.
func TestGemmLarge(t *testing.T) {
	defer SetThreads(0)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		m, n, k    int
		ka, kb     Kind
		ta, tb     bool
		threads    int
		alpha, bet float32
	}{
		{77, 768, 768, F32, F32, false, true, 2, 1, 0},
		{64, 320, 320, F32, F16, false, true, 1, 1, 1},
		{130, 96, 700, BF16, F32, true, false, 2, 0.25, -1},
	} {
		a := randMat(rng, tc.ka, tc.m, tc.k, tc.ta, 0)
		b := randMat(rng, tc.kb, tc.k, tc.n, tc.tb, 0)
		c := make([]float32, tc.m*tc.n)
		for i := range c {
			c[i] = rng.Float32()
		}
		ref := append([]float32(nil), c...)
		gemmRef(tc.m, tc.n, tc.k, tc.alpha, a, b, tc.bet, ref, tc.n)
		SetThreads(tc.threads)
		Gemm(tc.m, tc.n, tc.k, tc.alpha, a, b, tc.bet, c, tc.n)
		tol := 1e-6 * float32(tc.k)
		for i := range c {
			if d := c[i] - ref[i]; d > tol || d < -tol {
				t.Fatalf("%+v: C[%d] = %v, gemmRef %v", tc, i, c[i], ref[i])
			}
		}
	}
}

func TestGemmEmpty(t *testing.T) {
	c := []float32{1, 2, 3, 4}
	Gemm(0, 2, 3, 1, F32Mat(nil, 3, false), F32Mat(nil, 2, false), 0, c, 2)
	Gemm(2, 2, 0, 1, F32Mat(nil, 1, false), F32Mat(nil, 2, false), 3, c, 2)
	if c[0] != 3 || c[3] != 12 {
		t.Fatalf("k=0, beta=3: C = %v", c)
	}
	c[0] = float32(math.NaN())
	Gemm(2, 2, 0, 1, F32Mat(nil, 1, false), F32Mat(nil, 2, false), 0, c, 2)
	if c[0] != 0 || c[3] != 0 {
		t.Fatalf("k=0, beta=0: C = %v", c)
	}
}

func TestWiden(t *testing.T) {
	src := make([]uint16, 1<<16)
	for i := range src {
		src[i] = uint16(i)
	}
	dst := make([]float32, len(src)+3)
	for _, kind := range []Kind{F16, BF16, F16 + 100, BF16 + 100} {
		restore := func() {}
		if kind >= 100 { // the scalar path
			kind -= 100
			restore = disableAsm()
		}
		// Odd offsets and lengths exercise both the vector body and the scalar tail.
		for _, off := range []int{0, 3} {
			s := src[off:]
			d := dst[:len(s)]
			widen(d, s, kind)
			for i, h := range s {
				want := half.BF16ToF32(h)
				if kind == F16 {
					want = half.F16ToF32(h)
				}
				if g := d[i]; math.Float32bits(g) != math.Float32bits(want) && !(g != g && want != want) {
					t.Fatalf("kind %d: widen(%#04x) = %v, want %v", kind, h, g, want)
				}
			}
		}
		restore()
	}
}

func TestThreads(t *testing.T) {
	defer SetThreads(0)
	SetThreads(3)
	if Threads() != 3 {
		t.Fatalf("Threads() = %d after SetThreads(3)", Threads())
	}
	SetThreads(0)
	if Threads() < 1 {
		t.Fatalf("Threads() = %d", Threads())
	}
}

func TestGrid(t *testing.T) {
	for _, tc := range []struct{ t, m, n, tm, tn int }{
		{2, 4096, 320, 2, 1},
		{2, 256, 1280, 1, 2},
		{4, 4096, 4096, 2, 2},
		{2, 6, 4000, 1, 2},
		{3, 5, 5, 1, 1},
	} {
		tm, tn := grid(tc.t, tc.m, tc.n, 6, 16)
		if tm != tc.tm || tn != tc.tn {
			t.Errorf("grid(%d, %d, %d) = %d×%d, want %d×%d", tc.t, tc.m, tc.n, tm, tn, tc.tm, tc.tn)
		}
	}
}

func randF32(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = rng.Float32()*2 - 1
	}
	return v
}

// TestSeed checks the tile seeding of the bias epilogue, whose common cases
// have assembly versions, against the plain loop.
func TestSeed(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, sh := range [][2]int{{6, 16}, {6, 8}, {1, 32}, {5, 24}, {6, 12}} {
		rows, cols := sh[0], sh[1]
		ldc := cols + 3
		for _, kind := range []string{"row", "col"} {
			var e epilogue
			if kind == "row" {
				e.row = randF32(rng, rows)
			} else {
				e.col = randF32(rng, cols)
			}
			want := make([]float32, rows*ldc)
			for i := range want {
				want[i] = -9 // outside the tile: untouched
			}
			for i := 0; i < rows; i++ {
				for j := 0; j < cols; j++ {
					if e.row != nil {
						want[i*ldc+j] = e.row[i]
					} else {
						want[i*ldc+j] = e.col[j]
					}
				}
			}
			for _, asm := range []bool{true, false} {
				c := make([]float32, rows*ldc)
				for i := range c {
					c[i] = -9
					if i%ldc < cols {
						c[i] = float32(math.NaN()) // beta 0: never read
					}
				}
				restore := func() {}
				if !asm {
					restore = disableAsm()
				}
				e.seed(rows, cols, 0, c, ldc)
				restore()
				if !slices.Equal(c, want) {
					t.Fatalf("%d×%d %s bias asm=%v: got %v, want %v", rows, cols, kind, asm, c, want)
				}
			}
		}
	}
}

// TestGemmDirectAPackedB runs gemmDirectA with B packed in advance, as a
// cached weight is (float32 or 16-bit panels, for this kernel's geometry or
// another one, which it must repack from source).
func TestGemmDirectAPackedB(t *testing.T) {
	oldK, oldRows, oldMin, oldPer := directMinK, directRows, parallelMinMACs, perThreadMinMACs
	directMinK, directRows, parallelMinMACs, perThreadMinMACs = 1, 12, 0, 1
	defer func() { directMinK, directRows, parallelMinMACs, perThreadMinMACs = oldK, oldRows, oldMin, oldPer }()
	rng := rand.New(rand.NewPCG(9, 10))
	ran := 0
	for _, tk := range testKernels() {
		if tk.k.direct == nil {
			continue
		}
		for si, sh := range [][3]int{{29, 40, kcMax + 9}, {50, 17, 2*kcMax + 3}, {13, 64, 30}} {
			m, n, k := sh[0], sh[1], sh[2]
			for _, kind := range []Kind{F32, F16, BF16} {
				for _, packer := range []microKernel{tk.k, activeKernel} {
					a := randMat(rng, F32, m, k, false, si%2)
					b := randMat(rng, kind, k, n, si%2 == 1, 0)
					pb := packOperand(packer, PackOpts{Threads: tk.threads, Keep16: kind != F32, OffHeap: si == 0}, true, n, k, b)
					ldc := n + 2
					c := make([]float32, m*ldc)
					for i := range c {
						c[i] = rng.Float32()
						if i%ldc >= n {
							c[i] = -7
						}
					}
					want, tol := exact(m, n, k, 0.75, a, b, 0.5, c, ldc)
					if !useDirectA(tk.k, a, m, n, k) {
						t.Fatalf("%s %v: not on the direct path", tk.k.name, sh)
					}
					gemmFast(tk.k, Opts{Threads: tk.threads}, m, n, k, 0.75, a, pb.Mat(), 0.5, c, ldc)
					checkC(t, fmt.Sprintf("%s/%dT %v B %d packed by %s", tk.k.name, tk.threads, sh, kind, packer.name), m, n, c, ldc, want, tol, -7)
					ran++
				}
			}
		}
	}
	if ran == 0 {
		t.Fatal("no kernel has a direct variant")
	}
}
