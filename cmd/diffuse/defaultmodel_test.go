package main

import (
	"bytes"
	"image"
	"image/color"
	"testing"
)

func TestDefaultModelFlags(t *testing.T) {
	f, err := parseGenFlags([]string{"-p", "a red circle"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if f.model != "" || f.steps != defaultModelSteps || f.cfgScale != defaultModelCFG || f.upscale != defaultModelUpscale || f.info.Name != defaultModelSampler {
		t.Errorf("without -m: steps %d, cfg %g, upscale %d, sampler %s", f.steps, f.cfgScale, f.upscale, f.info.Name)
	}
	f, err = parseGenFlags([]string{"-p", "x", "--steps", "3", "--upscale", "2", "--sampler", "euler"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if f.steps != 3 || f.upscale != 2 || f.info.Name != "euler" {
		t.Errorf("given flags overridden: steps %d, upscale %d, sampler %s", f.steps, f.upscale, f.info.Name)
	}
	if f, _ = parseGenFlags([]string{"-m", "m", "-p", "x"}, &bytes.Buffer{}); f.upscale != 1 || f.steps != 0 {
		t.Errorf("with -m: upscale %d, steps %d; want 1 and 0 (the model's default)", f.upscale, f.steps)
	}
}

func TestUpscaleNearest(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 2, 1))
	img.SetNRGBA(1, 0, color.NRGBA{255, 0, 0, 255})
	up := upscaleNearest(img, 3)
	if up.Bounds().Dx() != 6 || up.Bounds().Dy() != 3 {
		t.Fatalf("size %v", up.Bounds())
	}
	if up.NRGBAAt(2, 2).R != 0 || up.NRGBAAt(3, 0).R != 255 || up.NRGBAAt(5, 2).R != 255 {
		t.Error("pixels not repeated")
	}
	if upscaleNearest(img, 1) != img {
		t.Error("n = 1 copied")
	}
}
