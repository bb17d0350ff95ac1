package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/internal/testmodel"
)

func TestExample(t *testing.T) {
	dir := t.TempDir()
	f, err := testmodel.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.png")
	if err := run(context.Background(), []string{"-m", f.SD, "-p", "a lighthouse", "-steps", "2", "-W", "64", "-H", "64", "-o", out}); err != nil {
		t.Fatal(err)
	}
	img, err := imageio.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 64 || b.Dy() != 64 {
		t.Errorf("image %v, want 64×64", b)
	}
	text, err := imageio.ReadPNGText(out)
	if err != nil || !strings.HasPrefix(text[imageio.ParametersKey], "a lighthouse\nSteps: 2") {
		t.Errorf("parameters %q, %v", text[imageio.ParametersKey], err)
	}
	if err := run(context.Background(), []string{"-m", filepath.Join(dir, "missing"), "-o", out}); err == nil {
		t.Error("a missing model gave no error")
	}
}
