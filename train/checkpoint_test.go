package train

import (
	"math"
	"os"
	"path/filepath"
	"testing"
)

// run takes n steps on batch and returns the losses.
func run(t *testing.T, tr *Trainer, b Batch, n int) []float32 {
	t.Helper()
	var out []float32
	for i := 0; i < n; i++ {
		r, err := tr.Step(b)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r.Loss)
	}
	return out
}

// TestResumeBitExact: N straight steps equal N/2 steps, a checkpoint, a
// fresh trainer resumed from it, and N/2 more, bit for bit (losses, weights
// and optimizer moments), for the UNet's LoRA alone and with the text
// encoder's, and for SDXL with both text encoders' (param groups).
func TestResumeBitExact(t *testing.T) {
	xl := func(t testing.TB, seed uint64, steps int, lr float64) *Trainer {
		return xlTrainer(t, seed, steps, lr, true)
	}
	for _, c := range []struct {
		name  string
		build func(testing.TB, uint64, int, float64) *Trainer
		batch Batch
	}{{"unet", loraTrainer, tinyBatch(1, 2, 64, false)}, {"text_encoder", loraTETrainer, tinyBatch(1, 2, 64, false)},
		{"sdxl", xl, xlBatch(1, 2, 64)}, {"unet_ema", emaTrainer, tinyBatch(1, 2, 64, false)}} {
		t.Run(c.name, func(t *testing.T) { resumeBitExact(t, c.build, c.batch) })
	}
}

func resumeBitExact(t *testing.T, build func(testing.TB, uint64, int, float64) *Trainer, b Batch) {
	const n = 4
	straight := build(t, 5, n, 1e-3)
	want := run(t, straight, b, n)

	out := t.TempDir()
	first := build(t, 5, n, 1e-3)
	got := run(t, first, b, n/2)
	dir, err := first.SaveCheckpoint(out, 0, map[string]int{"epoch": 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A different init and draw seed: everything must come from the checkpoint.
	resumed := build(t, 99, n, 1e-3)
	path, err := ResolveCheckpoint(out, "latest")
	if err != nil || path != dir {
		t.Fatalf("latest checkpoint = %q, %v; want %q", path, err, dir)
	}
	var data map[string]int
	if err := resumed.LoadState(path, &data); err != nil {
		t.Fatal(err)
	}
	if resumed.GlobalStep != n/2 || data["epoch"] != 0 {
		t.Fatalf("resumed at step %d with data %v", resumed.GlobalStep, data)
	}
	got = append(got, run(t, resumed, b, n-n/2)...)
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Errorf("step %d: loss %g after resuming, %g straight", i, got[i], want[i])
		}
	}
	for i, p := range straight.Params {
		q := resumed.Params[i]
		if !sameBits(p.T.Data(), q.T.Data()) || !sameBits(straight.Optimizer.m[i], resumed.Optimizer.m[i]) ||
			!sameBits(straight.Optimizer.v[i], resumed.Optimizer.v[i]) {
			t.Fatalf("%s differs after resuming", p.Name)
		}
		if straight.EMA != nil && !sameBits(straight.EMA.Shadow(i), resumed.EMA.Shadow(i)) {
			t.Fatalf("%s: EMA differs after resuming", p.Name)
		}
	}
	if straight.EMA != nil && (resumed.EMA.Steps != n || straight.EMA.Steps != n) {
		t.Fatalf("EMA updates: %d resumed, %d straight; want %d", resumed.EMA.Steps, straight.EMA.Steps, n)
	}
}

// emaTrainer is loraTrainer with an average of the LoRA weights.
func emaTrainer(t testing.TB, seed uint64, steps int, lr float64) *Trainer {
	tr := loraTrainer(t, seed, steps, lr)
	if err := tr.EnableEMA(DefaultEMA()); err != nil {
		t.Fatal(err)
	}
	return tr
}

func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// TestCheckpointTotalLimit keeps the newest checkpoints only, and leaves no
// temporary folders behind.
func TestCheckpointTotalLimit(t *testing.T) {
	out := t.TempDir()
	tr := loraTrainer(t, 5, 10, 1e-3)
	for step := 1; step <= 4; step++ {
		tr.GlobalStep = step
		if _, err := tr.SaveCheckpoint(out, 2, nil, func(dir string) error {
			return tr.LoRA.SaveDiffusers(filepath.Join(dir, "pytorch_lora_weights.safetensors"))
		}); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 2 || names[0] != "checkpoint-3" || names[1] != "checkpoint-4" {
		t.Fatalf("output folder holds %v, want [checkpoint-3 checkpoint-4]", names)
	}
	for _, f := range []string{StateJSONFile, StateTensorsFile, "pytorch_lora_weights.safetensors"} {
		if _, err := os.Stat(filepath.Join(out, "checkpoint-4", f)); err != nil {
			t.Error(err)
		}
	}
	if _, err := ResolveCheckpoint(out, "checkpoint-9"); err == nil {
		t.Error("a missing checkpoint resolved")
	}
	if p, err := ResolveCheckpoint(t.TempDir(), "latest"); p != "" || err != nil {
		t.Errorf("latest in an empty folder = %q, %v; want none", p, err)
	}
}
