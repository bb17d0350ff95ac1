package server

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type a1111Resp struct {
	Images     []string       `json:"images"`
	Parameters map[string]any `json:"parameters"`
	Info       string         `json:"info"`
}

func TestA1111Txt2Img(t *testing.T) {
	_, ts := newTestServer(t, nil)
	var r a1111Resp
	code := call(t, "POST", ts.URL+"/sdapi/v1/txt2img", map[string]any{"prompt": "a cat", "negative_prompt": "dog",
		"steps": 2, "width": 64, "height": 64, "seed": 7, "batch_size": 2, "n_iter": 2, "sampler_name": "DPM++ 2M", "scheduler": "Karras",
		"cfg_scale": 5, "override_settings": map[string]any{"CLIP_stop_at_last_layers": 2}, "unknown_field": true}, &r)
	if code != 200 || len(r.Images) != 4 {
		t.Fatalf("code %d, %d images, want 4", code, len(r.Images))
	}
	for _, b := range r.Images {
		if b := decodePNG(t, b).Bounds(); b.Dx() != 64 || b.Dy() != 64 {
			t.Errorf("image %v, want 64x64", b)
		}
	}
	var info struct {
		Seed      int64    `json:"seed"`
		AllSeeds  []int64  `json:"all_seeds"`
		Prompt    string   `json:"prompt"`
		Infotexts []string `json:"infotexts"`
		Sampler   string   `json:"sampler_name"`
		ClipSkip  int      `json:"clip_skip"`
		Steps     int      `json:"steps"`
	}
	if err := json.Unmarshal([]byte(r.Info), &info); err != nil {
		t.Fatal(err)
	}
	if info.Seed != 7 || len(info.AllSeeds) != 4 || info.AllSeeds[3] != 10 || info.Prompt != "a cat" || info.Steps != 2 {
		t.Errorf("info %+v", info)
	}
	if info.Sampler != "DPM++ 2M" || !strings.Contains(info.Infotexts[0], "Schedule type: Karras") || !strings.Contains(info.Infotexts[0], "Clip skip: 2") {
		t.Errorf("sampler %q, infotext %q", info.Sampler, info.Infotexts[0])
	}
	if r.Parameters["prompt"] != "a cat" || r.Parameters["batch_size"] != 2.0 {
		t.Errorf("parameters echo %v", r.Parameters)
	}
	// The PNG carries its infotext: png-info reads it back.
	var pi struct {
		Info       string            `json:"info"`
		Parameters map[string]any    `json:"parameters"`
		Items      map[string]string `json:"items"`
	}
	if code := call(t, "POST", ts.URL+"/sdapi/v1/png-info", map[string]any{"image": "data:image/png;base64," + r.Images[1]}, &pi); code != 200 {
		t.Fatalf("png-info %d", code)
	}
	if pi.Info != info.Infotexts[1] || pi.Parameters["Seed"] != "8" || pi.Parameters["Prompt"] != "a cat" || pi.Parameters["Size-1"] != "64" {
		t.Errorf("png-info %+v, want infotext %q", pi, info.Infotexts[1])
	}
	// send_images false answers without images; seed -1 draws one.
	var r2 a1111Resp
	call(t, "POST", ts.URL+"/sdapi/v1/txt2img", map[string]any{"prompt": "x", "steps": 1, "width": 64, "height": 64, "seed": -1, "send_images": false}, &r2)
	var info2 struct{ Seed int64 }
	json.Unmarshal([]byte(r2.Info), &info2)
	if len(r2.Images) != 0 || info2.Seed < 0 {
		t.Errorf("send_images false: %d images, seed %d", len(r2.Images), info2.Seed)
	}
}

func TestA1111Img2ImgInpaintControlNet(t *testing.T) {
	_, ts := newTestServer(t, nil)
	init := "data:image/png;base64," + pngB64(64, 64, false)
	for _, c := range []struct {
		name string
		body map[string]any
	}{
		{"img2img", map[string]any{"init_images": []string{init}, "denoising_strength": 0.5}},
		{"inpaint", map[string]any{"init_images": []string{init}, "mask": pngB64(64, 64, false), "mask_blur": 2, "inpainting_mask_invert": 1}},
		{"controlnet", map[string]any{"init_images": []string{init}, "alwayson_scripts": map[string]any{"controlnet": map[string]any{"args": []any{
			map[string]any{"enabled": true, "module": "canny", "model": "control-tiny [0123abcd]", "weight": 0.8, "image": pngB64(64, 64, false), "threshold_a": 50, "threshold_b": 150},
			map[string]any{"enabled": false, "model": "missing"},
		}}}}},
	} {
		body := map[string]any{"prompt": "p", "steps": 2, "seed": 3}
		for k, v := range c.body {
			body[k] = v
		}
		var r a1111Resp
		code := call(t, "POST", ts.URL+"/sdapi/v1/img2img", body, &r)
		if code != 200 || len(r.Images) != 1 {
			t.Errorf("%s: code %d, %d images (%s)", c.name, code, len(r.Images), r.Info)
			continue
		}
		if r.Parameters["init_images"] != nil {
			t.Errorf("%s: init_images echoed", c.name)
		}
		var info struct{ Infotexts []string }
		json.Unmarshal([]byte(r.Info), &info)
		if !strings.Contains(info.Infotexts[0], "Denoising strength") {
			t.Errorf("%s: infotext %q", c.name, info.Infotexts[0])
		}
	}
	// A txt2img ControlNet unit with its image.
	var r a1111Resp
	code := call(t, "POST", ts.URL+"/sdapi/v1/txt2img", map[string]any{"prompt": "p", "steps": 1, "width": 64, "height": 64,
		"alwayson_scripts": map[string]any{"controlnet": map[string]any{"args": []any{map[string]any{"model": "control-tiny", "image": map[string]any{"image": pngB64(64, 64, false)}}}}}}, &r)
	if code != 200 || len(r.Images) != 1 {
		t.Errorf("txt2img controlnet: %d, %d images", code, len(r.Images))
	}
}

func TestA1111BadRequests(t *testing.T) {
	loras := t.TempDir()
	os.WriteFile(filepath.Join(loras, "style.safetensors"), []byte("not really"), 0o644)
	_, ts := newTestServer(t, func(c *Config) { c.LoRADir = loras; c.Limits.MaxImages = 4; c.Limits.MaxPixels = 64 * 64 * 4 })
	ok := map[string]any{"prompt": "x", "steps": 1, "width": 64, "height": 64}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for a, b := range ok {
			m[a] = b
		}
		m[k] = v
		return m
	}
	for _, c := range []struct {
		name, path string
		body       any
		code       int
		errCode    string
	}{
		{"not json", "txt2img", "{", 400, "bad_json"},
		{"empty", "txt2img", "", 400, "empty_body"},
		{"wrong type", "txt2img", with("steps", "many"), 422, "bad_field"},
		{"steps", "txt2img", with("steps", 1000), 400, "too_many_steps"},
		{"batch", "txt2img", with("batch_size", 5), 400, "too_many_images"},
		{"pixels", "txt2img", with("width", 512), 400, "image_too_large"},
		{"size", "txt2img", with("width", 65), 400, "bad_size"},
		{"sampler", "txt2img", with("sampler_name", "Warp drive"), 400, "unknown_sampler"},
		{"scheduler", "txt2img", with("scheduler", "exponential"), 400, "unknown_scheduler"},
		{"model", "txt2img", with("override_settings", map[string]any{"sd_model_checkpoint": "nope"}), 404, "model_not_found"},
		{"model traversal", "txt2img", with("override_settings", map[string]any{"sd_model_checkpoint": "../../../etc/passwd"}), 404, "model_not_found"},
		{"lora unknown", "txt2img", with("prompt", "x <lora:other:1>"), 404, "lora_not_found"},
		{"lora traversal", "txt2img", with("prompt", "x <lora:../../secret:1>"), 404, "lora_not_found"},
		{"lora malformed", "txt2img", with("prompt", "x <lora:style:abc>"), 400, "bad_lora_tag"},
		{"controlnet unknown", "txt2img", with("alwayson_scripts", map[string]any{"controlnet": map[string]any{"args": []any{map[string]any{"model": "/etc/x", "image": pngB64(8, 8, false)}}}}), 404, "controlnet_not_found"},
		{"controlnet no image", "txt2img", with("alwayson_scripts", map[string]any{"controlnet": map[string]any{"args": []any{map[string]any{"model": "control-tiny"}}}}), 400, "controlnet_image_missing"},
		{"controlnet module", "txt2img", with("alwayson_scripts", map[string]any{"controlnet": map[string]any{"args": []any{map[string]any{"model": "control-tiny", "module": "openpose"}}}}), 400, "unknown_controlnet_module"},
		{"no init", "img2img", ok, 400, "init_images_missing"},
		{"bad base64", "img2img", with("init_images", []string{"%%%"}), 400, "bad_image"},
		{"not an image", "img2img", with("init_images", []string{"aGVsbG8="}), 400, "bad_image"},
		{"strength", "img2img", with("init_images", []string{pngB64(8, 8, false)}), 400, ""},
		{"png-info empty", "png-info", map[string]any{}, 400, "image_missing"},
		{"options bad model", "options", map[string]any{"sd_model_checkpoint": "nope"}, 404, "model_not_found"},
		{"options bad type", "options", map[string]any{"sd_model_checkpoint": 3}, 400, "bad_field"},
	} {
		body := c.body
		if c.name == "strength" {
			body = map[string]any{"prompt": "x", "steps": 1, "init_images": []string{pngB64(64, 64, false)}, "denoising_strength": 2}
			c.errCode = "bad_strength"
		}
		var e struct {
			Error, Detail, Errors string
		}
		code := call(t, "POST", ts.URL+"/sdapi/v1/"+c.path, body, &e)
		if code != c.code || e.Errors != c.errCode || e.Detail == "" {
			t.Errorf("%s: %d %+v, want %d %s", c.name, code, e, c.code, c.errCode)
		}
	}
	var e map[string]any
	if code := call(t, "GET", ts.URL+"/sdapi/v1/nope", nil, &e); code != 404 || e["errors"] != "not_found" {
		t.Errorf("unknown endpoint: %d %v", code, e)
	}
}

func TestA1111Lists(t *testing.T) {
	loras := t.TempDir()
	os.MkdirAll(filepath.Join(loras, "sub"), 0o755)
	os.WriteFile(filepath.Join(loras, "sub", "style.safetensors"), []byte("x"), 0o644)
	_, ts := newTestServer(t, func(c *Config) { c.LoRADir = loras })
	var models []map[string]any
	call(t, "GET", ts.URL+"/sdapi/v1/sd-models", nil, &models)
	if len(models) != 1 || models[0]["title"] != "tiny-sd" || models[0]["model_name"] != "tiny-sd" {
		t.Errorf("sd-models %v", models)
	}
	var samplers []struct {
		Name    string
		Aliases []string
	}
	call(t, "GET", ts.URL+"/sdapi/v1/samplers", nil, &samplers)
	names := map[string]bool{}
	for _, s := range samplers {
		names[s.Name] = true
	}
	for _, want := range []string{"Euler a", "Euler", "DPM++ 2M", "DPM++ 2M Karras", "DDIM", "UniPC"} {
		if !names[want] {
			t.Errorf("samplers lack %q: %v", want, names)
		}
	}
	var scheds []map[string]any
	call(t, "GET", ts.URL+"/sdapi/v1/schedulers", nil, &scheds)
	if len(scheds) < 2 || scheds[1]["label"] != "Karras" {
		t.Errorf("schedulers %v", scheds)
	}
	var ls []map[string]any
	call(t, "GET", ts.URL+"/sdapi/v1/loras", nil, &ls)
	if len(ls) != 1 || ls[0]["name"] != "style" {
		t.Errorf("loras %v", ls)
	}
	for _, p := range []string{"upscalers", "sd-vae", "latent-upscale-modes", "prompt-styles"} {
		var v []map[string]any
		if code := call(t, "GET", ts.URL+"/sdapi/v1/"+p, nil, &v); code != 200 {
			t.Errorf("%s: %d", p, code)
		}
	}
	if code := call(t, "POST", ts.URL+"/sdapi/v1/refresh-loras", nil, nil); code != 200 {
		t.Errorf("refresh-loras %d", code)
	}
	var cn map[string][]string
	call(t, "GET", ts.URL+"/controlnet/model_list", nil, &cn)
	if len(cn["model_list"]) != 1 || cn["model_list"][0] != "control-tiny" {
		t.Errorf("controlnet models %v", cn)
	}
	// options: a POST round-trips through GET; the model switch loads it.
	if code := call(t, "POST", ts.URL+"/sdapi/v1/options", map[string]any{"sd_model_checkpoint": "tiny-sd", "samples_format": "jpg", "custom": 3}, nil); code != 200 {
		t.Fatalf("POST options %d", code)
	}
	var opts map[string]any
	call(t, "GET", ts.URL+"/sdapi/v1/options", nil, &opts)
	if opts["sd_model_checkpoint"] != "tiny-sd" || opts["samples_format"] != "jpg" || opts["custom"] != 3.0 {
		t.Errorf("options %v", opts)
	}
}

// TestProgressSkipInterrupt drives a slow stand-in model: progress shows
// the step and a preview, skip drops one image, interrupt ends the job
// with the images it finished.
func TestProgressSkipInterrupt(t *testing.T) {
	fm := &fakeModel{delay: 30 * time.Millisecond}
	_, ts := newTestServer(t, func(c *Config) { c.Open = fakeOpen(fm) })
	var wg sync.WaitGroup
	var r a1111Resp
	var code int
	wg.Add(1)
	go func() {
		defer wg.Done()
		code = call(t, "POST", ts.URL+"/sdapi/v1/txt2img", map[string]any{"prompt": "slow", "steps": 5, "width": 64, "height": 64, "seed": 1, "batch_size": 4}, &r)
	}()
	type prog struct {
		Progress     float64 `json:"progress"`
		ETA          float64 `json:"eta_relative"`
		CurrentImage *string `json:"current_image"`
		State        struct {
			JobCount      int  `json:"job_count"`
			JobNo         int  `json:"job_no"`
			SamplingStep  int  `json:"sampling_step"`
			SamplingSteps int  `json:"sampling_steps"`
			Skipped       bool `json:"skipped"`
		} `json:"state"`
	}
	waitFor := func(cond func(p prog) bool) prog {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			var p prog
			call(t, "GET", ts.URL+"/sdapi/v1/progress", nil, &p)
			if cond(p) {
				return p
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatal("progress never reached the condition")
		return prog{}
	}
	p := waitFor(func(p prog) bool { return p.State.SamplingStep >= 2 && p.State.JobNo == 0 })
	if p.State.SamplingSteps != 5 || p.State.JobCount != 1 || p.Progress <= 0 || p.CurrentImage == nil {
		t.Errorf("progress %+v", p)
	} else if img := decodePNG(t, *p.CurrentImage); img.Bounds().Dx() != 8 {
		t.Errorf("preview %v, want the 8x8 latent size", img.Bounds())
	}
	call(t, "POST", ts.URL+"/sdapi/v1/skip", nil, nil)
	waitFor(func(p prog) bool { return p.State.JobNo == 2 && p.State.SamplingStep >= 1 })
	call(t, "POST", ts.URL+"/sdapi/v1/interrupt", nil, nil)
	wg.Wait()
	var info struct {
		AllSeeds []int64 `json:"all_seeds"`
	}
	json.Unmarshal([]byte(r.Info), &info)
	// Image 0 skipped, image 1 finished, image 2 interrupted, 3 never run.
	if code != 200 || len(r.Images) != 1 || len(info.AllSeeds) != 1 || info.AllSeeds[0] != 2 {
		t.Errorf("after skip and interrupt: %d, %d images, seeds %v", code, len(r.Images), info.AllSeeds)
	}
	var idle prog
	call(t, "GET", ts.URL+"/sdapi/v1/progress", nil, &idle)
	if idle.State.JobCount != 0 || idle.CurrentImage != nil {
		t.Errorf("idle progress %+v", idle)
	}
}
