package pipeline

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// testSpiece is the T5 test SentencePiece model (1000 pieces; with the
// sentinels ids reach 1100).
func testSpiece(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../tokenizer/t5/testdata/t5_test_sentencepiece.model")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tinyT5() map[string]any {
	return map[string]any{"vocab_size": 1101, "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_heads": 4,
		"feed_forward_proj": "gated-gelu", "model_type": "t5"}
}

func tinyPixArtFolder(t *testing.T) RandomFolder {
	tr := map[string]any{"num_attention_heads": 3, "attention_head_dim": 8, "in_channels": 4, "out_channels": 8,
		"num_layers": 2, "cross_attention_dim": 24, "sample_size": 4, "patch_size": 2, "caption_channels": 32,
		"norm_type": "ada_norm_single", "norm_elementwise_affine": false, "norm_eps": 1e-6, "num_embeds_ada_norm": 1000}
	sched := map[string]any{"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02, "algorithm_type": "dpmsolver++",
		"solver_order": 2, "timestep_spacing": "linspace", "lower_order_final": true}
	return PixArtFolder(tinyT5(), tr, tinyVAE(), sched, testSpiece(t))
}

func TestPixArtFamily(t *testing.T) {
	m := openTiny(t, writeTiny(t, "pixart-tiny", tinyPixArtFolder(t)), "pixart")
	pm := m.(*pixartModel)
	if dt := pm.p.Transformer.ProjOut.Weight.DType(); dt != tensor.F16 {
		t.Errorf("f16 transformer weights held as %v, want f16 kept", dt)
	}
	in := m.Info()
	if in.Width != 8 || in.Sampler != "DPMSolverMultistepScheduler" || in.Guidance != 4.5 {
		t.Fatalf("info %+v", in)
	}
	out, err := m.Generate(context.Background(), Params{Prompt: "a small cactus", NegativePrompt: "blurry",
		Width: 12, Height: 8, Steps: 2, Count: 2, Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Images) != 2 {
		t.Fatalf("%d images, want 2", len(out.Images))
	}
	for k, im := range out.Images {
		if b := im.Image.Bounds(); b.Dx() != 12 || b.Dy() != 8 {
			t.Errorf("image %d is %v, want 12x8", k, b)
		}
		s := im.Params.String()
		if !strings.HasPrefix(s, "a small cactus\nNegative prompt: blurry\n") || !strings.Contains(s, "Sampler: DPM++ 2M") ||
			!strings.Contains(s, "Seed: "+[]string{"11", "12"}[k]) {
			t.Errorf("image %d parameters %q", k, s)
		}
	}
	if string(out.Images[0].Image.Pix) == string(out.Images[1].Image.Pix) {
		t.Error("seeds 11 and 12 gave the same image")
	}
	for _, c := range []struct {
		name string
		p    Params
		want string
	}{
		{"class labels", Params{Prompt: "x", ClassLabels: []string{"1"}}, "does not take class-labels"},
		{"LoRA tag", Params{Prompt: "x <lora:a:1>"}, "does not take lora"},
		{"guidance rescale", Params{Prompt: "x", GuidanceRescale: 0.7}, "does not take guidance rescale"},
		{"size", Params{Prompt: "x", Width: 10, Height: 8}, "multiples of 4"},
	} {
		c.p.Steps = 1
		if _, err := m.Generate(context.Background(), c.p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

// TestShardedWeights splits the text encoder's weights into two shards
// with an index, as transformers saves T5-XXL, and checks the folder
// gives the same image.
func TestShardedWeights(t *testing.T) {
	dir := writeTiny(t, "pixart-sharded", tinyPixArtFolder(t))
	p := Params{Prompt: "a cactus", Steps: 1, Seed: 2}
	want, err := openTiny(t, dir, "pixart").Generate(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	te := filepath.Join(dir, "text_encoder")
	f, err := safetensors.Open(filepath.Join(te, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	shards := [2][]safetensors.Tensor{}
	weightMap := map[string]string{}
	for i, name := range f.Names() {
		info, b, err := f.Bytes(name)
		if err != nil {
			t.Fatal(err)
		}
		k := i % 2
		shards[k] = append(shards[k], safetensors.Tensor{Name: name, DType: info.DType, Shape: info.Shape, Data: append([]byte(nil), b...)})
		weightMap[name] = fmt.Sprintf("model-%05d-of-00002.safetensors", k+1)
	}
	f.Close()
	for k, ts := range shards {
		if err := safetensors.WriteFile(filepath.Join(te, fmt.Sprintf("model-%05d-of-00002.safetensors", k+1)), ts, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeJSON(filepath.Join(te, "model.safetensors.index.json"), map[string]any{"metadata": map[string]any{}, "weight_map": weightMap}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(te, "model.safetensors")); err != nil {
		t.Fatal(err)
	}
	got, err := openTiny(t, dir, "pixart").Generate(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Images[0].Image.Pix) != string(want.Images[0].Image.Pix) {
		t.Error("sharded text encoder gives another image")
	}
	weightMap["shared.weight"] = "model-00003-of-00002.safetensors"
	if err := writeJSON(filepath.Join(te, "model.safetensors.index.json"), map[string]any{"weight_map": weightMap}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), dir, Options{}); err == nil || !strings.Contains(err.Error(), "model-00003-of-00002") {
		t.Errorf("index naming a missing shard: %v", err)
	}
}
