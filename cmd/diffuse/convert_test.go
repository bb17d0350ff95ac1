package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/gguf"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/tensor"
)

// diffuse convert writes a tiny random FLUX transformer as Q8_0 GGUF and
// as scaled fp8, and both open through the front door with the component
// files random-checkpoint wrote beside it; bad requests are refused
// before anything is written.
func TestConvertCommand(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "flux.safetensors")
	files, err := writeRandomMMDiT(context.Background(), "flux-schnell-tiny", in, tensor.F16, nil, 3)
	if err != nil {
		t.Fatal(err)
	}
	opt := pipeline.Options{Components: files.Components}
	opt.Components.Tokenizer2 = mmditSpiece
	for _, c := range []struct{ out, typ string }{{"flux-Q8_0.gguf", "q8_0"}, {"flux-fp8.safetensors", "fp8-scaled"}} {
		out := filepath.Join(dir, c.out)
		if err := runConvert([]string{"-i", in, "-o", out, "--type", c.typ}); err != nil {
			t.Fatal(err)
		}
		m, err := pipeline.Open(context.Background(), out, opt)
		if err != nil {
			t.Fatal(err)
		}
		generateTinyMMDiT(t, m, pipeline.Params{})
		m.Close()
	}
	g, err := gguf.Open(filepath.Join(dir, "flux-Q8_0.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := g.Info("double_blocks.0.img_attn.qkv.weight"); info.Type != gguf.Q8_0 || g.Architecture() != "flux" {
		t.Errorf("qkv stored as %v, architecture %q", info.Type, g.Architecture())
	}
	g.Close()
	for _, args := range [][]string{
		{"-i", in, "-o", filepath.Join(dir, "x.gguf"), "--type", "q6_k"},
		{"-i", in, "-o", filepath.Join(dir, "x.safetensors"), "--type", "q8_0"},
		{"-i", in, "-o", filepath.Join(dir, "x.gguf"), "--type", "fp8"},
		{"-i", in},
	} {
		if err := runConvert(args); err == nil {
			t.Errorf("convert %s succeeded", strings.Join(args, " "))
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x.gguf")); err == nil {
		t.Error("a refused conversion left a file")
	}
}

// bench -m times a tiny FLUX GGUF through whole generations (its
// components given as generate takes them), and names a missing one.
func TestBenchFlowGGUF(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "flux.safetensors")
	files, err := writeRandomMMDiT(context.Background(), "flux-schnell-tiny", in, tensor.F16, nil, 3)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "flux-Q8_0.gguf")
	if err := runConvert([]string{"-i", in, "-o", out}); err != nil {
		t.Fatal(err)
	}
	if fam, err := pipeline.Detect(out); err != nil || fam != "flux" {
		t.Fatalf("Detect: %q, %v", fam, err)
	}
	c := files.Components
	args := []string{"-m", out, "-size", "64", "-steps", "2", "--component", "text_encoder=" + c.TextEncoder,
		"--component", "text_encoder_2=" + c.TextEncoder2, "--component", "tokenizer_2=" + mmditSpiece}
	if err := runBench(context.Background(), append(args, "--component", "vae="+c.VAE)); err != nil {
		t.Fatal(err)
	}
	if err := runBench(context.Background(), args); !errors.Is(err, pipeline.ErrMissingComponent) {
		t.Errorf("without a VAE: err = %v, want ErrMissingComponent", err)
	}
}
