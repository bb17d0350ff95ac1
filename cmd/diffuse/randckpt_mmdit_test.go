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

	"github.com/diffuse-go/diffuse/gguf"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// mmditSpiece is a small T5 SentencePiece model (the checkpoints carry no
// tokenizer).
var mmditSpiece = filepath.Join("..", "..", "tokenizer", "t5", "testdata", "t5_test_sentencepiece.model")

// openRandomMMDiT writes kind at test size and opens it through the front door.
func openRandomMMDiT(t *testing.T, kind string, dt tensor.DType, tok pipeline.ComponentPaths) (pipeline.Model, mmditFiles) {
	t.Helper()
	out := filepath.Join(t.TempDir(), kind+".safetensors")
	files, err := writeRandomMMDiT(context.Background(), kind, out, dt, nil, 7)
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
	if _, err := writeRandomMMDiT(context.Background(), "sd3-tiny", out, tensor.F16, nil, 1); err != nil {
		t.Fatal(err)
	}
	_, err := pipeline.Open(context.Background(), out, pipeline.Options{})
	if !errors.Is(err, pipeline.ErrMissingComponent) || !strings.Contains(err.Error(), "tokenizer_3") {
		t.Fatalf("err = %v, want a missing tokenizer_3", err)
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
	if _, err := writeRandomMMDiT(context.Background(), "flux-schnell-tiny", out, tensor.F16, nil, 1); err != nil {
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

// random-checkpoint --dtype with a GGUF type or fp8: the FLUX transformer
// (its components f16 beside it) and the whole SD3 file are written in
// that type by package quant's rules, and open and generate through the
// front door.
func TestRandomMMDiTQuantized(t *testing.T) {
	for _, c := range []struct {
		kind, dtype, file string
		tensor            string // a transformer matrix and its stored type
		want              string
	}{
		{"flux-schnell-tiny", "q8_0", "f.gguf", "double_blocks.0.img_attn.qkv.weight", "Q8_0"},
		{"flux-dev-tiny", "fp8-scaled", "f.safetensors", "single_blocks.0.linear1.weight", "F8_E4M3"},
		{"sd3-tiny", "q8_0", "s.gguf", "model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight", "Q8_0"},
		{"sd3-tiny", "fp8", "s.safetensors", "model.diffusion_model.joint_blocks.1.x_block.mlp.fc1.weight", "F8_E4M3"},
		{"sd35-medium-tiny", "q8_0", "m.gguf", "model.diffusion_model.joint_blocks.1.x_block.attn2.qkv.weight", "Q8_0"},
		{"sd35-large-tiny", "fp8-scaled", "l.safetensors", "model.diffusion_model.joint_blocks.0.context_block.attn.qkv.weight", "F8_E4M3"},
	} {
		t.Run(c.kind+"-"+c.dtype, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), c.file)
			if err := runRandomCheckpoint(context.Background(), []string{"-kind", c.kind, "-dtype", c.dtype, "-o", out}); err != nil {
				t.Fatal(err)
			}
			if got := storedType(t, out, c.tensor); got != c.want {
				t.Errorf("%s stored as %s, want %s", c.tensor, got, c.want)
			}
			opt := pipeline.Options{Components: pipeline.ComponentPaths{Tokenizer2: mmditSpiece, Tokenizer3: mmditSpiece}}
			if strings.HasPrefix(c.kind, "flux") {
				sib := fluxSiblings(out)
				opt.Components.TextEncoder, opt.Components.TextEncoder2, opt.Components.VAE = sib.TextEncoder, sib.TextEncoder2, sib.VAE
				if got := storedType(t, sib.TextEncoder2, "encoder.block.0.layer.0.SelfAttention.q.weight"); got != "F16" {
					t.Errorf("the T5 beside the transformer is %s, want F16", got)
				}
			}
			m, err := pipeline.Open(context.Background(), out, opt)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			generateTinyMMDiT(t, m, pipeline.Params{Guidance: 1})
		})
	}
	if err := runRandomCheckpoint(context.Background(), []string{"-kind", "sd15", "-dtype", "q8_0", "-o", filepath.Join(t.TempDir(), "x.gguf")}); err == nil {
		t.Error("an SD 1.5 checkpoint was accepted with --dtype q8_0")
	}
}

// storedType is the stored type of a tensor of a GGUF or safetensors file.
func storedType(t *testing.T, path, name string) string {
	t.Helper()
	if strings.HasSuffix(path, ".gguf") {
		g, err := gguf.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		info, _ := g.Info(name)
		return info.Type.String()
	}
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, _ := f.Info(name)
	return string(info.DType)
}
