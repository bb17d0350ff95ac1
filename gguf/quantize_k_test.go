package gguf

import (
	"math"
	"math/rand"
	"testing"
)

// nearestInt is round-half-to-even on float32 over the range ggml asserts
// (|v| ≤ 4194303), ties included.
func TestNearestInt(t *testing.T) {
	vals := []float32{0, float32(math.Copysign(0, -1)), 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 31.5, -32.5,
		0.49999997, 0.50000006, -0.49999997, 1e-30, -1e-30, 4194302.5, -4194302.5, 4194303, -4194303}
	for i := -4096; i <= 4096; i++ {
		vals = append(vals, float32(i)/8)
	}
	r := rand.New(rand.NewSource(3))
	for range 10000 {
		vals = append(vals, float32(r.NormFloat64()*math.Pow(10, float64(r.Intn(7)))))
	}
	for _, v := range vals {
		if math.Abs(float64(v)) > 4194303 {
			continue
		}
		if got, want := nearestInt(v), int(math.RoundToEven(float64(v))); got != want {
			t.Errorf("nearestInt(%v) = %d, want %d", v, got, want)
		}
	}
}

// q6Bytes builds a Q6_K block from its levels L (q + 32, 0…63), int8
// scales and f16 d by ggml-common.h's layout, element by element: element
// e of half n = e/128, with r = e%128, k = r/32, l = r%32, keeps its low
// four bits in ql[64n + l + 32(k%2)] (low nibble for k < 2) and its top
// two in bits 2k of qh[32n + l].
func q6Bytes(L []int, scales []int8, d uint16) []byte {
	b := make([]byte, 210)
	for e, q := range L {
		n, r := e/128, e%128
		k, l := r/32, r%32
		b[64*n+l+32*(k%2)] |= byte(q&15) << (4 * (k / 2))
		b[128+32*n+l] |= byte(q>>4) << (2 * k)
	}
	for i, s := range scales {
		b[192+i] = byte(s)
	}
	b[208], b[209] = byte(d), byte(d>>8)
	return b
}

// q5KBytes builds a Q5_K block from its levels L (0…31), 6-bit scales and
// mins and f16 d and dmin: element e of sub-block s = e/32 keeps its low
// four bits in qs[32(e/64) + e%32] (low nibble for even s) and its fifth
// in bit s of qh[e%32].
func q5KBytes(L, sc, m []int, d, dmin uint16) []byte {
	b := make([]byte, 176)
	b[0], b[1], b[2], b[3] = byte(d), byte(d>>8), byte(dmin), byte(dmin>>8)
	putScaleMinK4(b[4:16], sc, m)
	for e, q := range L {
		s := e / 32
		b[48+32*(e/64)+e%32] |= byte(q&15) << (4 * (s % 2))
		b[16+e%32] |= byte(q>>4) << s
	}
	return b
}

func fill[T any](n int, v T) []T {
	s := make([]T, n)
	for i := range s {
		s[i] = v
	}
	return s
}

// Golden Q6_K blocks worked out by hand from quantize_row_q6_K_ref.
//
// Constant 1: make_qx_quants gives every 16-value group iscale −32/1,
// levels −32 and scale Σx³l/Σx²l² = −1/32 (the candidates −(32+0.1i) give
// sumlx²/suml2 = 16 = best exactly, so none replaces it). max_scale =
// −1/32, iscale = −128/max_scale = 4096, d = 1/4096 (f16 0x0C00), every
// scale nearest(4096·−1/32) = −128, and x/(d·−128) = −32: level 0.
//
// Ties: fifteen groups of 1 as above; the last holds 0.5, eleven −0.5 and
// 0.5u, 2.5u, −0.5u, −2.5u with u = 66/4096. Its first pass (iscale −64:
// levels −32, 31, and −1, −3, 1, 3 for the small ones) loses to candidate
// −31.1/0.5 (levels −31, 31: Σ ratio 12 against 11.999), so its scale is
// ≈ −0.5/31 and stored as nearest(4096·−0.01613) = −66: d·scale = −u. The
// small values then give exactly −0.5, −2.5, 0.5, 2.5 steps, which ties to
// even take to 0, −2, 0, 2 (rounding halves away would give ±1, ±3); 0.5
// and −0.5 give −31.03 and 31.03: −31 and 31.
func TestQuantizeQ6_KGolden(t *testing.T) {
	u := float32(66) / 4096
	tie := append(fill(240, float32(1)), 0.5, -0.5, -0.5, -0.5, -0.5, -0.5, -0.5, -0.5, -0.5, -0.5, -0.5, -0.5, 0.5*u, 2.5*u, -0.5*u, -2.5*u)
	tieL := append(fill(240, 0), 1, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 32, 30, 32, 34)
	for _, c := range []struct {
		name string
		x    []float32
		want []byte
	}{
		{"zeros", make([]float32, 256), make([]byte, 210)},
		{"below GROUP_MAX_EPS", fill(256, float32(1e-16)), make([]byte, 210)},
		{"constant 1", fill(256, float32(1)), q6Bytes(make([]int, 256), fill(16, int8(-128)), 0x0C00)},
		{"ties", tie, q6Bytes(tieL, append(fill(15, int8(-128)), -66), 0x0C00)},
	} {
		got := make([]byte, 210)
		if err := QuantizeRow(Q6_K, c.x, got); err != nil {
			t.Fatal(err)
		}
		if i := firstDiff(got, c.want); i >= 0 {
			t.Errorf("Q6_K %s: byte %d = %#x, want %#x", c.name, i, got[i], c.want[i])
		}
	}
}

// Golden Q5_K blocks worked out by hand from quantize_row_q5_K_ref.
//
// Constant 31/32: make_qkx2_quants takes min 0 (clamped), iscale 31/(31/32)
// = 32, levels 31 and scale 1/32; no candidate has D > 0 (all levels equal:
// D = 62·62l² − (62l)² = 0 exactly), so scale 1/32 and min −0 stay. Scales
// 63 (nearest(63/(1/32)·1/32)), mins 0, d = f16(1/32/63) = 1040·2⁻²¹
// (0x1010), dmin 0; 31/32 ÷ (63d) = 31.008: level 31.
//
// Ties: seven sub-blocks of i/32 (exact fits: scale 1/32, error 0, so d as
// above, scales 63) and one of 1560i·2⁻²¹ = 1.5i·d (exact fit with scale
// 1.5d: scale nearest(2016·1.5d) = nearest(1.4996) = 1). Requantising, the
// first give i·1.00024: level i; the last 1.5i exactly, ties to even for
// odd i (4.5 → 4, 7.5 → 8), clamped at 31.
func TestQuantizeQ5_KGolden(t *testing.T) {
	var tie []float32
	var tieL []int
	for i := 0; i < 256; i++ {
		if i < 224 {
			tie = append(tie, float32(i%32)/32)
			tieL = append(tieL, i%32)
			continue
		}
		tie = append(tie, float32((i-224)*1560)/(1<<21))
		tieL = append(tieL, min(31, int(math.RoundToEven(1.5*float64(i-224)))))
	}
	for _, c := range []struct {
		name string
		x    []float32
		want []byte
	}{
		{"zeros", make([]float32, 256), make([]byte, 176)},
		{"constant 31/32", fill(256, float32(31)/32), q5KBytes(fill(256, 31), fill(8, 63), make([]int, 8), 0x1010, 0)},
		{"ties", tie, q5KBytes(tieL, append(fill(7, 63), 1), make([]int, 8), 0x1010, 0)},
	} {
		got := make([]byte, 176)
		if err := QuantizeRow(Q5_K, c.x, got); err != nil {
			t.Fatal(err)
		}
		if i := firstDiff(got, c.want); i >= 0 {
			t.Errorf("Q5_K %s: byte %d = %#x, want %#x", c.name, i, got[i], c.want[i])
		}
	}
	// The tie block decodes to the levels: 4.5 steps came back as 4.
	back := make([]float32, 256)
	DequantizeRow(Q5_K, q5KBytes(tieL, append(fill(7, 63), 1), make([]int, 8), 0x1010, 0), back)
	if d := float32(1040) / (1 << 21); back[227] != 4*d || back[229] != 8*d {
		t.Errorf("tie block decodes to %v, %v", back[227]/d, back[229]/d)
	}
}

// testRows returns 256-value runs: heavy-tailed random blocks (normal
// values times a log-normal scale per block) and the structured cases
// (zeros, constants, a lone outlier, negative only, tiny, large, a grid).
func testRows() (random, structured []float32) {
	r := rand.New(rand.NewSource(1))
	random = make([]float32, 256*64)
	for b := 0; b < 64; b++ {
		s := math.Exp(r.NormFloat64())
		for i := 0; i < 256; i++ {
			random[256*b+i] = float32(r.NormFloat64() * s)
		}
	}
	runs := []func(i int) float32{
		func(int) float32 { return 0 },
		func(int) float32 { return 1.25 },
		func(int) float32 { return -0.75 },
		func(i int) float32 {
			if i == 100 {
				return 50
			}
			return float32(r.NormFloat64() * 0.01)
		},
		func(int) float32 { return -float32(math.Abs(r.NormFloat64())+0.1) * 3 },
		func(int) float32 { return float32(r.NormFloat64() * 1e-6) },
		func(int) float32 { return float32(r.NormFloat64() * 1e4) },
		func(i int) float32 { return float32(i%64-32) * 0.25 },
	}
	for _, f := range runs {
		for i := 0; i < 256; i++ {
			structured = append(structured, f(i))
		}
	}
	return random, structured
}

// errorBound describes how far a type's dequantised values may stray: tol
// steps of base/levels, base the block's largest magnitude (symmetric
// types) or its span max(hi, 0) − min(lo, 0) (types with a min), plus the
// f16 rounding of the scales: 2⁻¹⁰ of base, and half the smallest f16
// subnormal (2⁻²⁵) times mult, the largest scale-times-level product.
type errorBound struct {
	typ          Type
	levels, tol  float64
	span         bool
	mult         float64
	coarser      Type // a type whose RMS error must be larger
	isFixedPoint bool // quantise(dequantise(q)) == q
}

var errorBounds = []errorBound{
	{Q8_0, 127, 0.5, false, 127, Q6_K, true},
	{Q6_K, 32, 0.75, false, 128 * 32, Q5_K, false},
	{Q5_K, 31, 1, true, 63*31 + 63, Q4_K, false},
	{Q5_1, 31, 1, true, 32, Q4_1, true},
	{Q5_0, 16, 1, false, 16, Q4_0, true},
	{Q4_K, 15, 1, true, 63*15 + 63, 0, false},
	{Q4_1, 15, 1, true, 16, 0, true},
	{Q4_0, 8, 1, false, 8, 0, true},
}

// maxRatio returns the largest error of back against x, block by block,
// as a fraction of the bound.
func (e errorBound) maxRatio(x, back []float32) (worst float64, at int) {
	bs := e.typ.BlockSize()
	for b := 0; b < len(x); b += bs {
		lo, hi := minMax(x[b : b+bs])
		base := math.Max(math.Abs(float64(lo)), math.Abs(float64(hi)))
		if e.span {
			base = math.Max(float64(hi), 0) - math.Min(float64(lo), 0)
		}
		bound := e.tol*base/e.levels + base/1024 + e.mult*0x1p-25
		for i := b; i < b+bs; i++ {
			if r := math.Abs(float64(back[i]-x[i])) / bound; r > worst {
				worst, at = r, i
			}
		}
	}
	return worst, at
}

func roundTrip(t *testing.T, typ Type, x []float32) ([]byte, []float32) {
	t.Helper()
	b, err := Quantize(typ, []int{len(x)}, x)
	if err != nil {
		t.Fatal(err)
	}
	back := make([]float32, len(x))
	if err := DequantizeRow(typ, b, back); err != nil {
		t.Fatal(err)
	}
	return b, back
}

func rms(x, y []float32) float64 {
	var s float64
	for i := range x {
		d := float64(x[i] - y[i])
		s += d * d
	}
	return math.Sqrt(s / float64(len(x)))
}

// Every block type gives values back within its bound on random and
// structured runs, zeros exactly; the finer types have the smaller RMS
// error on the random runs (Q8_0 < Q6_K < Q5_K < Q4_K, Q5_1 < Q4_1,
// Q5_0 < Q4_0).
func TestQuantizeErrorBounds(t *testing.T) {
	random, structured := testRows()
	errs := map[Type]float64{}
	for _, e := range errorBounds {
		for _, x := range [][]float32{random, structured} {
			_, back := roundTrip(t, e.typ, x)
			if r, i := e.maxRatio(x, back); r > 1 {
				t.Errorf("%s element %d: %v back as %v, %.2f times the bound", e.typ, i, x[i], back[i], r)
			}
		}
		_, back := roundTrip(t, e.typ, structured[:256])
		for i, v := range back {
			if v != 0 {
				t.Fatalf("%s: zero %d back as %v", e.typ, i, v)
			}
		}
		_, back = roundTrip(t, e.typ, random)
		errs[e.typ] = rms(random, back)
	}
	for _, e := range errorBounds {
		if e.coarser != 0 && errs[e.typ] >= errs[e.coarser] {
			t.Errorf("%s RMS error %.4g, not below %s's %.4g", e.typ, errs[e.typ], e.coarser, errs[e.coarser])
		}
	}
	if errs[Q6_K] >= min(errs[Q5_0], errs[Q5_1]) {
		t.Errorf("Q6_K RMS error %.4g, not below the 5-bit types'", errs[Q6_K])
	}
}

// Re-quantising dequantised values gives the same values back for the
// 32-value types (their scales come back from the extreme levels); the
// bytes may differ where the f16 scale underflowed to zero, as ggml writes
// the levels of the unrounded scale under it. The K-quants do not have the
// property in ggml (the weighted search over candidate scales, with
// weights from the values, moves scales and levels), so for them the
// second round trip is only held to the bound.
func TestQuantizeFixedPoint(t *testing.T) {
	random, structured := testRows()
	for _, e := range errorBounds {
		for _, x := range [][]float32{random, structured} {
			_, back := roundTrip(t, e.typ, x)
			_, back2 := roundTrip(t, e.typ, back)
			if !e.isFixedPoint {
				if r, i := e.maxRatio(back, back2); r > 1 {
					t.Errorf("%s element %d: %v re-quantised to %v, %.2f times the bound", e.typ, i, back[i], back2[i], r)
				}
				continue
			}
			for i := range back {
				if back2[i] != back[i] {
					t.Errorf("%s element %d: %v re-quantised to %v", e.typ, i, back[i], back2[i])
					break
				}
			}
		}
	}
}

// Non-finite values give some bytes, as in ggml, and no panic.
func TestQuantizeNonFinite(t *testing.T) {
	x := make([]float32, 256)
	for i := range x {
		x[i] = float32(i%7) - 3
	}
	inf := float32(math.Inf(1))
	for _, bad := range []float32{float32(math.NaN()), inf, -inf} {
		x[77] = bad
		for typ := range quantFuncs {
			b := make([]byte, mustRowBytes(t, typ, len(x)))
			if err := QuantizeRow(typ, x, b); err != nil {
				t.Errorf("%s with %v: %v", typ, bad, err)
			}
		}
	}
}

func BenchmarkQuantizeRow(b *testing.B) {
	random, _ := testRows()
	for _, typ := range []Type{Q8_0, Q5_0, Q4_K, Q5_K, Q6_K} {
		b.Run(typ.String(), func(b *testing.B) {
			dst := make([]byte, must(typ.RowBytes(len(random))))
			b.SetBytes(int64(4 * len(random)))
			for b.Loop() {
				if err := QuantizeRow(typ, random, dst); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
