package pipeline

import (
	"context"
	"strings"
	"testing"
)

// TestSD2Folder writes a tiny SD 2.x-style folder (gelu CLIP, linear
// projections, per-block head counts, v-prediction, "!" padding) with the
// random-folder writer and generates through the front door.
func TestSD2Folder(t *testing.T) {
	te := map[string]any{"model_type": "clip_text_model", "vocab_size": 49408, "hidden_size": 32, "intermediate_size": 37,
		"num_hidden_layers": 3, "num_attention_heads": 4, "max_position_embeddings": 77, "hidden_act": "gelu",
		"layer_norm_eps": 1e-5, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1}
	u := map[string]any{"sample_size": 4, "in_channels": 4, "out_channels": 4,
		"down_block_types": []string{"CrossAttnDownBlock2D", "DownBlock2D"}, "up_block_types": []string{"UpBlock2D", "CrossAttnUpBlock2D"},
		"block_out_channels": []int{16, 32}, "layers_per_block": 1, "cross_attention_dim": 32, "attention_head_dim": []int{2, 4},
		"use_linear_projection": true, "norm_num_groups": 8, "upcast_attention": true}
	sched := map[string]any{"beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": false,
		"prediction_type": "v_prediction", "set_alpha_to_one": false, "steps_offset": 1}
	tok := map[string][]byte{"special_tokens_map.json": []byte(`{"pad_token": "!"}`)}
	m := openTiny(t, writeTiny(t, "sd2-tiny", SDFolder(te, u, tinyVAE(), "DDIMScheduler", sched, tok)), "sd")
	if in := m.Info(); in.Kind != "SD 2.x" || in.Width != 8 {
		t.Fatalf("info %+v: want SD 2.x at 8x8 (sample size 4 × VAE factor 2)", in)
	}
	out, err := m.Generate(context.Background(), Params{Prompt: "a photo of a cat", Steps: 2, Seed: 1, Sampler: "ddim"})
	if err != nil {
		t.Fatal(err)
	}
	im := out.Images[0]
	if b := im.Image.Bounds(); b.Dx() != 8 || b.Dy() != 8 || !strings.Contains(im.Params.String(), "Sampler: DDIM") {
		t.Errorf("image %v, parameters %q", b, im.Params.String())
	}
}
