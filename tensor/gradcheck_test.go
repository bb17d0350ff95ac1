package tensor

import (
	"math"
	"math/rand"
	"testing"
)

func randT(r *rand.Rand, shape ...int) *Tensor {
	t := Zeros(shape...)
	for i := range t.f32 {
		t.f32[i] = float32(r.NormFloat64())
	}
	return t
}

// gradCheck compares Backward's gradients of sum(f(xs)·w) with central
// finite differences for every element of every input.
func gradCheck(t *testing.T, name string, f func(xs []*Tensor) *Tensor, xs ...*Tensor) {
	t.Helper()
	r := rand.New(rand.NewSource(7))
	for _, x := range xs {
		x.SetRequiresGrad(true)
		x.ZeroGrad()
	}
	out := f(xs)
	w := randT(r, out.shape...)
	loss := Sum(Mul(out, w))
	loss.Backward()
	eval := func() float64 {
		ds := make([]*Tensor, len(xs))
		for i, x := range xs {
			ds[i] = x.Detach()
		}
		o := f(ds).Data()
		wd := w.Data()
		var s float64
		for i := range o {
			s += float64(o[i]) * float64(wd[i])
		}
		return s
	}
	const eps = 1e-2
	for xi, x := range xs {
		if x.Grad() == nil {
			t.Fatalf("%s: input %d got no gradient", name, xi)
		}
		g := x.Grad().Data()
		for i := range x.f32 {
			orig := x.f32[i]
			x.f32[i] = orig + eps
			fp := eval()
			x.f32[i] = orig - eps
			fm := eval()
			x.f32[i] = orig
			num := (fp - fm) / (2 * eps)
			if d := math.Abs(num - float64(g[i])); d > 2e-2*math.Max(1, math.Abs(num)) {
				t.Errorf("%s: input %d element %d: analytic %g, numeric %g", name, xi, i, g[i], num)
				return
			}
		}
	}
}

func TestGradients(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	pos := func(shape ...int) *Tensor { // positive inputs for log/sqrt/div
		x := randT(r, shape...)
		for i := range x.f32 {
			x.f32[i] = float32(math.Abs(float64(x.f32[i]))) + 0.5
		}
		return x
	}
	one := func(fn func(*Tensor) *Tensor) func(xs []*Tensor) *Tensor {
		return func(xs []*Tensor) *Tensor { return fn(xs[0]) }
	}
	two := func(fn func(a, b *Tensor) *Tensor) func(xs []*Tensor) *Tensor {
		return func(xs []*Tensor) *Tensor { return fn(xs[0], xs[1]) }
	}
	rotC, rotS := randT(r, 3, 4), randT(r, 3, 4)
	cases := []struct {
		name string
		f    func(xs []*Tensor) *Tensor
		in   []*Tensor
	}{
		{"add-broadcast", two(Add), []*Tensor{randT(r, 2, 3, 4), randT(r, 3, 1)}},
		{"sub", two(Sub), []*Tensor{randT(r, 2, 3), randT(r, 2, 3)}},
		{"mul-broadcast", two(Mul), []*Tensor{randT(r, 2, 3, 4), randT(r, 1, 4)}},
		{"div", two(Div), []*Tensor{randT(r, 3, 4), pos(3, 4)}},
		{"scale", one(func(a *Tensor) *Tensor { return Scale(a, 3) }), []*Tensor{randT(r, 5)}},
		{"addscalar", one(func(a *Tensor) *Tensor { return AddScalar(a, 3) }), []*Tensor{randT(r, 5)}},
		{"square", one(Square), []*Tensor{randT(r, 5)}},
		{"sqrt", one(Sqrt), []*Tensor{pos(5)}},
		{"exp", one(Exp), []*Tensor{randT(r, 5)}},
		{"log", one(Log), []*Tensor{pos(5)}},
		{"sin", one(Sin), []*Tensor{randT(r, 5)}},
		{"cos", one(Cos), []*Tensor{randT(r, 5)}},
		{"clamp", one(func(a *Tensor) *Tensor { return Clamp(a, -0.5, 0.5) }), []*Tensor{randT(r, 7)}},
		{"sigmoid", one(Sigmoid), []*Tensor{randT(r, 6)}},
		{"silu", one(SiLU), []*Tensor{randT(r, 6)}},
		{"tanh", one(Tanh), []*Tensor{randT(r, 6)}},
		{"relu", one(ReLU), []*Tensor{pos(6)}},
		{"gelu", one(GELU), []*Tensor{randT(r, 6)}},
		{"gelu-tanh", one(GELUTanh), []*Tensor{randT(r, 6)}},
		{"quick-gelu", one(QuickGELU), []*Tensor{randT(r, 6)}},
		{"softplus", one(Softplus), []*Tensor{randT(r, 6)}},
		{"geglu", one(func(a *Tensor) *Tensor { c := a.Chunk(2, -1); return Mul(c[0], GELU(c[1])) }), []*Tensor{randT(r, 2, 6)}},
		{"geglu-fused", one(GEGLU), []*Tensor{randT(r, 2, 3, 8)}},
		{"sum", one(Sum), []*Tensor{randT(r, 2, 3)}},
		{"mean", one(Mean), []*Tensor{randT(r, 2, 3)}},
		{"sumdim", one(func(a *Tensor) *Tensor { return SumDim(a, 1, false) }), []*Tensor{randT(r, 2, 3, 4)}},
		{"meandim-keep", one(func(a *Tensor) *Tensor { return MeanDim(a, -1, true) }), []*Tensor{randT(r, 2, 3, 4)}},
		{"reshape", one(func(a *Tensor) *Tensor { return Square(a.Reshape(3, 4)) }), []*Tensor{randT(r, 2, 6)}},
		{"permute", one(func(a *Tensor) *Tensor { return Square(a.Permute(2, 0, 1)) }), []*Tensor{randT(r, 2, 3, 4)}},
		{"transpose-contig", one(func(a *Tensor) *Tensor { return a.Transpose(0, 1).Contiguous() }), []*Tensor{randT(r, 2, 3)}},
		{"narrow", one(func(a *Tensor) *Tensor { return Square(a.Narrow(1, 1, 2)) }), []*Tensor{randT(r, 2, 4)}},
		{"concat", two(func(a, b *Tensor) *Tensor { return Concat(1, a, b) }), []*Tensor{randT(r, 2, 3), randT(r, 2, 2)}},
		{"stack", two(func(a, b *Tensor) *Tensor { return Stack(0, a, b) }), []*Tensor{randT(r, 2, 3), randT(r, 2, 3)}},
		{"repeat", one(func(a *Tensor) *Tensor { return a.Repeat(2, 1) }), []*Tensor{randT(r, 2, 3)}},
		{"matmul", two(MatMul), []*Tensor{randT(r, 2, 3, 4), randT(r, 2, 4, 5)}},
		{"matmul-shared-b", two(MatMul), []*Tensor{randT(r, 2, 3, 4), randT(r, 4, 5)}},
		{"matmulT", two(MatMulT), []*Tensor{randT(r, 2, 3, 4), randT(r, 2, 5, 4)}},
		{"linear", func(xs []*Tensor) *Tensor { return Linear(xs[0], xs[1], xs[2]) }, []*Tensor{randT(r, 2, 3, 4), randT(r, 5, 4), randT(r, 5)}},
		{"conv2d", func(xs []*Tensor) *Tensor {
			return Conv2d(xs[0], xs[1], xs[2], Conv2dOpts{Padding: [2]int{1, 1}})
		}, []*Tensor{randT(r, 2, 3, 5, 5), randT(r, 4, 3, 3, 3), randT(r, 4)}},
		{"conv2d-stride-groups-dil", func(xs []*Tensor) *Tensor {
			return Conv2d(xs[0], xs[1], nil, Conv2dOpts{Stride: [2]int{2, 1}, Padding: [2]int{1, 2}, Dilation: [2]int{1, 2}, Groups: 2})
		}, []*Tensor{randT(r, 1, 4, 6, 7), randT(r, 6, 2, 3, 3)}},
		{"conv2d-downsample", func(xs []*Tensor) *Tensor {
			return Conv2d(xs[0], xs[1], xs[2], Conv2dOpts{Stride: [2]int{2, 2}, Padding: [2]int{1, 1}})
		}, []*Tensor{randT(r, 1, 3, 9, 11), randT(r, 2, 3, 3, 3), randT(r, 2)}},
		// Rows wider than a vector, so col2im's row adds take the SIMD path.
		{"conv2d-wide", func(xs []*Tensor) *Tensor {
			return Conv2d(xs[0], xs[1], nil, Conv2dOpts{Padding: [2]int{1, 2}, Dilation: [2]int{1, 2}})
		}, []*Tensor{randT(r, 1, 2, 3, 21), randT(r, 2, 2, 3, 3)}},
		{"conv2d-1x1", func(xs []*Tensor) *Tensor { return Conv2d(xs[0], xs[1], xs[2], Conv2dOpts{}) }, []*Tensor{randT(r, 2, 3, 4, 4), randT(r, 5, 3, 1, 1), randT(r, 5)}},
		{"groupnorm", func(xs []*Tensor) *Tensor { return GroupNorm(xs[0], 2, xs[1], xs[2], 1e-5) }, []*Tensor{randT(r, 2, 4, 3, 3), randT(r, 4), randT(r, 4)}},
		{"layernorm", func(xs []*Tensor) *Tensor { return LayerNorm(xs[0], xs[1], xs[2], 1e-5) }, []*Tensor{randT(r, 3, 6), randT(r, 6), randT(r, 6)}},
		{"layernorm-noaffine", one(func(a *Tensor) *Tensor { return LayerNorm(a, nil, nil, 1e-6) }), []*Tensor{randT(r, 3, 6)}},
		{"rmsnorm", two(func(a, w *Tensor) *Tensor { return RMSNorm(a, w, 1e-6) }), []*Tensor{randT(r, 3, 6), randT(r, 6)}},
		{"softmax", one(Softmax), []*Tensor{randT(r, 3, 5)}},
		{"attention", func(xs []*Tensor) *Tensor { return Attention(xs[0], xs[1], xs[2], nil, 0) }, []*Tensor{randT(r, 1, 2, 3, 4), randT(r, 1, 2, 5, 4), randT(r, 1, 2, 5, 3)}},
		{"attention-mask", func(xs []*Tensor) *Tensor {
			m := Zeros(1, 1, 1, 5)
			m.f32[4] = float32(math.Inf(-1))
			return Attention(xs[0], xs[1], xs[2], m, 0.3)
		}, []*Tensor{randT(r, 2, 1, 3, 4), randT(r, 2, 1, 5, 4), randT(r, 2, 1, 5, 3)}},
		{"attention-heads-views", func(xs []*Tensor) *Tensor {
			// q, k, v as heads splits of [B, L, H·D] projections, read in
			// place, and the output merged back as the models do.
			split := func(x *Tensor) *Tensor { return x.Reshape(x.Dim(0), x.Dim(1), 2, x.Dim(2)/2).Permute(0, 2, 1, 3) }
			o := Attention(split(xs[0]), split(xs[1]), split(xs[2]), nil, 0)
			return o.Permute(0, 2, 1, 3).Reshape(o.Dim(0), o.Dim(2), -1)
		}, []*Tensor{randT(r, 1, 3, 4), randT(r, 1, 5, 4), randT(r, 1, 5, 6)}},
		{"channels-to-tokens", func(xs []*Tensor) *Tensor { return ChannelsToTokens(xs[0], xs[1], xs[2]) }, []*Tensor{randT(r, 2, 3, 2, 2), randT(r, 4, 3, 1, 1), randT(r, 4)}},
		{"tokens-to-channels", func(xs []*Tensor) *Tensor { return TokensToChannels(xs[0], xs[1], xs[2], xs[3], 2, 3) }, []*Tensor{randT(r, 2, 6, 3), randT(r, 4, 3), randT(r, 4), randT(r, 2, 4, 2, 3)}},
		{"upsample", one(func(a *Tensor) *Tensor { return UpsampleNearest(a, 4, 6) }), []*Tensor{randT(r, 1, 2, 2, 3)}},
		{"avgpool", one(func(a *Tensor) *Tensor { return AvgPool2d(a, 2, 2) }), []*Tensor{randT(r, 1, 2, 4, 4)}},
		{"pixel-unshuffle", one(func(a *Tensor) *Tensor { return Square(PixelUnshuffle(a, 2)) }), []*Tensor{randT(r, 1, 2, 4, 4)}},
		{"rotary", one(func(a *Tensor) *Tensor { return ApplyRotary(a, rotC, rotS, false) }), []*Tensor{randT(r, 2, 3, 4)}},
		{"rotary-interleaved", one(func(a *Tensor) *Tensor { return ApplyRotary(a, rotC, rotS, true) }), []*Tensor{randT(r, 2, 3, 4)}},
		{"embedding", one(func(a *Tensor) *Tensor {
			e, _ := Embedding(a, []int64{2, 0, 2}, 3)
			return e
		}), []*Tensor{randT(r, 4, 3)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { gradCheck(t, c.name, c.f, c.in...) })
	}
}

// TestBackward16BitWeights: the input gradients of Linear and Conv2d with
// frozen f16 and bf16 weights, which the backward pass reads as stored,
// equal bit for bit those with the same weights widened to float32.
func TestBackward16BitWeights(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	ops := []struct {
		name string
		f    func(x, w *Tensor) *Tensor
		x, w []int
	}{
		{"linear", func(x, w *Tensor) *Tensor { return Linear(x, w, nil) }, []int{2, 7, 40}, []int{33, 40}},
		{"conv2d", func(x, w *Tensor) *Tensor { return Conv2d(x, w, nil, Conv2dOpts{Padding: [2]int{1, 1}}) }, []int{2, 6, 9, 20}, []int{8, 6, 3, 3}},
		{"conv2d-groups", func(x, w *Tensor) *Tensor {
			return Conv2d(x, w, nil, Conv2dOpts{Stride: [2]int{2, 2}, Padding: [2]int{1, 1}, Groups: 2})
		}, []int{1, 6, 9, 11}, []int{4, 3, 3, 3}},
	}
	for _, op := range ops {
		for _, dt := range []DType{F16, BF16} {
			x, w := randT(r, op.x...), randT(r, op.w...).ToDType(dt)
			gx := func(w *Tensor) []float32 {
				xi := x.Detach().SetRequiresGrad(true)
				Sum(Square(op.f(xi, w))).Backward()
				return xi.Grad().Data()
			}
			got, want := gx(w), gx(w.Float32())
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%s %v: dx[%d] = %g, %g with the weight in float32", op.name, dt, i, got[i], want[i])
				}
			}
		}
	}
}
