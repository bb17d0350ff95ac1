package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestTrainToy runs "diffuse train-toy" at toy sizes twice: the second run
// reuses the VAE, resumes from the checkpoint and trains one more step;
// diffuse plot reads the JSON-lines log and the model folder is written.
func TestTrainToy(t *testing.T) {
	dir := t.TempDir()
	args := []string{"-o", dir, "-vae-steps", "1", "-vae-batch", "1", "-steps", "2", "-batch", "1", "-checkpoint-every", "2"}
	if err := runTrainToy(context.Background(), args); err != nil {
		t.Fatal(err)
	}
	vaeInfo, err := os.Stat(filepath.Join(dir, "vae.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	args[len(args)-5] = "3"
	if err := runTrainToy(context.Background(), args); err != nil {
		t.Fatal(err)
	}
	if again, err := os.Stat(filepath.Join(dir, "vae.safetensors")); err != nil || !again.ModTime().Equal(vaeInfo.ModTime()) {
		t.Error("VAE retrained instead of reused")
	}
	steps, _, err := readLossLog(filepath.Join(dir, "logs", "loss.jsonl"))
	if err != nil || len(steps) != 3 || steps[2] != 3 {
		t.Fatalf("loss log steps %v, %v; want 1, 2, 3", steps, err)
	}
	if _, _, err := readLossLog(filepath.Join(dir, "logs", "vae_loss.jsonl")); err != nil {
		t.Error(err)
	}
	if err := plotFile(filepath.Join(dir, "logs", "loss.jsonl"), filepath.Join(dir, "loss.png")); err != nil {
		t.Error(err)
	}
	for _, name := range []string{"model_index.json", "unet/diffusion_pytorch_model.safetensors", "vae/config.json"} {
		if _, err := os.Stat(filepath.Join(dir, "model", name)); err != nil {
			t.Error(err)
		}
	}
}

func TestTrainToyFlags(t *testing.T) {
	for _, bad := range [][]string{{"-steps", "0"}, {"-batch", "-1"}, {"-o", ""}, {"extra"}, {"-lr", "0"}} {
		if _, err := parseToyTrainFlags(bad, &bytes.Buffer{}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	f, err := parseToyTrainFlags([]string{"-steps", "7"}, &bytes.Buffer{})
	if err != nil || f.steps != 7 || f.out != "toy-train" {
		t.Errorf("parsed %+v, %v", f, err)
	}
}
