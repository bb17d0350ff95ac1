package tensor

import (
	"fmt"

	"github.com/diffuse-go/diffuse/tensor/gemm"
)

// mat returns a gemm operand for the last two dims of contiguous t at batch
// offset off, optionally transposed.
func (t *Tensor) mat(off, rows, cols int, trans bool) gemm.Mat {
	m := gemm.Mat{Stride: cols, Trans: trans}
	switch t.dtype {
	case F32:
		m.Kind, m.F32 = gemm.F32, t.f32[off:off+rows*cols]
	case F16:
		m.Kind, m.U16 = gemm.F16, t.u16[off:off+rows*cols]
	case BF16:
		m.Kind, m.U16 = gemm.BF16, t.u16[off:off+rows*cols]
	default:
		if t.q != nil {
			return t.quantMat(off, cols, trans)
		}
		panic(fmt.Sprintf("tensor: matmul on %v", t.dtype))
	}
	return m
}

// MatMul is a batched matrix product over the last two dimensions: a [..., M, K]
// times b [..., K, N]. b may be 2-D (shared by every batch).
func MatMul(a, b *Tensor) *Tensor { return matmulT(a, b, false, false) }

// MatMulT returns a · bᵀ for b [..., N, K] without copying b.
func MatMulT(a, b *Tensor) *Tensor { return matmulT(a, b, false, true) }

// matmulT computes op(a)·op(b) where op transposes the last two dims.
func matmulT(a, b *Tensor, ta, tb bool) *Tensor {
	if a.Rank() < 2 || b.Rank() < 2 {
		panic(fmt.Sprintf("tensor: matmul of shapes %v and %v", a.shape, b.shape))
	}
	ac, bc := a.Contiguous(), b.Contiguous()
	ar, acn := a.Dim(-2), a.Dim(-1)
	br, bcn := b.Dim(-2), b.Dim(-1)
	m, k := ar, acn
	if ta {
		m, k = acn, ar
	}
	k2, n := br, bcn
	if tb {
		k2, n = bcn, br
	}
	if k != k2 {
		panic(fmt.Sprintf("tensor: matmul inner dimensions differ: %v and %v (transposed %v %v)", a.shape, b.shape, ta, tb))
	}
	batchA := a.Numel() / (ar * acn)
	batchB := b.Numel() / (br * bcn)
	if batchB != 1 && batchB != batchA {
		panic(fmt.Sprintf("tensor: matmul batch dims differ: %v and %v", a.shape, b.shape))
	}
	oshape := append(cloneInts(a.shape[:a.Rank()-2]), m, n)
	if a.Rank() == 2 && b.Rank() > 2 {
		panic(fmt.Sprintf("tensor: matmul of shapes %v and %v", a.shape, b.shape))
	}
	out := Zeros(oshape...)
	for i := 0; i < batchA; i++ {
		am := ac.mat(ac.offset+i*ar*acn, ar, acn, ta)
		bo := bc.offset
		if batchB > 1 {
			bo += i * br * bcn
		}
		bm := bc.mat(bo, br, bcn, tb)
		gemm.Gemm(m, n, k, 1, am, bm, 0, out.f32[i*m*n:(i+1)*m*n], n)
	}
	record(out, []*Tensor{a, b}, func(g *Tensor) []*Tensor {
		ad, bd := a.Detach(), b.Detach()
		var ga, gb *Tensor
		if a.requiresGrad {
			// d op(a) = g · op(b)ᵀ
			if !ta {
				ga = matmulT(g, bd, false, !tb)
			} else {
				ga = matmulT(bd, g, tb, true)
			}
		}
		if b.requiresGrad {
			// d op(b) = op(a)ᵀ · g
			var gbop *Tensor
			if !tb {
				gbop = matmulT(ad, g, !ta, false)
			} else {
				gbop = matmulT(g, ad, true, ta)
			}
			if batchB == 1 && batchA > 1 {
				gbop = SumDim(gbop.Reshape(batchA, gbop.Dim(-2), gbop.Dim(-1)), 0, false)
			}
			gb = gbop.Reshape(b.shape...)
		}
		return []*Tensor{ga, gb}
	})
	return out
}

// Linear returns x·Wᵀ + bias for x [..., in], weight [out, in] (any float
// storage dtype) and optional bias [out].
func Linear(x, weight, bias *Tensor) *Tensor {
	in := x.Dim(-1)
	if weight.Rank() != 2 || weight.Dim(1) != in {
		panic(fmt.Sprintf("tensor: Linear input %v with weight %v", x.shape, weight.shape))
	}
	outF := weight.Dim(0)
	rows := x.Numel() / in
	xc := x.Float32().Contiguous()
	wc := weight.Contiguous()
	oshape := append(cloneInts(x.shape[:x.Rank()-1]), outF)
	out := Zeros(oshape...)
	var o gemm.Opts
	if bias != nil {
		o.ColBias = bias.Data()
		if len(o.ColBias) != outF {
			panic(fmt.Sprintf("tensor: Linear bias %v for %d outputs", bias.shape, outF))
		}
	}
	if blocks, ok := int8Weight(x, wc); ok {
		gemm.GemmQ8(o, rows, outF, in, xc.f32[xc.offset:], in, blocks, out.f32, outF)
	} else {
		// The weight is B (transposed), packed once and usually cached;
		// the bias is added to each output tile as the GEMM writes it.
		wm := packedWeight(wc, wc.offset, outF, in, true, true)
		gemm.GemmWith(o, rows, outF, in, 1, xc.mat(xc.offset, rows, in, false), wm, 0, out.f32, outF)
	}
	record(out, []*Tensor{x, weight, bias}, func(g *Tensor) []*Tensor {
		g2 := g.Reshape(rows, outF)
		var gx, gw, gb *Tensor
		if x.requiresGrad {
			// dx = g · W, reading W in its stored dtype: the GEMM widens
			// 16-bit weights as it packs them, where a float32 copy of the
			// whole weight would cost a pass and an allocation per call.
			gc := g2.Contiguous()
			gx = Zeros(x.shape...)
			gemm.Gemm(rows, in, outF, 1, gc.mat(gc.offset, rows, outF, false), wc.mat(wc.offset, outF, in, false), 0, gx.f32, in)
		}
		if weight.requiresGrad {
			gw = matmulT(g2, xc.Detach().Reshape(rows, in), true, false)
		}
		if bias != nil && bias.requiresGrad {
			gb = SumDim(g2, 0, false)
		}
		return []*Tensor{gx, gw, gb}
	})
	return out
}
