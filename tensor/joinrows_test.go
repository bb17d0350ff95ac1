package tensor

import (
	"slices"
	"testing"
)

// JoinRows swaps the halves of quantised weights (as the FLUX and SD3
// loaders do for adaLN rows) keeping their storage: the values are those
// of the float32 concatenation, bit for bit, and the dtype is kept.
func TestJoinRows(t *testing.T) {
	for _, d := range quantDTypes {
		w := quantWeight(t, d, 6, 256, 1.5)
		got, ok := JoinRows(w.Narrow(0, 3, 3), w.Narrow(0, 0, 3))
		if !ok || got.DType() != d || !slices.Equal(got.Shape(), []int{6, 256}) {
			t.Fatalf("%v: ok %v, dtype %v, shape %v", d, ok, got.DType(), got.Shape())
		}
		f := w.Float32()
		want := Concat(0, f.Narrow(0, 3, 3), f.Narrow(0, 0, 3)).Data()
		if !slices.Equal(got.Float32().Data(), want) {
			t.Errorf("%v: joined values differ from the float32 concatenation", d)
		}
	}
	// 8-bit floats: one shared scale stays shared; per-row and mixed
	// scales become per row.
	codes := make([]byte, 4*8)
	for i := range codes {
		codes[i] = byte(0x20 + 7*i%64)
	}
	mk := func(scale []float32) *Tensor {
		x, err := FromFP8(F8E4M3, codes, scale, 4, 8)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	for _, c := range []struct {
		name      string
		a, b      *Tensor
		scaleSize int
	}{
		{"shared", mk([]float32{0.5}), mk([]float32{0.5}), 1},
		{"none", mk(nil), mk(nil), 0},
		{"per tensor, different", mk([]float32{0.5}), mk([]float32{2}), 7},
		{"per row and none", mk([]float32{1, 2, 3, 4}), mk(nil), 7},
	} {
		got, ok := JoinRows(c.a.Narrow(0, 1, 3), c.b)
		if !ok || got.DType() != F8E4M3 {
			t.Fatalf("%s: ok %v", c.name, ok)
		}
		if _, s := got.Blocks(); len(s) != c.scaleSize {
			t.Errorf("%s: %d scales, want %d", c.name, len(s), c.scaleSize)
		}
		want := Concat(0, c.a.Float32().Narrow(0, 1, 3), c.b.Float32()).Data()
		if !slices.Equal(got.Float32().Data(), want) {
			t.Errorf("%s: joined values differ", c.name)
		}
	}
	// Not whole blocks, mixed dtypes, plain float32: refused.
	q := quantWeight(t, Q8_0, 2, 64, 1)
	if _, ok := JoinRows(q.Narrow(1, 0, 16)); ok {
		t.Error("a view of part of a block was joined")
	}
	if _, ok := JoinRows(q, quantWeight(t, Q4_0, 2, 64, 1)); ok {
		t.Error("mixed dtypes were joined")
	}
	if _, ok := JoinRows(Zeros(2, 2)); ok {
		t.Error("float32 was joined")
	}
}
