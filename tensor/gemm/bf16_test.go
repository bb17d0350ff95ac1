package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/diffuse-go/diffuse/half"
)

// withBF16 runs f in mode m (which must take effect) and restores float32.
func withBF16(t *testing.T, m BF16Mode, f func()) {
	t.Helper()
	if got := SetBF16Mode(m); got != m {
		t.Fatalf("SetBF16Mode(%v) = %v", m, got)
	}
	defer SetBF16Mode(BF16Off)
	f()
}

// TestAddRNE checks the float32 fused multiply-add of the Go kernel model
// against exact arithmetic, on random operands and on operands built to
// land on or next to float32 midpoints, in the denormal range and at the
// overflow threshold.
func TestAddRNE(t *testing.T) {
	rng := rand.New(rand.NewPCG(20, 21))
	rnd := func() float32 {
		switch rng.IntN(4) {
		case 0:
			return math.Float32frombits(rng.Uint32())
		case 1:
			return float32(rng.IntN(1<<24)) * 0x1p-24 * float32(math.Ldexp(1, rng.IntN(40)-20))
		}
		return rng.Float32()*2 - 1
	}
	check := func(x, y, z float32) {
		t.Helper()
		if g, w := addRNE(float64(x)*float64(y), z), fma32Exact(x, y, z); math.Float32bits(g) != math.Float32bits(w) {
			t.Fatalf("addRNE(%g·%g, %g) = %g, exact %g", x, y, z, g, w)
		}
	}
	for i := 0; i < 200000; i++ {
		x, y, z := rnd(), rnd(), rnd()
		switch i % 4 {
		case 1: // z is the float32 nearest -x·y plus a small offset
			z = -float32(float64(x)*float64(y)) + float32(rng.IntN(5)-2)*float32(math.Ldexp(1, rng.IntN(60)-200))
		case 2: // x·y is half an ulp of z, plus or minus a little
			z = float32(1+rng.IntN(1<<23)) * float32(math.Ldexp(1, rng.IntN(200)-140))
			x = float32(math.Ldexp(1, rng.IntN(8)))
			y = float32(math.Ldexp(float64(z), -24-int(math.Log2(float64(x))))) * (1 + float32(rng.IntN(3)-1)*0x1p-20)
		}
		if isInfNaN32(x) || isInfNaN32(y) || isInfNaN32(z) {
			continue
		}
		check(x, y, z)
	}
	for _, c := range [][3]float32{
		{math.MaxFloat32, 1, math.MaxFloat32},
		{1 + 0x1p-23, 0x1p104 - 0x1p80, 0x1p127}, // just past the overflow midpoint? exact decides
		{-(1 + 0x1p-23), 0x1p104 - 0x1p80, -0x1p127},
		{0x1p103, 1, math.MaxFloat32},           // exactly the overflow midpoint: to even (Inf)
		{0x1p103, 1 - 0x1p-24, math.MaxFloat32}, // just below it
		{0x1p-126, 0x1p-23, 0x1p-149},
		{0x1p-149, 0.5, 0},
		{0x1p-149, 0.75, 0},
		{1, 0x1p-24, 1}, // a tie: to even
		{1, 0x1p-24 + 0x1p-47, 1},
		{0x1p-24, 1 + 0x1p-23, 1 + 0x1p-23}, // a tie whose exact sum is just above it
	} {
		check(c[0], c[1], c[2])
	}
}

// TestDPBF16 checks the VDPBF16PS lane model against its specification
// step by step (exact arithmetic), and on cases where the order of the two
// products, DAZ and FTZ decide the result.
func TestDPBF16(t *testing.T) {
	daz32 := func(f float32) float32 {
		if f != 0 && math.Abs(float64(f)) < 0x1p-126 {
			return float32(math.Copysign(0, float64(f)))
		}
		return f
	}
	in := func(h uint32) float32 { return daz32(math.Float32frombits(h << 16)) }
	spec := func(acc float32, a, b uint32) float32 {
		acc = daz32(fma32Exact(in(a>>16), in(b>>16), daz32(acc)))
		return daz32(fma32Exact(in(a&0xffff), in(b&0xffff), acc))
	}
	rng := rand.New(rand.NewPCG(22, 23))
	for i := 0; i < 100000; i++ {
		scale := float32(math.Ldexp(1, rng.IntN(140)-70))
		a := uint32(randBF16(rng, scale)) | uint32(randBF16(rng, 1))<<16
		b := uint32(randBF16(rng, 1)) | uint32(randBF16(rng, scale))<<16
		acc := (rng.Float32()*2 - 1) * float32(math.Ldexp(1, rng.IntN(140)-135))
		if g, w := dpbf16(acc, a, b), spec(acc, a, b); math.Float32bits(g) != math.Float32bits(w) {
			t.Fatalf("dpbf16(%g, %#08x, %#08x) = %g, spec %g", acc, a, b, g, w)
		}
	}
	bf := func(f float32) uint32 { return uint32(half.F32ToBF16(f)) }
	pair := func(lo, hi float32) uint32 { return bf(lo) | bf(hi)<<16 }
	for _, c := range []struct {
		name     string
		acc      float32
		a, b     uint32
		wantBits uint32
	}{
		// Odd (high) product first: 1 + 2⁻²⁴ ties to 1, then 1 - 1 = 0.
		// The other order would give 2⁻²⁴.
		{"order", 1, pair(-1, 0x1p-12), pair(1, 0x1p-12), 0},
		{"denormal input", 0, 1 << 16, bf(0x1p100) << 16, 0},
		{"denormal accumulator", 0x1p-130, pair(1, 0), pair(0, 0), 0},
		{"denormal result", 0, pair(0x1p-65, 0), pair(0x1p-65, 0), 0},
		{"denormal result, negative", 0, pair(-0x1p-65, 0), pair(0x1p-65, 0), 0x80000000},
		{"smallest normal", 0, pair(0x1p-63, 0), pair(0x1p-63, 0), math.Float32bits(0x1p-126)},
		{"flushed between the steps", 0x1p-126, pair(0x1p-126, -0x1p-64), pair(1, 0x1p-63), math.Float32bits(0x1p-126)},
		{"overflow", math.MaxFloat32, pair(0, 0x1p127), pair(0, 0x1p1), 0x7f800000},
	} {
		if g := dpbf16(c.acc, c.a, c.b); math.Float32bits(g) != c.wantBits {
			t.Errorf("%s: dpbf16(%g, %#08x, %#08x) = %g (%#08x), want %#08x", c.name, c.acc, c.a, c.b, g, math.Float32bits(g), c.wantBits)
		}
	}
}

// TestPackPairs checks the rounding (to nearest even; NaN stays a quiet
// NaN) and the pair layout, odd kc included, and that bf16 operands come
// out as stored and f16 ones widened then rounded.
func TestPackPairs(t *testing.T) {
	for _, c := range []struct {
		in   uint32
		want uint16
	}{
		{0x3f808000, 0x3f80}, // tie, even below
		{0x3f818000, 0x3f82}, // tie, even above
		{0x3f808001, 0x3f81},
		{0x3f807fff, 0x3f80},
		{0xbf818000, 0xbf82},
		{0x7f7fffff, 0x7f80}, // MaxFloat32 rounds to Inf
		{0x7f800000, 0x7f80},
		{0xff800000, 0xff80},
		{0x7f800001, 0x7fc0}, // a NaN whose payload is below bit 16 stays NaN
		{0xffc12345, 0xffc1},
		{0x7f812345, 0x7fc1}, // signalling: made quiet
		{0x80000000, 0x8000},
		{0x00008000, 0x0000}, // denormal tie
		{0x00018000, 0x0002},
	} {
		var d [1]uint32
		packPairs(d[:], []float32{math.Float32frombits(c.in)}, 1, 1)
		if d[0] != uint32(c.want) {
			t.Errorf("%#08x: packed %#08x, want %#04x", c.in, d[0], c.want)
		}
	}

	rng := rand.New(rand.NewPCG(24, 25))
	for _, kc := range []int{1, 2, 5, 8} {
		const w = 3
		src := randF32(rng, w*kc)
		dst := make([]uint32, w*((kc+1)/2))
		packPairs(dst, src, w, kc)
		for q := range (kc + 1) / 2 {
			for x := range w {
				lo, hi := half.F32ToBF16(src[2*q*w+x]), uint16(0)
				if 2*q+1 < kc {
					hi = half.F32ToBF16(src[(2*q+1)*w+x])
				}
				if g := dst[q*w+x]; g != uint32(lo)|uint32(hi)<<16 {
					t.Fatalf("kc %d: pair %d column %d = %#08x, want %#04x|%#04x<<16", kc, q, x, g, lo, hi)
				}
			}
		}
	}

	// The assembly converter against the Go loop, on widths with and without
	// a partial chunk and on values where rounding is delicate.
	special := []uint32{0x3f808000, 0x3f818000, 0x3f808001, 0x7f7fffff, 0x7f800000, 0xff800000,
		0x7f800001, 0xffc12345, 0x7f812345, 0x80000000, 0x00008000, 0x00018000, 0x807fffff, 0x7fffffff}
	for _, w := range []int{1, 3, 6, 8, 13, 16, 32} {
		for _, kc := range []int{1, 2, 3, 8, 9, 64} {
			src := randF32(rng, w*kc+1)
			for i := range src {
				if rng.IntN(4) == 0 {
					src[i] = math.Float32frombits(special[rng.IntN(len(special))])
				}
			}
			src = src[:w*kc] // the converter must not read past its rows
			n := w * ((kc + 1) / 2)
			got, want := make([]uint32, n+1), make([]uint32, n+1)
			got[n], want[n] = 0xdeadbeef, 0xdeadbeef // nor write past its pairs
			packPairs(got[:n], src, w, kc)
			restore := disableAsm()
			packPairs(want[:n], src, w, kc)
			restore()
			if !slices.Equal(got, want) {
				t.Fatalf("w %d, kc %d: assembly %#08x, Go %#08x", w, kc, got, want)
			}
		}
	}

	// Through the driver's packing: a bf16 operand keeps its bits, an f16
	// one is widened and rounded.
	e := &bf16Engine{mode: BF16Exact, kern: bf16GoKernel}
	for _, kind := range []Kind{BF16, F16} {
		const rows, kc = 6, 7
		m := randMat(rng, kind, rows, kc, false, 0)
		panel := make([]float32, rows*kc)
		packPanels(panel, m, true, 0, rows, 0, kc, rows, make([]float32, rows*kc))
		pairs := make([]uint32, rows*4)
		if kk := e.convert(pairs, panel, 1, rows, kc); kk != 4 {
			t.Fatalf("convert returned %d pairs, want 4", kk)
		}
		for i := range rows {
			for p := range kc {
				h := uint16(pairs[p/2*rows+i] >> (16 * (p % 2)))
				want := m.U16[i*kc+p]
				if kind == F16 {
					want = half.F32ToBF16(half.F16ToF32(want))
				}
				if h != want {
					t.Fatalf("%v element (%d, %d): %#04x, want %#04x", kind, i, p, h, want)
				}
			}
		}
	}

	// BF16Round: bf16 values, denormals flushed.
	var d [3]uint32
	roundPanels(d[:], []float32{math.Float32frombits(0x3f818000), 0x1p-130, -0x1p-127})
	if d != [3]uint32{0x3f820000, 0, 0x80000000} {
		t.Errorf("roundPanels: %#08x", d)
	}
}

// bf16Ref is alpha·A·B + beta·C in float64 from A and B rounded as the bf16
// modes round them, with a bound for float32 accumulation (rounding and
// flushing), and the bound of the float32 product's distance from it.
func bf16Ref(m, n, k int, alpha float32, a, b Mat, beta float32, c []float32, ldc int) (want, tol, tolF32 []float64) {
	r := func(f float32) float64 { return float64(bf16In(uint32(half.F32ToBF16(f)))) }
	want, tol, tolF32 = make([]float64, m*n), make([]float64, m*n), make([]float64, m*n)
	for i := range m {
		for j := range n {
			var s, mag float64
			for p := range k {
				x, y := a.At(i, p), b.At(p, j)
				v := r(x) * r(y)
				s, mag = s+v, mag+math.Abs(float64(x)*float64(y))
			}
			w, t := float64(alpha)*s, math.Abs(float64(alpha))*mag
			if beta != 0 {
				w += float64(beta) * float64(c[i*ldc+j])
				t += math.Abs(float64(beta) * float64(c[i*ldc+j]))
			}
			want[i*n+j] = w
			tol[i*n+j] = 2e-7*float64(2*k+4)*t + 1e-30
			// bf16 keeps 8 significant bits: each operand is off by up to
			// 2⁻⁸ relatively, a product by just over 2⁻⁷.
			tolF32[i*n+j] = 0x1.02p-7*math.Abs(float64(alpha))*mag + tol[i*n+j]
		}
	}
	return want, tol, tolF32
}

// TestGemmBF16 runs products in the software bf16 modes through every kind
// of operand (stored f32/f16/bf16 in either orientation, Lines, InPlace,
// packed for the bf16 kernel's geometry and for another one, PanelsB),
// with biases, beta and several threads, and compares them with the
// float64 product of the rounded operands (tight) and with the float32
// product (within bf16 rounding).
func TestGemmBF16(t *testing.T) {
	oldMin, oldPer := parallelMinMACs, perThreadMinMACs
	parallelMinMACs, perThreadMinMACs = 0, 1
	defer func() { parallelMinMACs, perThreadMinMACs = oldMin, oldPer }()
	defer SetThreads(0)

	shapes := [][3]int{
		{1, 1, 1}, {7, 13, 5}, {6, 32, 8}, {12, 64, 17}, {13, 40, kcMax + 9}, {mcMax + 11, 33, 30},
		{5, ncMax + 21, 3}, {9, 70, 2*kcMax + 3},
	}
	kinds := []Kind{F32, F16, BF16}
	rng := rand.New(rand.NewPCG(26, 27))
	geom32 := genericKernel(6, 32, true)
	for si, sh := range shapes {
		m, n, k := sh[0], sh[1], sh[2]
		for variant := 0; variant < 8; variant++ {
			a := randMat(rng, kinds[(si+variant)%3], m, k, variant%2 == 1, si%2)
			b := randMat(rng, kinds[(si+2*variant)%3], k, n, si%2 == 1, variant%2)
			alpha, beta := float32(1), float32(0)
			if variant%3 == 1 {
				alpha, beta = -0.5, 1
			}
			var o Opts
			if variant%4 == 2 {
				o.RowBias, o.ColBias = randF32(rng, m), randF32(rng, n)
			}
			ldc := n + 2
			c0 := randF32(rng, m*ldc)
			for i := range c0 {
				if i%ldc >= n {
					c0[i] = -7 // padding, which must stay untouched
				}
			}
			want, tol, tolF32 := bf16Ref(m, n, k, alpha, a, b, beta, c0, ldc)
			for i := range m {
				for j := range n {
					if o.RowBias != nil {
						// Two more additions, each rounded.
						rb, cb := float64(o.RowBias[i]), float64(o.ColBias[j])
						want[i*n+j] += rb + cb
						e := 2e-7 * (math.Abs(rb) + math.Abs(cb) + 2*math.Abs(want[i*n+j]))
						tol[i*n+j] += e
						tolF32[i*n+j] += e
					}
				}
			}
			fp32 := slices.Clone(c0)
			GemmWith(o, m, n, k, alpha, a, b, beta, fp32, ldc)

			var aa, bb Mat = a, b
			switch variant {
			case 1:
				aa = packOperand(geom32, PackOpts{}, false, m, k, a).Mat() // the bf16 kernel's geometry
				bb = packOperand(geom32, PackOpts{}, true, n, k, b).Mat()
			case 2:
				aa, bb = linesOf(a, false), linesOf(b, true)
			case 3:
				aa, bb = PackA(m, k, a).Mat(), PackB(k, n, b).Mat() // the float32 kernel's geometry
			case 4:
				if b.Kind == F32 && !b.Trans {
					// B in place: row p at offset p·stride, columns in runs of n.
					bb = linesOf(b, true)
					bb.InPlace = &InPlace{Data: b.F32, Off: make([]int, k), Run: n, Col: func(j int) int { return j }}
					for p := range k {
						bb.InPlace.Off[p] = p * b.Stride
					}
				}
			case 5:
				if b.Kind == F32 && !b.Trans && k*n <= 1<<16 {
					// PanelsB in the active kernel's layout.
					w := NR()
					npad := (n + w - 1) / w * w
					data := make([]float32, k*npad)
					kcb := KBlock(k)
					for p := range k {
						pc := p / kcb * kcb
						kc := min(kcb, k-pc)
						for j := range n {
							data[pc*npad+j/w*w*kc+(p-pc)*w+j%w] = b.At(p, j)
						}
					}
					bb = PanelsB(k, n, data).Mat()
				}
			}
			for _, mode := range []BF16Mode{BF16Exact, BF16Round} {
				for _, threads := range []int{1, 3} {
					SetThreads(threads)
					got := slices.Clone(c0)
					withBF16(t, mode, func() { GemmWith(o, m, n, k, alpha, aa, bb, beta, got, ldc) })
					what := func(s string) string {
						return fmt.Sprintf("%s: %v, %v, variant %d, %d threads", s, sh, mode, variant, threads)
					}
					checkC(t, what("vs rounded operands"), m, n, got, ldc, want, tol, -7)
					for i := range m {
						for j := range n {
							if d := math.Abs(float64(got[i*ldc+j]) - float64(fp32[i*ldc+j])); !(d <= tolF32[i*n+j]) {
								t.Fatalf("%v: C[%d,%d] = %v, float32 product %v (tol %.3g), rounded-operand reference %v", what("vs float32"), i, j, got[i*ldc+j], fp32[i*ldc+j], tolF32[i*n+j], want[i*n+j])
							}
						}
					}
				}
			}
		}
	}
}

// TestBF16Mode checks the switch: BF16Native only where the CPU has
// AVX512_BF16 (elsewhere asking for it changes nothing, bit for bit), the
// software modes everywhere, and float32 again, bit for bit, once off.
func TestBF16Mode(t *testing.T) {
	rng := rand.New(rand.NewPCG(28, 29))
	const m, n, k = 20, 70, 41
	a, b := randMat(rng, F32, m, k, false, 0), randMat(rng, F16, k, n, true, 0)
	run := func() []float32 {
		c := make([]float32, m*n)
		Gemm(m, n, k, 1, a, b, 0, c, n)
		return c
	}
	fp32 := run()
	same := func(got []float32) bool {
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(fp32[i]) {
				return false
			}
		}
		return true
	}

	old := hasBF16
	defer func() { hasBF16 = old }()
	hasBF16 = false // as on a CPU without AVX512_BF16
	if SetBF16(true) || CurrentBF16Mode() != BF16Off || HasBF16() {
		t.Fatalf("SetBF16(true) without AVX512_BF16: mode %v", CurrentBF16Mode())
	}
	if !same(run()) {
		t.Fatal("SetBF16(true) without AVX512_BF16 changed the product")
	}
	for _, mode := range []BF16Mode{BF16Exact, BF16Round} {
		withBF16(t, mode, func() {
			if same(run()) {
				t.Errorf("%v: the product is bit for bit the float32 one", mode)
			}
		})
	}
	if !same(run()) {
		t.Fatal("the product differs from float32 after the bf16 modes")
	}

	for s, want := range map[string]BF16Mode{"": BF16Off, "0": BF16Off, "1": BF16Native, "native": BF16Native, "exact": BF16Exact, "round": BF16Round} {
		if g, err := ParseBF16Mode(s); err != nil || g != want {
			t.Errorf("ParseBF16Mode(%q) = %v, %v; want %v", s, g, err, want)
		}
	}
	if _, err := ParseBF16Mode("yes"); err == nil {
		t.Error("ParseBF16Mode(yes) succeeded")
	}
}

// TestBF16Native compares the hardware kernel with its Go model through the
// whole driver, bit for bit, where the CPU has AVX512_BF16.
func TestBF16Native(t *testing.T) {
	if !HasBF16() {
		t.Skip("no AVX512_BF16 here (TestAsmInterpBF16 checks the kernel in the interpreter)")
	}
	rng := rand.New(rand.NewPCG(30, 31))
	for _, sh := range [][3]int{{6, 32, 2}, {7, 33, 3}, {50, 100, kcMax + 7}, {mcMax + 5, 70, 64}} {
		m, n, k := sh[0], sh[1], sh[2]
		a, b := randMat(rng, F32, m, k, false, 0), randMat(rng, BF16, k, n, false, 0)
		c0 := randF32(rng, m*n)
		var got [2][]float32
		for i, mode := range []BF16Mode{BF16Native, BF16Exact} {
			got[i] = slices.Clone(c0)
			withBF16(t, mode, func() { Gemm(m, n, k, 1.5, PackA(m, k, a).Mat(), b, 0.5, got[i], n) })
		}
		for i := range got[0] {
			if math.Float32bits(got[0][i]) != math.Float32bits(got[1][i]) {
				t.Fatalf("%v: C[%d] native %v, Go model %v", sh, i, got[0][i], got[1][i])
			}
		}
	}
}
