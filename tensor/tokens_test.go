package tensor

import (
	"fmt"
	"math/rand"
	"testing"
)

// TestForwardTokens checks ChannelsToTokens and TokensToChannels against
// the transposes, projection (1×1 convolution or Linear) and residual add
// they fuse, for float32 and float16 weights, with and without bias and
// residual, and sizes that span several GEMM blocks.
func TestForwardTokens(t *testing.T) {
	r := rand.New(rand.NewSource(47))
	for _, c := range []struct {
		n, c, h, w, out int
		conv, bias, res bool
		dt              DType
	}{
		{1, 3, 2, 5, 4, true, true, true, F32},
		{2, 16, 7, 9, 24, true, false, false, F32},
		{2, 40, 16, 16, 40, false, true, true, F16},
		{1, 320, 12, 11, 320, true, true, true, F16},
		{2, 8, 3, 3, 5, false, false, true, F32},
	} {
		name := fmt.Sprintf("%+v", c)
		x := randT(r, c.n, c.c, c.h, c.w)
		wshape := []int{c.out, c.c}
		if c.conv {
			wshape = append(wshape, 1, 1)
		}
		w := Scale(randT(r, wshape...), 0.2).ToDType(c.dt)
		var b, res *Tensor
		if c.bias {
			b = randT(r, c.out)
		}
		if c.res {
			res = randT(r, c.n, c.out, c.h, c.w)
		}
		w2 := w.Reshape(c.out, c.c)
		// Tokens in: the Linear of the transposed input.
		want := Linear(x.Permute(0, 2, 3, 1).Reshape(c.n, c.h*c.w, c.c), w2, b)
		got := ChannelsToTokens(x, w, b)
		shapeEq(t, name, got.shape, want.shape)
		checkNear(t, "ChannelsToTokens "+name, got.Data(), f64s(want.Data()), maxMag(f64s(want.Data())), 1e-6, 0)
		// Tokens out: the Linear, transposed back, plus the residual.
		hs := randT(r, c.n, c.h*c.w, c.c)
		wOut := Scale(randT(r, append([]int{c.out, c.c}, wshape[2:]...)...), 0.2).ToDType(c.dt)
		want = Linear(hs, wOut.Reshape(c.out, c.c), b).Reshape(c.n, c.h, c.w, c.out).Permute(0, 3, 1, 2)
		if res != nil {
			want = Add(want, res)
		}
		var resBefore *Tensor
		if res != nil {
			resBefore = res.Clone()
		}
		got = TokensToChannels(hs, wOut, b, res, c.h, c.w)
		shapeEq(t, name, got.shape, []int{c.n, c.out, c.h, c.w})
		checkNear(t, "TokensToChannels "+name, got.Data(), f64s(want.Data()), maxMag(f64s(want.Data())), 1e-6, 0)
		if res != nil && MaxAbsDiff(res, resBefore) != 0 {
			t.Errorf("%s: residual modified", name)
		}
	}
}

// BenchmarkTokens times a spatial transformer's proj_in and proj_out at
// SD 1.5 shapes (f16 1×1 convolution weights, batch 2), fused ("tokens")
// against the transposes, convolution and residual add they replace
// ("unfused").
func BenchmarkTokens(b *testing.B) {
	for _, s := range []struct {
		name  string
		c, hw int
	}{{"320@64", 320, 64}, {"640@32", 640, 32}, {"1280@16", 1280, 16}} {
		x := benchRand(1, 2, s.c, s.hw, s.hw)
		hs := benchRand(2, 2, s.hw*s.hw, s.c)
		w := Mul(benchRand(3, s.c, s.c, 1, 1), Scalar(0.05)).ToDType(F16)
		bias := benchRand(4, s.c)
		flops := 2 * float64(2*s.hw*s.hw*s.c*s.c)
		b.Run("in-"+s.name+"/unfused", func(b *testing.B) {
			t0 := startOpTimer()
			for b.Loop() {
				Conv2d(x, w, bias, Conv2dOpts{}).Permute(0, 2, 3, 1).Reshape(2, s.hw*s.hw, s.c)
			}
			reportOpFlops(b, flops, t0)
		})
		b.Run("in-"+s.name+"/tokens", func(b *testing.B) {
			t0 := startOpTimer()
			for b.Loop() {
				ChannelsToTokens(x, w, bias)
			}
			reportOpFlops(b, flops, t0)
		})
		b.Run("out-"+s.name+"/unfused", func(b *testing.B) {
			t0 := startOpTimer()
			for b.Loop() {
				Add(Conv2d(hs.Reshape(2, s.hw, s.hw, s.c).Permute(0, 3, 1, 2), w, bias, Conv2dOpts{}), x)
			}
			reportOpFlops(b, flops, t0)
		})
		b.Run("out-"+s.name+"/tokens", func(b *testing.B) {
			t0 := startOpTimer()
			for b.Loop() {
				TokensToChannels(hs, w, bias, x, s.hw, s.hw)
			}
			reportOpFlops(b, flops, t0)
		})
	}
}
