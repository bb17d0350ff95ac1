package train

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/tensor"
)

// TestEMADecay checks EMAModel.get_decay's schedule: nothing for the first
// update, (1+s)/(10+s) after, capped by the decay and floored by the
// minimum, delayed by update_after_step, and the power warm-up.
func TestEMADecay(t *testing.T) {
	for _, c := range []struct {
		cfg  EMAConfig
		step int
		want float64
	}{
		{DefaultEMA(), 1, 0},
		{DefaultEMA(), 2, 2.0 / 11},
		{DefaultEMA(), 100, 100.0 / 109},
		{EMAConfig{Decay: 0.9}, 1000, 0.9},
		{EMAConfig{Decay: 0.99, MinDecay: 0.5}, 2, 0.5},
		{EMAConfig{Decay: 0.99, UpdateAfterStep: 5}, 6, 0},
		{EMAConfig{Decay: 0.99, UpdateAfterStep: 5}, 8, 3.0 / 12},
		{EMAConfig{Decay: 0.9999, UseWarmup: true, InvGamma: 1, Power: 0.75}, 11, 1 - math.Pow(11, -0.75)},
	} {
		e, err := NewEMA(nil, c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.DecayAt(c.step); math.Abs(got-c.want) > 1e-15 {
			t.Errorf("%+v step %d: decay %g, want %g", c.cfg, c.step, got, c.want)
		}
	}
	for _, bad := range []EMAConfig{{Decay: 1.5}, {Decay: 0.9, MinDecay: 0.95}, {Decay: math.NaN()}, {Decay: 0.9, UpdateAfterStep: -1},
		{Decay: 0.9, UseWarmup: true}} {
		if _, err := NewEMA(nil, bad); err == nil || !strings.Contains(err.Error(), "EMA") {
			t.Errorf("%+v accepted (err %v)", bad, err)
		}
	}
}

// TestEMAUpdate follows the average through three updates: the first
// takes the weights as they are (decay 0), the next ones move by 1 − decay
// in float32 as torch's s.sub_((1 - decay) * (s - p)) computes it. Swap
// exchanges the two.
func TestEMAUpdate(t *testing.T) {
	w := tensor.FromSlice([]float32{1, -2}, 2)
	e, err := NewEMA([]Param{{Name: "w", T: w}}, DefaultEMA())
	if err != nil {
		t.Fatal(err)
	}
	step := func(vals ...float32) []float32 {
		copy(w.Data(), vals)
		e.Update()
		return append([]float32(nil), e.Shadow(0)...)
	}
	if got := step(3, 0.5); !sameBits(got, []float32{3, 0.5}) {
		t.Fatalf("first update: average %v, want the weights", got)
	}
	omd := float32(9.0 / 11) // 1 − 2/11
	want := []float32{3 - float32(omd*(3-5)), 0.5 - float32(omd*(0.5-0.25))}
	if got := step(5, 0.25); !sameBits(got, want) || math.Abs(float64(got[0])-(3+18.0/11)) > 1e-6 {
		t.Fatalf("second update: average %v, want %v", got, want)
	}
	omd = float32(1 - 3.0/12)
	want = []float32{want[0] - float32(omd*(want[0]+1)), want[1] - float32(omd*(want[1]-7))}
	if got := step(-1, 7); !sameBits(got, want) {
		t.Fatalf("third update: average %v, want %v", got, want)
	}
	e.Swap()
	if !sameBits(w.Data(), want) || !sameBits(e.Shadow(0), []float32{-1, 7}) {
		t.Fatalf("swap: weights %v, average %v", w.Data(), e.Shadow(0))
	}
}

// TestEMAResumeMismatch: a checkpoint without an average does not resume a
// trainer with one (or the other way round) silently.
func TestEMAResumeMismatch(t *testing.T) {
	b := tinyBatch(1, 2, 64, false)
	plain := loraTrainer(t, 5, 2, 1e-3)
	run(t, plain, b, 1)
	dir, err := plain.SaveCheckpoint(t.TempDir(), 0, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := emaTrainer(t, 5, 2, 1e-3).LoadState(dir, nil); err == nil || !strings.Contains(err.Error(), "use_ema") {
		t.Fatalf("EMA trainer resumed from a checkpoint without EMA: %v", err)
	}
	withEMA := emaTrainer(t, 5, 2, 1e-3)
	run(t, withEMA, b, 1)
	dir, err = withEMA.SaveCheckpoint(t.TempDir(), 0, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := loraTrainer(t, 5, 2, 1e-3).LoadState(dir, nil); err == nil || !strings.Contains(err.Error(), "use_ema") {
		t.Fatalf("plain trainer resumed from a checkpoint with EMA: %v", err)
	}
	// A damaged step count is refused, not used.
	js := filepath.Join(dir, StateJSONFile)
	raw, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(js, []byte(strings.Replace(string(raw), `"ema_steps": 1`, `"ema_steps": -3`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := emaTrainer(t, 5, 2, 1e-3).LoadState(dir, nil); err == nil || !strings.Contains(err.Error(), "negative") {
		t.Fatalf("negative EMA step count accepted: %v", err)
	}
}
