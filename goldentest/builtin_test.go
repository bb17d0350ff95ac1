package goldentest

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
)

// TestBuiltinModelInDiffusers checks that the built-in model's folder, and
// a ControlNet diffuse trained on it, are folders diffusers loads and
// computes as diffuse does: the cases under defaultmodel/testdata/diffusers
// hold inputs and the outputs upstream diffusers (v0.30.3, torch 1.13)
// computed after from_pretrained of the folder, with no missing or
// unexpected keys (scripts/reference/builtin_cases.py writes them). Each
// case runs through the generic runner of its class; a case naming a
// "component" runs with that component's weights file as embedded (f16 as
// stored) in place of weights.safetensors, the ControlNet with its own.
func TestBuiltinModelInDiffusers(t *testing.T) {
	root := filepath.Join("..", "defaultmodel")
	dirs, err := filepath.Glob(filepath.Join(root, "testdata", "diffusers", "*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no cases under %s/testdata/diffusers (%v)", root, err)
	}
	for _, src := range dirs {
		t.Run(filepath.Base(src), func(t *testing.T) {
			c, err := golden.Load(src)
			if err != nil {
				t.Fatal(err)
			}
			var component string
			if c.Field("component", &component) != nil || component == "" {
				golden.Run(t, c) // the case's own weights
				c.Close()
				return
			}
			c.Close()
			dir := t.TempDir()
			for _, f := range []string{"case.json", "io.safetensors"} {
				copyFile(t, filepath.Join(src, f), filepath.Join(dir, f))
			}
			copyFile(t, filepath.Join(root, "model", component, "diffusion_pytorch_model.safetensors"), filepath.Join(dir, "weights.safetensors"))
			c, err = golden.Load(dir)
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
