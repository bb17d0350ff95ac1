package toy

import (
	"bytes"
	"context"
	"strings"
	"testing"
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
