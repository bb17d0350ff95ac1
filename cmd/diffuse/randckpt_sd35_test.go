package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/diffuse-go/diffuse/checkpoint"
	"github.com/diffuse-go/diffuse/model/sd3"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// The full-size SD3.5 layouts have the shapes of Stability AI's
// sd3.5_large.safetensors and sd3.5_medium.safetensors (listed, not
// written): Large's 38 blocks of width 2432, Medium's 24 of width 1536
// with attn2 and a nine-chunk x_block modulation in blocks 0..12 only, a
// 384² position table, and 64-wide qk norms in both.
func TestRandomSD35RealLayouts(t *testing.T) {
	const p = "model.diffusion_model."
	for _, c := range []struct {
		medium bool
		want   map[string][]int
		absent []string
	}{
		{false, map[string][]int{p + "joint_blocks.37.x_block.mlp.fc1.weight": {9728, 2432}, p + "pos_embed": {1, 36864, 2432},
			p + "joint_blocks.37.context_block.attn.ln_k.weight": {64}, p + "joint_blocks.0.x_block.adaLN_modulation.1.weight": {6 * 2432, 2432}},
			[]string{p + "joint_blocks.0.x_block.attn2.qkv.weight", p + "joint_blocks.38.x_block.attn.qkv.weight"}},
		{true, map[string][]int{p + "joint_blocks.12.x_block.adaLN_modulation.1.weight": {9 * 1536, 1536},
			p + "joint_blocks.12.x_block.attn2.qkv.weight": {3 * 1536, 1536}, p + "joint_blocks.0.x_block.attn2.ln_q.weight": {64},
			p + "joint_blocks.13.x_block.adaLN_modulation.1.weight": {6 * 1536, 1536}, p + "pos_embed": {1, 384 * 384, 1536},
			p + "joint_blocks.23.x_block.attn.ln_q.weight": {64}},
			[]string{p + "joint_blocks.13.x_block.attn2.qkv.weight", p + "joint_blocks.24.x_block.attn.qkv.weight"}},
	} {
		cfg := sd3Configs(false)
		specs, err := pipeline.SD3FileLayout(sd35Transformer(c.medium, false), cfg.clipL, cfg.clipG, cfg.t5, cfg.vae)
		if err != nil {
			t.Fatal(err)
		}
		shapes := map[string][]int{}
		for _, s := range specs {
			shapes[s.Name] = s.Shape
		}
		for name, want := range c.want {
			if got, ok := shapes[name]; !ok || !slices.Equal(got, want) {
				t.Errorf("medium %v: %s %v (present %v), want %v", c.medium, name, got, ok, want)
			}
		}
		for _, name := range c.absent {
			if _, ok := shapes[name]; ok {
				t.Errorf("medium %v: %s present", c.medium, name)
			}
		}
	}
}

// A tiny random SD3.5 file opens through pipeline.Open as its kind and
// generates; for Medium, the same weights as a diffusers folder (the
// transformer renamed to diffusers' names, the other components taken
// from the file) give the identical image.
func TestRandomSD35SingleFileAndFolder(t *testing.T) {
	for _, c := range []struct {
		kind, want string
		medium     bool
	}{{"sd35-medium-tiny", "SD3.5 Medium", true}, {"sd35-large-tiny", "SD3.5 Large", false}} {
		t.Run(c.kind, func(t *testing.T) {
			m, files := openRandomMMDiT(t, c.kind, tensor.F16, pipeline.ComponentPaths{Tokenizer3: mmditSpiece})
			if in := m.Info(); in.Family != "sd3" || in.Kind != c.want {
				t.Fatalf("info %+v, want the sd3 family, kind %s", in, c.want)
			}
			params := pipeline.Params{NegativePrompt: "blurry", Guidance: 5}
			fromFile := generateTinyMMDiT(t, m, params)
			if !c.medium {
				return
			}
			dir := sd35FolderOf(t, files.Checkpoint, sd35Transformer(true, true))
			comps := pipeline.ComponentPaths{TextEncoder: files.Checkpoint, TextEncoder2: files.Checkpoint,
				TextEncoder3: files.Checkpoint, VAE: files.Checkpoint, Tokenizer3: mmditSpiece}
			fm, err := pipeline.Open(context.Background(), dir, pipeline.Options{Components: comps})
			if err != nil {
				t.Fatal(err)
			}
			defer fm.Close()
			if in := fm.Info(); in.Kind != c.want {
				t.Fatalf("folder kind %q, want %s", in.Kind, c.want)
			}
			fromFolder := generateTinyMMDiT(t, fm, params)
			if !bytes.Equal(fromFile.Images[0].Image.Pix, fromFolder.Images[0].Image.Pix) {
				t.Error("the diffusers folder of the same weights gives another image")
			}
		})
	}
}

// sd35FolderOf writes a StableDiffusion3Pipeline folder holding the
// transformer of the original single file path (config cfg) in diffusers'
// names and layout, F16 as in the file: fused q, k, v split, the last
// context norm and norm_out swapped back, per checkpoint.SD3.
func sd35FolderOf(t *testing.T, path string, cfg sd3.Config) string {
	t.Helper()
	m, err := sd3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	params, err := checkpoint.SD3.Names(m)
	if err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ts []safetensors.Tensor
	for _, p := range params {
		v, _, err := f.Float32("model.diffusion_model." + p.Source)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, safetensors.F16Tensor(p.Name, p.Shape, diffusersValues(v, p)))
	}
	dir := t.TempDir()
	writeJSON(t, filepath.Join(dir, "model_index.json"), map[string]any{"_class_name": "StableDiffusion3Pipeline",
		"transformer": []string{"diffusers", "SD3Transformer2DModel"}, "scheduler": []string{"diffusers", "FlowMatchEulerDiscreteScheduler"}})
	writeJSON(t, filepath.Join(dir, "transformer", "config.json"), cfg)
	if err := safetensors.WriteFile(filepath.Join(dir, "transformer", "diffusion_pytorch_model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "scheduler"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "scheduler", "scheduler_config.json"), []byte(pipeline.SD3SchedulerConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// diffusersValues takes parameter p's values from its source tensor's v:
// its rows of a fused tensor, or the two halves exchanged.
func diffusersValues(v []float32, p checkpoint.Param) []float32 {
	row := 1
	for _, d := range p.SourceShape[1:] {
		row *= d
	}
	switch {
	case p.Rows[1] > 0:
		return v[p.Rows[0]*row : p.Rows[1]*row]
	case p.Swap:
		h := len(v) / 2
		return append(slices.Clone(v[h:]), v[:h]...)
	}
	return v
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// diffuse convert writes a tiny SD3.5 Medium file as Q8_0 GGUF (the whole
// file, as stable-diffusion.cpp's): the attn2 and joint projections
// quantised, the qk norms F32; it opens and generates, and bench -m times
// it.
func TestRandomSD35Convert(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "m.safetensors"), filepath.Join(dir, "m-Q8_0.gguf")
	if _, err := writeRandomMMDiT(context.Background(), "sd35-medium-tiny", in, tensor.F16, nil, 5); err != nil {
		t.Fatal(err)
	}
	if err := runConvert([]string{"-i", in, "-o", out, "-type", "q8_0"}); err != nil {
		t.Fatal(err)
	}
	const p = "model.diffusion_model.joint_blocks."
	for name, want := range map[string]string{p + "0.x_block.attn2.qkv.weight": "Q8_0", p + "1.x_block.attn2.proj.weight": "Q8_0",
		p + "0.x_block.attn2.ln_q.weight": "F32", p + "2.context_block.attn.ln_k.weight": "F32",
		p + "0.x_block.adaLN_modulation.1.weight": "Q8_0"} {
		if got := storedType(t, out, name); got != want {
			t.Errorf("%s stored as %s, want %s", name, got, want)
		}
	}
	m, err := pipeline.Open(context.Background(), out, pipeline.Options{Components: pipeline.ComponentPaths{Tokenizer3: mmditSpiece}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if in := m.Info(); in.Kind != "SD3.5 Medium" {
		t.Fatalf("kind %q", in.Kind)
	}
	generateTinyMMDiT(t, m, pipeline.Params{Guidance: 1})
	if !isFlowBench(out) {
		t.Fatal("bench does not take the SD3.5 GGUF as an SD3 file")
	}
	if err := runBench(context.Background(), []string{"-m", out, "-size", "64", "-steps", "1", "--component", "tokenizer_3=" + mmditSpiece}); err != nil {
		t.Fatal(err)
	}
}
