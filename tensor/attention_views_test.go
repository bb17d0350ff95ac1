package tensor

import (
	"fmt"
	"math/rand"
	"testing"
)

// TestAttentionViews checks that Attention reads strided q, k, v views
// (the heads split of [B, L, H·D] projections, and f16 or permuted operands
// that it must copy first) exactly as their dense copies, and that its
// result merges back to [B, Lq, H·Dv] without a copy.
func TestAttentionViews(t *testing.T) {
	r := rand.New(rand.NewSource(41))
	for _, c := range []struct{ b, h, lq, lk, d, dv int }{
		{2, 3, 37, 19, 8, 8},
		{1, 8, 130, 77, 40, 40},
		{2, 2, 20, 300, 64, 80},
	} {
		name := fmt.Sprintf("%+v", c)
		split := func(x *Tensor, d int) *Tensor {
			return x.Reshape(x.Dim(0), x.Dim(1), c.h, d).Permute(0, 2, 1, 3)
		}
		q := split(randT(r, c.b, c.lq, c.h*c.d), c.d)
		k := split(randT(r, c.b, c.lk, c.h*c.d), c.d)
		// v stored [B, H, Dv, Lk] and transposed: its last dim is strided,
		// so Attention must make it dense first.
		v := randT(r, c.b, c.h, c.dv, c.lk).Transpose(2, 3)
		mask := randT(r, c.b, 1, 1, c.lk)
		want := Attention(q.Contiguous(), k.Contiguous(), v.Contiguous(), mask, 0)
		got := Attention(q, k, v, mask, 0)
		shapeEq(t, name, got.shape, []int{c.b, c.h, c.lq, c.dv})
		if d := MaxAbsDiff(got, want); d > 1e-6 {
			t.Errorf("%s: views differ from dense operands by %g", name, d)
		}
		merged := got.Permute(0, 2, 1, 3)
		if !merged.IsContiguous() {
			t.Errorf("%s: heads merge of the result is not contiguous (strides %v)", name, merged.strides)
		}
		// f16 operands are widened first.
		q16 := q.Contiguous().ToDType(F16)
		wq := Attention(q16.Float32(), k, v, mask, 0)
		if d := MaxAbsDiff(Attention(q16, k, v, mask, 0), wq); d > 1e-6 {
			t.Errorf("%s: f16 q differs from its float32 widening by %g", name, d)
		}
	}
}
