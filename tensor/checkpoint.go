package tensor

import "sync/atomic"

// The graph-recording modes. Both are process-wide (the graph is built by
// whichever goroutine runs the ops), so a NoGrad or Checkpoint scope must
// not overlap a training step on another goroutine.
var (
	// noGradDepth counts active NoGrad scopes: ops record nothing and their
	// outputs do not require gradients (inference paths are taken).
	noGradDepth atomic.Int32
	// checkpointDepth counts active checkpoint forwards: outputs are
	// flagged as requiring gradients, exactly as when recording (so every
	// op takes the same code path as in the recomputation), but no graph
	// is kept.
	checkpointDepth atomic.Int32
)

// NoGrad runs f without building an autodiff graph, as torch.no_grad:
// tensors computed inside do not require gradients even when trained
// parameters took part (generating validation images with a LoRA being
// trained, for instance, keeps no activations alive).
func NoGrad(f func()) {
	noGradDepth.Add(1)
	defer noGradDepth.Add(-1)
	f()
}

// Checkpoint computes f(in...) and records it in the graph as one node
// whose activations are not kept: the backward pass runs f again on the
// same inputs, with recording on, and back-propagates through that
// recomputation (torch.utils.checkpoint, "gradient checkpointing"). Memory
// falls from every intermediate of f to its inputs and output, for one
// more forward of f per backward.
//
// f must compute the same values when run twice on the same inputs (no
// random draws); parameters it closes over receive their gradients during
// the recomputation. Gradients equal those without checkpointing. Inside
// NoGrad, or inside another checkpoint's forward, Checkpoint is f(in...).
func Checkpoint(f func(in ...*Tensor) *Tensor, in ...*Tensor) *Tensor {
	if noGradDepth.Load() > 0 || checkpointDepth.Load() > 0 {
		return f(in...)
	}
	checkpointDepth.Add(1)
	out := func() *Tensor {
		defer checkpointDepth.Add(-1)
		return f(in...)
	}()
	if !out.requiresGrad || out.node != nil {
		return out // nothing inside needs gradients, or f made no new tensor
	}
	for _, x := range in {
		if x == out {
			return out
		}
	}
	inputs := append([]*Tensor(nil), in...)
	out.node = &node{inputs: inputs, backward: func(g *Tensor) []*Tensor {
		leaves := make([]*Tensor, len(inputs))
		for i, x := range inputs {
			if x != nil {
				leaves[i] = x.Detach()
				leaves[i].requiresGrad = x.requiresGrad
			}
		}
		f(leaves...).Backward(g)
		grads := make([]*Tensor, len(inputs))
		for i, l := range leaves {
			if l != nil {
				grads[i] = l.grad
			}
		}
		return grads
	}}
	return out
}
