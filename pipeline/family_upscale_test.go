package pipeline

import (
	"context"
	"encoding/json"
	"image"
	"image/color"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tinyUpscalerFolder is a tiny ×4 upscaler folder with the reference
// case's UNet, VAE and schedulers (testdata/upscale/case.json) and a
// tiny CLIP text encoder.
func tinyUpscalerFolder(t *testing.T) RandomFolder {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "upscale", "case.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]map[string]any
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	c = map[string]map[string]any{}
	for _, k := range []string{"unet", "vae", "scheduler", "low_res_scheduler"} {
		var m map[string]any
		if err := json.Unmarshal(raw[k], &m); err != nil {
			t.Fatal(err)
		}
		delete(m, "_class_name")
		c[k] = m
	}
	te := map[string]any{"vocab_size": 49408, "hidden_size": 16, "intermediate_size": 37, "num_hidden_layers": 2,
		"num_attention_heads": 4, "max_position_embeddings": 77, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
		"bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1}
	return RandomFolder{Class: "StableDiffusionUpscalePipeline", Index: map[string]any{"max_noise_level": 350},
		Components: []RandomComponent{
			{Name: "tokenizer", Library: "transformers", Class: "CLIPTokenizer",
				Files: map[string][]byte{"special_tokens_map.json": []byte(`{"pad_token": "!"}`)}},
			{Name: "text_encoder", Library: "transformers", Class: "CLIPTextModel", Config: te},
			{Name: "unet", Library: "diffusers", Class: "UNet2DConditionModel", Config: c["unet"]},
			{Name: "vae", Library: "diffusers", Class: "AutoencoderKL", Config: c["vae"]},
			{Name: "scheduler", Library: "diffusers", Class: "DDIMScheduler", Config: c["scheduler"]},
			{Name: "low_res_scheduler", Library: "diffusers", Class: "DDPMScheduler", Config: c["low_res_scheduler"]},
		}}
}

func testImage(w, h int) image.Image {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(16 * x), uint8(16 * y), 128, 255})
		}
	}
	return img
}

func TestUpscaleFamily(t *testing.T) {
	dir := writeTiny(t, "x4-tiny", tinyUpscalerFolder(t))
	m := openTiny(t, dir, "sd-upscale")
	in := m.Info()
	if in.Steps != 75 || in.Guidance != 9 || in.Sampler != "DDIMScheduler" || in.Width != 64 {
		t.Fatalf("info %+v", in)
	}
	// The output is 4× the input; an odd side is cut to the UNet's multiple first.
	out, err := m.Generate(context.Background(), Params{Prompt: "a cat", NegativePrompt: "blurry", Steps: 2, Seed: 1,
		Count: 2, InitImage: testImage(18, 8)})
	if err != nil {
		t.Fatal(err)
	}
	for k, im := range out.Images {
		if b := im.Image.Bounds(); b.Dx() != 64 || b.Dy() != 32 {
			t.Errorf("image %d is %v, want 64x32", k, b)
		}
		if got := param(im, "Noise level"); got != "20" {
			t.Errorf("image %d: noise level %q", k, got)
		}
		if strings.Contains(im.Params.String(), "Denoising strength") {
			t.Errorf("image %d: parameters name a strength: %q", k, im.Params.String())
		}
	}
	// A given size resizes the input to a quarter of it.
	out, err = m.Generate(context.Background(), Params{Prompt: "a cat", Steps: 1, Width: 32, Height: 32, NoiseLevel: 50,
		InitImage: testImage(16, 16)})
	if err != nil {
		t.Fatal(err)
	}
	if b := out.Images[0].Image.Bounds(); b.Dx() != 32 || b.Dy() != 32 {
		t.Errorf("image is %v, want 32x32", b)
	}
	for _, c := range []struct {
		name string
		p    Params
		want string
	}{
		{"no image", Params{}, "needs an image to upscale"},
		{"strength", Params{InitImage: testImage(16, 16), Strength: 0.5}, "takes no strength"},
		{"mask", Params{InitImage: testImage(16, 16), Mask: testImage(16, 16)}, "takes no mask"},
		{"tiny image", Params{InitImage: testImage(2, 2)}, "at least 4x4"},
		{"size", Params{InitImage: testImage(16, 16), Width: 40, Height: 40}, "multiples of 16"},
		{"noise level", Params{InitImage: testImage(16, 16), NoiseLevel: 351}, "max_noise_level"},
		{"noise level past the class table", Params{InitImage: testImage(16, 16), NoiseLevel: 100}, "class embeddings"},
		{"LoRA", Params{InitImage: testImage(16, 16), LoRAs: []LoRA{{Path: "x", Weight: 1}}}, "does not take lora"},
	} {
		c.p.Prompt, c.p.Steps = "x", 1
		if _, err := m.Generate(context.Background(), c.p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

// TestIFStageIII runs IF stage I → II → the ×4 upscaler.
func TestIFStageIII(t *testing.T) {
	stage1, stage2 := writeTinyIF(t)
	stage3 := writeTiny(t, "x4-tiny", tinyUpscalerFolder(t))
	m := openTiny(t, stage1, "if")
	out, err := m.Generate(context.Background(), Params{Prompt: "a corgi", Steps: 1, Seed: 2,
		Stages: []Stage{{Path: stage2, Steps: 1}, {Path: stage3, Steps: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	if b := out.Images[0].Image.Bounds(); b.Dx() != 128 || b.Dy() != 128 {
		t.Fatalf("image is %v, want 128x128 (8 × 4 × 4)", b)
	}
	if got := param(out.Images[0], "Stage 3"); got != "x4-tiny, 2 steps, CFG 9, noise level 20" {
		t.Errorf("Stage 3 %q", got)
	}
	_, err = m.Generate(context.Background(), Params{Prompt: "a corgi", Steps: 1, Stages: []Stage{{Path: stage3}, {Path: stage2}}})
	if err == nil || !strings.Contains(err.Error(), "right after stage I") {
		t.Errorf("stage II after the upscaler: %v", err)
	}
}
