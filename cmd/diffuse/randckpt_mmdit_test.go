package main

import (
	"context"
	"errors"
	"image"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/tensor"
)

// mmditSpiece is a small T5 SentencePiece model (the checkpoints carry no
// tokenizer).
var mmditSpiece = filepath.Join("..", "..", "tokenizer", "t5", "testdata", "t5_test_sentencepiece.model")

// openRandomMMDiT writes kind at test size and opens it through the front door.
func openRandomMMDiT(t *testing.T, kind string, dt tensor.DType, tok pipeline.ComponentPaths) (pipeline.Model, mmditFiles) {
	t.Helper()
	out := filepath.Join(t.TempDir(), kind+".safetensors")
	files, err := writeRandomMMDiT(context.Background(), kind, out, dt, 7)
	if err != nil {
		t.Fatal(err)
	}
	opt := pipeline.Options{Components: files.Components}
	opt.Components.Tokenizer2, opt.Components.Tokenizer3 = tok.Tokenizer2, tok.Tokenizer3
	m, err := pipeline.Open(context.Background(), out, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, files
}

// generateTinyMMDiT makes one 32×32 image in two steps and checks it is not
// flat (random weights still give structure).
func generateTinyMMDiT(t *testing.T, m pipeline.Model, p pipeline.Params) *pipeline.Output {
	t.Helper()
	p.Width, p.Height, p.Steps, p.Seed = 32, 32, 2, 3
	if p.Prompt == "" {
		p.Prompt = "a red fox"
	}
	out, err := m.Generate(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Images) != 1 || out.Images[0].Image.Bounds() != image.Rect(0, 0, 32, 32) {
		t.Fatalf("got %d images of %v, want one 32x32", len(out.Images), out.Images[0].Image.Bounds())
	}
	pix := out.Images[0].Image.Pix
	flat := true
	for i := 4; i < len(pix); i++ {
		if i%4 != 3 && pix[i] != pix[i%4] {
			flat = false
			break
		}
	}
	if flat {
		t.Error("the image is one flat colour")
	}
	return out
}

func TestRandomSD3SingleFile(t *testing.T) {
	for _, dt := range []tensor.DType{tensor.F16, tensor.BF16} {
		m, _ := openRandomMMDiT(t, "sd3-tiny", dt, pipeline.ComponentPaths{Tokenizer3: mmditSpiece})
		if in := m.Info(); in.Family != "sd3" || in.Kind != "SD3" || in.Sampler != "euler" {
			t.Fatalf("info %+v, want the sd3 family with T5", in)
		}
		out := generateTinyMMDiT(t, m, pipeline.Params{NegativePrompt: "blurry", Guidance: 5})
		if txt := out.Images[0].Params.String(); !strings.Contains(txt, "Sampler: Euler") {
			t.Errorf("parameters %q do not name the Euler sampler", txt)
		}
	}
}

func TestRandomSD3WithoutT5(t *testing.T) {
	m, _ := openRandomMMDiT(t, "sd3-no-t5-tiny", tensor.F16, pipeline.ComponentPaths{})
	if in := m.Info(); in.Kind != "SD3 (without T5)" {
		t.Fatalf("kind %q, want SD3 without T5", in.Kind)
	}
	generateTinyMMDiT(t, m, pipeline.Params{})
}

func TestRandomSD3NeedsT5Tokenizer(t *testing.T) {
	out := filepath.Join(t.TempDir(), "sd3.safetensors")
	if _, err := writeRandomMMDiT(context.Background(), "sd3-tiny", out, tensor.F16, 1); err != nil {
		t.Fatal(err)
	}
	_, err := pipeline.Open(context.Background(), out, pipeline.Options{})
	if !errors.Is(err, pipeline.ErrMissingComponent) || !strings.Contains(err.Error(), "tokenizer_3") {
		t.Fatalf("err = %v, want a missing tokenizer_3", err)
	}
}

func TestRandomSD35Refused(t *testing.T) {
	_, err := writeRandomMMDiT(context.Background(), "sd35", filepath.Join(t.TempDir(), "x.safetensors"), tensor.F16, 1)
	if !errors.Is(err, pipeline.ErrUnsupported) {
		t.Fatalf("err = %v, want ErrUnsupported", err)
	}
}

func TestRandomFlux(t *testing.T) {
	for _, kind := range []string{"flux-dev-tiny", "flux-schnell-tiny"} {
		t.Run(kind, func(t *testing.T) {
			m, _ := openRandomMMDiT(t, kind, tensor.BF16, pipeline.ComponentPaths{Tokenizer2: mmditSpiece})
			in := m.Info()
			dev := strings.HasPrefix(kind, "flux-dev")
			if in.Family != "flux" || (in.Kind == "FLUX.1 dev") != dev {
				t.Fatalf("info %+v for %s", in, kind)
			}
			generateTinyMMDiT(t, m, pipeline.Params{})
			_, err := m.Generate(context.Background(), pipeline.Params{Prompt: "x", NegativePrompt: "y", Width: 32, Height: 32, Steps: 1})
			if !errors.Is(err, pipeline.ErrUnsupported) {
				t.Errorf("negative prompt: err = %v, want ErrUnsupported", err)
			}
			for what, p := range map[string]pipeline.Params{"sampler dpm++2m": {Sampler: "dpm++2m"},
				"clip skip": {ClipSkip: 2}, "guidance rescale": {GuidanceRescale: 0.5}} {
				p.Prompt, p.Width, p.Height, p.Steps = "x", 32, 32, 1
				if _, err := m.Generate(context.Background(), p); !errors.Is(err, pipeline.ErrUnsupported) {
					t.Errorf("%s: err = %v, want ErrUnsupported", what, err)
				}
			}
		})
	}
}

func TestRandomFluxNeedsComponents(t *testing.T) {
	out := filepath.Join(t.TempDir(), "flux.safetensors")
	if _, err := writeRandomMMDiT(context.Background(), "flux-schnell-tiny", out, tensor.F16, 1); err != nil {
		t.Fatal(err)
	}
	_, err := pipeline.Open(context.Background(), out, pipeline.Options{})
	if !errors.Is(err, pipeline.ErrMissingComponent) {
		t.Fatalf("err = %v, want ErrMissingComponent", err)
	}
}

// The writer streams: a 64 MiB tensor is written without holding it.
func TestRandomSpecsStream(t *testing.T) {
	spec := []pipeline.TensorSpec{{Name: "w", Shape: []int{4096, 8192}}}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	path := filepath.Join(t.TempDir(), "big.safetensors")
	if err := writeRandomSpecs(context.Background(), path, spec, tensor.F16, 1); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("writing 64 MiB allocated %d MiB", alloc>>20)
	}
	st, err := os.Stat(path)
	if err != nil || st.Size() < 4096*8192*2 {
		t.Fatalf("file %v, %v: want 64 MiB of data", st, err)
	}
}
