package tensor

import (
	"fmt"

	"github.com/diffuse-go/diffuse/tensor/gemm"
)

// Spatial transformers (diffusers' Transformer2DModel) switch between
// feature maps [N, C, H, W] and token sequences [N, H·W, C] around their
// proj_in and proj_out, each a 1×1 convolution or a Linear. Done as
// separate ops, every switch is a full transpose of the activations; the
// two functions here fold it into the projection's GEMM instead, which
// reads one side transposed while packing it anyway.

// projWeight checks a projection weight, [Out, C] (Linear) or [Out, C, 1, 1]
// (1×1 convolution), against c input channels and returns it contiguous
// with Out.
func projWeight(weight *Tensor, c int) (*Tensor, int) {
	ok := weight.Rank() == 2 || weight.Rank() == 4 && weight.Dim(2) == 1 && weight.Dim(3) == 1
	if !ok || weight.Dim(1) != c {
		panic(fmt.Sprintf("tensor: projection weight %v for %d channels", weight.shape, c))
	}
	return weight.Contiguous(), weight.Dim(0)
}

// projBias returns bias's values, checked against out channels (nil for none).
func projBias(bias *Tensor, out int) []float32 {
	if bias == nil {
		return nil
	}
	bd := bias.Data()
	if len(bd) != out {
		panic(fmt.Sprintf("tensor: projection bias %v for %d channels", bias.shape, out))
	}
	return bd
}

// ChannelsToTokens maps every position of x [N, C, H, W] through weight
// [Out, C] (a Linear) or [Out, C, 1, 1] (a 1×1 convolution) plus bias [Out]
// (may be nil), giving tokens [N, H·W, Out]: the Linear of
// x.Permute(0, 2, 3, 1).Reshape(N, H·W, C), or the convolution followed by
// that permute. The product reads x's channel planes in place as its
// transposed operand. With gradients it records those unfused ops.
func ChannelsToTokens(x, weight, bias *Tensor) *Tensor {
	if x.Rank() != 4 {
		panic(fmt.Sprintf("tensor: ChannelsToTokens of %v", x.shape))
	}
	n, c, h, w := x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3)
	if anyRequiresGrad([]*Tensor{x, weight, bias}) {
		if weight.Rank() == 4 {
			y := Conv2d(x, weight, bias, Conv2dOpts{})
			return y.Permute(0, 2, 3, 1).Reshape(n, h*w, y.Dim(1))
		}
		return Linear(x.Permute(0, 2, 3, 1).Reshape(n, h*w, c), weight, bias)
	}
	wc, outC := projWeight(weight, c)
	o := gemm.Opts{ColBias: projBias(bias, outC)}
	xc := x.Float32().Contiguous()
	xs := xc.f32[xc.offset : xc.offset+xc.Numel()]
	P := h * w
	out := Zeros(n, P, outC)
	// Per image: tokens [P, Out] = xᵀ [P, C] · Wᵀ [C, Out], the weight
	// packed as Linear packs it (and cached alike).
	wm := packedWeight(wc, wc.offset, outC, c, true, true)
	for img := 0; img < n; img++ {
		a := gemm.F32Mat(xs[img*c*P:(img+1)*c*P], P, true)
		gemm.GemmWith(o, P, outC, c, 1, a, wm, 0, out.f32[img*P*outC:(img+1)*P*outC], outC)
	}
	return out
}

// TokensToChannels maps every token of hs [N, H·W, C] through weight
// [Out, C] or [Out, C, 1, 1] plus bias [Out] (may be nil) and returns the
// result as a feature map [N, Out, H, W] plus residual (nil, or of that
// shape): a spatial transformer's proj_out and its residual connection in
// one product that reads hs transposed in place and accumulates onto the
// residual, instead of a transpose, the projection and an add. With
// gradients it records the unfused ops.
func TokensToChannels(hs, weight, bias, residual *Tensor, h, w int) *Tensor {
	if hs.Rank() != 3 || hs.Dim(1) != h*w {
		panic(fmt.Sprintf("tensor: TokensToChannels of %v as %d×%d", hs.shape, h, w))
	}
	n, c := hs.Dim(0), hs.Dim(2)
	if anyRequiresGrad([]*Tensor{hs, weight, bias, residual}) {
		var y *Tensor
		if weight.Rank() == 4 {
			y = Conv2d(hs.Reshape(n, h, w, c).Permute(0, 3, 1, 2), weight, bias, Conv2dOpts{})
		} else {
			y = Linear(hs, weight, bias).Reshape(n, h, w, weight.Dim(0)).Permute(0, 3, 1, 2)
		}
		if residual != nil {
			y = Add(y, residual)
		}
		return y
	}
	wc, outC := projWeight(weight, c)
	o := gemm.Opts{RowBias: projBias(bias, outC)}
	hc := hs.Float32().Contiguous()
	xs := hc.f32[hc.offset : hc.offset+hc.Numel()]
	P := h * w
	var out *Tensor
	beta := float32(0)
	if residual != nil {
		if !SameShape(residual.shape, []int{n, outC, h, w}) {
			panic(fmt.Sprintf("tensor: TokensToChannels residual %v for output [%d %d %d %d]", residual.shape, n, outC, h, w))
		}
		// The products accumulate onto a copy of the residual.
		out = residual.Float32().Contiguous().Clone()
		beta = 1
	} else {
		out = Zeros(n, outC, h, w)
	}
	// Per image: [Out, P] = W [Out, C] · hsᵀ [C, P], the weight packed as
	// a 1×1 Conv2d packs it (and cached alike).
	wm := packedWeight(wc, wc.offset, outC, c, false, false)
	for img := 0; img < n; img++ {
		b := gemm.F32Mat(xs[img*P*c:(img+1)*P*c], c, true)
		gemm.GemmWith(o, outC, P, c, 1, wm, b, beta, out.f32[img*outC*P:(img+1)*outC*P], P)
	}
	return out
}
