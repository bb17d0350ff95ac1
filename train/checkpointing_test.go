package train

import (
	"math"
	"testing"
)

// TestGradientCheckpointingSameGradients: with the UNet's (and the
// ControlNet's) blocks checkpointed, one backward pass gives every trained
// parameter the gradient it gets when the activations are kept. The values
// agree to float32 rounding, not always bit for bit: a block input used
// inside the block and as a skip connection gets its gradient contributions
// summed in another grouping ((conv + shortcut) + skip instead of one
// running sum), as in torch.utils.checkpoint.
func TestGradientCheckpointingSameGradients(t *testing.T) {
	for _, c := range []struct {
		name  string
		build func(testing.TB, uint64, int, float64) *Trainer
		cond  bool
		rows  int
	}{{"lora", loraTrainer, false, 2}, {"controlnet", controlNetTrainer, true, 1}} {
		t.Run(c.name, func(t *testing.T) {
			grads := func(ckpt bool) map[string][]float32 {
				tr := c.build(t, 5, 1, 1e-3)
				tr.Models.UNet.GradientCheckpointing = ckpt
				if tr.Models.ControlNet != nil {
					tr.Models.ControlNet.Encoder.GradientCheckpointing = ckpt
				}
				if _, err := tr.Backward(tinyBatch(9, c.rows, 64, c.cond)); err != nil {
					t.Fatal(err)
				}
				out := map[string][]float32{}
				for _, p := range tr.Params {
					if g := p.T.Grad(); g != nil {
						out[p.Name] = append([]float32(nil), g.Float32().Contiguous().Data()...)
					}
				}
				return out
			}
			plain, ckpt := grads(false), grads(true)
			if len(plain) == 0 || len(plain) != len(ckpt) {
				t.Fatalf("%d parameters got gradients without checkpointing, %d with", len(plain), len(ckpt))
			}
			nonzero := false
			for name, g := range plain {
				h := ckpt[name]
				if len(h) != len(g) {
					t.Fatalf("%s: %d gradient values with checkpointing, %d without", name, len(h), len(g))
				}
				scale, diff := 0.0, 0.0
				for i := range g {
					scale = max(scale, math.Abs(float64(g[i])))
					diff = max(diff, math.Abs(float64(g[i]-h[i])))
				}
				nonzero = nonzero || scale > 0
				if diff > 1e-5*scale {
					t.Errorf("%s: gradients differ with checkpointing by up to %g (largest |g| %g)", name, diff, scale)
				}
			}
			if !nonzero {
				t.Fatal("all gradients are zero: the comparison tests nothing")
			}
		})
	}
}
