package tensor

import (
	"fmt"
	"math/rand"
	"testing"
)

// refGather is the obvious row-major walk of a strided view, the reference
// for gatherStrided.
func refGather(t *Tensor) []float32 {
	out := make([]float32, 0, t.Numel())
	t.forEachIndex(func(off int) { out = append(out, t.f32[off]) })
	return out
}

// TestContiguousStrided checks Contiguous on views that take each path of
// gatherStrided: block-copied rows, the tiled transpose (with tiles cut by
// the edges, middle dimensions between the transposed pair, outer
// dimensions before it, and sizes big enough to run in parallel), and a
// strided last dimension with no unit-stride partner.
func TestContiguousStrided(t *testing.T) {
	r := rand.New(rand.NewSource(31))
	cases := []struct {
		name string
		view func(x *Tensor) *Tensor
		base []int
	}{
		{"nchw-to-nhwc", func(x *Tensor) *Tensor { return x.Permute(0, 2, 3, 1) }, []int{2, 37, 5, 7}},
		{"nhwc-to-nchw", func(x *Tensor) *Tensor { return x.Permute(0, 3, 1, 2) }, []int{2, 5, 7, 33}},
		{"heads-split", func(x *Tensor) *Tensor { return x.Reshape(2, 19, 3, 8).Permute(0, 2, 1, 3) }, []int{2, 19, 24}},
		{"heads-merge", func(x *Tensor) *Tensor { return x.Permute(0, 2, 1, 3) }, []int{2, 3, 19, 8}},
		{"transpose-2d", func(x *Tensor) *Tensor { return x.Transpose(0, 1) }, []int{45, 17}},
		{"transpose-large", func(x *Tensor) *Tensor { return x.Transpose(1, 2) }, []int{2, 300, 257}},
		{"transpose-middle", func(x *Tensor) *Tensor { return x.Permute(2, 1, 0) }, []int{6, 5, 21}},
		{"rotate", func(x *Tensor) *Tensor { return x.Permute(1, 2, 3, 0) }, []int{3, 4, 2, 5}},
		{"narrow-rows", func(x *Tensor) *Tensor { return x.Narrow(2, 3, 9) }, []int{3, 4, 20}},
		{"narrow-large", func(x *Tensor) *Tensor { return x.Narrow(1, 100, 1000) }, []int{70, 2560}},
		{"narrow-permuted", func(x *Tensor) *Tensor { return x.Narrow(1, 1, 3).Permute(2, 0, 1) }, []int{4, 5, 6}},
		{"column", func(x *Tensor) *Tensor { return x.Narrow(1, 2, 1).Permute(1, 0) }, []int{7, 5}},
		{"strided-last-no-unit", func(x *Tensor) *Tensor { return x.Narrow(2, 0, 1).Permute(2, 0, 1).Reshape(4, 6).Transpose(0, 1) }, []int{4, 6, 2}},
		{"size-one-dims", func(x *Tensor) *Tensor { return x.Permute(3, 1, 2, 0) }, []int{1, 4, 1, 9}},
	}
	for _, c := range cases {
		x := randT(r, c.base...)
		v := c.view(x)
		want := refGather(v)
		got := v.Contiguous()
		if !got.IsContiguous() || !SameShape(got.shape, v.shape) {
			t.Errorf("%s: result shape %v strides %v", c.name, got.shape, got.strides)
			continue
		}
		for i, g := range got.Data() {
			if g != want[i] {
				t.Errorf("%s: element %d = %g, want %g", c.name, i, g, want[i])
				break
			}
		}
	}
	// 16-bit and integer storage take the same paths.
	h := randT(r, 3, 18, 20).ToDType(F16)
	hv := h.Permute(2, 0, 1)
	hf := h.Float32().Permute(2, 0, 1)
	if got, want := hv.Contiguous().Float32().Data(), refGather(hf); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("f16 permute: got %v, want %v", got[:8], want[:8])
	}
	ids := make([]int64, 4*33)
	for i := range ids {
		ids[i] = int64(i)
	}
	it, _ := FromInt64(ids, 4, 33)
	for i, v := range it.Transpose(0, 1).Contiguous().Int64s() {
		if want := int64(i%4*33 + i/4); v != want {
			t.Fatalf("i64 transpose: element %d = %d, want %d", i, v, want)
		}
	}
}

// BenchmarkContiguous times the copies the SD 1.5 UNet makes at 512²:
// the transformer's NCHW ↔ tokens transposes and a GEGLU half. "walk" is
// the per-element callback walk Contiguous used before.
func BenchmarkContiguous(b *testing.B) {
	for _, c := range []struct {
		name string
		base []int
		view func(x *Tensor) *Tensor
	}{
		{"nchw-to-tokens-2x320x64x64", []int{2, 320, 64, 64}, func(x *Tensor) *Tensor { return x.Permute(0, 2, 3, 1) }},
		{"tokens-to-nchw-2x64x64x320", []int{2, 64, 64, 320}, func(x *Tensor) *Tensor { return x.Permute(0, 3, 1, 2) }},
		{"heads-2x4096x8x40", []int{2, 4096, 8, 40}, func(x *Tensor) *Tensor { return x.Permute(0, 2, 1, 3) }},
		{"half-8192x2560", []int{8192, 2560}, func(x *Tensor) *Tensor { return x.Narrow(1, 1280, 1280) }},
	} {
		x := benchRand(1, c.base...)
		v := c.view(x)
		b.Run(c.name+"/walk", func(b *testing.B) {
			b.SetBytes(int64(4 * v.Numel()))
			for b.Loop() {
				refGather(v)
			}
		})
		b.Run(c.name+"/gather", func(b *testing.B) {
			b.SetBytes(int64(4 * v.Numel()))
			for b.Loop() {
				v.Contiguous()
			}
		})
	}
}
