package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/tensor"
)

// The real-size diffusers folders random-checkpoint writes, with their
// configs as the published checkpoints hold them (the fields our models
// read; the rest take the classes' defaults).

// sdVAE is the Stable Diffusion VAE (also DiT's and PixArt's) at sample size.
func sdVAE(sample int) map[string]any {
	return map[string]any{"in_channels": 3, "out_channels": 3, "latent_channels": 4, "act_fn": "silu",
		"down_block_types":   []string{"DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"},
		"up_block_types":     []string{"UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"},
		"block_out_channels": []int{128, 256, 512, 512}, "layers_per_block": 2, "norm_num_groups": 32,
		"sample_size": sample, "scaling_factor": 0.18215}
}

// t5XXL is google/t5-v1_1-xxl's encoder config, PixArt-α's and IF's text
// encoder: 4.76 B parameters, 9.5 GB in f16.
func t5XXL() map[string]any {
	return map[string]any{"model_type": "t5", "vocab_size": 32128, "d_model": 4096, "d_kv": 64, "d_ff": 10240,
		"num_layers": 24, "num_decoder_layers": 24, "num_heads": 64, "relative_attention_num_buckets": 32,
		"relative_attention_max_distance": 128, "layer_norm_epsilon": 1e-6, "feed_forward_proj": "gated-gelu",
		"dense_act_fn": "gelu_new", "is_gated_act": true, "tie_word_embeddings": false, "torch_dtype": "float16"}
}

// jsonMap decodes one of the pipeline's scheduler config constants.
func jsonMap(s string) map[string]any {
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		panic("randfolders: bad built-in config: " + err.Error()) // a constant of this program
	}
	delete(m, "_class_name")
	return m
}

// ditXL2 is facebook/DiT-XL-2-256: 28 blocks of 1152 (16 heads of 72).
// Its id2label table (the ImageNet names) is not written: labels are ids.
func ditXL2() pipeline.RandomFolder {
	tr := map[string]any{"num_attention_heads": 16, "attention_head_dim": 72, "in_channels": 4, "out_channels": 8,
		"num_layers": 28, "attention_bias": true, "sample_size": 32, "patch_size": 2, "activation_fn": "gelu-approximate",
		"num_embeds_ada_norm": 1000, "upcast_attention": false, "norm_type": "ada_norm_zero",
		"norm_elementwise_affine": false, "norm_eps": 1e-5}
	return pipeline.DiTFolder(tr, sdVAE(256), jsonMap(pipeline.DiTSchedulerConfig), nil)
}

// pixartXL2 is PixArt-alpha/PixArt-XL-2-1024-MS with T5-XXL.
func pixartXL2(spiece []byte) pipeline.RandomFolder {
	tr := map[string]any{"num_attention_heads": 16, "attention_head_dim": 72, "in_channels": 4, "out_channels": 8,
		"num_layers": 28, "cross_attention_dim": 1152, "attention_bias": true, "sample_size": 128, "patch_size": 2,
		"activation_fn": "gelu-approximate", "num_embeds_ada_norm": 1000, "upcast_attention": false,
		"norm_type": "ada_norm_single", "norm_elementwise_affine": false, "norm_eps": 1e-6, "caption_channels": 4096,
		"interpolation_scale": nil, "use_additional_conditions": nil}
	return pipeline.PixArtFolder(t5XXL(), tr, sdVAE(1024), jsonMap(pipeline.PixArtSchedulerConfig), spiece)
}

// ifUNet holds what DeepFloyd's IF UNets share.
func ifUNet() map[string]any {
	return map[string]any{"act_fn": "gelu", "addition_embed_type": "text", "addition_embed_type_num_heads": 64,
		"attention_head_dim": 64, "center_input_sample": false, "conv_in_kernel": 3, "conv_out_kernel": 3,
		"cross_attention_norm": "group_norm", "downsample_padding": 1, "dual_cross_attention": false,
		"encoder_hid_dim": 4096, "encoder_hid_dim_type": "text_proj", "flip_sin_to_cos": true, "freq_shift": 0,
		"mid_block_type": "UNetMidBlock2DSimpleCrossAttn", "norm_eps": 1e-5, "norm_num_groups": 32,
		"out_channels": 6, "resnet_time_scale_shift": "scale_shift", "time_embedding_type": "positional",
		"upcast_attention": false, "use_linear_projection": false}
}

// ifIXL is DeepFloyd/IF-I-XL-v1.0 (4.3 B UNet, 64²) with T5-XXL.
func ifIXL(spiece []byte) pipeline.RandomFolder {
	u := ifUNet()
	for k, v := range map[string]any{"block_out_channels": []int{704, 1408, 2112, 2816}, "cross_attention_dim": 2816,
		"down_block_types": []string{"ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D"},
		"up_block_types":   []string{"SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"},
		"in_channels":      3, "layers_per_block": 3, "mid_block_scale_factor": 1, "only_cross_attention": false,
		"resnet_out_scale_factor": 1.0, "resnet_skip_time_act": false, "sample_size": 64} {
		u[k] = v
	}
	return pipeline.IFFolder(t5XXL(), u, jsonMap(pipeline.IFSchedulerConfig), spiece)
}

// ifIIL is DeepFloyd/IF-II-L-v1.0 (1.2 B UNet, 64² → 256²).
func ifIIL(spiece []byte) pipeline.RandomFolder {
	u := ifUNet()
	for k, v := range map[string]any{"block_out_channels": []int{160, 320, 640, 960, 1280}, "cross_attention_dim": 1280,
		"class_embed_type": "timestep",
		"down_block_types": []string{"ResnetDownsampleBlock2D", "ResnetDownsampleBlock2D", "ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D"},
		"up_block_types":   []string{"SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D", "ResnetUpsampleBlock2D", "ResnetUpsampleBlock2D"},
		"in_channels":      6, "layers_per_block": []int{2, 2, 3, 5, 5}, "mid_block_scale_factor": 1 / 0.7071,
		"only_cross_attention": false, "resnet_out_scale_factor": 1 / 0.7071, "resnet_skip_time_act": true,
		"sample_size": 256, "time_embedding_act_fn": "gelu", "time_embedding_dim": 1280} {
		u[k] = v
	}
	sched := jsonMap(pipeline.IFSchedulerConfig)
	sched["sample_max_value"] = 1.0
	return pipeline.IFSuperResFolder(u, sched, map[string]any{"beta_schedule": "squaredcos_cap_v2"}, spiece)
}

// sd21 is stabilityai/stable-diffusion-2-1 (768², v-prediction) with the
// OpenCLIP ViT-H text encoder as diffusers ships it (23 of its 24 layers).
func sd21() pipeline.RandomFolder {
	te := map[string]any{"model_type": "clip_text_model", "vocab_size": 49408, "hidden_size": 1024, "intermediate_size": 4096,
		"num_hidden_layers": 23, "num_attention_heads": 16, "max_position_embeddings": 77, "hidden_act": "gelu",
		"layer_norm_eps": 1e-5, "projection_dim": 512, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "torch_dtype": "float16"}
	u := map[string]any{"act_fn": "silu", "attention_head_dim": []int{5, 10, 20, 20}, "block_out_channels": []int{320, 640, 1280, 1280},
		"center_input_sample": false, "cross_attention_dim": 1024,
		"down_block_types":   []string{"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"},
		"up_block_types":     []string{"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"},
		"downsample_padding": 1, "dual_cross_attention": false, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4,
		"layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-5, "norm_num_groups": 32, "out_channels": 4,
		"sample_size": 96, "upcast_attention": true, "use_linear_projection": true}
	sched := map[string]any{"beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": false,
		"num_train_timesteps": 1000, "prediction_type": "v_prediction", "set_alpha_to_one": false, "skip_prk_steps": true,
		"steps_offset": 1, "trained_betas": nil}
	tok := map[string][]byte{
		"special_tokens_map.json": []byte(`{"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "!", "unk_token": "<|endoftext|>"}` + "\n"),
		"tokenizer_config.json":   []byte(`{"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": true, "pad_token": "!"}` + "\n"),
	}
	return pipeline.SDFolder(te, u, sdVAE(768), "DDIMScheduler", sched, tok)
}

// writeRandomFolders writes kind's folder(s) under out and says how to
// use them.
func writeRandomFolders(kind, out, spiecePath string, seed uint64, dt tensor.DType) error {
	var spiece []byte
	if kind == "pixart" || kind == "if" {
		var err error
		if spiece, err = os.ReadFile(spiecePath); err != nil {
			return fmt.Errorf("random-checkpoint: --spiece: %w (give a T5 spiece.model, or run from the source tree for tokenizer/t5/testdata/t5_test_sentencepiece.model)", err)
		}
		fmt.Printf("note: tokenizer/spiece.model is %s; the T5 test SentencePiece model (1000 pieces) stands in for T5's real one (32000), so prompts tokenize differently\n", spiecePath)
	}
	switch kind {
	case "dit":
		return pipeline.WriteRandomFolder(out, ditXL2(), seed, dt)
	case "pixart":
		return pipeline.WriteRandomFolder(out, pixartXL2(spiece), seed, dt)
	case "sd2":
		fmt.Println("note: tokenizer/ holds special_tokens_map.json and tokenizer_config.json only (diffuse has CLIP's vocabulary built in)")
		return pipeline.WriteRandomFolder(out, sd21(), seed, dt)
	case "if":
		s1, s2 := filepath.Join(out, "IF-I-XL-v1.0"), filepath.Join(out, "IF-II-L-v1.0")
		if err := pipeline.WriteRandomFolder(s1, ifIXL(spiece), seed, dt); err != nil {
			return err
		}
		if err := pipeline.WriteRandomFolder(s2, ifIIL(spiece), seed+100, dt); err != nil {
			return err
		}
		fmt.Printf("stage I: %s; stage II: %s (give it as a later stage: Params.Stages)\n", s1, s2)
		return nil
	}
	return fmt.Errorf("random-checkpoint: unknown folder kind %q", kind)
}
