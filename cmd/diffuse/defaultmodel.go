package main

import (
	"fmt"
	"image"
	"os"

	"github.com/diffuse-go/diffuse/defaultmodel"
)

// Settings that suit the embedded default model (a 32×32 toy SD trained
// by diffuse train-toy), used when -m is not given and the flag is not set.
const (
	defaultModelSteps   = 30
	defaultModelCFG     = 4.0
	defaultModelSampler = "ddim"
	defaultModelUpscale = 8
)

// defaultModelPath writes the embedded model into the user's cache folder
// (once per model version) and returns its folder.
func defaultModelPath() (string, error) {
	root, err := os.UserCacheDir()
	if err != nil {
		root = os.TempDir()
	}
	dir, err := defaultmodel.Dir(root)
	if err != nil {
		return "", fmt.Errorf("default model: %w", err)
	}
	return dir, nil
}

// upscaleNearest enlarges img n times by pixel repetition (n <= 1: as is),
// for looking at small images.
func upscaleNearest(img *image.NRGBA, n int) *image.NRGBA {
	if n <= 1 {
		return img
	}
	b := img.Bounds()
	out := image.NewNRGBA(image.Rect(0, 0, b.Dx()*n, b.Dy()*n))
	for y := 0; y < b.Dy()*n; y++ {
		for x := 0; x < b.Dx()*n; x++ {
			out.SetNRGBA(x, y, img.NRGBAAt(b.Min.X+x/n, b.Min.Y+y/n))
		}
	}
	return out
}
