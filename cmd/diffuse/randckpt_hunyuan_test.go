package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/tensor"
	berttok "github.com/diffuse-go/diffuse/tokenizer/bert"
	t5tok "github.com/diffuse-go/diffuse/tokenizer/t5"
)

// tinyHunyuan are the real configs shrunk to a model that runs in a test.
func tinyHunyuan() hunyuanConfigs {
	c := hunyuanV12()
	set := func(m map[string]any, kv ...any) {
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
	}
	set(c.TextEncoder, "vocab_size", 256, "hidden_size", 16, "num_hidden_layers", 1, "num_attention_heads", 2,
		"intermediate_size", 32, "max_position_embeddings", 80)
	set(c.TextEncoder2, "vocab_size", 300, "d_model", 16, "d_kv", 8, "d_ff", 32, "num_layers", 1, "num_heads", 2)
	set(c.Transformer, "attention_head_dim", 8, "num_attention_heads", 2, "hidden_size", 16, "num_layers", 2,
		"cross_attention_dim", 16, "cross_attention_dim_t5", 16, "pooled_projection_dim", 16, "sample_size", 8, "mlp_ratio", 2.0)
	set(c.VAE, "block_out_channels", []int{8, 8, 8, 8}, "norm_num_groups", 4, "layers_per_block", 1)
	return c
}

// The writer's folder opens through the front door and generates an image
// of the asked size with A1111 metadata.
func TestRandomHunyuanFolderGenerates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hunyuan-tiny")
	if err := writeRandomHunyuan(dir, tinyHunyuan(), 1, tensor.F16); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"model_index.json", "tokenizer/vocab.txt", "tokenizer_2/spiece.model", "text_encoder/model.safetensors",
		"text_encoder_2/model.safetensors", "transformer/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	m, err := pipeline.Open(context.Background(), dir, pipeline.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	in := m.Info()
	if in.Family != "hunyuan" || in.Steps != 50 || in.Guidance != 5 || in.Width != 64 || in.Sampler != "DDPMScheduler" {
		t.Errorf("info %+v", in)
	}
	out, err := m.Generate(context.Background(), pipeline.Params{Prompt: "a red cat", NegativePrompt: "blurry",
		Width: 64, Height: 48, NoResolutionBinning: true, Steps: 2, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Images) != 1 {
		t.Fatalf("%d images", len(out.Images))
	}
	im := out.Images[0]
	if b := im.Image.Bounds(); b.Dx() != 64 || b.Dy() != 48 {
		t.Errorf("image %v, want 64x48", b)
	}
	reds := map[uint8]bool{}
	for i := 0; i < len(im.Image.Pix); i += 4 {
		reds[im.Image.Pix[i]] = true
	}
	if len(reds) < 2 {
		t.Error("the image is one flat colour")
	}
	text := im.Params.String()
	for _, want := range []string{"a red cat\nNegative prompt: blurry", "Steps: 2", "Sampler: ddpm", "CFG scale: 5", "Seed: 7",
		"Size: 64x48", "Model: hunyuan-tiny"} {
		if !strings.Contains(text, want) {
			t.Errorf("metadata %q lacks %q", text, want)
		}
	}
}

// The stand-in tokenizers load and split common prompts into pieces
// that are not all unknown.
func TestStandInTokenizers(t *testing.T) {
	bt, err := berttok.New(strings.NewReader(string(standInVocab())), berttok.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	ids, _ := bt.Encode("A photo of a Cat, at night!", 16)
	if slices.Contains(ids[1:8], int64(bt.UnkID())) {
		t.Errorf("BERT stand-in: unknown tokens in %v", ids)
	}
	st, err := t5tok.New(standInSentencePiece(), t5tok.Options{ExtraIDs: -1})
	if err != nil {
		t.Fatal(err)
	}
	if st.PadID() != 0 || st.EOSID() != 1 || st.UnkID() != 2 {
		t.Errorf("SentencePiece stand-in: pad %d eos %d unk %d, want mT5's 0 1 2", st.PadID(), st.EOSID(), st.UnkID())
	}
	pieces := st.Pieces("a photo of a cat, at night!")
	if !slices.Contains(pieces, "▁photo") || !slices.Contains(pieces, "▁cat") {
		t.Errorf("SentencePiece stand-in pieces %q", pieces)
	}
	if v := hunyuanV12(); st.VocabSize() > v.TextEncoder2["vocab_size"].(int) || bt.VocabSize() > v.TextEncoder["vocab_size"].(int) {
		t.Errorf("stand-in vocabularies (%d, %d) exceed the encoders'", bt.VocabSize(), st.VocabSize())
	}
}
