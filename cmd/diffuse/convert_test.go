package main

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/gguf"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// diffuse convert writes a tiny random FLUX transformer as Q8_0 and Q6_K
// GGUF and as scaled fp8, and all open through the front door with the
// component files random-checkpoint wrote beside it; bad requests are
// refused before anything is written.
func TestConvertCommand(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "flux.safetensors")
	files, err := writeRandomMMDiT(context.Background(), "flux-schnell-tiny", in, tensor.F16, nil, 3)
	if err != nil {
		t.Fatal(err)
	}
	opt := pipeline.Options{Components: files.Components}
	opt.Components.Tokenizer2 = mmditSpiece
	for _, c := range []struct{ out, typ string }{{"flux-Q8_0.gguf", "q8_0"}, {"flux-Q6_K.gguf", "q6_k"}, {"flux-fp8.safetensors", "fp8-scaled"}} {
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
		{"-i", in, "-o", filepath.Join(dir, "x.gguf"), "--type", "q2_k"},
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

// diffuse convert --type q6_k|q5_k|q5_1|q5_0 writes a GGUF the reader
// opens: weights whose rows are whole blocks (256 values for the
// K-quants, 32 for the others) in the type, the other weights F16, and
// every tensor dequantises close to the input: within a quarter more
// relative RMS error than rounding to the type's step gives uniform values
// (half the step over the largest magnitude: 1/64 for Q6_K, about 1/32 for
// the 5-bit types), Q6_K's below Q5_K's.
func TestConvertCommandTypes(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "flux.safetensors")
	if _, err := writeRandomMMDiT(context.Background(), "flux-schnell-tiny", in, tensor.F32, nil, 5); err != nil {
		t.Fatal(err)
	}
	src, err := safetensors.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	errs := map[gguf.Type]float64{}
	for _, c := range []struct {
		typ  string
		want gguf.Type
		tol  float64 // relative RMS error
	}{{"q6_k", gguf.Q6_K, 0.02}, {"q5_k", gguf.Q5_K, 0.04}, {"q5_1", gguf.Q5_1, 0.04}, {"q5_0", gguf.Q5_0, 0.04}} {
		out := filepath.Join(dir, c.typ+".gguf")
		if err := runConvert([]string{"-i", in, "-o", out, "--type", c.typ}); err != nil {
			t.Fatal(err)
		}
		errs[c.want] = checkConverted(t, src, out, c.want, c.tol)
	}
	if errs[gguf.Q6_K] >= errs[gguf.Q5_K] {
		t.Errorf("Q6_K relative error %.4g, not below Q5_K's %.4g", errs[gguf.Q6_K], errs[gguf.Q5_K])
	}
}

// checkConverted opens a converted file and compares each tensor with the
// source: the stored type by the rules, the values within tol (relative
// RMS error over the tensors stored as typ, which it returns).
func checkConverted(t *testing.T, src *safetensors.File, out string, typ gguf.Type, tol float64) float64 {
	t.Helper()
	g, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	var sumErr, sumSq float64
	quantised, kept := 0, 0
	for _, name := range g.Names() {
		info, _ := g.Info(name)
		want, _, err := src.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := g.Float32(name)
		if err != nil {
			t.Fatalf("%s: %s: %v", typ, name, err)
		}
		cols := info.Shape[len(info.Shape)-1]
		switch {
		case info.Type == typ:
			quantised++
			for i := range want {
				d := float64(got[i] - want[i])
				sumErr, sumSq = sumErr+d*d, sumSq+float64(want[i])*float64(want[i])
			}
		case info.Type == gguf.F16 && cols%typ.BlockSize() != 0:
			kept++
		case info.Type != gguf.F32 || len(want) > 1024 && len(info.Shape) > 1 && strings.HasSuffix(name, ".weight"):
			t.Errorf("%s: %s %v stored as %s", typ, name, info.Shape, info.Type)
		}
	}
	rel := math.Sqrt(sumErr / sumSq)
	if quantised == 0 || rel > tol {
		t.Errorf("%s: %d tensors quantised (%d kept F16), relative RMS error %.4g (want ≤ %g)", typ, quantised, kept, rel, tol)
	}
	return rel
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
