package imageio

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParamsString(t *testing.T) {
	p := Params{
		Prompt:            "a photo of a cat, (masterpiece:1.2)",
		NegativePrompt:    "blurry, lowres",
		Steps:             20,
		Sampler:           "Euler a",
		Scheduler:         "Karras",
		CFGScale:          7,
		Seed:              42,
		Width:             512,
		Height:            512,
		ModelHash:         "abcdef1234",
		Model:             "name",
		DenoisingStrength: 0.6,
		ClipSkip:          2,
		Extra: []KV{
			{"Lora hashes", "add_detail: 7c6bad76eb54, more: 0123456789ab"},
			{"Version", "diffuse 0.1"},
		},
	}
	want := "a photo of a cat, (masterpiece:1.2)\n" +
		"Negative prompt: blurry, lowres\n" +
		"Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 512x512, " +
		"Model hash: abcdef1234, Model: name, Denoising strength: 0.6, Clip skip: 2, " +
		`Lora hashes: "add_detail: 7c6bad76eb54, more: 0123456789ab", Version: diffuse 0.1`
	if got := p.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}

	// Omitted fields: no negative prompt, txt2img (no denoising), clip
	// skip 1, fractional CFG.
	q := Params{Prompt: "cat", Steps: 30, Sampler: "DPM++ 2M", CFGScale: 7.5, Seed: -1, Width: 768, Height: 512, ClipSkip: 1}
	if got, want := q.String(), "cat\nSteps: 30, Sampler: DPM++ 2M, CFG scale: 7.5, Seed: -1, Size: 768x512"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestQuoteParamMatchesPython(t *testing.T) {
	// json.dumps(v, ensure_ascii=False), checked against Python.
	v := "say \"hi\", c\\d\n\te\x01 é <&>"
	want := `"say \"hi\", c\\d\n\te\u0001 é <&>"`
	if got := quoteParam(v); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	for _, v := range []string{"Euler a", "v1.10.1", "a \"quoted\" word", "x\\y"} {
		if got := quoteParam(v); got != v {
			t.Errorf("%q quoted as %q; A1111 quotes only for ',', ':' and newlines", v, got)
		}
	}
}

func TestParamsRoundTrip(t *testing.T) {
	for _, p := range []Params{
		{
			Prompt:            "line one, (word:1.1)\nline two\n\nline four",
			NegativePrompt:    "bad,\nworse",
			Steps:             28,
			Sampler:           "DPM++ SDE",
			Scheduler:         "Exponential",
			CFGScale:          4.25,
			Seed:              4294967295,
			Width:             832,
			Height:            1216,
			ModelHash:         "31e35c80fc",
			Model:             "sd_xl_base_1.0",
			DenoisingStrength: 0.35,
			ClipSkip:          2,
			Extra: []KV{
				{"ControlNet 0", `Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 1, "quoted"`},
				{"Note", "multi\nline\ttab \\ backslash"},
				{"Seed resize from", "512x512"},
				{"ENSD", "31337"},
				{"Version", "diffuse 0.1"},
			},
		},
		{Prompt: "minimal", Steps: 1, CFGScale: 1, Seed: 0},
		{Prompt: "", NegativePrompt: "only negative", Steps: 5, Sampler: "Euler", CFGScale: 0.5, Seed: 7, Width: 64, Height: 64},
	} {
		s := p.String()
		got, err := ParseParams(s)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if !reflect.DeepEqual(got, p) {
			t.Errorf("round trip of\n%s\ngave %+v\nwant %+v", s, got, p)
		}
		if got.String() != s {
			t.Errorf("re-render differs:\n%s\n%s", got.String(), s)
		}
	}
}

func TestParseParamsA1111(t *testing.T) {
	cases := []struct {
		text string
		want Params
	}{{
		// A1111 1.10 txt2img with hires fix, LoRA and an embedding.
		text: `masterpiece, best quality, 1girl, (red hair:1.2), <lora:add_detail:0.5>
Negative prompt: (worst quality, low quality:1.4), EasyNegative
Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 1234567890, Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.45, Clip skip: 2, Hires upscale: 2, Hires upscaler: Latent, Lora hashes: "add_detail: 7c6bad76eb54", TI hashes: "EasyNegative: c74b4e810b03", Version: v1.10.1`,
		want: Params{
			Prompt:            "masterpiece, best quality, 1girl, (red hair:1.2), <lora:add_detail:0.5>",
			NegativePrompt:    "(worst quality, low quality:1.4), EasyNegative",
			Steps:             25,
			Sampler:           "DPM++ 2M",
			Scheduler:         "Karras",
			CFGScale:          7.5,
			Seed:              1234567890,
			Width:             512,
			Height:            768,
			ModelHash:         "6ce0161689",
			Model:             "v1-5-pruned-emaonly",
			DenoisingStrength: 0.45,
			ClipSkip:          2,
			Extra: []KV{
				{"Hires upscale", "2"},
				{"Hires upscaler", "Latent"},
				{"Lora hashes", "add_detail: 7c6bad76eb54"},
				{"TI hashes", "EasyNegative: c74b4e810b03"},
				{"Version", "v1.10.1"},
			},
		},
	}, {
		// Multi-line prompt and negative prompt, ControlNet unit, SDXL,
		// with stray spaces A1111 trims from prompt lines.
		text: `a castle on a hill,
  sunset, dramatic lighting

highly detailed
Negative prompt: blurry,
lowres  
Steps: 30, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 1024x1024, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 1.0, Resize Mode: Crop and Resize, Processor Res: 512, Threshold A: 100.0, Threshold B: 200.0, Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: False, Control Mode: Balanced", Version: v1.6.0`,
		want: Params{
			Prompt:         "a castle on a hill,\nsunset, dramatic lighting\n\nhighly detailed",
			NegativePrompt: "blurry,\nlowres",
			Steps:          30,
			Sampler:        "Euler a",
			CFGScale:       7,
			Seed:           42,
			Width:          1024,
			Height:         1024,
			ModelHash:      "31e35c80fc",
			Model:          "sd_xl_base_1.0",
			Extra: []KV{
				{"ControlNet 0", "Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 1.0, Resize Mode: Crop and Resize, Processor Res: 512, Threshold A: 100.0, Threshold B: 200.0, Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: False, Control Mode: Balanced"},
				{"Version", "v1.6.0"},
			},
		},
	}, {
		// Early (2022) infotext: old 8-digit hash, ENSD, no negative.
		text: "girl with an artist's beret, determined, blue eyes\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, Model hash: 45dee52b, ENSD: 31337",
		want: Params{
			Prompt: "girl with an artist's beret, determined, blue eyes", Steps: 20, Sampler: "Euler a", CFGScale: 7,
			Seed: 965400086, Width: 512, Height: 512, ModelHash: "45dee52b", Extra: []KV{{"ENSD", "31337"}},
		},
	}, {
		// No parameters line: a last line with fewer than three fields
		// is part of the prompt.
		text: "just a prompt\nstyle: watercolor, mood: calm",
		want: Params{Prompt: "just a prompt\nstyle: watercolor, mood: calm"},
	}}
	for i, c := range cases {
		got, err := ParseParams(c.text)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("case %d:\n got %+v\nwant %+v", i, got, c.want)
		}
	}
	if v, ok := (Params{Extra: []KV{{"Version", "x"}}}).Get("Version"); !ok || v != "x" {
		t.Error("Get")
	}

	if _, err := ParseParams("p\nSteps: many, Sampler: Euler, CFG scale: 7"); err == nil || !strings.Contains(err.Error(), "Steps") {
		t.Errorf("bad Steps: %v", err)
	}
	if _, err := ParseParams("p\nSteps: 2, Size: big, CFG scale: 7"); err == nil {
		t.Error("bad Size accepted")
	}
}

func TestModelHash(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "model.safetensors")
	data := []byte(strings.Repeat("weights", 300000)) // over the 1 MiB buffer
	os.WriteFile(p, data, 0o644)
	sum := sha256.Sum256(data)
	got, err := ModelHash(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := hex.EncodeToString(sum[:])[:10]; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if _, err := ModelHash(filepath.Join(dir, "none")); err == nil || !strings.Contains(err.Error(), "none") {
		t.Errorf("missing file: %v", err)
	}
}
