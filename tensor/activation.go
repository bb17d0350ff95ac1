package tensor

import (
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
		d := unaryKernel(a.Detach(), func(x float32) float32 {
			s := sigmoid32(x)
			return s * (1 + x*(1-s))
		})
		return []*Tensor{Mul(g, d)}
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
		d := unaryKernel(a.Detach(), func(x float32) float32 {
			xf := float64(x)
			cdf := 0.5 * (1 + math.Erf(xf/math.Sqrt2))
			pdf := math.Exp(-0.5*xf*xf) / math.Sqrt(2*math.Pi)
			return float32(cdf + xf*pdf)
		})
		return []*Tensor{Mul(g, d)}
	})
	return out
}

// GELUTanh is the tanh approximation of GELU (approximate="tanh").
func GELUTanh(a *Tensor) *Tensor {
	const c = 0.7978845608028654 // sqrt(2/pi)
	out := unaryKernel(a, func(x float32) float32 {
		xf := float64(x)
		return float32(0.5 * xf * (1 + math.Tanh(c*(xf+0.044715*xf*xf*xf))))
	})
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
