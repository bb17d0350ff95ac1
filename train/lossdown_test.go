package train

import (
	"testing"

	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/tensor"
)

// meanLoss is the batch loss averaged over k fixed draws of seed 1234.
func meanLoss(t *testing.T, tr *Trainer, b Batch, k int) float32 {
	t.Helper()
	d := &GeneratorDraws{G: rng.New(1234)}
	var s float32
	for i := 0; i < k; i++ {
		l, err := tr.Loss(b, d)
		if err != nil {
			t.Fatal(err)
		}
		s += l
	}
	return s / float32(k)
}

// lossGoesDown trains tr for steps steps on b and requires the validation
// loss to drop by at least the given fraction.
func lossGoesDown(t *testing.T, tr *Trainer, b Batch, steps int, drop float32) {
	t.Helper()
	before := meanLoss(t, tr, b, 8)
	losses := run(t, tr, b, steps)
	after := meanLoss(t, tr, b, 8)
	t.Logf("validation loss %.4f -> %.4f after %d steps (training losses %v)", before, after, steps, losses)
	if after > before*(1-drop) {
		t.Errorf("validation loss %.4f -> %.4f: did not drop by %.0f%%", before, after, 100*drop)
	}
}

// TestDreamBoothLoRALossGoesDown: LoRA with prior preservation on one
// instance and one class image learns.
func TestDreamBoothLoRALossGoesDown(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	tr := loraTrainer(t, 5, 30, 3e-2)
	lossGoesDown(t, tr, tinyBatch(1, 2, 64, false), 30, 0.1)
	frozen(t, "UNet", paramMap(tr.Models.UNet))
}

// TestControlNetLossGoesDown: only the ControlNet learns, the UNet stays
// frozen.
func TestControlNetLossGoesDown(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	tr := controlNetTrainer(t, 5, 30, 3e-3)
	lossGoesDown(t, tr, tinyBatch(1, 2, 64, true), 30, 0.25)
	frozen(t, "UNet", paramMap(tr.Models.UNet))
}

// frozen fails when a frozen model's parameter requires or holds a
// gradient (frozen modules hold no gradient memory).
func frozen(t *testing.T, what string, ps map[string]*tensor.Tensor) {
	t.Helper()
	for name, p := range ps {
		if p.RequiresGrad() || p.Grad() != nil {
			t.Fatalf("frozen %s parameter %s requires or holds a gradient", what, name)
		}
	}
}
