package nn

import (
	"math"
	"slices"
	"testing"

	"github.com/diffuse-go/diffuse/tensor"
)

// TestBlockCache runs a two-stage toy network through the cache: a nil
// cache and full steps give the plain result bit for bit, an unchanged
// first residual reuses the others' residual (and counts it), a changed
// one runs them again, and threshold 0 never reuses.
func TestBlockCache(t *testing.T) {
	calls := 0
	first := func(h *tensor.Tensor) (*tensor.Tensor, error) { return tensor.Add(h, tensor.Scale(h, 0.5)), nil }
	rest := func(h *tensor.Tensor) (*tensor.Tensor, error) {
		calls++
		return tensor.Add(h, tensor.Scale(tensor.Mul(h, h), 0.25)), nil
	}
	plain := func(h *tensor.Tensor) []float32 {
		h1, _ := first(h)
		out, _ := rest(h1)
		return out.Data()
	}
	x := tensor.FromSlice([]float32{1, -2, 3, 0.5}, 4)
	near := tensor.FromSlice([]float32{1.001, -2, 3, 0.5}, 4)
	far := tensor.FromSlice([]float32{3, 2, -1, 0.5}, 4)

	var off *BlockCache
	got, err := off.Run(x, first, rest)
	if err != nil || !slices.Equal(got.Data(), plain(x)) {
		t.Fatalf("nil cache: %v %v, want %v", got, err, plain(x))
	}

	c := &BlockCache{Threshold: 0.05}
	if got, _ = c.Run(x, first, rest); !slices.Equal(got.Data(), plain(x)) || c.Full != 1 {
		t.Errorf("first step: %v (full %d), want the plain result", got.Data(), c.Full)
	}
	calls = 0
	got, _ = c.Run(near, first, rest)
	if c.Reused != 1 || calls != 0 {
		t.Errorf("a 0.03%% change ran the other blocks (reused %d, rest calls %d)", c.Reused, calls)
	}
	want := plain(near)
	for i := range want {
		if math.Abs(float64(got.Data()[i]-want[i])) > 0.01 {
			t.Errorf("reused step %v, plain %v", got.Data(), want)
			break
		}
	}
	if got, _ = c.Run(far, first, rest); !slices.Equal(got.Data(), plain(far)) || c.Full != 2 {
		t.Errorf("a large change: %v (full %d), want the plain result in full", got.Data(), c.Full)
	}

	never := &BlockCache{}
	never.Run(x, first, rest)
	never.Run(x, first, rest)
	if never.Reused != 0 || never.Full != 2 {
		t.Errorf("threshold 0 reused %d of 2 steps", never.Reused)
	}
}

func TestRelativeL1(t *testing.T) {
	a := tensor.FromSlice([]float32{1, 2, 3}, 3)
	ref := tensor.FromSlice([]float32{1, 2, 1}, 3)
	if got := RelativeL1(a, ref); math.Abs(got-0.5) > 1e-12 {
		t.Errorf("RelativeL1 = %v, want 2/4", got)
	}
	if got := RelativeL1(a, tensor.Zeros(3)); !math.IsInf(got, 1) {
		t.Errorf("zero reference: %v, want +Inf", got)
	}
	nan := tensor.FromSlice([]float32{float32(math.NaN()), 2, 3}, 3)
	if got := RelativeL1(nan, ref); !math.IsInf(got, 1) {
		t.Errorf("NaN: %v, want +Inf (a change)", got)
	}
}
