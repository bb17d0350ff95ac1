package tensor

import (
	"fmt"
	"math"
	"math/rand"
	"testing"
)

// TestGroupNormAct checks the fused inference GroupNorm (+SiLU) against a
// float64 reference, including rows far from zero, and that inputs needing
// gradients take the recorded unfused path with the same values.
func TestGroupNormAct(t *testing.T) {
	r := rand.New(rand.NewSource(41))
	for _, c := range []struct {
		n, ch, groups, h, w int
		offset              float32
		act                 string
	}{
		{1, 4, 2, 3, 3, 0, "silu"},
		{2, 8, 4, 5, 7, 0, ""},
		{2, 64, 32, 16, 16, 0, "silu"},
		{1, 6, 3, 9, 11, 300, "silu"}, // |mean| ≫ std
		{1, 4, 1, 1, 1, 0, "silu"},
	} {
		x := randT(r, c.n, c.ch, c.h, c.w)
		for i := range x.f32 {
			x.f32[i] += c.offset
		}
		wt, bs := randT(r, c.ch), randT(r, c.ch)
		const eps = 1e-6
		sp := c.h * c.w
		cg := c.ch / c.groups
		want := make([]float64, len(x.f32))
		mag := make([]float64, len(want))
		for img := 0; img < c.n; img++ {
			for g := 0; g < c.groups; g++ {
				seg := f64s(x.f32[(img*c.ch+g*cg)*sp : (img*c.ch+(g+1)*cg)*sp])
				var m, v float64
				for _, e := range seg {
					m += e
				}
				m /= float64(len(seg))
				for _, e := range seg {
					v += (e - m) * (e - m)
				}
				v /= float64(len(seg))
				for i, e := range seg {
					ch := g*cg + i/sp
					y := (e-m)/math.Sqrt(v+eps)*float64(wt.f32[ch]) + float64(bs.f32[ch])
					mg := math.Abs(y) + math.Abs(float64(bs.f32[ch]))
					if c.act == "silu" {
						y /= 1 + math.Exp(-y)
					}
					k := (img*c.ch+g*cg)*sp + i
					want[k], mag[k] = y, mg
				}
			}
		}
		name := fmt.Sprintf("GroupNormAct %+v", c)
		got := GroupNormAct(x, c.groups, wt, bs, eps, c.act)
		checkNear(t, name, got.Data(), want, mag, 1e-5, 1e-6)
		// The recorded path (x needs gradients) gives the same values.
		xg := x.Clone().SetRequiresGrad(true)
		slow := GroupNormAct(xg, c.groups, wt, bs, eps, c.act)
		if !slow.RequiresGrad() {
			t.Fatalf("%s: gradient path not recorded", name)
		}
		checkNear(t, name+" (grad path)", slow.Data(), want, mag, 1e-5, 1e-6)
	}
}
