package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/safetensors"
)

// tinyHunyuanFolder is a HunyuanDiTPipeline folder small enough to run in
// a test, with the repository's test vocabularies. withMeta sets
// use_style_cond_and_image_meta_size (v1.1 and earlier).
func tinyHunyuanFolder(t *testing.T, withMeta bool) RandomFolder {
	t.Helper()
	vocab, err := os.ReadFile(filepath.Join("..", "tokenizer", "bert", "testdata", "bert_tiny_vocab.txt"))
	if err != nil {
		t.Fatal(err)
	}
	spiece, err := os.ReadFile(filepath.Join("..", "tokenizer", "t5", "testdata", "t5_test_sentencepiece.model"))
	if err != nil {
		t.Fatal(err)
	}
	te := map[string]any{"vocab_size": 256, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
		"intermediate_size": 32, "max_position_embeddings": 80}
	te2 := map[string]any{"vocab_size": 32200, "d_model": 16, "d_kv": 8, "d_ff": 32, "num_layers": 1, "num_heads": 2,
		"feed_forward_proj": "gated-gelu"}
	tr := map[string]any{"num_attention_heads": 2, "attention_head_dim": 8, "hidden_size": 16, "in_channels": 4,
		"patch_size": 2, "num_layers": 2, "mlp_ratio": 2.0, "learn_sigma": true, "cross_attention_dim": 16,
		"cross_attention_dim_t5": 16, "pooled_projection_dim": 16, "sample_size": 8, "text_len": 77, "text_len_t5": 256,
		"use_style_cond_and_image_meta_size": withMeta}
	v := tinyVAE()
	v["down_block_types"] = []string{"DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"}
	v["up_block_types"] = []string{"UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"}
	v["block_out_channels"] = []int{8, 8, 8, 8}
	sched := map[string]any{"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.03,
		"prediction_type": "v_prediction", "variance_type": "fixed_small", "steps_offset": 1, "timestep_spacing": "leading"}
	return HunyuanFolder(te, te2, tr, v, sched, vocab, spiece)
}

// addBuffers rewrites a transformers weight file with the buffers older
// transformers saved beside the weights.
func addBuffers(t *testing.T, path string, names ...string) {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Tensor
	for _, n := range f.Names() {
		info, b, err := f.Bytes(n)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, safetensors.Tensor{Name: n, DType: info.DType, Shape: info.Shape, Data: bytes.Clone(b)})
	}
	f.Close()
	for _, n := range names {
		ts = append(ts, safetensors.I64Tensor(n, []int{1, 80}, make([]int64, 80)))
	}
	if err := safetensors.WriteFile(path, ts, nil); err != nil {
		t.Fatal(err)
	}
}

func TestHunyuanFamilyGenerates(t *testing.T) {
	dir := writeTiny(t, "hunyuan-tiny", tinyHunyuanFolder(t, true))
	addBuffers(t, filepath.Join(dir, "text_encoder", "model.safetensors"), "embeddings.position_ids", "embeddings.token_type_ids")
	m := openTiny(t, dir, "hunyuan")
	in := m.Info()
	if in.Width != 64 || in.Height != 64 || in.Steps != 50 || in.Guidance != 5 || in.Sampler != "DDPMScheduler" ||
		!in.accepts("size-conditioning") {
		t.Errorf("info %+v", in)
	}
	gen := func(p Params) Image {
		t.Helper()
		p.Prompt, p.Steps, p.Seed, p.NoResolutionBinning = "a cat", 2, 3, true
		out, err := m.Generate(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Images) != 1 {
			t.Fatalf("%d images", len(out.Images))
		}
		return out.Images[0]
	}
	// 72 is rounded down to 64, as the pipeline does.
	plain := gen(Params{Width: 72, Height: 48, GuidanceRescale: 0.5})
	if b := plain.Image.Bounds(); b.Dx() != 64 || b.Dy() != 48 {
		t.Errorf("image %v, want 64x48", b)
	}
	if s := plain.Params.String(); !strings.Contains(s, "Size: 64x48") || !strings.Contains(s, "Guidance rescale: 0.5") {
		t.Errorf("metadata %q", s)
	}
	sized := gen(Params{Width: 64, Height: 48, GuidanceRescale: 0.5, OriginalSize: &Size{512, 512}, CropsTopLeft: &Size{8, 0}})
	if bytes.Equal(plain.Image.Pix, sized.Image.Pix) {
		t.Error("size conditioning did not change the image")
	}
	if again := gen(Params{Width: 64, Height: 48, GuidanceRescale: 0.5}); !bytes.Equal(plain.Image.Pix, again.Image.Pix) {
		t.Error("the same request gave another image")
	}
}

// Without NoResolutionBinning a size Hunyuan-DiT was not trained at
// becomes the closest trained one, and the image has that size.
func TestHunyuanFamilyBinsSizes(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes a 1024x768 image")
	}
	m := openTiny(t, writeTiny(t, "hunyuan-tiny", tinyHunyuanFolder(t, false)), "hunyuan")
	out, err := m.Generate(context.Background(), Params{Prompt: "a cat", Width: 200, Height: 160, Steps: 1, Guidance: 1})
	if err != nil {
		t.Fatal(err)
	}
	im := out.Images[0]
	if b := im.Image.Bounds(); b.Dx() != 1024 || b.Dy() != 768 || im.Params.Width != 1024 || im.Params.Height != 768 {
		t.Errorf("binned image %v, metadata %dx%d; want 1024x768", b, im.Params.Width, im.Params.Height)
	}
}

func TestHunyuanFamilyRefuses(t *testing.T) {
	m := openTiny(t, writeTiny(t, "hunyuan-tiny", tinyHunyuanFolder(t, false)), "hunyuan")
	for _, c := range []struct {
		name string
		p    Params
		want string
	}{
		{"sizes v1.2 ignores", Params{OriginalSize: &Size{512, 512}}, "size conditioning"},
		{"negative sizes", Params{NegativeTargetSize: &Size{512, 512}}, "negative sizes"},
		{"clip skip", Params{ClipSkip: 2}, "clip skip"},
		{"second prompt", Params{Prompt2: "x"}, "second prompts"},
		{"lora", Params{LoRAs: []LoRA{{Path: "x.safetensors", Weight: 1}}}, "lora"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.p.Prompt = "a cat"
			if _, err := m.Generate(context.Background(), c.p); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one naming %q", err, c.want)
			}
		})
	}
}

// A folder whose parts do not fit together fails at open, naming them.
func TestHunyuanFamilyMismatchedParts(t *testing.T) {
	f := tinyHunyuanFolder(t, false)
	for i := range f.Components {
		if f.Components[i].Name == "text_encoder" {
			f.Components[i].Config["hidden_size"] = 32
		}
	}
	_, err := Open(context.Background(), writeTiny(t, "hunyuan-bad", f), Options{})
	if err == nil || !strings.Contains(err.Error(), "cross_attention_dim") {
		t.Errorf("error %v, want one naming cross_attention_dim", err)
	}
}

// shardWeights splits a component's model.safetensors into two shards
// with the index save_pretrained writes, as Tencent's text_encoder_2 is.
func shardWeights(t *testing.T, dir string) {
	t.Helper()
	path := filepath.Join(dir, "model.safetensors")
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	shards := [2][]safetensors.Tensor{}
	index := map[string]string{}
	for i, n := range f.Names() {
		info, b, err := f.Bytes(n)
		if err != nil {
			t.Fatal(err)
		}
		shards[i%2] = append(shards[i%2], safetensors.Tensor{Name: n, DType: info.DType, Shape: info.Shape, Data: bytes.Clone(b)})
		index[n] = fmt.Sprintf("model-%05d-of-00002.safetensors", i%2+1)
	}
	f.Close()
	for i, ts := range shards {
		if err := safetensors.WriteFile(filepath.Join(dir, fmt.Sprintf("model-%05d-of-00002.safetensors", i+1)), ts, nil); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(map[string]any{"metadata": map[string]any{"total_size": 0}, "weight_map": index})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// A sharded text encoder loads from its shards and gives the same image.
func TestHunyuanFamilyShardedTextEncoder(t *testing.T) {
	gen := func(dir string) []byte {
		m := openTiny(t, dir, "hunyuan")
		out, err := m.Generate(context.Background(), Params{Prompt: "a cat", Width: 32, Height: 32, NoResolutionBinning: true, Steps: 1})
		if err != nil {
			t.Fatal(err)
		}
		return out.Images[0].Image.Pix
	}
	whole := writeTiny(t, "hunyuan-tiny", tinyHunyuanFolder(t, false))
	want := gen(whole)
	sharded := writeTiny(t, "hunyuan-sharded", tinyHunyuanFolder(t, false))
	shardWeights(t, filepath.Join(sharded, "text_encoder_2"))
	if !bytes.Equal(gen(sharded), want) {
		t.Error("the sharded folder gave another image")
	}
	// An index naming a tensor its shard lacks is refused by name.
	idx := filepath.Join(sharded, "text_encoder_2", "model.safetensors.index.json")
	b, err := os.ReadFile(idx)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte(`"weight_map":{`), []byte(`"weight_map":{"encoder.ghost.weight":"model-00001-of-00002.safetensors",`), 1)
	if err := os.WriteFile(idx, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), sharded, Options{}); err == nil || !strings.Contains(err.Error(), "encoder.ghost.weight") {
		t.Errorf("error %v, want one naming the missing tensor", err)
	}
}

// A WordPiece vocabulary larger than the BERT table is refused at open.
func TestHunyuanFamilyVocabTooLarge(t *testing.T) {
	f := tinyHunyuanFolder(t, false)
	for i := range f.Components {
		if f.Components[i].Name == "text_encoder" {
			f.Components[i].Config["vocab_size"] = 100
		}
	}
	_, err := Open(context.Background(), writeTiny(t, "hunyuan-bad", f), Options{})
	if err == nil || !strings.Contains(err.Error(), "vocab_size is 100") {
		t.Errorf("error %v, want one naming the vocabulary sizes", err)
	}
}
