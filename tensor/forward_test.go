package tensor

import (
	"fmt"
	"math"
	"math/rand"
	"testing"

	"github.com/diffuse-go/diffuse/half"
	"github.com/diffuse-go/diffuse/tensor/gemm"
)

// Forward tests: every op against a plain float64 reference written here
// with naive loops. Compute is float32, so tolerances are relative to the
// magnitude of the result (or of the terms summed into it).

// tiny absorbs float32 subnormal rounding in results that underflow.
const tiny = 1e-37

func f64s(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

// checkNear compares got with want element by element: the allowed error is
// rtol·mag[i] (mag nil means |want[i]|) plus atol. NaN must match NaN and
// infinities must match exactly.
func checkNear(t *testing.T, name string, got []float32, want, mag []float64, rtol, atol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	bad := 0
	for i := range got {
		g, w := float64(got[i]), want[i]
		ok := false
		switch {
		case math.IsNaN(w):
			ok = math.IsNaN(g)
		case math.IsInf(w, 0):
			ok = g == w
		default:
			m := math.Abs(w)
			if mag != nil {
				m = mag[i]
			}
			ok = math.Abs(g-w) <= rtol*m+atol+tiny
		}
		if !ok {
			if bad < 5 {
				t.Errorf("%s: element %d: got %.9g, want %.9g (diff %.3g)", name, i, g, w, g-w)
			}
			bad++
		}
	}
	if bad > 5 {
		t.Errorf("%s: %d of %d elements differ", name, bad, len(got))
	}
}

// maxMag is a constant magnitude vector: every element is judged against
// the largest |want|, for ops whose small outputs come from cancellation.
func maxMag(want []float64) []float64 {
	m := 0.0
	for _, v := range want {
		if a := math.Abs(v); a > m && !math.IsInf(a, 0) {
			m = a
		}
	}
	out := make([]float64, len(want))
	for i := range out {
		out[i] = m
	}
	return out
}

func shapeEq(t *testing.T, name string, got, want []int) {
	t.Helper()
	if !SameShape(got, want) {
		t.Fatalf("%s: shape %v, want %v", name, got, want)
	}
}

// forIdx calls fn with every multi-index of shape in row-major order.
func forIdx(shape []int, fn func(idx []int)) {
	n := numel(shape)
	idx := make([]int, len(shape))
	for k := 0; k < n; k++ {
		rem := k
		for d := len(shape) - 1; d >= 0; d-- {
			idx[d] = rem % shape[d]
			rem /= shape[d]
		}
		fn(idx)
	}
}

// flatAt is the row-major offset of the right-aligned, broadcast index idx
// into an array of shape.
func flatAt(shape, idx []int) int {
	off, s := 0, 1
	for d := len(shape) - 1; d >= 0; d-- {
		i := idx[len(idx)-len(shape)+d]
		if shape[d] == 1 {
			i = 0
		}
		off += i * s
		s *= shape[d]
	}
	return off
}

func TestForwardBinaryBroadcast(t *testing.T) {
	r := rand.New(rand.NewSource(11))
	ops := []struct {
		name string
		f    func(a, b *Tensor) *Tensor
		ref  func(x, y float64) float64
	}{
		{"add", Add, func(x, y float64) float64 { return x + y }},
		{"sub", Sub, func(x, y float64) float64 { return x - y }},
		{"mul", Mul, func(x, y float64) float64 { return x * y }},
		{"div", Div, func(x, y float64) float64 { return x / y }},
	}
	shapes := []struct{ a, b, out []int }{
		{[]int{2, 3, 4}, []int{2, 3, 4}, []int{2, 3, 4}},
		{[]int{2, 3, 4}, []int{3, 1}, []int{2, 3, 4}},
		{[]int{4}, []int{2, 1, 4}, []int{2, 1, 4}},
		{[]int{2, 1, 5}, []int{1, 3, 1}, []int{2, 3, 5}},
		{[]int{1}, []int{3, 2}, []int{3, 2}},
		{[]int{}, []int{2, 2}, []int{2, 2}},
		{[]int{6, 1}, []int{1, 7}, []int{6, 7}},
		{[]int{3, 1, 1, 9}, []int{5, 9}, []int{3, 1, 5, 9}},
	}
	for _, op := range ops {
		for _, s := range shapes {
			a, b := randT(r, s.a...), randT(r, s.b...)
			if op.name == "div" {
				for i := range b.f32 {
					b.f32[i] += float32(math.Copysign(0.25, float64(b.f32[i])))
				}
			}
			name := fmt.Sprintf("%s %v %v", op.name, s.a, s.b)
			got := op.f(a, b)
			shapeEq(t, name, got.shape, s.out)
			ad, bd := f64s(a.f32), f64s(b.f32)
			var want []float64
			forIdx(s.out, func(idx []int) {
				want = append(want, op.ref(ad[flatAt(s.a, idx)], bd[flatAt(s.b, idx)]))
			})
			// One float32 rounding of the exact result.
			checkNear(t, name, got.Data(), want, nil, 1e-7, 0)
			// Swapped operands exercise the other side of the broadcast.
			got2 := op.f(b, a)
			var want2 []float64
			forIdx(s.out, func(idx []int) {
				want2 = append(want2, op.ref(bd[flatAt(s.b, idx)], ad[flatAt(s.a, idx)]))
			})
			checkNear(t, name+" swapped", got2.Data(), want2, nil, 1e-7, 0)
		}
	}
	// Strided (transposed) operands.
	a := randT(r, 4, 3)
	b := randT(r, 3, 4)
	got := Add(a.Transpose(0, 1), b).Data()
	var want []float64
	for i := 0; i < 3; i++ {
		for j := 0; j < 4; j++ {
			want = append(want, float64(a.f32[j*3+i])+float64(b.f32[i*4+j]))
		}
	}
	checkNear(t, "add transposed", got, want, nil, 1e-7, 0)
	got = Mul(a.Narrow(0, 1, 2), b.Narrow(1, 0, 3).Transpose(0, 1).Narrow(0, 1, 2)).Data()
	want = want[:0]
	for i := 0; i < 2; i++ {
		for j := 0; j < 3; j++ {
			want = append(want, float64(a.f32[(i+1)*3+j])*float64(b.f32[j*4+i+1]))
		}
	}
	checkNear(t, "mul narrowed views", got, want, nil, 1e-7, 0)
	// Large enough for the parallel paths.
	x, y := randT(r, 3, 70000), randT(r, 70000)
	got = Sub(x, y).Data()
	want = want[:0]
	for i, v := range x.f32 {
		want = append(want, float64(v)-float64(y.f32[i%70000]))
	}
	checkNear(t, "sub large broadcast", got, want, nil, 1e-7, 0)
	x2 := randT(r, 3, 70000)
	got = Add(x, x2).Data()
	want = want[:0]
	for i, v := range x.f32 {
		want = append(want, float64(v)+float64(x2.f32[i]))
	}
	checkNear(t, "add large", got, want, nil, 1e-7, 0)
}

// unaryInputs covers the interesting ranges of the activations: a fine grid
// over [-30, 30], random normals, and large or tiny magnitudes.
func unaryInputs(r *rand.Rand) []float32 {
	var xs []float32
	for i := -3000; i <= 3000; i++ {
		xs = append(xs, float32(i)/100)
	}
	for i := 0; i < 1000; i++ {
		xs = append(xs, float32(r.NormFloat64()*3))
	}
	xs = append(xs, 0, float32(math.Copysign(0, -1)), 1e-20, -1e-20, 1e-7, -1e-7,
		80, -80, 87, -87, 88, -88, 100, -100, 1e4, -1e4, 3e38, -3e38)
	return xs
}

func TestForwardUnary(t *testing.T) {
	r := rand.New(rand.NewSource(12))
	xs := unaryInputs(r)
	in := FromSlice(xs, len(xs))
	sig := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	cases := []struct {
		name     string
		f        func(*Tensor) *Tensor
		ref      func(float64) float64
		rtol     float64
		absPerX  float64 // extra absolute tolerance per unit |x|
		positive bool    // only x > 0
		bounded  float64 // only |x| <= bounded when > 0
	}{
		{"scale", func(a *Tensor) *Tensor { return Scale(a, -1.5) }, func(x float64) float64 { return -1.5 * x }, 1e-7, 0, false, 1e38},
		{"addscalar", func(a *Tensor) *Tensor { return AddScalar(a, 0.75) }, func(x float64) float64 { return x + 0.75 }, 1e-7, 0, false, 0},
		{"neg", Neg, func(x float64) float64 { return -x }, 0, 0, false, 0},
		{"square", Square, func(x float64) float64 { return x * x }, 1e-7, 0, false, 1e19},
		{"sqrt", Sqrt, math.Sqrt, 1e-7, 0, true, 0},
		{"log", Log, math.Log, 1e-7, 0, true, 0},
		{"exp", Exp, math.Exp, 1e-6, 0, false, 0},
		{"sin", Sin, math.Sin, 1e-6, 0, false, 100},
		{"cos", Cos, math.Cos, 1e-6, 0, false, 100},
		{"clamp", func(a *Tensor) *Tensor { return Clamp(a, -0.5, 2) }, func(x float64) float64 { return math.Min(math.Max(x, -0.5), 2) }, 0, 0, false, 0},
		{"sigmoid", Sigmoid, sig, 1e-6, 0, false, 0},
		{"silu", SiLU, func(x float64) float64 { return x * sig(x) }, 1e-6, 0, false, 0},
		{"tanh", Tanh, math.Tanh, 1e-6, 0, false, 0},
		{"relu", ReLU, func(x float64) float64 { return math.Max(x, 0) }, 0, 0, false, 0},
		{"gelu", GELU, func(x float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) }, 1e-6, 1e-7, false, 0},
		{"gelu-tanh", GELUTanh, func(x float64) float64 {
			return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
		}, 1e-6, 1e-7, false, 1e12},
		// The argument 1.702·x is rounded to float32 first, as torch does.
		{"quick-gelu", QuickGELU, func(x float64) float64 { return x * sig(float64(float32(1.702)*float32(x))) }, 1e-6, 0, false, 0},
		{"softplus", Softplus, func(x float64) float64 {
			if x > 20 {
				return x
			}
			return math.Log1p(math.Exp(x))
		}, 1e-6, 0, false, 0},
		{"mish", func(a *Tensor) *Tensor { return Activation("mish", a) }, func(x float64) float64 {
			sp := math.Log1p(math.Exp(x))
			if x > 20 {
				sp = x
			}
			return x * math.Tanh(sp)
		}, 2e-6, 0, false, 0},
	}
	for _, c := range cases {
		var sel []float32
		for _, x := range xs {
			if c.positive && x <= 0 {
				continue
			}
			if c.bounded > 0 && math.Abs(float64(x)) > c.bounded {
				continue
			}
			sel = append(sel, x)
		}
		if c.positive {
			sel = append(sel, 1e-30, 3e38)
		}
		got := c.f(FromSlice(sel, len(sel))).Data()
		want := make([]float64, len(sel))
		mag := make([]float64, len(sel))
		for i, x := range sel {
			want[i] = float64(float32(c.ref(float64(x)))) // the float32 result torch returns
			if math.IsInf(c.ref(float64(x)), 0) {
				want[i] = c.ref(float64(x))
			}
			mag[i] = math.Abs(want[i]) + c.absPerX/max(c.rtol, 1e-30)*math.Abs(float64(x))
		}
		checkNear(t, c.name, got, want, mag, c.rtol, 0)
	}
	_ = in
	// Specials.
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	sp := FromSlice([]float32{inf, -inf, nan}, 3)
	checkNear(t, "exp specials", Exp(sp).Data(), []float64{math.Inf(1), 0, math.NaN()}, nil, 0, 0)
	checkNear(t, "sigmoid specials", Sigmoid(sp).Data(), []float64{1, 0, math.NaN()}, nil, 0, 0)
	checkNear(t, "silu specials", SiLU(FromSlice([]float32{inf, nan}, 2)).Data(), []float64{math.Inf(1), math.NaN()}, nil, 0, 0)
	checkNear(t, "relu nan-free", ReLU(FromSlice([]float32{-inf, inf}, 2)).Data(), []float64{0, math.Inf(1)}, nil, 0, 0)
	// Strided input to a unary op.
	m := randT(r, 5, 7)
	got := SiLU(m.Transpose(0, 1)).Data()
	var want []float64
	for j := 0; j < 7; j++ {
		for i := 0; i < 5; i++ {
			x := float64(m.f32[i*7+j])
			want = append(want, x*sig(x))
		}
	}
	checkNear(t, "silu transposed", got, want, nil, 1e-6, 0)
	// F16 input to a unary op.
	h := m.ToDType(F16)
	got = Scale(h, 2).Data()
	want = want[:0]
	for _, v := range h.u16 {
		want = append(want, 2*float64(half.F16ToF32(v)))
	}
	checkNear(t, "scale f16", got, want, nil, 0, 0)
}

func TestForwardReduce(t *testing.T) {
	r := rand.New(rand.NewSource(13))
	shape := []int{3, 4, 5, 6}
	x := randT(r, shape...)
	xd := f64s(x.f32)
	var total, absTotal float64
	for _, v := range xd {
		total += v
		absTotal += math.Abs(v)
	}
	checkNear(t, "sum", Sum(x).Data(), []float64{total}, []float64{absTotal}, 1e-6, 0)
	if s := Sum(x); s.Rank() != 0 {
		t.Errorf("sum rank %d", s.Rank())
	}
	checkNear(t, "mean", Mean(x).Data(), []float64{total / float64(len(xd))}, []float64{absTotal / float64(len(xd))}, 1e-6, 0)
	for d := -1; d < 4; d++ {
		for _, keep := range []bool{false, true} {
			dim := (d + 4) % 4
			oshape := cloneInts(shape)
			oshape[dim] = 1
			want := make([]float64, numel(oshape))
			mag := make([]float64, numel(oshape))
			forIdx(shape, func(idx []int) {
				o := append([]int(nil), idx...)
				o[dim] = 0
				k := flatAt(oshape, o)
				v := xd[flatAt(shape, idx)]
				want[k] += v
				mag[k] += math.Abs(v)
			})
			name := fmt.Sprintf("sumdim %d keep=%v", d, keep)
			got := SumDim(x, d, keep)
			if keep {
				shapeEq(t, name, got.shape, oshape)
			} else {
				shapeEq(t, name, got.shape, append(cloneInts(shape[:dim]), shape[dim+1:]...))
			}
			checkNear(t, name, got.Data(), want, mag, 1e-6, 0)
			n := float64(shape[dim])
			for i := range want {
				want[i] /= n
				mag[i] /= n
			}
			checkNear(t, "mean"+name[3:], MeanDim(x, d, keep).Data(), want, mag, 1e-6, 0)
		}
	}
	// A strided input.
	got := SumDim(x.Permute(3, 1, 0, 2), 2, false).Data()
	var want []float64
	for l := 0; l < 6; l++ {
		for j := 0; j < 4; j++ {
			for k := 0; k < 5; k++ {
				s := 0.0
				for i := 0; i < 3; i++ {
					s += xd[((i*4+j)*5+k)*6+l]
				}
				want = append(want, s)
			}
		}
	}
	checkNear(t, "sumdim permuted", got, want, maxMag(want), 1e-6, 0)
	if am := ArgMax(FromSlice([]float32{1, 5, 2, 7, 7, 0}, 2, 3)); am[0] != 1 || am[1] != 0 {
		t.Errorf("argmax %v", am)
	}
}

// refMatMul computes a[b, m, k]·b[b?, k, n] in float64, with the magnitude
// Σ|a·b| of each output.
func refMatMul(a []float64, b []float64, batch, m, k, n int, sharedB, transB bool) (out, mag []float64) {
	out = make([]float64, batch*m*n)
	mag = make([]float64, batch*m*n)
	for bi := 0; bi < batch; bi++ {
		bo := bi * k * n
		if sharedB {
			bo = 0
		}
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				var s, sa float64
				for p := 0; p < k; p++ {
					bv := b[bo+p*n+j]
					if transB {
						bv = b[bo+j*k+p]
					}
					v := a[(bi*m+i)*k+p] * bv
					s += v
					sa += math.Abs(v)
				}
				out[(bi*m+i)*n+j] = s
				mag[(bi*m+i)*n+j] = sa
			}
		}
	}
	return out, mag
}

func TestForwardMatMul(t *testing.T) {
	r := rand.New(rand.NewSource(14))
	for _, s := range []struct {
		batch   []int
		m, k, n int
	}{
		{nil, 1, 1, 1},
		{nil, 7, 13, 5},
		{[]int{2, 3}, 5, 7, 4},
		{[]int{3}, 37, 65, 29},
		{[]int{2}, 130, 70, 100},
	} {
		bsz := numel(s.batch)
		ashape := append(cloneInts(s.batch), s.m, s.k)
		a := randT(r, ashape...)
		b := randT(r, append(cloneInts(s.batch), s.k, s.n)...)
		name := fmt.Sprintf("matmul %v %dx%dx%d", s.batch, s.m, s.k, s.n)
		want, mag := refMatMul(f64s(a.f32), f64s(b.f32), bsz, s.m, s.k, s.n, false, false)
		got := MatMul(a, b)
		shapeEq(t, name, got.shape, append(cloneInts(s.batch), s.m, s.n))
		checkNear(t, name, got.Data(), want, mag, 1e-6, 0)
		// Shared 2-D B.
		b2 := randT(r, s.k, s.n)
		want, mag = refMatMul(f64s(a.f32), f64s(b2.f32), bsz, s.m, s.k, s.n, true, false)
		checkNear(t, name+" shared", MatMul(a, b2).Data(), want, mag, 1e-6, 0)
		// a·bᵀ, b [batch, n, k].
		bt := randT(r, append(cloneInts(s.batch), s.n, s.k)...)
		want, mag = refMatMul(f64s(a.f32), f64s(bt.f32), bsz, s.m, s.k, s.n, false, true)
		checkNear(t, name+" T", MatMulT(a, bt).Data(), want, mag, 1e-6, 0)
		// Non-contiguous a (a transposed view of a [.., k, m] tensor).
		at := randT(r, append(cloneInts(s.batch), s.k, s.m)...)
		av := at.Transpose(-1, -2)
		want, mag = refMatMul(f64s(av.Contiguous().f32), f64s(b.f32), bsz, s.m, s.k, s.n, false, false)
		checkNear(t, name+" strided a", MatMul(av, b).Data(), want, mag, 1e-6, 0)
	}
}

func TestForwardLinear(t *testing.T) {
	r := rand.New(rand.NewSource(15))
	for _, s := range []struct {
		lead    []int
		in, out int
	}{
		{[]int{3}, 4, 5},
		{[]int{2, 9}, 33, 17},
		{[]int{70}, 96, 130},
	} {
		x := randT(r, append(cloneInts(s.lead), s.in)...)
		w := randT(r, s.out, s.in)
		bias := randT(r, s.out)
		rows := numel(s.lead)
		for _, dt := range []DType{F32, F16, BF16} {
			wq := w.ToDType(dt)
			if wq.DType() != dt {
				t.Fatalf("ToDType(%v) gave %v", dt, wq.DType())
			}
			wr := f64s(wq.Float32().Data()) // the rounded weights
			for _, withBias := range []bool{false, true} {
				want, mag := refMatMul(f64s(x.f32), wr, 1, rows, s.in, s.out, true, true)
				var bt *Tensor
				if withBias {
					bt = bias
					for i := range want {
						want[i] += float64(bias.f32[i%s.out])
						mag[i] += math.Abs(float64(bias.f32[i%s.out]))
					}
				}
				name := fmt.Sprintf("linear %v %d->%d %v bias=%v", s.lead, s.in, s.out, dt, withBias)
				got := Linear(x, wq, bt)
				shapeEq(t, name, got.shape, append(cloneInts(s.lead), s.out))
				checkNear(t, name, got.Data(), want, mag, 1e-6, 0)
			}
		}
	}
}

// refConv2d is a direct 7-loop convolution in float64.
func refConv2d(x []float64, n, cin, h, w int, wt []float64, cout, kh, kw int, bias []float64, o Conv2dOpts) (out, mag []float64, oh, ow int) {
	o = o.norm()
	oh = (h+2*o.Padding[0]-o.Dilation[0]*(kh-1)-1)/o.Stride[0] + 1
	ow = (w+2*o.Padding[1]-o.Dilation[1]*(kw-1)-1)/o.Stride[1] + 1
	cg, og := cin/o.Groups, cout/o.Groups
	out = make([]float64, n*cout*oh*ow)
	mag = make([]float64, len(out))
	for img := 0; img < n; img++ {
		for co := 0; co < cout; co++ {
			grp := co / og
			for y := 0; y < oh; y++ {
				for xx := 0; xx < ow; xx++ {
					var s, sa float64
					if bias != nil {
						s, sa = bias[co], math.Abs(bias[co])
					}
					for c := 0; c < cg; c++ {
						for ky := 0; ky < kh; ky++ {
							iy := y*o.Stride[0] + ky*o.Dilation[0] - o.Padding[0]
							if iy < 0 || iy >= h {
								continue
							}
							for kx := 0; kx < kw; kx++ {
								ix := xx*o.Stride[1] + kx*o.Dilation[1] - o.Padding[1]
								if ix < 0 || ix >= w {
									continue
								}
								v := x[((img*cin+grp*cg+c)*h+iy)*w+ix] * wt[((co*cg+c)*kh+ky)*kw+kx]
								s += v
								sa += math.Abs(v)
							}
						}
					}
					k := ((img*cout+co)*oh+y)*ow + xx
					out[k], mag[k] = s, sa
				}
			}
		}
	}
	return out, mag, oh, ow
}

func TestForwardConv2d(t *testing.T) {
	r := rand.New(rand.NewSource(16))
	cases := []convCase{
		{1, 1, 1, 1, 1, 1, 1, Conv2dOpts{}, false, F32},
		{2, 3, 5, 5, 4, 3, 3, Conv2dOpts{Padding: [2]int{1, 1}}, true, F32},
		{1, 4, 9, 7, 6, 3, 3, Conv2dOpts{Stride: [2]int{2, 2}, Padding: [2]int{1, 1}}, true, F32},
		{1, 4, 6, 7, 6, 3, 3, Conv2dOpts{Stride: [2]int{2, 1}, Padding: [2]int{1, 2}, Dilation: [2]int{1, 2}, Groups: 2}, false, F32},
		{2, 6, 8, 8, 6, 3, 3, Conv2dOpts{Padding: [2]int{1, 1}, Groups: 6}, true, F32}, // depthwise
		{2, 5, 7, 9, 3, 1, 1, Conv2dOpts{}, true, F32},                                 // 1×1 direct
		{1, 4, 7, 9, 8, 1, 1, Conv2dOpts{Groups: 2}, false, F32},                       // 1×1 grouped
		{1, 3, 7, 9, 2, 1, 1, Conv2dOpts{Stride: [2]int{2, 2}}, true, F32},             // 1×1 strided
		{1, 3, 6, 6, 2, 1, 1, Conv2dOpts{Padding: [2]int{1, 1}}, true, F32},            // 1×1 padded
		{1, 2, 11, 13, 3, 5, 4, Conv2dOpts{Stride: [2]int{3, 2}, Padding: [2]int{2, 0}, Dilation: [2]int{2, 1}}, true, F32},
		{1, 3, 4, 4, 2, 4, 4, Conv2dOpts{}, false, F32},                         // kernel = input
		{1, 2, 3, 3, 2, 3, 3, Conv2dOpts{Padding: [2]int{3, 3}}, true, F32},     // padding > kernel/2
		{2, 8, 17, 19, 16, 3, 3, Conv2dOpts{Padding: [2]int{1, 1}}, true, F16},  // f16 weights
		{1, 8, 12, 10, 8, 3, 3, Conv2dOpts{Padding: [2]int{1, 1}}, false, BF16}, // bf16 weights
		{1, 16, 45, 43, 24, 3, 3, Conv2dOpts{Padding: [2]int{1, 1}}, true, F32}, // many column blocks
		{1, 32, 40, 40, 40, 1, 1, Conv2dOpts{}, true, F32},                      // large 1×1
		{1, 8, 64, 66, 8, 3, 3, Conv2dOpts{Stride: [2]int{2, 2}}, true, F32},    // downsample, no pad
		{1, 4, 70, 70, 4, 3, 3, Conv2dOpts{Padding: [2]int{1, 1}, Groups: 4}, true, F32},
		{3, 4, 6, 10, 5, 3, 3, Conv2dOpts{Stride: [2]int{2, 2}, Padding: [2]int{1, 1}}, true, F32}, // slivers across images
		{2, 4, 16, 32, 8, 3, 3, Conv2dOpts{Padding: [2]int{1, 1}}, true, F16},                      // whole 16-wide slivers
		{2, 6, 9, 16, 4, 3, 3, Conv2dOpts{Padding: [2]int{1, 1}, Groups: 2}, false, F32},
		// Output widths that are whole B slivers: B read in place.
		{2, 8, 4, 16, 8, 1, 1, Conv2dOpts{}, true, F32},
		{1, 4, 12, 16, 6, 3, 3, Conv2dOpts{Padding: [2]int{2, 2}, Dilation: [2]int{2, 2}}, true, F32},
		{1, 3, 6, 16, 5, 3, 1, Conv2dOpts{Padding: [2]int{1, 0}}, true, BF16},
		{2, 4, 5, 1, 3, 3, 3, Conv2dOpts{Padding: [2]int{1, 1}}, true, F32}, // 1-wide input: side taps see only padding
	}
	// Every case runs with images multiplied one at a time and all at once,
	// and with the input unfolded or read in place where that applies; then
	// with the Winograd algorithm wherever the geometry allows it.
	defer func(v int) { convBatchBelow = v }(convBatchBelow)
	defer SetConvInPlace(convInPlace.Load())
	defer forceWinograd(false)()
	for _, batchBelow := range []int{0, 1 << 30} {
		for _, ip := range []bool{false, true} {
			convBatchBelow = batchBelow
			SetConvInPlace(ip)
			testConv2dCases(t, r, cases)
		}
	}
	restore := forceWinograd(true)
	testConv2dCases(t, r, append(cases,
		convCase{1, 3, 5, 4, 2, 3, 3, Conv2dOpts{}, true, F32},                          // no padding: 3×2 output
		convCase{2, 5, 9, 7, 3, 3, 3, Conv2dOpts{Padding: [2]int{2, 1}}, true, F16},     // odd output sizes
		convCase{1, 6, 7, 8, 5, 3, 3, Conv2dOpts{Padding: [2]int{0, 2}}, false, F32},    // mixed padding
		convCase{3, 40, 23, 21, 33, 3, 3, Conv2dOpts{Padding: [2]int{1, 1}}, true, F32}, // several tile blocks, across images
		convCase{1, 300, 6, 6, 20, 3, 3, Conv2dOpts{Padding: [2]int{1, 1}}, true, BF16}, // several k blocks
		convCase{1, 2, 1, 1, 3, 3, 3, Conv2dOpts{Padding: [2]int{1, 1}}, true, F32},     // one position
		convCase{2, 4, 3, 50, 4, 3, 3, Conv2dOpts{Padding: [2]int{1, 1}}, true, F32},    // wide and flat
	))
	restore()
	// A strided (permuted) input is made contiguous first.
	x := randT(r, 1, 5, 6, 3) // [n, h, w, c] → NCHW view
	wt := randT(r, 2, 3, 3, 3)
	xv := x.Permute(0, 3, 1, 2)
	want, mag, _, _ := refConv2d(f64s(xv.Contiguous().f32), 1, 3, 5, 6, f64s(wt.f32), 2, 3, 3, nil, Conv2dOpts{Padding: [2]int{1, 1}})
	checkNear(t, "conv permuted input", Conv2d(xv, wt, nil, Conv2dOpts{Padding: [2]int{1, 1}}).Data(), want, mag, 1e-6, 0)
}

// forceWinograd makes Conv2d use the Winograd algorithm for every geometry
// it supports (on) or for none (off), and returns a function restoring the
// defaults.
func forceWinograd(on bool) func() {
	m := WinogradOff
	if on {
		m = WinogradAll
	}
	old := SetWinograd(m)
	return func() { SetWinograd(old) }
}

// TestConvInPlace checks which convolutions hand the GEMM their input to be
// read in place (the values are checked by TestForwardConv2d).
func TestConvInPlace(t *testing.T) {
	defer SetConvInPlace(SetConvInPlace(true))
	nr := gemm.NR()
	for _, tc := range []struct {
		g    convGeom
		want bool
	}{
		{convGeom{n: 1, cin: 2, h: 4, w: nr, cout: 2, kh: 3, kw: 3, oh: 4, ow: nr, groups: 1, o: Conv2dOpts{Padding: [2]int{1, 1}}.norm()}, true},
		{convGeom{n: 1, cin: 2, h: 4, w: 2 * nr, cout: 2, kh: 1, kw: 1, oh: 4, ow: 2 * nr, groups: 1, o: Conv2dOpts{}.norm()}, true},
		{convGeom{n: 1, cin: 2, h: 8, w: 2 * nr, cout: 2, kh: 3, kw: 3, oh: 4, ow: nr, groups: 1, o: Conv2dOpts{Stride: [2]int{2, 2}, Padding: [2]int{1, 1}}.norm()}, false},
		{convGeom{n: 1, cin: 2, h: 4, w: nr + 1, cout: 2, kh: 3, kw: 3, oh: 4, ow: nr + 1, groups: 1, o: Conv2dOpts{Padding: [2]int{1, 1}}.norm()}, false},
	} {
		xs := make([]float32, tc.g.n*tc.g.cin*tc.g.h*tc.g.w)
		if got := tc.g.inPlace(xs) != nil; got != tc.want {
			t.Errorf("%+v: in place %v, want %v", tc.g, got, tc.want)
		}
	}
}

type convCase struct {
	n, cin, h, w, cout, kh, kw int
	o                          Conv2dOpts
	bias                       bool
	dt                         DType
}

func testConv2dCases(t *testing.T, r *rand.Rand, cases []convCase) {
	t.Helper()
	for _, c := range cases {
		name := fmt.Sprintf("conv %+v batch<%d inplace=%v winograd=%v", c, convBatchBelow, convInPlace.Load(), WinogradMode(winogradMode.Load()))
		x := randT(r, c.n, c.cin, c.h, c.w)
		wt := randT(r, c.cout, c.cin/max(c.o.Groups, 1), c.kh, c.kw).ToDType(c.dt)
		var b *Tensor
		var bd []float64
		if c.bias {
			b = randT(r, c.cout)
			bd = f64s(b.f32)
		}
		want, mag, oh, ow := refConv2d(f64s(x.f32), c.n, c.cin, c.h, c.w, f64s(wt.Float32().Data()), c.cout, c.kh, c.kw, bd, c.o)
		got := Conv2d(x, wt, b, c.o)
		shapeEq(t, name, got.shape, []int{c.n, c.cout, oh, ow})
		checkNear(t, name, got.Data(), want, mag, 1e-6, 0)
	}
}

// refNorm normalises rows of length l (float64 mean and biased variance).
func refNorm(x []float64, rows, l int, eps float64, rms bool) []float64 {
	out := make([]float64, len(x))
	for r := 0; r < rows; r++ {
		row := x[r*l : (r+1)*l]
		mean := 0.0
		if !rms {
			for _, v := range row {
				mean += v
			}
			mean /= float64(l)
		}
		v2 := 0.0
		for _, v := range row {
			v2 += (v - mean) * (v - mean)
		}
		rs := 1 / math.Sqrt(v2/float64(l)+eps)
		for i, v := range row {
			out[r*l+i] = (v - mean) * rs
		}
	}
	return out
}

// normMag is the magnitude for normalised outputs: |xhat|·|w| + |b| with
// |xhat| at least 1 (the scale of a unit-variance row).
func normMag(xhat []float64, chanOf func(i int) int, w, b []float64) []float64 {
	m := make([]float64, len(xhat))
	for i, v := range xhat {
		a := math.Max(math.Abs(v), 1)
		if w != nil {
			a *= math.Abs(w[chanOf(i)])
		}
		if b != nil {
			a += math.Abs(b[chanOf(i)])
		}
		m[i] = a
	}
	return m
}

func TestForwardNorms(t *testing.T) {
	r := rand.New(rand.NewSource(17))
	for _, s := range []struct {
		n, c, h, w, groups int
		shift              float32
	}{
		{2, 6, 5, 7, 3, 0},
		{1, 4, 1, 1, 2, 0},
		{2, 8, 9, 9, 8, 3},
		{1, 32, 16, 16, 8, 100}, // large mean: needs a stable variance
		{1, 64, 33, 31, 32, -20},
	} {
		x := randT(r, s.n, s.c, s.h, s.w)
		for i := range x.f32 {
			x.f32[i] = x.f32[i]*2 + s.shift
		}
		w, b := randT(r, s.c), randT(r, s.c)
		sp := s.h * s.w
		l := s.c / s.groups * sp
		xhat := refNorm(f64s(x.f32), s.n*s.groups, l, 1e-5, false)
		chanOf := func(i int) int { return i / sp % s.c }
		want := make([]float64, len(xhat))
		for i, v := range xhat {
			want[i] = v*float64(w.f32[chanOf(i)]) + float64(b.f32[chanOf(i)])
		}
		name := fmt.Sprintf("groupnorm %+v", s)
		checkNear(t, name, GroupNorm(x, s.groups, w, b, 1e-5).Data(), want, normMag(xhat, chanOf, f64s(w.f32), f64s(b.f32)), 2e-6, 0)
		checkNear(t, name+" no affine", GroupNorm(x, s.groups, nil, nil, 1e-5).Data(), xhat, normMag(xhat, chanOf, nil, nil), 2e-6, 0)
	}
	// GroupNorm of a rank-3 input (no spatial dims beyond one).
	x3 := randT(r, 2, 4, 10)
	xh3 := refNorm(f64s(x3.f32), 2*2, 2*10, 1e-6, false)
	checkNear(t, "groupnorm rank3", GroupNorm(x3, 2, nil, nil, 1e-6).Data(), xh3, normMag(xh3, func(int) int { return 0 }, nil, nil), 2e-6, 0)

	for _, s := range []struct {
		lead  []int
		d     int
		shift float32
	}{
		{[]int{3}, 1, 0},
		{[]int{3}, 6, 0},
		{[]int{2, 5}, 33, 0},
		{[]int{7}, 320, 50},
		{[]int{4}, 1280, -3},
		{[]int{2, 3}, 7, 1e3},
	} {
		x := randT(r, append(cloneInts(s.lead), s.d)...)
		for i := range x.f32 {
			x.f32[i] += s.shift
		}
		rows := numel(s.lead)
		w, b := randT(r, s.d), randT(r, s.d)
		chanOf := func(i int) int { return i % s.d }
		for _, eps := range []float64{1e-5, 1e-6} {
			xhat := refNorm(f64s(x.f32), rows, s.d, eps, false)
			want := make([]float64, len(xhat))
			for i, v := range xhat {
				want[i] = v*float64(w.f32[chanOf(i)]) + float64(b.f32[chanOf(i)])
			}
			name := fmt.Sprintf("layernorm %v×%d shift %g eps %g", s.lead, s.d, s.shift, eps)
			checkNear(t, name, LayerNorm(x, w, b, eps).Data(), want, normMag(xhat, chanOf, f64s(w.f32), f64s(b.f32)), 2e-6, 0)
			checkNear(t, name+" no affine", LayerNorm(x, nil, nil, eps).Data(), xhat, normMag(xhat, chanOf, nil, nil), 2e-6, 0)
			checkNear(t, name+" weight only", LayerNorm(x, w, nil, eps).Data(), func() []float64 {
				o := make([]float64, len(xhat))
				for i, v := range xhat {
					o[i] = v * float64(w.f32[chanOf(i)])
				}
				return o
			}(), normMag(xhat, chanOf, f64s(w.f32), nil), 2e-6, 0)

			rh := refNorm(f64s(x.f32), rows, s.d, eps, true)
			rw := make([]float64, len(rh))
			for i, v := range rh {
				rw[i] = v * float64(w.f32[chanOf(i)])
			}
			checkNear(t, "rms"+name[5:], RMSNorm(x, w, eps).Data(), rw, normMag(rh, chanOf, f64s(w.f32), nil), 2e-6, 0)
			checkNear(t, "rms"+name[5:]+" no weight", RMSNorm(x, nil, eps).Data(), rh, normMag(rh, chanOf, nil, nil), 2e-6, 0)
		}
	}
	// Constant rows: variance 0, output 0 (eps keeps rstd finite).
	c := Full(3, 2, 8)
	checkNear(t, "layernorm constant", LayerNorm(c, nil, nil, 1e-5).Data(), make([]float64, 16), nil, 0, 1e-6)
}

func refSoftmax(row []float64) []float64 {
	m := math.Inf(-1)
	for _, v := range row {
		m = math.Max(m, v)
	}
	out := make([]float64, len(row))
	if math.IsInf(m, -1) {
		return out
	}
	s := 0.0
	for i, v := range row {
		out[i] = math.Exp(v - m)
		s += out[i]
	}
	for i := range out {
		out[i] /= s
	}
	return out
}

func TestForwardSoftmax(t *testing.T) {
	r := rand.New(rand.NewSource(18))
	for _, n := range []int{1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 77, 100, 1000, 4099} {
		for _, scale := range []float64{1, 10, 100} {
			x := randT(r, 3, n)
			for i := range x.f32 {
				x.f32[i] = float32(float64(x.f32[i]) * scale)
			}
			if n > 4 {
				x.f32[2] = float32(math.Inf(-1)) // a masked entry
			}
			want := make([]float64, 0, 3*n)
			xd := f64s(x.f32)
			for row := 0; row < 3; row++ {
				want = append(want, refSoftmax(xd[row*n:(row+1)*n])...)
			}
			name := fmt.Sprintf("softmax n=%d scale=%g", n, scale)
			// Every probability within a few ulp of itself, and of the row's largest.
			checkNear(t, name, Softmax(x).Data(), want, nil, 2e-6, 1e-9)
		}
	}
	// A fully masked row stays zero; other rows are unaffected.
	x := randT(r, 2, 5)
	for i := 0; i < 5; i++ {
		x.f32[i] = float32(math.Inf(-1))
	}
	got := Softmax(x).Data()
	want := append(make([]float64, 5), refSoftmax(f64s(x.f32[5:]))...)
	checkNear(t, "softmax masked row", got, want, nil, 2e-6, 0)
	// Softmax of a strided view, over its (strided) last dimension.
	y := randT(r, 4, 6)
	got = Softmax(y.Transpose(0, 1)).Data()
	want = want[:0]
	for j := 0; j < 6; j++ {
		col := make([]float64, 4)
		for i := range col {
			col[i] = float64(y.f32[i*6+j])
		}
		want = append(want, refSoftmax(col)...)
	}
	checkNear(t, "softmax transposed", got, want, nil, 2e-6, 0)
	if x.f32[6] != Softmax(x).Data()[6] && x.f32[0] != float32(math.Inf(-1)) {
		t.Errorf("softmax modified its input")
	}
}

func TestForwardAttention(t *testing.T) {
	r := rand.New(rand.NewSource(19))
	type cs struct {
		b, h, lq, lk, d, dv int
		mask                string
		scale               float32
	}
	for _, c := range []cs{
		{1, 1, 1, 1, 1, 1, "", 0},
		{2, 2, 300, 77, 16, 24, "", 0},      // three query blocks
		{1, 3, 129, 130, 8, 8, "", 0.2},     // one row past a block
		{2, 2, 260, 50, 8, 12, "keys", 0},   // [B, 1, 1, Lk] mask
		{1, 2, 200, 200, 8, 8, "causal", 0}, // [1, 1, Lq, Lk] mask
		{2, 1, 140, 33, 4, 4, "full", 0.5},  // [B, H, Lq, Lk] mask with fully masked rows
		{1, 2, 150, 300, 64, 80, "keys", 0}, // wide heads: blocks of several slivers, two k blocks
		{1, 1, 40, 20, 100, 40, "full", 0},  // one partial wide block
	} {
		q := randT(r, c.b, c.h, c.lq, c.d)
		k := randT(r, c.b, c.h, c.lk, c.d)
		v := randT(r, c.b, c.h, c.lk, c.dv)
		var mask *Tensor
		maskAt := func(b, h, i, j int) float64 { return 0 }
		ninf := float32(math.Inf(-1))
		switch c.mask {
		case "keys":
			mask = Zeros(c.b, 1, 1, c.lk)
			for b := 0; b < c.b; b++ {
				for j := 0; j < c.lk; j++ {
					if (j+b)%5 == 0 {
						mask.f32[b*c.lk+j] = ninf
					} else if j%3 == 0 {
						mask.f32[b*c.lk+j] = -1.5
					}
				}
			}
			maskAt = func(b, h, i, j int) float64 { return float64(mask.f32[b*c.lk+j]) }
		case "causal":
			mask = Zeros(1, 1, c.lq, c.lk)
			for i := 0; i < c.lq; i++ {
				for j := i + 1; j < c.lk; j++ {
					mask.f32[i*c.lk+j] = ninf
				}
			}
			maskAt = func(b, h, i, j int) float64 { return float64(mask.f32[i*c.lk+j]) }
		case "full":
			mask = randT(r, c.b, c.h, c.lq, c.lk)
			for i := 0; i < c.b*c.h*c.lq; i++ {
				if i%7 == 3 { // every key of this query masked
					for j := 0; j < c.lk; j++ {
						mask.f32[i*c.lk+j] = ninf
					}
				}
			}
			maskAt = func(b, h, i, j int) float64 { return float64(mask.f32[((b*c.h+h)*c.lq+i)*c.lk+j]) }
		}
		scale := float64(c.scale)
		if scale <= 0 {
			scale = 1 / math.Sqrt(float64(c.d))
		}
		qd, kd, vd := f64s(q.f32), f64s(k.f32), f64s(v.f32)
		want := make([]float64, c.b*c.h*c.lq*c.dv)
		mag := make([]float64, len(want))
		for b := 0; b < c.b; b++ {
			for h := 0; h < c.h; h++ {
				bh := b*c.h + h
				for i := 0; i < c.lq; i++ {
					s := make([]float64, c.lk)
					for j := range s {
						dot := 0.0
						for e := 0; e < c.d; e++ {
							dot += qd[(bh*c.lq+i)*c.d+e] * kd[(bh*c.lk+j)*c.d+e]
						}
						s[j] = dot*scale + maskAt(b, h, i, j)
					}
					p := refSoftmax(s)
					for e := 0; e < c.dv; e++ {
						var o, oa float64
						for j := range p {
							o += p[j] * vd[(bh*c.lk+j)*c.dv+e]
							oa += p[j] * math.Abs(vd[(bh*c.lk+j)*c.dv+e])
						}
						want[(bh*c.lq+i)*c.dv+e] = o
						mag[(bh*c.lq+i)*c.dv+e] = oa
					}
				}
			}
		}
		name := fmt.Sprintf("attention %+v", c)
		got := Attention(q, k, v, mask, c.scale)
		shapeEq(t, name, got.shape, []int{c.b, c.h, c.lq, c.dv})
		// Scores of size ~|q||k|·scale pass through exp: allow a little more.
		checkNear(t, name, got.Data(), want, mag, 1e-5, 0)
	}
}

func TestForwardSpatial(t *testing.T) {
	r := rand.New(rand.NewSource(20))
	// UpsampleNearest: torch's rule src = min(floor(dst·(in/out)), in-1),
	// with the scale and product in float32.
	torchSrc := func(dst, in, out int) int {
		if in == out {
			return dst
		}
		if out == 2*in {
			return dst >> 1
		}
		scale := float32(in) / float32(out)
		return min(int(math.Floor(float64(float32(dst)*scale))), in-1)
	}
	for _, s := range [][4]int{{3, 4, 6, 8}, {3, 4, 3, 4}, {5, 7, 8, 9}, {4, 4, 3, 5}, {7, 3, 10, 11}, {6, 10, 9, 25}, {5, 5, 17, 13}, {13, 11, 40, 37}, {1, 1, 3, 2}, {2, 3, 82, 5}, {5, 2, 7, 94}} {
		h, w, oh, ow := s[0], s[1], s[2], s[3]
		x := randT(r, 2, 3, h, w)
		got := UpsampleNearest(x, oh, ow)
		shapeEq(t, "upsample", got.shape, []int{2, 3, oh, ow})
		var want []float64
		for p := 0; p < 6; p++ {
			for y := 0; y < oh; y++ {
				for xx := 0; xx < ow; xx++ {
					want = append(want, float64(x.f32[p*h*w+torchSrc(y, h, oh)*w+torchSrc(xx, w, ow)]))
				}
			}
		}
		checkNear(t, fmt.Sprintf("upsample %v", s), got.Data(), want, nil, 0, 0)
	}
	// AvgPool2d.
	for _, s := range [][4]int{{4, 4, 2, 2}, {5, 7, 2, 2}, {7, 9, 3, 2}, {6, 6, 3, 3}, {5, 5, 1, 1}} {
		h, w, k, st := s[0], s[1], s[2], s[3]
		x := randT(r, 2, 2, h, w)
		got := AvgPool2d(x, k, st)
		oh, ow := (h-k)/st+1, (w-k)/st+1
		shapeEq(t, "avgpool", got.shape, []int{2, 2, oh, ow})
		var want, mag []float64
		for p := 0; p < 4; p++ {
			for y := 0; y < oh; y++ {
				for xx := 0; xx < ow; xx++ {
					var sum, sa float64
					for dy := 0; dy < k; dy++ {
						for dx := 0; dx < k; dx++ {
							v := float64(x.f32[p*h*w+(y*st+dy)*w+xx*st+dx])
							sum += v
							sa += math.Abs(v)
						}
					}
					want = append(want, sum/float64(k*k))
					mag = append(mag, sa/float64(k*k))
				}
			}
		}
		checkNear(t, fmt.Sprintf("avgpool %v", s), got.Data(), want, mag, 1e-6, 0)
	}
	// PixelUnshuffle / PixelShuffle.
	for _, rr := range []int{1, 2, 3} {
		n, c, h, w := 2, 3, 2*rr, 3*rr
		x := randT(r, n, c, h, w)
		u := PixelUnshuffle(x, rr)
		shapeEq(t, "pixel unshuffle", u.shape, []int{n, c * rr * rr, h / rr, w / rr})
		want := make([]float64, x.Numel())
		for img := 0; img < n; img++ {
			for ch := 0; ch < c; ch++ {
				for y := 0; y < h/rr; y++ {
					for xx := 0; xx < w/rr; xx++ {
						for dy := 0; dy < rr; dy++ {
							for dx := 0; dx < rr; dx++ {
								oc := ch*rr*rr + dy*rr + dx
								want[((img*c*rr*rr+oc)*(h/rr)+y)*(w/rr)+xx] = float64(x.f32[((img*c+ch)*h+y*rr+dy)*w+xx*rr+dx])
							}
						}
					}
				}
			}
		}
		checkNear(t, fmt.Sprintf("pixel unshuffle %d", rr), u.Data(), want, nil, 0, 0)
		back := PixelShuffle(u, rr)
		shapeEq(t, "pixel shuffle", back.shape, x.shape)
		checkNear(t, fmt.Sprintf("pixel shuffle %d", rr), back.Data(), f64s(x.f32), nil, 0, 0)
		// PixelShuffle checked directly too: shuffle(y)[c, y·r+dy, x·r+dx] = y[c·r²+dy·r+dx, y, x].
		yv := randT(r, 1, 2*rr*rr, 3, 2)
		ps := PixelShuffle(yv, rr).Data()
		for ch := 0; ch < 2; ch++ {
			for y := 0; y < 3*rr; y++ {
				for xx := 0; xx < 2*rr; xx++ {
					src := yv.f32[((ch*rr*rr+(y%rr)*rr+xx%rr)*3+y/rr)*2+xx/rr]
					if g := ps[(ch*3*rr+y)*2*rr+xx]; g != src {
						t.Fatalf("pixel shuffle %d: [%d,%d,%d] = %g, want %g", rr, ch, y, xx, g, src)
					}
				}
			}
		}
	}
}

func TestForwardEmbedding(t *testing.T) {
	r := rand.New(rand.NewSource(21))
	for _, dt := range []DType{F32, F16, BF16} {
		table := randT(r, 10, 6).ToDType(dt)
		tv := table.Float32().Data()
		ids := []int64{3, 0, 9, 3, 5, 1}
		got, err := Embedding(table, ids, 2, 3)
		if err != nil {
			t.Fatal(err)
		}
		shapeEq(t, "embedding", got.shape, []int{2, 3, 6})
		var want []float64
		for _, id := range ids {
			want = append(want, f64s(tv[id*6:(id+1)*6])...)
		}
		checkNear(t, "embedding "+dt.String(), got.Data(), want, nil, 0, 0)
		for _, bad := range []int64{-1, 10, 1 << 40} {
			if _, err := Embedding(table, []int64{1, bad}, 2); err == nil {
				t.Errorf("embedding id %d: no error", bad)
			}
		}
		if _, err := Embedding(table, []int64{1, 2, 3}, 2); err == nil {
			t.Errorf("embedding with 3 ids for shape [2]: no error")
		}
	}
}

func TestForwardTimestepEmbedding(t *testing.T) {
	ts := []float32{0, 1, 10.5, 500, 999}
	for _, c := range []struct {
		dim          int
		flip         bool
		shift, scale float64
		maxPeriod    float64
	}{
		{320, true, 0, 1, 10000},
		{320, false, 1, 1, 10000},
		{256, true, 1, 1000, 10000},
		{7, false, 0, 1, 100}, // odd: last column stays zero
	} {
		got := TimestepEmbedding(ts, c.dim, c.flip, c.shift, c.scale, c.maxPeriod)
		shapeEq(t, "timestep", got.shape, []int{len(ts), c.dim})
		half := c.dim / 2
		var want, loose, mag []float64
		for _, tv := range ts {
			row := make([]float64, c.dim)
			exact := make([]float64, c.dim)
			m := make([]float64, c.dim)
			for i := 0; i < half; i++ {
				// torch's float32 steps: exponent, exp, t·f, scale·(t·f).
				e := float32(-math.Log(c.maxPeriod)) * float32(i)
				e /= float32(float64(half) - c.shift)
				arg := tv * float32(math.Exp(float64(e)))
				arg *= float32(c.scale)
				s, co := math.Sin(float64(arg)), math.Cos(float64(arg))
				// The float64 formula, for a looser check.
				a64 := float64(tv) * math.Exp(-math.Log(c.maxPeriod)*float64(i)/(float64(half)-c.shift)) * c.scale
				s64, co64 := math.Sin(a64), math.Cos(a64)
				if c.flip {
					s, co = co, s
					s64, co64 = co64, s64
				}
				row[i], row[half+i] = s, co
				exact[i], exact[half+i] = s64, co64
				// float32 arguments are off by a few ulp of an exponent of up to ln(maxPeriod).
				m[i] = 1e-6 + 2e-6*math.Abs(a64)
				m[half+i] = m[i]
			}
			want = append(want, row...)
			loose = append(loose, exact...)
			mag = append(mag, m...)
		}
		checkNear(t, fmt.Sprintf("timestep %+v", c), got.Data(), want, nil, 0, 2e-7)
		checkNear(t, fmt.Sprintf("timestep %+v vs float64", c), got.Data(), loose, mag, 1, 0)
	}
}

func TestForwardRotary(t *testing.T) {
	r := rand.New(rand.NewSource(22))
	const L, D = 5, 8
	x := randT(r, 2, 3, L, D)
	cos, sin := randT(r, L, D), randT(r, L, D)
	for _, inter := range []bool{false, true} {
		got := ApplyRotary(x, cos, sin, inter)
		shapeEq(t, "rotary", got.shape, x.shape)
		want := make([]float64, x.Numel())
		mag := make([]float64, x.Numel())
		for row := 0; row < 2*3*L; row++ {
			l := row % L
			xr := x.f32[row*D : (row+1)*D]
			for i := 0; i < D; i++ {
				var rot float64
				if inter {
					if i%2 == 0 {
						rot = -float64(xr[i+1])
					} else {
						rot = float64(xr[i-1])
					}
				} else if i < D/2 {
					rot = -float64(xr[i+D/2])
				} else {
					rot = float64(xr[i-D/2])
				}
				a := float64(xr[i]) * float64(cos.f32[l*D+i])
				b := rot * float64(sin.f32[l*D+i])
				want[row*D+i] = a + b
				mag[row*D+i] = math.Abs(a) + math.Abs(b)
			}
		}
		checkNear(t, fmt.Sprintf("rotary interleaved=%v", inter), got.Data(), want, mag, 3e-7, 0)
	}
}

// iota makes a tensor whose elements are their own row-major index.
func iotaT(shape ...int) *Tensor {
	t := Zeros(shape...)
	for i := range t.f32 {
		t.f32[i] = float32(i)
	}
	return t
}

func TestForwardShapeOps(t *testing.T) {
	shape := []int{2, 3, 4, 5}
	x := iotaT(shape...)
	flat := func(idx ...int) float64 { return float64(flatAt(shape, idx)) }

	// Permute: out[i0,i1,i2,i3] = x[idx] with idx[perm[k]] = i_k.
	perm := []int{2, 0, 3, 1}
	p := x.Permute(perm...)
	pshape := []int{4, 2, 5, 3}
	shapeEq(t, "permute", p.shape, pshape)
	if p.IsContiguous() {
		t.Errorf("permuted view reports contiguous")
	}
	var want []float64
	forIdx(pshape, func(i []int) {
		src := make([]int, 4)
		for k, d := range perm {
			src[d] = i[k]
		}
		want = append(want, flat(src...))
		if got := p.At(i...); float64(got) != flat(src...) {
			t.Fatalf("permute At%v = %g, want %g", i, got, flat(src...))
		}
	})
	pc := p.Contiguous()
	if !pc.IsContiguous() {
		t.Errorf("Contiguous result is not contiguous")
	}
	checkNear(t, "permute contiguous", pc.Data(), want, nil, 0, 0)
	checkNear(t, "permute reshape", p.Reshape(8, 15).Data(), want, nil, 0, 0)
	checkNear(t, "permute reshape -1", p.Reshape(-1, 3).Data(), want, nil, 0, 0)

	// Transpose with negative dims.
	tr := x.Transpose(-1, 1)
	shapeEq(t, "transpose", tr.shape, []int{2, 5, 4, 3})
	want = want[:0]
	forIdx(tr.shape, func(i []int) { want = append(want, flat(i[0], i[3], i[2], i[1])) })
	checkNear(t, "transpose", tr.Data(), want, nil, 0, 0)

	// Narrow of a permuted view, then of that again.
	nv := p.Narrow(0, 1, 2).Narrow(3, 1, 2) // [2, 2, 5, 2] over p
	shapeEq(t, "narrow", nv.shape, []int{2, 2, 5, 2})
	want = want[:0]
	forIdx(nv.shape, func(i []int) {
		// p index (i0+1, i1, i2, i3+1) = x[i1, i3+1, i0+1, i2]
		want = append(want, flat(i[1], i[3]+1, i[0]+1, i[2]))
	})
	checkNear(t, "narrow permuted", nv.Data(), want, nil, 0, 0)
	checkNear(t, "narrow permuted contiguous", nv.Contiguous().Data(), want, nil, 0, 0)
	checkNear(t, "narrow permuted clone", nv.Clone().Data(), want, nil, 0, 0)
	checkNear(t, "narrow permuted exp-log", Log(AddScalar(nv, 1)).Data(), func() []float64 {
		o := make([]float64, len(want))
		for i, v := range want {
			o[i] = math.Log(v + 1)
		}
		return o
	}(), nil, 1e-7, 0)

	// Chunk.
	for dim := 0; dim < 4; dim++ {
		n := shape[dim]
		parts := x.Chunk(n, dim)
		for ci, part := range parts {
			want = want[:0]
			forIdx(part.shape, func(i []int) {
				j := append([]int(nil), i...)
				j[dim] += ci
				want = append(want, flat(j...))
			})
			checkNear(t, fmt.Sprintf("chunk dim %d part %d", dim, ci), part.Data(), want, nil, 0, 0)
		}
	}

	// Concat of strided views along each dim, Stack.
	a := x.Permute(0, 2, 1, 3)                  // [2, 4, 3, 5]
	b := iotaT(2, 4, 1, 5)                      // a contiguous piece
	cv := iotaT(5, 2, 4, 2).Permute(1, 2, 3, 0) // [2, 4, 2, 5] strided
	cat := Concat(2, a, b, cv)
	shapeEq(t, "concat", cat.shape, []int{2, 4, 6, 5})
	want = want[:0]
	forIdx(cat.shape, func(i []int) {
		switch {
		case i[2] < 3:
			want = append(want, flat(i[0], i[2], i[1], i[3]))
		case i[2] < 4:
			want = append(want, float64(((i[0]*4+i[1])*1)*5+i[3]))
		default:
			want = append(want, float64(((i[3]*2+i[0])*4+i[1])*2+i[2]-4))
		}
	})
	checkNear(t, "concat strided", cat.Data(), want, nil, 0, 0)
	cat0 := Concat(-4, x, x.Narrow(0, 1, 1))
	shapeEq(t, "concat dim0", cat0.shape, []int{3, 3, 4, 5})
	want = append(f64s(x.f32), f64s(x.f32[60:])...)
	checkNear(t, "concat dim0", cat0.Data(), want, nil, 0, 0)
	st := Stack(1, x.Narrow(1, 0, 1).Squeeze(1), x.Narrow(1, 2, 1).Squeeze(1))
	shapeEq(t, "stack", st.shape, []int{2, 2, 4, 5})
	want = want[:0]
	forIdx(st.shape, func(i []int) { want = append(want, flat(i[0], 2*i[1], i[2], i[3])) })
	checkNear(t, "stack", st.Data(), want, nil, 0, 0)
	st3 := Stack(-1, iotaT(2, 3), Scale(iotaT(2, 3), -1))
	checkNear(t, "stack last", st3.Data(), []float64{0, 0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5}, nil, 0, 0)

	// Repeat.
	small := iotaT(2, 3).Transpose(0, 1) // [3, 2]
	rep := small.Repeat(2, 3)
	shapeEq(t, "repeat", rep.shape, []int{6, 6})
	want = want[:0]
	forIdx(rep.shape, func(i []int) { want = append(want, float64((i[1]%2)*3+i[0]%3)) })
	checkNear(t, "repeat", rep.Data(), want, nil, 0, 0)

	// Unsqueeze / Squeeze / Expand.
	u := iotaT(3, 4).Unsqueeze(1)
	shapeEq(t, "unsqueeze", u.shape, []int{3, 1, 4})
	shapeEq(t, "unsqueeze -1", iotaT(3, 4).Unsqueeze(-1).shape, []int{3, 4, 1})
	shapeEq(t, "squeeze", u.Squeeze(1).shape, []int{3, 4})
	ex := u.Expand(3, 2, 4)
	want = want[:0]
	forIdx(ex.shape, func(i []int) { want = append(want, float64(i[0]*4+i[2])) })
	checkNear(t, "expand", ex.Data(), want, nil, 0, 0)

	// Strided views of f16 and i64 storage keep their dtype through Contiguous.
	h := iotaT(3, 4).ToDType(F16).Transpose(0, 1)
	hc := h.Contiguous()
	if hc.DType() != F16 {
		t.Errorf("contiguous f16 view has dtype %v", hc.DType())
	}
	want = want[:0]
	forIdx(h.shape, func(i []int) { want = append(want, float64(i[1]*4+i[0])) })
	checkNear(t, "f16 transposed", hc.Data(), want, nil, 0, 0)
	ids, _ := FromInt64([]int64{0, 1, 2, 3, 4, 5}, 2, 3)
	it := ids.Transpose(0, 1)
	if got := it.Int64s(); fmt.Sprint(got) != "[0 3 1 4 2 5]" {
		t.Errorf("i64 transposed: %v", got)
	}
	if got := it.Contiguous(); got.DType() != I64 {
		t.Errorf("contiguous i64 view has dtype %v", got.DType())
	}
}

// refRound rounds v to a float format with mbits mantissa bits, minimum
// normal exponent emin and largest finite value maxv (round to nearest even).
func refRound(v float64, mbits, emin int, maxv float64) float64 {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	_, e := math.Frexp(math.Abs(v)) // |v| = f·2^e, f in [0.5, 1)
	e--                             // |v| in [2^e, 2^(e+1))
	if e < emin {
		e = emin // subnormal: fixed quantum
	}
	q := math.Ldexp(1, e-mbits)
	r := math.RoundToEven(v/q) * q
	// Round to infinity past halfway between the largest finite value and the next power.
	limit := maxv + math.Ldexp(1, int(math.Floor(math.Log2(maxv)))-mbits-1)
	if math.Abs(r) > maxv || math.Abs(v) >= limit {
		return math.Copysign(math.Inf(1), v)
	}
	return r
}

func TestForwardDTypes(t *testing.T) {
	r := rand.New(rand.NewSource(23))
	var xs []float32
	for i := 0; i < 2000; i++ {
		xs = append(xs, float32(r.NormFloat64()*math.Pow(10, float64(r.Intn(12)-6))))
	}
	xs = append(xs, 0, 1, -1, 65504, 65519, 65520, 1e5, -1e5, 6e-8, 3e-8, 2.9e-8, 1e-10, 5.96e-8, 6.1e-5, 6.09e-5,
		1e38, 3.4e38, -3.4e38, 1e-40, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()))
	x := FromSlice(xs, len(xs))
	maxF16 := 65504.0
	maxBF16 := (2 - math.Ldexp(1, -7)) * math.Ldexp(1, 127)
	for _, c := range []struct {
		dt        DType
		mbits, em int
		maxv      float64
	}{{F16, 10, -14, maxF16}, {BF16, 7, -126, maxBF16}} {
		q := x.ToDType(c.dt)
		if q.DType() != c.dt || !SameShape(q.shape, x.shape) {
			t.Fatalf("ToDType(%v): %v %v", c.dt, q.DType(), q.shape)
		}
		want := make([]float64, len(xs))
		for i, v := range xs {
			want[i] = refRound(float64(v), c.mbits, c.em, c.maxv)
		}
		got := q.Float32().Data()
		checkNear(t, "round trip "+c.dt.String(), got, want, nil, 0, 0)
		checkNear(t, "ToDType(F32) of "+c.dt.String(), q.ToDType(F32).Data(), want, nil, 0, 0)
		// Rounding twice changes nothing.
		checkNear(t, "re-round "+c.dt.String(), FromSlice(got, len(got)).ToDType(c.dt).Float32().Data(), want, nil, 0, 0)
		if q.U16() == nil {
			t.Errorf("U16 of contiguous %v is nil", c.dt)
		}
		// Item and At read converted values.
		if v := q.Narrow(0, 1, 1).Item(); float64(v) != want[1] {
			t.Errorf("%v Item = %g, want %g", c.dt, v, want[1])
		}
	}
	// I64: truncation toward zero, and back.
	fi := FromSlice([]float32{1.9, -1.9, 3, -0.5, 1e6}, 5)
	ii := fi.ToDType(I64)
	if fmt.Sprint(ii.Int64s()) != "[1 -1 3 0 1000000]" {
		t.Errorf("ToDType(I64) = %v", ii.Int64s())
	}
	checkNear(t, "i64 to f32", ii.Float32().Data(), []float64{1, -1, 3, 0, 1e6}, nil, 0, 0)
	if fmt.Sprint(fi.Int64s()) != "[1 -1 3 0 1000000]" {
		t.Errorf("Int64s of f32 = %v", fi.Int64s())
	}
	// F32 ToDType(F32) is the identity.
	if x.ToDType(F32) != x {
		t.Errorf("ToDType(F32) of f32 copied")
	}
}
