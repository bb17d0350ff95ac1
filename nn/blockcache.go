package nn

import (
	"math"

	"github.com/diffuse-go/diffuse/tensor"
)

// BlockCache is the first-block residual cache ("FBCache") of
// ParaAttention and cache-dit, a training-free step cache for diffusion
// transformers in the manner of TeaCache: each step runs the first block;
// when the residual it adds has changed, relative to the one of the last
// full step, by less than Threshold (mean absolute difference over mean
// absolute value), the other blocks are skipped and the residual they
// added at that full step is added instead. A BlockCache serves one
// generation; its zero value with Threshold 0 never skips.
type BlockCache struct {
	// Threshold is the relative L1 change of the first block's residual
	// below which the other blocks are skipped (0.05 to 0.2 are usual).
	Threshold float64
	// Full and Reused count the forwards that ran every block and those
	// that took the other blocks' residual from the cache.
	Full, Reused int

	first *tensor.Tensor // the first block's residual at the last full step
	rest  *tensor.Tensor // the other blocks' residual at the last full step
}

// Run runs first on hs and then rest on its output, or, when c says so,
// adds the cached residual of rest instead. A nil c runs both, as the
// model's plain forward does.
func (c *BlockCache) Run(hs *tensor.Tensor, first, rest func(*tensor.Tensor) (*tensor.Tensor, error)) (*tensor.Tensor, error) {
	h1, err := first(hs)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return rest(h1)
	}
	r1 := tensor.Sub(h1, hs)
	if c.rest != nil && tensor.SameShape(c.rest.Shape(), h1.Shape()) && RelativeL1(r1, c.first) < c.Threshold {
		c.Reused++
		return tensor.Add(h1, c.rest), nil
	}
	out, err := rest(h1)
	if err != nil {
		return nil, err
	}
	c.first, c.rest = r1, tensor.Sub(out, h1)
	c.Full++
	return out, nil
}

// RelativeL1 is mean|a − ref| / mean|ref| (+Inf for a zero ref, NaN
// counted as a change).
func RelativeL1(a, ref *tensor.Tensor) float64 {
	x, y := a.Contiguous().Data(), ref.Contiguous().Data()
	var diff, size float64
	for i := range x {
		diff += math.Abs(float64(x[i]) - float64(y[i]))
		size += math.Abs(float64(y[i]))
	}
	if !(size > 0) || math.IsNaN(diff) {
		return math.Inf(1)
	}
	return diff / size
}
