package tensor

import (
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/tensor/vec"
)

// BroadcastShapes returns the numpy-style broadcast of two shapes.
func BroadcastShapes(a, b []int) ([]int, error) {
	n := len(a)
	if len(b) > n {
		n = len(b)
	}
	out := make([]int, n)
	for i := 0; i < n; i++ {
		da, db := 1, 1
		if j := len(a) - n + i; j >= 0 {
			da = a[j]
		}
		if j := len(b) - n + i; j >= 0 {
			db = b[j]
		}
		switch {
		case da == db:
			out[i] = da
		case da == 1:
			out[i] = db
		case db == 1:
			out[i] = da
		default:
			return nil, fmt.Errorf("tensor: shapes %v and %v do not broadcast", a, b)
		}
	}
	return out, nil
}

// broadcastStrides gives t's strides viewed at shape (0 on broadcast dims).
func (t *Tensor) broadcastStrides(shape []int) []int {
	s := make([]int, len(shape))
	off := len(shape) - len(t.shape)
	for i := range t.shape {
		if t.shape[i] != 1 {
			s[off+i] = t.strides[i]
		}
	}
	return s
}

// binOp is an elementwise arithmetic operation of binaryKernel.
type binOp uint8

const (
	opAdd binOp = iota
	opSub
	opMul
	opDiv
)

// binRow sets o[j] = x[j·ix] op y[j·iy]. The common stride patterns (both
// contiguous, or one side a broadcast scalar) get loops of their own
// without per-element calls.
func binRow(op binOp, o, x []float32, ix int, y []float32, iy int) {
	n := len(o)
	switch {
	case ix == 1 && iy == 1:
		x, y = x[:n], y[:n]
		switch op {
		case opAdd:
			for j := range o {
				o[j] = x[j] + y[j]
			}
		case opSub:
			for j := range o {
				o[j] = x[j] - y[j]
			}
		case opMul:
			for j := range o {
				o[j] = x[j] * y[j]
			}
		case opDiv:
			for j := range o {
				o[j] = x[j] / y[j]
			}
		}
	case ix == 1 && iy == 0:
		x = x[:n]
		c := y[0]
		switch op {
		case opAdd:
			for j := range o {
				o[j] = x[j] + c
			}
		case opSub:
			for j := range o {
				o[j] = x[j] - c
			}
		case opMul:
			for j := range o {
				o[j] = x[j] * c
			}
		case opDiv:
			for j := range o {
				o[j] = x[j] / c
			}
		}
	case ix == 0 && iy == 1:
		y = y[:n]
		c := x[0]
		switch op {
		case opAdd:
			for j := range o {
				o[j] = c + y[j]
			}
		case opSub:
			for j := range o {
				o[j] = c - y[j]
			}
		case opMul:
			for j := range o {
				o[j] = c * y[j]
			}
		case opDiv:
			for j := range o {
				o[j] = c / y[j]
			}
		}
	default:
		for j := range o {
			a, b := x[j*ix], y[j*iy]
			switch op {
			case opAdd:
				o[j] = a + b
			case opSub:
				o[j] = a - b
			case opMul:
				o[j] = a * b
			case opDiv:
				o[j] = a / b
			}
		}
	}
}

// coalesce drops size-1 dimensions and merges adjacent ones that both
// operands walk as one (stride[d] == stride[d+1]·shape[d+1]; the output is
// contiguous, so it always does), so that e.g. a per-channel bias over
// [N, C, H, W] becomes rows of H·W.
func coalesce(shape, sa, sb []int) ([]int, []int, []int) {
	var ns, na, nb []int
	for d := range shape {
		if shape[d] == 1 {
			continue
		}
		if k := len(ns) - 1; k >= 0 && na[k] == sa[d]*shape[d] && nb[k] == sb[d]*shape[d] {
			ns[k] *= shape[d]
			na[k], nb[k] = sa[d], sb[d]
			continue
		}
		ns, na, nb = append(ns, shape[d]), append(na, sa[d]), append(nb, sb[d])
	}
	if len(ns) == 0 {
		return []int{1}, []int{0}, []int{0}
	}
	return ns, na, nb
}

// binaryKernel applies op elementwise with broadcasting into a new tensor.
func binaryKernel(a, b *Tensor, op binOp) *Tensor {
	shape, err := BroadcastShapes(a.shape, b.shape)
	if err != nil {
		panic(err)
	}
	a, b = a.Float32(), b.Float32()
	out := Zeros(shape...)
	o := out.f32
	if len(o) == 0 {
		return out
	}
	if SameShape(a.shape, b.shape) && a.IsContiguous() && b.IsContiguous() {
		x := a.f32[a.offset : a.offset+len(o)]
		y := b.f32[b.offset : b.offset+len(o)]
		parallelFor(len(o), 1<<15, func(lo, hi int) {
			binRow(op, o[lo:hi], x[lo:], 1, y[lo:], 1)
		})
		return out
	}
	cs, sa, sb := coalesce(shape, a.broadcastStrides(shape), b.broadcastStrides(shape))
	nd := len(cs)
	inner := cs[nd-1]
	rows := len(o) / inner
	ia, ib := sa[nd-1], sb[nd-1]
	parallelFor(rows, max(1, (1<<14)/inner), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			// offsets of row r
			oa, ob := a.offset, b.offset
			rem := r
			for d := nd - 2; d >= 0; d-- {
				k := rem % cs[d]
				rem /= cs[d]
				oa += k * sa[d]
				ob += k * sb[d]
			}
			binRow(op, o[r*inner:(r+1)*inner], a.f32[oa:], ia, b.f32[ob:], ib)
		}
	})
	return out
}

// unaryKernel applies f elementwise into a new contiguous tensor.
func unaryKernel(a *Tensor, f func(x float32) float32) *Tensor {
	x := a.Float32().Contiguous()
	xs := x.f32[x.offset : x.offset+x.Numel()]
	out := Zeros(a.shape...)
	o := out.f32
	parallelFor(len(o), 1<<14, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			o[i] = f(xs[i])
		}
	})
	return out
}

// unarySlices applies the slice kernel k (dst, src of equal length) to a
// in parallel chunks, into a new contiguous tensor.
func unarySlices(a *Tensor, k func(dst, src []float32)) *Tensor {
	x := a.Float32().Contiguous()
	xs := x.f32[x.offset : x.offset+x.Numel()]
	out := Zeros(a.shape...)
	o := out.f32
	parallelFor(len(o), 1<<14, func(lo, hi int) { k(o[lo:hi], xs[lo:hi]) })
	return out
}

// sumToShape reduces a broadcast gradient back to shape.
func sumToShape(g *Tensor, shape []int) *Tensor {
	if SameShape(g.shape, shape) {
		return g
	}
	// Sum leading extra dims, then dims that were 1.
	extra := len(g.shape) - len(shape)
	r := g
	for i := 0; i < extra; i++ {
		r = SumDim(r.Detach(), 0, false)
	}
	for i := range shape {
		if shape[i] == 1 && r.shape[i] != 1 {
			r = SumDim(r.Detach(), i, true)
		}
	}
	return r.Reshape(shape...)
}

// Add returns a + b (broadcasting).
func Add(a, b *Tensor) *Tensor {
	out := binaryKernel(a, b, opAdd)
	record(out, []*Tensor{a, b}, func(g *Tensor) []*Tensor { return []*Tensor{g, g} })
	return out
}

// Sub returns a - b (broadcasting).
func Sub(a, b *Tensor) *Tensor {
	out := binaryKernel(a, b, opSub)
	record(out, []*Tensor{a, b}, func(g *Tensor) []*Tensor { return []*Tensor{g, Neg(g)} })
	return out
}

// Mul returns a * b elementwise (broadcasting).
func Mul(a, b *Tensor) *Tensor {
	out := binaryKernel(a, b, opMul)
	record(out, []*Tensor{a, b}, func(g *Tensor) []*Tensor {
		return []*Tensor{Mul(g, b.Detach()), Mul(g, a.Detach())}
	})
	return out
}

// Div returns a / b elementwise (broadcasting).
func Div(a, b *Tensor) *Tensor {
	out := binaryKernel(a, b, opDiv)
	record(out, []*Tensor{a, b}, func(g *Tensor) []*Tensor {
		bd := b.Detach()
		ga := Div(g, bd)
		gb := Neg(Div(Mul(g, out.Detach()), bd))
		return []*Tensor{ga, gb}
	})
	return out
}

// Scale returns a * s.
func Scale(a *Tensor, s float32) *Tensor {
	out := unaryKernel(a, func(x float32) float32 { return x * s })
	record(out, []*Tensor{a}, func(g *Tensor) []*Tensor { return []*Tensor{Scale(g, s)} })
	return out
}

// AddScalar returns a + s.
func AddScalar(a *Tensor, s float32) *Tensor {
	out := unaryKernel(a, func(x float32) float32 { return x + s })
	record(out, []*Tensor{a}, func(g *Tensor) []*Tensor { return []*Tensor{g} })
	return out
}

// Neg returns -a.
func Neg(a *Tensor) *Tensor { return Scale(a, -1) }

// Square returns a².
func Square(a *Tensor) *Tensor {
	out := unaryKernel(a, func(x float32) float32 { return x * x })
	record(out, []*Tensor{a}, func(g *Tensor) []*Tensor { return []*Tensor{Mul(g, Scale(a.Detach(), 2))} })
	return out
}

// Sqrt returns √a.
func Sqrt(a *Tensor) *Tensor {
	out := unaryKernel(a, func(x float32) float32 { return float32(math.Sqrt(float64(x))) })
	record(out, []*Tensor{a}, func(g *Tensor) []*Tensor { return []*Tensor{Div(Scale(g, 0.5), out.Detach())} })
	return out
}

// Exp returns eᵃ.
func Exp(a *Tensor) *Tensor {
	out := unarySlices(a, vec.Exp)
	record(out, []*Tensor{a}, func(g *Tensor) []*Tensor { return []*Tensor{Mul(g, out.Detach())} })
	return out
}

// Log returns ln a.
func Log(a *Tensor) *Tensor {
	out := unaryKernel(a, func(x float32) float32 { return float32(math.Log(float64(x))) })
	record(out, []*Tensor{a}, func(g *Tensor) []*Tensor { return []*Tensor{Div(g, a.Detach())} })
	return out
}

// Sin returns sin a.
func Sin(a *Tensor) *Tensor {
	out := unaryKernel(a, func(x float32) float32 { return float32(math.Sin(float64(x))) })
	record(out, []*Tensor{a}, func(g *Tensor) []*Tensor { return []*Tensor{Mul(g, Cos(a.Detach()))} })
	return out
}

// Cos returns cos a.
func Cos(a *Tensor) *Tensor {
	out := unaryKernel(a, func(x float32) float32 { return float32(math.Cos(float64(x))) })
	record(out, []*Tensor{a}, func(g *Tensor) []*Tensor { return []*Tensor{Neg(Mul(g, Sin(a.Detach())))} })
	return out
}

// Clamp limits a to [lo, hi]; the gradient passes where a is inside.
func Clamp(a *Tensor, lo, hi float32) *Tensor {
	out := unaryKernel(a, func(x float32) float32 { return min(max(x, lo), hi) })
	record(out, []*Tensor{a}, func(g *Tensor) []*Tensor {
		mask := unaryKernel(a, func(x float32) float32 {
			if x >= lo && x <= hi {
				return 1
			}
			return 0
		})
		return []*Tensor{Mul(g, mask)}
	})
	return out
}
