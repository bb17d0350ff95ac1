package nn

import (
	"encoding/binary"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/diffuse-go/diffuse/safetensors"
)

// TestViewTensor checks that ViewTensor gives the tensors ReadTensor gives
// (values, dtype, shape) for every dtype, in place or copied.
func TestViewTensor(t *testing.T) {
	le16 := func(v ...uint16) []byte {
		b := make([]byte, 2*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint16(b[2*i:], x)
		}
		return b
	}
	f32 := make([]byte, 4*6)
	for i := range 6 {
		binary.LittleEndian.PutUint32(f32[4*i:], math.Float32bits(float32(i)-2.5))
	}
	i64 := make([]byte, 8*2)
	binary.LittleEndian.PutUint64(i64[8:], 7)
	path := filepath.Join(t.TempDir(), "w.safetensors")
	err := safetensors.WriteFile(path, []safetensors.Tensor{
		{Name: "a.f16", DType: safetensors.F16, Shape: []int{2, 2}, Data: le16(0x3c00, 0xc000, 0x0400, 0x7c00)},
		{Name: "b.bf16", DType: safetensors.BF16, Shape: []int{3}, Data: le16(0x3f80, 0x4040, 0xff80)},
		{Name: "c.f32", DType: safetensors.F32, Shape: []int{2, 3}, Data: f32},
		{Name: "d.i64", DType: safetensors.I64, Shape: []int{2}, Data: i64},
		{Name: "e.odd", DType: safetensors.U8, Shape: []int{1}, Data: []byte{9}},
		{Name: "f.f16", DType: safetensors.F16, Shape: []int{2}, Data: le16(0x3555, 0xb555)}, // at an odd offset: copied
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, name := range f.Names() {
		want, err := ReadTensor(f, name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ViewTensor(f, name)
		if err != nil {
			t.Fatalf("ViewTensor(%s): %v", name, err)
		}
		if got.DType() != want.DType() || !slices.Equal(got.Shape(), want.Shape()) {
			t.Errorf("%s: %v %v, want %v %v", name, got.DType(), got.Shape(), want.DType(), want.Shape())
			continue
		}
		g, w := got.Float32().Data(), want.Float32().Data()
		for i := range w {
			if math.Float32bits(g[i]) != math.Float32bits(w[i]) {
				t.Errorf("%s[%d] = %v, want %v", name, i, g[i], w[i])
			}
		}
	}
	if _, err := ViewTensor(f, "missing"); err == nil {
		t.Error("ViewTensor of a missing tensor: no error")
	}
}
