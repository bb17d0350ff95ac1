package pipeline

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/tensor"
)

// tinyVAE is a two-block VAE config (factor 2), small enough to decode in
// milliseconds.
func tinyVAE() map[string]any {
	return map[string]any{"in_channels": 3, "out_channels": 3, "latent_channels": 4,
		"down_block_types":   []string{"DownEncoderBlock2D", "DownEncoderBlock2D"},
		"up_block_types":     []string{"UpDecoderBlock2D", "UpDecoderBlock2D"},
		"block_out_channels": []int{8, 8}, "layers_per_block": 1, "norm_num_groups": 4, "scaling_factor": 0.18215}
}

// writeTiny writes f with random weights into a temporary folder named name.
func writeTiny(t *testing.T, name string, f RandomFolder) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := WriteRandomFolder(dir, f, 1, tensor.F16); err != nil {
		t.Fatal(err)
	}
	return dir
}

func tinyDiTFolder(id2label map[string]string) RandomFolder {
	tr := map[string]any{"num_attention_heads": 2, "attention_head_dim": 8, "in_channels": 4, "out_channels": 8,
		"num_layers": 2, "sample_size": 4, "patch_size": 2, "num_embeds_ada_norm": 10, "norm_type": "ada_norm_zero"}
	sched := map[string]any{"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02, "clip_sample": false,
		"set_alpha_to_one": true, "steps_offset": 0}
	return DiTFolder(tr, tinyVAE(), sched, id2label)
}

// openTiny opens dir through the front door and checks the family found.
func openTiny(t *testing.T, dir, family string) Model {
	t.Helper()
	m, err := Open(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if got := m.Info().Family; got != family {
		t.Fatalf("opened as family %q, want %q", got, family)
	}
	return m
}

// param is the value of key in an image's A1111 extra parameters.
func param(im Image, key string) string {
	for _, kv := range im.Params.Extra {
		if kv.Key == key {
			return kv.Value
		}
	}
	return ""
}

func TestDiTFamily(t *testing.T) {
	dir := writeTiny(t, "dit-tiny", tinyDiTFolder(map[string]string{"3": "tabby, tabby cat", "7": "cock"}))
	m := openTiny(t, dir, "dit")
	in := m.Info()
	if in.Width != 8 || in.Height != 8 || in.Sampler != "DDIMScheduler" || in.Labels["tabby cat"] != 3 {
		t.Fatalf("info %+v: want 8x8 (sample size 4 × VAE factor 2), DDIMScheduler, labels from id2label", in)
	}
	out, err := m.Generate(context.Background(), Params{Prompt: "Tabby cat, 7", Count: 2, Steps: 2, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Images) != 4 {
		t.Fatalf("%d images, want 2 labels × 2", len(out.Images))
	}
	for k, im := range out.Images {
		if b := im.Image.Bounds(); b.Dx() != 8 || b.Dy() != 8 {
			t.Errorf("image %d is %v, want 8x8", k, b)
		}
		if im.Seed != 5+int64(k) {
			t.Errorf("image %d seed %d, want %d", k, im.Seed, 5+k)
		}
		wantLabel, wantPrompt := "3", "Tabby cat"
		if k >= 2 {
			wantLabel, wantPrompt = "7", "7"
		}
		if got := param(im, "Class label"); got != wantLabel || im.Params.Prompt != wantPrompt {
			t.Errorf("image %d: class label %q, prompt %q; want %q, %q", k, got, im.Params.Prompt, wantLabel, wantPrompt)
		}
		if s := im.Params.String(); !strings.Contains(s, "Sampler: DDIM") || !strings.HasSuffix(s, "Version: diffuse "+Version) {
			t.Errorf("image %d parameters %q", k, s)
		}
	}
	// The same seed and label give the same image, whatever else is in the batch.
	again, err := m.Generate(context.Background(), Params{ClassLabels: []string{"3"}, Steps: 2, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	if string(again.Images[0].Image.Pix) != string(out.Images[0].Image.Pix) {
		t.Error("label 3 with seed 5 differs between requests")
	}
}

func TestDiTRefuses(t *testing.T) {
	m := openTiny(t, writeTiny(t, "dit-ids", tinyDiTFolder(nil)), "dit")
	for _, c := range []struct {
		name string
		p    Params
		want string
	}{
		{"LoRA", Params{Prompt: "1", LoRAs: []LoRA{{Path: "x.safetensors", Weight: 1}}}, "does not take lora"},
		{"img2img", Params{Prompt: "1", InitImage: nil, Mask: nil, ControlNets: []ControlNet{{}}}, "does not take controlnet"},
		{"negative prompt", Params{Prompt: "1", NegativePrompt: "blurry"}, "does not take a negative prompt"},
		{"clip skip", Params{Prompt: "1", ClipSkip: 2}, "does not take clip skip"},
		{"stages", Params{Prompt: "1", Stages: []Stage{{Path: "x"}}}, "does not take stages"},
		{"size", Params{Prompt: "1", Width: 16, Height: 16}, "generates 8x8 only"},
		{"no labels", Params{}, "needs ImageNet class labels"},
		{"names without a table", Params{Prompt: "tabby"}, "no id2label table"},
		{"label out of range", Params{ClassLabels: []string{"10"}}, "outside [0, 10)"},
		{"both", Params{Prompt: "1", ClassLabels: []string{"2"}}, "not both"},
	} {
		c.p.Steps = 1
		if _, err := m.Generate(context.Background(), c.p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
	m.Close()
	if _, err := m.Generate(context.Background(), Params{Prompt: "1"}); !errors.Is(err, errClosed) {
		t.Errorf("closed model: %v", err)
	}
}
