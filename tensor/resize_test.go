package tensor

import (
	"fmt"
	"math"
	"math/rand"
	"testing"
)

// TestForwardResizeBilinear checks ResizeBilinear against a float64
// reference of torch's bilinear rule (align_corners both ways).
func TestForwardResizeBilinear(t *testing.T) {
	r := rand.New(rand.NewSource(21))
	// src returns the two source indices and the weight of the second for
	// output position i.
	src := func(i, in, out int, align bool) (int, int, float64) {
		var pos float64
		switch {
		case align && out > 1:
			pos = float64(i) * float64(in-1) / float64(out-1)
		case align:
			pos = 0
		default:
			pos = math.Max((float64(i)+0.5)*float64(in)/float64(out)-0.5, 0)
		}
		i0 := min(int(math.Floor(pos)), in-1)
		i1 := min(i0+1, in-1)
		return i0, i1, math.Min(math.Max(pos-float64(i0), 0), 1)
	}
	for _, align := range []bool{true, false} {
		for _, s := range [][4]int{{16, 16, 32, 32}, {3, 4, 6, 8}, {5, 7, 3, 2}, {4, 4, 4, 4}, {1, 3, 4, 1}, {6, 5, 13, 11}, {2, 2, 1, 1}} {
			h, w, oh, ow := s[0], s[1], s[2], s[3]
			x := randT(r, 2, 3, h, w)
			got := ResizeBilinear(x, oh, ow, align)
			shapeEq(t, "resize", got.shape, []int{2, 3, oh, ow})
			var want, mag []float64
			for p := 0; p < 6; p++ {
				at := func(y, xx int) float64 { return float64(x.f32[p*h*w+y*w+xx]) }
				for y := 0; y < oh; y++ {
					y0, y1, ly := src(y, h, oh, align)
					for xx := 0; xx < ow; xx++ {
						x0, x1, lx := src(xx, w, ow, align)
						v := (1-ly)*((1-lx)*at(y0, x0)+lx*at(y0, x1)) + ly*((1-lx)*at(y1, x0)+lx*at(y1, x1))
						m := math.Abs(at(y0, x0)) + math.Abs(at(y0, x1)) + math.Abs(at(y1, x0)) + math.Abs(at(y1, x1))
						want = append(want, v)
						mag = append(mag, m)
					}
				}
			}
			checkNear(t, fmt.Sprintf("resize %v align %v", s, align), got.Data(), want, mag, 2e-6, 0)
		}
	}
	// Same size with aligned corners is the identity, exactly.
	x := randT(r, 1, 2, 5, 6)
	checkNear(t, "resize identity", ResizeBilinear(x, 5, 6, true).Data(), f64s(x.f32), nil, 0, 0)
}

// TestGradResizeBilinear checks the backward pass with finite differences.
func TestGradResizeBilinear(t *testing.T) {
	r := rand.New(rand.NewSource(22))
	for _, align := range []bool{true, false} {
		for _, s := range [][4]int{{3, 4, 7, 5}, {4, 5, 2, 3}} {
			name := fmt.Sprintf("resize %v align %v", s, align)
			gradCheck(t, name, func(xs []*Tensor) *Tensor {
				return ResizeBilinear(xs[0], s[2], s[3], align)
			}, randT(r, 1, 2, s[0], s[1]))
		}
	}
}
