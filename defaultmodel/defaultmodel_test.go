package defaultmodel

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/diffuse-go/diffuse/pipeline"
)

// TestEmbeddedModelGenerates extracts the embedded model, opens it through
// the front door and runs a one-step generation.
func TestEmbeddedModelGenerates(t *testing.T) {
	root := t.TempDir()
	dir, err := Dir(root)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Dir(root)
	if err != nil || again != dir {
		t.Fatalf("second Dir: %q, %v; want %q", again, err, dir)
	}
	for _, f := range []string{"model_index.json", "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
		"text_encoder/model.safetensors", "scheduler/scheduler_config.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("extracted model lacks %s: %v", f, err)
		}
	}
	m, err := pipeline.Open(context.Background(), dir, pipeline.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	out, err := m.Generate(context.Background(), pipeline.Params{Prompt: "a large red circle on the left, gray background", Steps: 1})
	if err != nil {
		t.Fatal(err)
	}
	if b := out.Images[0].Image.Bounds(); b.Dx() != 32 || b.Dy() != 32 {
		t.Errorf("image %v, want 32×32", b)
	}
}

// TestSize keeps the binary's payload within the budget.
func TestSize(t *testing.T) {
	var total int64
	err := fs.WalkDir(FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		total += info.Size()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if total > 20<<20 {
		t.Errorf("embedded model is %d bytes, over 20 MiB", total)
	}
}

func TestDirNeedsRoot(t *testing.T) {
	if _, err := Dir(""); err == nil {
		t.Error("empty cache root accepted")
	}
}
