package toy

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/train"
)

// TestTrainSmoke runs a few steps of both stages, checkpoints, resumes and
// writes the folder: the path train-toy takes, at toy batch sizes.
func TestTrainSmoke(t *testing.T) {
	ctx := context.Background()
	var log bytes.Buffer
	v, err := TrainVAE(ctx, TrainConfig{Seed: 1, BatchSize: 2, Steps: 2, LR: 1e-3, Log: &log}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(log.String(), "\n"); n != 2 || !(v.Cfg.ScalingFactor > 0) {
		t.Fatalf("VAE: %d log lines, scaling factor %g", n, v.Cfg.ScalingFactor)
	}
	dir := t.TempDir()
	c := TrainConfig{Seed: 1, BatchSize: 2, Steps: 2, LR: 1e-3, CaptionDropout: 0.5, OutDir: dir, CheckpointEvery: 2}
	d, err := NewDiffusion(1, v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TrainDiffusion(ctx, c, d); err != nil {
		t.Fatal(err)
	}
	c.Steps = 3
	var resumed bytes.Buffer
	c.Log = &resumed
	d2, _ := NewDiffusion(1, v)
	tr, err := TrainDiffusion(ctx, c, d2)
	if err != nil {
		t.Fatal(err)
	}
	if tr.GlobalStep != 3 || !strings.HasPrefix(resumed.String(), `{"step":3,`) || strings.Count(resumed.String(), "\n") != 1 {
		t.Errorf("resumed run ended at step %d logging %q, want one step, step 3", tr.GlobalStep, resumed.String())
	}
	if err := d2.Save(dir+"/model", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := TrainVAE(ctx, TrainConfig{}, nil); err == nil {
		t.Error("zero config accepted")
	}
}

// TestUniform checks the caption-dropout draws: fixed by seed and index,
// in [0, 1), and spread evenly enough that a 10% dropout drops about 10%.
func TestUniform(t *testing.T) {
	n, dropped := 20000, 0
	for i := range uint64(n) {
		u := uniform(7, i)
		if u < 0 || u >= 1 || u != uniform(7, i) {
			t.Fatalf("uniform(7, %d) = %g", i, u)
		}
		if u < 0.1 {
			dropped++
		}
	}
	if f := float64(dropped) / float64(n); f < 0.09 || f > 0.11 {
		t.Errorf("dropped %.3f of captions at 0.1", f)
	}
	if uniform(7, 0) == uniform(8, 0) {
		t.Error("seed ignored")
	}
}

// TestTrainReachesEveryUNetParam checks that two diffusion steps move
// every UNet parameter that starts at zero (biases: weight decay alone
// cannot move them), the caption-pooling (addition_embed_type "text") and
// scale-shift paths included: a path that autograd does not reach would
// silently stay at its initial values.
func TestTrainReachesEveryUNetParam(t *testing.T) {
	ctx := context.Background()
	v, err := NewVAE(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDiffusion(1, v)
	if err != nil {
		t.Fatal(err)
	}
	before := map[string][]float32{}
	for _, p := range train.ModuleParams(d.Models.UNet) {
		before[p.Name] = append([]float32(nil), p.T.Data()...)
	}
	if _, err := TrainDiffusion(ctx, TrainConfig{Seed: 1, BatchSize: 2, Steps: 2, LR: 1e-3}, d); err != nil {
		t.Fatal(err)
	}
	pooled := false
	for _, p := range train.ModuleParams(d.Models.UNet) {
		if strings.HasPrefix(p.Name, "add_embedding.") {
			pooled = true
		}
		zero, same := true, true
		for i, x := range p.T.Data() {
			zero = zero && before[p.Name][i] == 0
			same = same && x == before[p.Name][i]
		}
		if zero && same {
			t.Errorf("%s did not change in two steps", p.Name)
		}
	}
	if !pooled {
		t.Error("the UNet has no add_embedding (addition_embed_type text)")
	}
}
