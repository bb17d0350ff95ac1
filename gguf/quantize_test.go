package gguf

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"os"
	"strings"
	"testing"
)

// TestQuantizeAgainstGGML compares with bytes made by ggml itself:
// testdata/ggml_quant.bin holds, for each of Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
// and Q4_K, a row of 3072 floats (256-value runs of small, partly zero,
// all-positive, all-negative, constant, outlier-heavy, zero and random
// values) and the bytes ggml's quantize_row_*_ref (ggml-org/ggml d99724f,
// gcc, x86-64 without FMA) wrote for it. testdata/ggml_kquant.bin, written
// by testdata/gen_kquant.c with the same ggml, adds for each of them ten
// edge-case runs (values whose f16 scales underflow or are subnormal, a
// lone outlier, negative only, sub-blocks whose scales round to zero, a
// negative constant, values below GROUP_MAX_EPS, large values, a grid of
// rounding ties, signed zeros), and for Q5_K and Q6_K the Q4_K row and the
// edge runs together. Records: 4-byte type name, int32 value count, int32
// byte count, the float32 values, the bytes.
func TestQuantizeAgainstGGML(t *testing.T) {
	names := map[string]Type{"Q4_0": Q4_0, "Q4_1": Q4_1, "Q5_0": Q5_0, "Q5_1": Q5_1, "Q8_0": Q8_0, "Q4_K": Q4_K, "Q5_K": Q5_K, "Q6_K": Q6_K}
	seen := map[Type]int{}
	for _, file := range []string{"testdata/ggml_quant.bin", "testdata/ggml_kquant.bin"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for r := bytes.NewReader(data); r.Len() > 0; {
			typ, x, want := readQuantRecord(t, r, names)
			got := make([]byte, len(want))
			if err := QuantizeRow(typ, x, got); err != nil {
				t.Fatalf("%s: %v", typ, err)
			}
			if i := firstDiff(got, want); i >= 0 {
				t.Errorf("%s (%s): byte %d (block %d, byte %d of it) = %#x, ggml writes %#x", typ, file, i, i/typ.TypeSize(), i%typ.TypeSize(), got[i], want[i])
			}
			seen[typ]++
		}
	}
	for _, typ := range names {
		if seen[typ] == 0 {
			t.Errorf("no vectors for %s", typ)
		}
	}
}

// readQuantRecord reads one record of the ggml vector files.
func readQuantRecord(t *testing.T, r *bytes.Reader, names map[string]Type) (Type, []float32, []byte) {
	t.Helper()
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
	x := make([]float32, hdr.N)
	want := make([]byte, hdr.Len)
	if err := binary.Read(r, binary.LittleEndian, x); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(r, want); err != nil {
		t.Fatal(err)
	}
	return typ, x, want
}

// firstDiff returns the first index where a and b differ, or −1.
func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

func TestQuantizeQ8_0Block(t *testing.T) {
	// amax 12.7 gives d = 0.1 (stored as f16 0.0999755859375), q = round(x/d).
	x := make([]float32, 32)
	for i := range x {
		x[i] = float32(i-16) * 0.4
	}
	x[31] = 12.7
	b := make([]byte, 34)
	if err := QuantizeRow(Q8_0, x, b); err != nil {
		t.Fatal(err)
	}
	if d := f16(b); d != 0.0999755859375 {
		t.Errorf("d = %v, want the f16 nearest 0.1", d)
	}
	id := float32(1) / (float32(12.7) / 127)
	for i, v := range x {
		want := int8(math.Round(float64(v * id)))
		if int8(b[2+i]) != want {
			t.Errorf("q[%d] = %d, want %d", i, int8(b[2+i]), want)
		}
	}
	if int8(b[2]) != -64 || int8(b[33]) != 127 {
		t.Errorf("q[0], q[31] = %d, %d, want -64, 127", int8(b[2]), int8(b[33]))
	}
}

// TestQuantizeRoundTrip quantises rows and checks that dequantisation
// gives them back within each format's step: half a step of the block's
// scale for the rounding formats, a whole step for the truncating ones,
// plus the f16 rounding of the scale applied to the largest level.
func TestQuantizeRoundTrip(t *testing.T) {
	x := make([]float32, 1024)
	for i := range x {
		x[i] = float32(math.Sin(float64(i)*0.37)*2 + math.Cos(float64(i*i)*0.011))
	}
	cases := []struct {
		typ   Type
		steps float64 // levels across the block's range
		tol   float64 // error allowed in steps
	}{
		{Q8_0, 254, 0.5}, {Q4_0, 16, 1}, {Q4_1, 15, 1}, {Q5_0, 32, 1}, {Q5_1, 31, 1}, {Q4_K, 15, 2},
	}
	for _, c := range cases {
		data, err := Quantize(c.typ, []int{4, 256}, x)
		if err != nil {
			t.Fatalf("%s: %v", c.typ, err)
		}
		back := make([]float32, len(x))
		if err := DequantizeRow(c.typ, data, back); err != nil {
			t.Fatalf("%s: %v", c.typ, err)
		}
		bs := c.typ.BlockSize()
		for b := 0; b < len(x)/bs; b++ {
			lo, hi := minMax(x[b*bs : (b+1)*bs])
			step := float64(hi-lo) / c.steps
			for i := b * bs; i < (b+1)*bs; i++ {
				if e := math.Abs(float64(back[i] - x[i])); e > c.tol*step+1e-3*float64(hi-lo) {
					t.Fatalf("%s element %d: %v back as %v (error %.3g, step %.3g)", c.typ, i, x[i], back[i], e, step)
				}
			}
		}
	}
	// Plain types round-trip through F32 exactly.
	data, _ := Quantize(F32, []int{len(x)}, x)
	back := make([]float32, len(x))
	DequantizeRow(F32, data, back)
	for i := range x {
		if back[i] != x[i] {
			t.Fatalf("F32 element %d changed", i)
		}
	}
}

func TestQuantizeErrors(t *testing.T) {
	if _, err := Quantize(Q2_K, []int{256}, make([]float32, 256)); err == nil || !strings.Contains(err.Error(), "cannot quantise to type Q2_K") {
		t.Errorf("Q2_K: %v", err)
	}
	if _, err := Quantize(Q8_0, []int{2, 48}, make([]float32, 96)); err == nil || !strings.Contains(err.Error(), "rows of 48") {
		t.Errorf("rows of 48: %v", err)
	}
	if _, err := Quantize(Q8_0, []int{2, 32}, make([]float32, 32)); err == nil || !strings.Contains(err.Error(), "64 elements") {
		t.Errorf("short data: %v", err)
	}
	if err := QuantizeRow(Q8_0, make([]float32, 32), make([]byte, 33)); err == nil || !strings.Contains(err.Error(), "take 34 bytes") {
		t.Errorf("short buffer: %v", err)
	}
	if !CanQuantize(Q4_K) || CanQuantize(Q3_K) || !CanDequantize(Q5_K) || CanDequantize(IQ2_XS) {
		t.Errorf("CanQuantize/CanDequantize are wrong")
	}
	// Every type DequantizeRow reads has a quantiser.
	for typ := range blockFuncs {
		if !CanQuantize(typ) {
			t.Errorf("%s is read but cannot be written", typ)
		}
	}
}
