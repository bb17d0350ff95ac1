package unet

import (
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// The block calls of the down, mid and up paths go through these, which
// apply gradient checkpointing (Encoder.GradientCheckpointing) the way
// diffusers' blocks do under enable_gradient_checkpointing(): each resnet
// and each transformer separately.

// runResnet is r.Forward(h, emb).
func (m *Encoder) runResnet(r *nn.ResnetBlock2D, h, emb *tensor.Tensor) *tensor.Tensor {
	if !m.GradientCheckpointing {
		return r.Forward(h, emb)
	}
	return tensor.Checkpoint(func(in ...*tensor.Tensor) *tensor.Tensor { return r.Forward(in[0], in[1]) }, h, emb)
}

// runAttention is a.Forward(h, ehs, mask).
func (m *Encoder) runAttention(a *nn.Transformer2D, h, ehs, mask *tensor.Tensor) *tensor.Tensor {
	if !m.GradientCheckpointing {
		return a.Forward(h, ehs, mask)
	}
	return tensor.Checkpoint(func(in ...*tensor.Tensor) *tensor.Tensor { return a.Forward(in[0], in[1], in[2]) }, h, ehs, mask)
}
