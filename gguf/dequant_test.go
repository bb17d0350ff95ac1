package gguf

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/half"
)

// The tests below build blocks by hand from the block layouts of
// ggml-common.h, described element by element (which bits of which byte
// hold element e), and check every dequantised value against the format's
// formula. Scales are powers of two and quants small integers, so the
// expected values are exact.

func checkValues(t *testing.T, typ Type, block []byte, want []float64) {
	t.Helper()
	got := make([]float32, len(want))
	if err := DequantizeRow(typ, block, got); err != nil {
		t.Fatalf("DequantizeRow(%s): %v", typ, err)
	}
	for i := range want {
		if float64(got[i]) != want[i] {
			t.Fatalf("%s element %d = %v, want %v", typ, i, got[i], want[i])
		}
	}
}

// quants returns n pseudo-random integers in [0, max).
func quants(n, max, seed int) []int {
	q := make([]int, n)
	for i := range q {
		q[i] = (i*seed + i*i*3 + seed) % max
	}
	return q
}

func TestDequantQ4_0(t *testing.T) {
	// block_q4_0: f16 d, then 16 bytes; byte j holds element j (low nibble)
	// and element j+16 (high nibble); x = (q − 8)·d.
	q := quants(32, 16, 7)
	q[0], q[16] = 0, 15 // the extremes: −8d and 7d
	b := make([]byte, 18)
	putF16(b, 0.5)
	want := make([]float64, 32)
	for e := range q {
		if e < 16 {
			b[2+e] |= byte(q[e])
		} else {
			b[2+e-16] |= byte(q[e]) << 4
		}
		want[e] = float64(q[e]-8) * 0.5
	}
	checkValues(t, Q4_0, b, want)
	if want[0] != -4 || want[16] != 3.5 {
		t.Fatalf("test setup: %v %v", want[0], want[16])
	}
}

func TestDequantQ4_1(t *testing.T) {
	// block_q4_1: f16 d, f16 m, 16 bytes of nibbles as Q4_0; x = q·d + m.
	q := quants(32, 16, 5)
	b := make([]byte, 20)
	putF16(b, 0.25)
	putF16(b[2:], -1.5)
	want := make([]float64, 32)
	for e := range q {
		if e < 16 {
			b[4+e] |= byte(q[e])
		} else {
			b[4+e-16] |= byte(q[e]) << 4
		}
		want[e] = float64(q[e])*0.25 - 1.5
	}
	checkValues(t, Q4_1, b, want)
}

// put5 stores 5-bit quants the Q5_0/Q5_1 way: low nibbles as Q4_0 in qs,
// bit 4 of element e at bit e of the little-endian uint32 qh.
func put5(qh, qs []byte, q []int) {
	var h uint32
	for e, v := range q {
		if e < 16 {
			qs[e] |= byte(v & 15)
		} else {
			qs[e-16] |= byte(v&15) << 4
		}
		h |= uint32(v>>4) << e
	}
	binary.LittleEndian.PutUint32(qh, h)
}

func TestDequantQ5_0(t *testing.T) {
	// block_q5_0: f16 d, u32 qh, 16 bytes; x = (q − 16)·d.
	q := quants(32, 32, 11)
	q[3], q[30] = 0, 31
	b := make([]byte, 22)
	putF16(b, 0.125)
	put5(b[2:6], b[6:22], q)
	want := make([]float64, 32)
	for e := range q {
		want[e] = float64(q[e]-16) * 0.125
	}
	checkValues(t, Q5_0, b, want)
}

func TestDequantQ5_1(t *testing.T) {
	// block_q5_1: f16 d, f16 m, u32 qh, 16 bytes; x = q·d + m.
	q := quants(32, 32, 13)
	b := make([]byte, 24)
	putF16(b, 2)
	putF16(b[2:], -20)
	put5(b[4:8], b[8:24], q)
	want := make([]float64, 32)
	for e := range q {
		want[e] = float64(q[e])*2 - 20
	}
	checkValues(t, Q5_1, b, want)
}

func TestDequantQ8_0(t *testing.T) {
	// block_q8_0: f16 d, 32 int8; x = q·d.
	b := make([]byte, 34)
	putF16(b, 0.0625)
	want := make([]float64, 32)
	for e := range want {
		q := int8(e*9 - 128)
		if e == 31 {
			q = 127
		}
		b[2+e] = byte(q)
		want[e] = float64(q) * 0.0625
	}
	checkValues(t, Q8_0, b, want)
}

// putScaleMinK4 packs the eight 6-bit scales and mins of a Q4_K/Q5_K block
// into 12 bytes: sub-blocks 0–3 keep theirs in the low six bits of bytes
// j (scale) and j+4 (min); sub-blocks 4–7 keep their low four bits in the
// nibbles of byte j+4 and their top two bits in bits 6–7 of bytes j−4
// (scale) and j (min).
func putScaleMinK4(dst []byte, sc, m []int) {
	for j := 0; j < 8; j++ {
		if j < 4 {
			dst[j] |= byte(sc[j])
			dst[j+4] |= byte(m[j])
		} else {
			dst[j+4] = byte(sc[j]&15) | byte(m[j]&15)<<4
			dst[j-4] |= byte(sc[j]>>4) << 6
			dst[j] |= byte(m[j]>>4) << 6
		}
	}
}

func TestDequantQ4_K(t *testing.T) {
	// block_q4_K: f16 d, f16 dmin, 12 bytes of scales/mins, 128 bytes of
	// nibbles. Element e is in sub-block s = e/32 of 32; byte 32(e/64) +
	// e%32 holds it, in the low nibble when s is even. x = d·sc[s]·q −
	// dmin·m[s].
	sc := []int{1, 63, 17, 32, 5, 48, 0, 33}
	m := []int{62, 0, 9, 40, 63, 21, 16, 3}
	q := quants(256, 16, 3)
	b := make([]byte, 144)
	putF16(b, 1.0/16)
	putF16(b[2:], 1.0/32)
	putScaleMinK4(b[4:16], sc, m)
	want := make([]float64, 256)
	for e := range q {
		s := e / 32
		at := 16 + 32*(e/64) + e%32
		if s%2 == 0 {
			b[at] |= byte(q[e])
		} else {
			b[at] |= byte(q[e]) << 4
		}
		want[e] = float64(sc[s])/16*float64(q[e]) - float64(m[s])/32
	}
	checkValues(t, Q4_K, b, want)
}

func TestDequantQ5_K(t *testing.T) {
	// block_q5_K: f16 d, f16 dmin, 12 bytes of scales/mins, 32 bytes qh,
	// 128 bytes of nibbles laid out as Q4_K; bit 4 of element e is bit s of
	// qh[e%32], s = e/32.
	sc := []int{2, 7, 63, 0, 44, 31, 12, 50}
	m := []int{5, 63, 0, 27, 1, 60, 36, 18}
	q := quants(256, 32, 5)
	b := make([]byte, 176)
	putF16(b, 0.5)
	putF16(b[2:], 0.25)
	putScaleMinK4(b[4:16], sc, m)
	want := make([]float64, 256)
	for e := range q {
		s := e / 32
		at := 48 + 32*(e/64) + e%32
		if s%2 == 0 {
			b[at] |= byte(q[e] & 15)
		} else {
			b[at] |= byte(q[e]&15) << 4
		}
		b[16+e%32] |= byte(q[e]>>4) << s
		want[e] = float64(sc[s])*0.5*float64(q[e]) - float64(m[s])*0.25
	}
	checkValues(t, Q5_K, b, want)
}

func TestDequantQ6_K(t *testing.T) {
	// block_q6_K: 128 bytes ql, 64 bytes qh, 16 int8 scales, f16 d. Element
	// e is in half n = e/128; with r = e%128, k = r/32, l = r%32 its low four
	// bits are in ql[64n + l + 32(k%2)] (low nibble for k < 2) and its top
	// two in bits 2k, 2k+1 of qh[32n + l]; its scale is scales[8n + l/16 +
	// 2k]; x = d·scale·(q − 32).
	scales := []int8{1, -1, 127, -128, 3, 0, 64, -7, 9, 11, -13, 2, 100, -50, 5, 6}
	q := quants(256, 64, 9)
	q[0], q[255] = 0, 63
	b := make([]byte, 210)
	for i, s := range scales {
		b[192+i] = byte(s)
	}
	putF16(b[208:], 0.25)
	want := make([]float64, 256)
	for e := range q {
		n, r := e/128, e%128
		k, l := r/32, r%32
		at := 64*n + l + 32*(k%2)
		if k < 2 {
			b[at] |= byte(q[e] & 15)
		} else {
			b[at] |= byte(q[e]&15) << 4
		}
		b[128+32*n+l] |= byte(q[e]>>4) << (2 * k)
		want[e] = 0.25 * float64(scales[8*n+l/16+2*k]) * float64(q[e]-32)
	}
	checkValues(t, Q6_K, b, want)
}

func TestDequantPlain(t *testing.T) {
	vals := []float32{1, -2.5, 65504, float32(math.Inf(-1)), 0x1p-24, -0}
	f32 := make([]byte, 4*len(vals))
	f16b := make([]byte, 2*len(vals))
	bf16 := make([]byte, 2*len(vals))
	want := make([]float64, len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(f32[4*i:], math.Float32bits(v))
		putF16(f16b[2*i:], v)
		binary.LittleEndian.PutUint16(bf16[2*i:], half.F32ToBF16(v))
		want[i] = float64(v)
	}
	checkValues(t, F32, f32, want)
	checkValues(t, F16, f16b, want)
	want[2] = 65536 // 65504 rounds to 65536 in bfloat16
	checkValues(t, BF16, bf16, want)
}

// TestDequantAgainstGGML compares with vectors made by ggml itself:
// testdata/ggml_dequant.bin holds, for each of Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
// Q4_K, Q5_K and Q6_K, eight blocks of random bytes (with finite f16
// scales) and the float32 values ggml's dequantize_row_* (ggml-quants.c,
// ggml-org/ggml d99724f, compiled by gcc for x86-64 without FMA) returned
// for them. Records: 4-byte type name, int32 element count, int32 byte
// count, the bytes, the float32 values.
func TestDequantAgainstGGML(t *testing.T) {
	data, err := os.ReadFile("testdata/ggml_dequant.bin")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]Type{"Q4_0": Q4_0, "Q4_1": Q4_1, "Q5_0": Q5_0, "Q5_1": Q5_1, "Q8_0": Q8_0, "Q4_K": Q4_K, "Q5_K": Q5_K, "Q6_K": Q6_K}
	seen := 0
	for r := bytes.NewReader(data); r.Len() > 0; seen++ {
		var hdr struct {
			Name   [4]byte
			N, Len int32
		}
		if err := binary.Read(r, binary.LittleEndian, &hdr); err != nil {
			t.Fatal(err)
		}
		typ, ok := names[string(hdr.Name[:])]
		if !ok {
			t.Fatalf("unknown type %q in the vectors", hdr.Name)
		}
		src := make([]byte, hdr.Len)
		want := make([]float32, hdr.N)
		r.Read(src)
		if err := binary.Read(r, binary.LittleEndian, want); err != nil {
			t.Fatal(err)
		}
		got := make([]float32, hdr.N)
		if err := DequantizeRow(typ, src, got); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%s element %d = %v (%#x), ggml gives %v (%#x)", typ, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
			}
		}
	}
	if seen != len(names) {
		t.Errorf("checked %d types, want %d", seen, len(names))
	}
}

func TestDequantizeRowErrors(t *testing.T) {
	cases := []struct {
		typ  Type
		src  int
		dst  int
		want string
	}{
		{Q2_K, 84, 256, "cannot dequantise tensor type Q2_K"},
		{Type(4), 18, 32, "cannot dequantise tensor type type(4)"},
		{Q4_0, 18, 31, "not a whole number of 32-element blocks"},
		{Q4_0, 17, 32, "take 18 bytes, got 17"},
		{Q4_K, 144 * 2, 256, "take 144 bytes, got 288"},
		{F16, 3, 2, "take 4 bytes, got 3"},
	}
	for _, c := range cases {
		err := DequantizeRow(c.typ, make([]byte, c.src), make([]float32, c.dst))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("DequantizeRow(%s, %d bytes, %d values): err = %v, want %q", c.typ, c.src, c.dst, err, c.want)
		}
	}
	// Several blocks at once, as a GEMM panel would ask.
	if err := DequantizeRow(Q8_0, make([]byte, 34*3), make([]float32, 96)); err != nil {
		t.Errorf("three Q8_0 blocks: %v", err)
	}
}

func TestTypeTraits(t *testing.T) {
	for typ, want := range map[Type][3]any{Q4_0: {"Q4_0", 32, 18}, Q6_K: {"Q6_K", 256, 210}, BF16: {"BF16", 1, 2}, IQ4_XS: {"IQ4_XS", 256, 136}} {
		if typ.String() != want[0] || typ.BlockSize() != want[1] || typ.TypeSize() != want[2] {
			t.Errorf("%d: %s %d %d, want %v", uint32(typ), typ, typ.BlockSize(), typ.TypeSize(), want)
		}
	}
	if Type(5).Known() || Type(5).BlockSize() != 0 || Type(5).String() != "type(5)" {
		t.Errorf("removed type 5 is known")
	}
	if n, err := Q4_K.RowBytes(512); n != 288 || err != nil {
		t.Errorf("Q4_K.RowBytes(512) = %d, %v", n, err)
	}
}

// TestBlockDequantizer checks that runs of blocks converted on their own
// give DequantizeRow's values for the whole row, bit for bit.
func TestBlockDequantizer(t *testing.T) {
	for _, typ := range []Type{F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K} {
		bs := typ.BlockSize()
		n := bs * 3
		if bs == 1 {
			n = 96
		}
		src := make([]float32, n)
		for i := range src {
			src[i] = float32(math.Sin(float64(i)*0.37)) * 3
		}
		raw := make([]byte, mustRowBytes(t, typ, n))
		if CanQuantize(typ) {
			if err := QuantizeRow(typ, src, raw); err != nil {
				t.Fatal(err)
			}
		} else {
			for i := range raw {
				raw[i] = byte(i * 7)
			}
		}
		want := make([]float32, n)
		if err := DequantizeRow(typ, raw, want); err != nil {
			t.Fatal(err)
		}
		fn, ok := BlockDequantizer(typ)
		if !ok {
			t.Fatalf("%s: no block dequantizer", typ)
		}
		got := make([]float32, n)
		ts := typ.TypeSize()
		for b := 0; b < n/bs; b++ {
			fn(raw[b*ts:(b+1)*ts], got[b*bs:(b+1)*bs])
		}
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%s: element %d is %v, DequantizeRow gives %v", typ, i, got[i], want[i])
			}
		}
	}
	if _, ok := BlockDequantizer(Q2_K); ok {
		t.Error("Q2_K has a block dequantizer")
	}
}

func mustRowBytes(t *testing.T, typ Type, n int) int {
	t.Helper()
	b, err := typ.RowBytes(n)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
