package pipeline

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// tinyIFUNet is a two-level IF UNet config (the if_superres_unet golden
// case's shapes): stage I (3 → 6 channels, text pooling) or stage II
// (6 → 6, the noise level as class label).
func tinyIFUNet(stage2 bool, size int) map[string]any {
	u := map[string]any{"sample_size": size, "in_channels": 3, "out_channels": 6,
		"down_block_types":   []string{"ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"},
		"mid_block_type":     "UNetMidBlock2DSimpleCrossAttn",
		"up_block_types":     []string{"SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"},
		"block_out_channels": []int{16, 32}, "layers_per_block": 1, "mid_block_scale_factor": 1.4142271248762552,
		"act_fn": "gelu", "norm_num_groups": 8, "cross_attention_dim": 64, "encoder_hid_dim": 32,
		"encoder_hid_dim_type": "text_proj", "attention_head_dim": 8, "addition_embed_type": "text",
		"resnet_time_scale_shift": "scale_shift", "resnet_skip_time_act": true, "resnet_out_scale_factor": 1.4142271248762552,
		"time_embedding_act_fn": "gelu", "cross_attention_norm": "group_norm", "addition_embed_type_num_heads": 2}
	if stage2 {
		u["in_channels"], u["class_embed_type"], u["time_embedding_dim"], u["only_cross_attention"] = 6, "timestep", 32, true
		u["layers_per_block"] = []int{1, 2}
	}
	return u
}

// ifSched is convert_if.py's DDPM scheduler with sample_max_value max.
func ifSched(max float64) map[string]any {
	return map[string]any{"variance_type": "learned_range", "beta_schedule": "squaredcos_cap_v2", "prediction_type": "epsilon",
		"thresholding": true, "dynamic_thresholding_ratio": 0.95, "sample_max_value": max}
}

// writeTinyIF writes a tiny IF stage I folder and a stage II folder beside it.
func writeTinyIF(t *testing.T) (stage1, stage2 string) {
	t.Helper()
	spiece := testSpiece(t)
	stage1 = writeTiny(t, "IF-I-tiny", IFFolder(tinyT5(), tinyIFUNet(false, 8), ifSched(1.5), spiece))
	stage2 = writeTiny(t, "IF-II-tiny", IFSuperResFolder(tinyIFUNet(true, 32), ifSched(1),
		map[string]any{"beta_schedule": "squaredcos_cap_v2"}, spiece))
	return stage1, stage2
}

func TestIFFamily(t *testing.T) {
	stage1, stage2 := writeTinyIF(t)
	m := openTiny(t, stage1, "if")
	in := m.Info()
	if in.Width != 8 || in.Sampler != "DDPMScheduler" || in.Steps != 100 || in.Guidance != 7 {
		t.Fatalf("info %+v", in)
	}
	// Stage I alone: its own size.
	out, err := m.Generate(context.Background(), Params{Prompt: "a corgi", Steps: 2, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if b := out.Images[0].Image.Bounds(); b.Dx() != 8 || b.Dy() != 8 {
		t.Fatalf("stage I image is %v, want 8x8", b)
	}
	// With stage II: 4× larger (its sample size 32 over stage I's 8), by default.
	out, err = m.Generate(context.Background(), Params{Prompt: "a corgi", NegativePrompt: "blurry", Steps: 2, Seed: 3,
		Count: 2, Stages: []Stage{{Path: stage2}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Images) != 2 {
		t.Fatalf("%d images, want 2", len(out.Images))
	}
	for k, im := range out.Images {
		if b := im.Image.Bounds(); b.Dx() != 32 || b.Dy() != 32 {
			t.Errorf("image %d is %v, want 32x32", k, b)
		}
		if got := param(im, "Stage 2"); got != "IF-II-tiny, 50 steps, CFG 4, noise level 250" {
			t.Errorf("image %d: Stage 2 %q", k, got)
		}
		if s := im.Params.String(); !strings.Contains(s, "Size: 32x32") || !strings.Contains(s, "Sampler: ddpm") {
			t.Errorf("image %d parameters %q", k, s)
		}
	}
	// A non-square size is stage I's size × 4; stage I without guidance
	// still gives stage II its negative states.
	// Stage settings given override the stage's defaults.
	out, err = m.Generate(context.Background(), Params{Prompt: "a corgi", Guidance: 1, Width: 64, Height: 32, Steps: 1,
		Stages: []Stage{{Path: stage2, Steps: 2, NoiseLevel: 100}}})
	if err != nil {
		t.Fatal(err)
	}
	if b := out.Images[0].Image.Bounds(); b.Dx() != 64 || b.Dy() != 32 {
		t.Errorf("image is %v, want 64x32", b)
	}
	if got := param(out.Images[0], "Stage 2"); got != "IF-II-tiny, 2 steps, CFG 4, noise level 100" {
		t.Errorf("Stage 2 %q", got)
	}
}

func TestIFRefuses(t *testing.T) {
	stage1, stage2 := writeTinyIF(t)
	m := openTiny(t, stage1, "if")
	dit := writeTiny(t, "dit", tinyDiTFolder(nil))
	for _, c := range []struct {
		name string
		p    Params
		want string
	}{
		{"LoRA", Params{LoRAs: []LoRA{{Path: "x", Weight: 1}}}, "does not take lora"},
		{"class labels", Params{ClassLabels: []string{"1"}}, "does not take class-labels"},
		{"clip skip", Params{ClipSkip: 2}, "does not take clip skip"},
		{"stage I as stage II", Params{Stages: []Stage{{Path: stage1}}}, "not a DeepFloyd IF stage II folder"},
		{"another family", Params{Stages: []Stage{{Path: dit}}}, `"DiTPipeline"`},
		{"missing", Params{Stages: []Stage{{Path: filepath.Join(t.TempDir(), "none")}}}, "no such file"},
		{"upscaler", Params{Stages: []Stage{{Path: stage2}, {Path: stage2}}}, "×4 upscaler stage is not supported"},
		{"noise level", Params{Stages: []Stage{{Path: stage2, NoiseLevel: 1000}}}, "out of range"},
		{"size", Params{Stages: []Stage{{Path: stage2}}, Width: 36, Height: 36}, "multiples of 8"},
	} {
		c.p.Prompt, c.p.Steps = "x", 1
		if _, err := m.Generate(context.Background(), c.p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
	if _, err := Open(context.Background(), stage2, Options{}); err == nil || !strings.Contains(err.Error(), "open the stage I folder") {
		t.Errorf("opening stage II alone: %v", err)
	}
}
