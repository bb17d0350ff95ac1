package train

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/rng"
)

// TestManifestCSV reads a CSV manifest with custom column names.
func TestManifestCSV(t *testing.T) {
	dir := t.TempDir()
	csv := "file,hint,caption\na.png,/abs/h.png,\"a cat, sitting\"\nb.png,,\n"
	p := filepath.Join(dir, "m.csv")
	if err := os.WriteFile(p, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := Manifest(p, "file", "hint", "caption")
	if err != nil {
		t.Fatal(err)
	}
	want := []Example{{Image: filepath.Join(dir, "a.png"), Conditioning: "/abs/h.png", Caption: "a cat, sitting"},
		{Image: filepath.Join(dir, "b.png")}}
	if len(d.Examples) != 2 || d.Examples[0] != want[0] || d.Examples[1] != want[1] {
		t.Fatalf("read %+v, want %+v", d.Examples, want)
	}
	if _, err := Manifest(p); err == nil {
		t.Error("a manifest without an image column read")
	}
	if _, err := ImageFolder(dir, "x"); err == nil {
		t.Error("a folder without images read")
	}
}

// TestPreprocessCenterCrop: the shorter side is resized to the
// resolution (96×64 to 48×32), then the centre columns are kept.
func TestPreprocessCenterCrop(t *testing.T) {
	dir := t.TempDir()
	paths := writeImages(t, dir, 1, 96, 64, 8)
	img, err := imageio.Load(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	full, err := imageio.ToNCHW(img, 48, 32)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Preprocess{Resolution: 32, CenterCrop: true}.Load(paths[0], rng.New(0))
	if err != nil {
		t.Fatal(err)
	}
	for c := 0; c < 3; c++ {
		for y := 0; y < 32; y++ {
			for x := 0; x < 32; x++ {
				if got[(c*32+y)*32+x] != full[(c*32+y)*48+8+x] {
					t.Fatalf("pixel (%d, %d, %d) is not the centre crop's", c, y, x)
				}
			}
		}
	}
}
