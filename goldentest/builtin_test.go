package goldentest

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
)

// TestGoldenBuiltinModelInDiffusers checks that the built-in model's folder, and
// a ControlNet and a LoRA diffuse trained on it, are files diffusers loads
// and computes as diffuse does: the cases under defaultmodel/testdata/diffusers
// hold inputs and the outputs upstream diffusers (v0.30.3, torch 1.13)
// computed after from_pretrained of the folder, with no missing or
// unexpected keys (scripts/reference/builtin_cases.py writes them). Each
// case runs through the generic runner of its class; a case naming a
// "component" runs with that component's weights file as embedded (f16 as
// stored) in place of weights.safetensors, the ControlNet with its own, the
// LoRA on the UNet case's weights.
func TestGoldenBuiltinModelInDiffusers(t *testing.T) {
	root := filepath.Join("..", "defaultmodel")
	dirs, err := filepath.Glob(filepath.Join(root, "testdata", "diffusers", "*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no cases under %s/testdata/diffusers (%v)", root, err)
	}
	// All cases go into one folder, so that a case using another's weights
	// (the LoRA's "uses_weights_of": the UNet case) finds it.
	tmp := t.TempDir()
	for _, src := range dirs {
		c, err := golden.Load(src)
		if err != nil {
			t.Fatal(err)
		}
		var files []string
		if err := c.Field("files", &files); err != nil {
			t.Fatal(err)
		}
		var component string
		_ = c.Field("component", &component) // optional
		c.Close()
		dir := filepath.Join(tmp, filepath.Base(src))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			copyFile(t, filepath.Join(src, f), filepath.Join(dir, f))
		}
		if component != "" {
			copyFile(t, filepath.Join(root, "model", component, "diffusion_pytorch_model.safetensors"), filepath.Join(dir, "weights.safetensors"))
		}
	}
	for _, src := range dirs {
		t.Run(filepath.Base(src), func(t *testing.T) {
			c, err := golden.Load(filepath.Join(tmp, filepath.Base(src)))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			golden.Run(t, c)
		})
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestGoldenLocal runs the cases kept with these tests (testdata/): upstream
// cases that ../shared/golden does not carry, such as SD3.5's MMDiT
// (qk_norm, dual-attention blocks), which needs diffusers v0.31.0
// (scripts/reference/make_sd35_case.py), through the generic runners.
func TestGoldenLocal(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("testdata", "*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no cases under testdata (%v)", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			c, err := golden.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			golden.Run(t, c)
		})
	}
}
