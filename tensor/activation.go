package tensor

import (
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/tensor/vec"
)

// Activation functions, each with its derivative.

func sigmoid32(x float32) float32 { return float32(1 / (1 + math.Exp(-float64(x)))) }

// Sigmoid returns 1/(1+e^-x).
func Sigmoid(a *Tensor) *Tensor {
	out := unarySlices(a, vec.Sigmoid)
	record(out, []*Tensor{a}, func(g *Tensor) []*Tensor {
		d := unaryKernel(out.Detach(), func(s float32) float32 { return s * (1 - s) })
		return []*Tensor{Mul(g, d)}
	})
	return out
}

// SiLU returns x·sigmoid(x).
func SiLU(a *Tensor) *Tensor {
	out := unarySlices(a, vec.SiLU)
	record(out, []*Tensor{a}, func(g *Tensor) []*Tensor {
		return []*Tensor{Mul(g, unarySlices(a.Detach(), siluGrad))}
	})
	return out
}

// Tanh returns tanh x.
func Tanh(a *Tensor) *Tensor {
	out := unaryKernel(a, func(x float32) float32 { return float32(math.Tanh(float64(x))) })
	record(out, []*Tensor{a}, func(g *Tensor) []*Tensor {
		d := unaryKernel(out.Detach(), func(t float32) float32 { return 1 - t*t })
		return []*Tensor{Mul(g, d)}
	})
	return out
}

// ReLU returns max(x, 0).
func ReLU(a *Tensor) *Tensor {
	out := unaryKernel(a, func(x float32) float32 { return max(x, 0) })
	record(out, []*Tensor{a}, func(g *Tensor) []*Tensor {
		d := unaryKernel(a.Detach(), func(x float32) float32 {
			if x > 0 {
				return 1
			}
			return 0
		})
		return []*Tensor{Mul(g, d)}
	})
	return out
}

// GELU is the exact GELU, x·Φ(x) with the error function.
func GELU(a *Tensor) *Tensor {
	out := unarySlices(a, vec.GELU)
	record(out, []*Tensor{a}, func(g *Tensor) []*Tensor {
		return []*Tensor{Mul(g, geluGrad(a.Detach()))}
	})
	return out
}

// geluGrad is the derivative of the exact GELU, Φ(x) + x·φ(x).
func geluGrad(a *Tensor) *Tensor { return unarySlices(a, geluGradSlice) }

// gradChunk is how many values the vectorised derivatives take at a time
// (their scratch lives on the stack).
const gradChunk = 256

// geluGradSlice writes Φ(x) + x·φ(x) for each x of src, in float32 as
// torch's gelu_backward computes it: 0.5·(1 + erf(x/√2)) + x·exp(−x²/2)/√(2π),
// with the vector erf and exp.
func geluGradSlice(dst, src []float32) {
	var t [gradChunk]float32
	for len(src) > 0 {
		n := min(len(src), gradChunk)
		x, d := src[:n], dst[:n]
		for i, v := range x {
			t[i] = v * math.Sqrt2 / 2
		}
		vec.Erf(d, t[:n])
		for i, v := range x {
			t[i] = -0.5 * v * v
		}
		vec.Exp(t[:n], t[:n])
		const invSqrt2Pi = 0.3989422804014327
		for i, v := range x {
			d[i] = 0.5*(1+d[i]) + v*t[i]*invSqrt2Pi
		}
		src, dst = src[n:], dst[n:]
	}
}

// siluGrad writes SiLU's derivative s·(1 + x·(1 − s)), s = sigmoid(x), for
// each x of src (torch's silu_backward), with the vector sigmoid.
func siluGrad(dst, src []float32) {
	vec.Sigmoid(dst, src)
	for i, x := range src {
		s := dst[i]
		dst[i] = s * (1 + x*(1-s))
	}
}

// GEGLU is diffusers' GEGLU gate on a projection h [..., 2n]: the first
// half times the exact GELU of the second, h[..., :n]·GELU(h[..., n:]),
// giving [..., n]. It reads both halves in place and writes the product in
// one pass (vec.GELUMul), where Chunk, GELU and Mul would copy the gate
// half, write its GELU and read it back. The result is the same, rounding
// included.
func GEGLU(h *Tensor) *Tensor {
	if h.Rank() == 0 || h.Dim(-1)%2 != 0 {
		panic(fmt.Sprintf("tensor: GEGLU of shape %v needs an even last dimension", h.shape))
	}
	n := h.Dim(-1) / 2
	hc := h.Float32().Contiguous()
	hs := hc.f32[hc.offset : hc.offset+hc.Numel()]
	oshape := append(cloneInts(h.shape[:h.Rank()-1]), n)
	out := Zeros(oshape...)
	o := out.f32
	rows := len(o) / max(n, 1)
	parallelFor(rows, max(1, (1<<14)/max(n, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := hs[2*r*n : 2*(r+1)*n]
			vec.GELUMul(o[r*n:(r+1)*n], row[n:], row[:n])
		}
	})
	record(out, []*Tensor{h}, func(g *Tensor) []*Tensor {
		// d/da = g·GELU(x), d/dx = (g·a)·GELU'(x), each row's two halves
		// written in place of the grad (the products of Mul(g, GELU(x)) and
		// Mul(Mul(g, a), geluGrad(x)) in the same order, without their
		// temporaries and the Concat).
		gc := g.Float32().Contiguous()
		gs := gc.f32[gc.offset : gc.offset+gc.Numel()]
		grad := Zeros(h.shape...)
		d := grad.f32
		parallelFor(rows, max(1, (1<<14)/max(n, 1)), func(lo, hi int) {
			for r := lo; r < hi; r++ {
				a, x := hs[2*r*n:2*r*n+n], hs[2*r*n+n:2*(r+1)*n]
				gr := gs[r*n : (r+1)*n]
				ga, gx := d[2*r*n:2*r*n+n], d[2*r*n+n:2*(r+1)*n]
				vec.GELU(ga, x)
				geluGradSlice(gx, x)
				for j, gv := range gr {
					ga[j] = gv * ga[j]
					gx[j] = (gv * a[j]) * gx[j]
				}
			}
		})
		return []*Tensor{grad}
	})
	return out
}

// GELUTanh is the tanh approximation of GELU (approximate="tanh").
func GELUTanh(a *Tensor) *Tensor {
	const c = 0.7978845608028654 // sqrt(2/pi)
	out := unarySlices(a, vec.GELUTanh)
	record(out, []*Tensor{a}, func(g *Tensor) []*Tensor {
		d := unaryKernel(a.Detach(), func(x float32) float32 {
			xf := float64(x)
			u := c * (xf + 0.044715*xf*xf*xf)
			th := math.Tanh(u)
			du := c * (1 + 3*0.044715*xf*xf)
			return float32(0.5*(1+th) + 0.5*xf*(1-th*th)*du)
		})
		return []*Tensor{Mul(g, d)}
	})
	return out
}

// QuickGELU is CLIP's x·sigmoid(1.702x).
func QuickGELU(a *Tensor) *Tensor {
	out := unarySlices(a, func(dst, src []float32) {
		for i, x := range src {
			dst[i] = 1.702 * x
		}
		vec.Sigmoid(dst, dst)
		for i, x := range src {
			dst[i] *= x
		}
	})
	record(out, []*Tensor{a}, func(g *Tensor) []*Tensor {
		d := unaryKernel(a.Detach(), func(x float32) float32 {
			s := sigmoid32(1.702 * x)
			return s + 1.702*x*s*(1-s)
		})
		return []*Tensor{Mul(g, d)}
	})
	return out
}

// Activation applies an activation by its diffusers/transformers name
// ("silu"/"swish", "gelu", "gelu_pytorch_tanh"/"gelu_new"/"gelu-approximate",
// "quick_gelu", "relu", "mish", "tanh", "sigmoid").
func Activation(name string, a *Tensor) *Tensor {
	switch name {
	case "silu", "swish":
		return SiLU(a)
	case "gelu":
		return GELU(a)
	case "gelu_pytorch_tanh", "gelu_new", "gelu-approximate", "gelu_fast":
		return GELUTanh(a)
	case "quick_gelu":
		return QuickGELU(a)
	case "relu":
		return ReLU(a)
	case "tanh":
		return Tanh(a)
	case "sigmoid":
		return Sigmoid(a)
	case "mish":
		return Mul(a, Tanh(Softplus(a)))
	}
	panic("tensor: unknown activation " + name)
}

// Softplus returns ln(1+eˣ).
func Softplus(a *Tensor) *Tensor {
	out := unaryKernel(a, func(x float32) float32 {
		if x > 20 {
			return x
		}
		return float32(math.Log1p(math.Exp(float64(x))))
	})
	record(out, []*Tensor{a}, func(g *Tensor) []*Tensor { return []*Tensor{Mul(g, Sigmoid(a.Detach()))} })
	return out
}
