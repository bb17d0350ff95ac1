package train

import (
	"testing"

	"github.com/diffuse-go/diffuse/model/lora"
)

// TestCropTimeIDs: compute_time_ids is original_size + crops_coords_top_left
// + (resolution, resolution), and LoadCrop records the size before resizing
// and where the crop was cut.
func TestCropTimeIDs(t *testing.T) {
	got := Crop{OriginalHeight: 768, OriginalWidth: 1024, Top: 0, Left: 171}.TimeIDs(512)
	want := []float32{768, 1024, 0, 171, 512, 512}
	if !sameBits(got, want) {
		t.Errorf("time ids %v, want %v", got, want)
	}
}

// TestSDXLLoRALearns: on the tiny SDXL (two text encoders, pooled text and
// time ids), the UNet's adapters on to_q/k/v/out.0 and both encoders'
// adapters learn: the loss goes down and every network's lora_B leaves
// zero, while the base weights stay frozen.
func TestSDXLLoRALearns(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	tr := xlTrainer(t, 5, 30, 3e-2, true)
	nets := tr.LoRAs()
	if len(nets) != 3 || nets[1].Component != lora.TextEncoder || nets[2].Component != lora.TextEncoder2 {
		t.Fatalf("networks %v", nets)
	}
	for _, mod := range nets[0].Modules {
		if !targeted(mod, SDXLTargets) {
			t.Fatalf("UNet adapter on %s", mod)
		}
	}
	lossGoesDown(t, tr, xlBatch(1, 2, 64), 30, 0.05)
	for _, n := range nets {
		if allZero(n.Up[n.Modules[0]].Data()) {
			t.Errorf("%s %s: lora_B is still zero", n.Component, n.Modules[0])
		}
	}
	frozen(t, "UNet", paramMap(tr.Models.UNet))
	frozen(t, "text encoder 2", paramMap(tr.Models.TextEncoder2))
}
