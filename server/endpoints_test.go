package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/pipeline"
)

// pngOf encodes img as base64 PNG.
func pngOf(img image.Image) string {
	var buf bytes.Buffer
	png.Encode(&buf, img)
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

// TestSmallEndpoints covers the endpoints clients call to probe the
// server or fill pickers, and methods an endpoint does not take.
func TestSmallEndpoints(t *testing.T) {
	fm := &fakeModel{}
	_, ts := newTestServer(t, func(c *Config) { c.Open = fakeOpen(fm) })
	var obj map[string]any
	if code := call(t, "GET", ts.URL+"/internal/ping", nil, &obj); code != 200 || len(obj) != 0 {
		t.Errorf("ping: %d %v", code, obj)
	}
	if code := call(t, "GET", ts.URL+"/sdapi/v1/embeddings", nil, &obj); code != 200 || obj["loaded"] == nil || obj["skipped"] == nil {
		t.Errorf("embeddings: %d %v", code, obj)
	}
	var list []any
	if code := call(t, "GET", ts.URL+"/sdapi/v1/prompt-styles", nil, &list); code != 200 || list == nil {
		t.Errorf("prompt-styles: %d %v", code, list)
	}
	if code := call(t, "POST", ts.URL+"/sdapi/v1/refresh-checkpoints", nil, nil); code != 200 {
		t.Errorf("refresh-checkpoints: %d", code)
	}
	var mods map[string][]string
	if code := call(t, "GET", ts.URL+"/controlnet/module_list", nil, &mods); code != 200 || strings.Join(mods["module_list"], ",") != "none,canny" {
		t.Errorf("module_list: %d %v", code, mods)
	}
	// Wrong methods get a named error in the API's shape.
	var a map[string]any
	if code := call(t, "GET", ts.URL+"/sdapi/v1/txt2img", nil, &a); code/100 != 4 || a["errors"] == nil {
		t.Errorf("GET txt2img: %d %v", code, a)
	}
	var o openAIResp
	if code := call(t, "GET", ts.URL+"/v1/images/generations", nil, &o); code/100 != 4 || o.Error == nil || o.Error.Code == "" {
		t.Errorf("GET generations: %d %+v", code, o)
	}
}

// TestRefreshFindsNewFiles: a LoRA or model copied into its folder while
// the server runs is listed and usable (folders are read on each request;
// refresh-loras and refresh-checkpoints have nothing left to do).
func TestRefreshFindsNewFiles(t *testing.T) {
	fm := &fakeModel{}
	loras, models := t.TempDir(), twoModels(t)
	_, ts := newTestServer(t, func(c *Config) { c.Open = fakeOpen(fm); c.LoRADir = loras; c.ModelsDir = models; c.Model = "" })
	var ls []map[string]any
	call(t, "GET", ts.URL+"/sdapi/v1/loras", nil, &ls)
	if len(ls) != 0 {
		t.Fatalf("loras %v", ls)
	}
	os.WriteFile(filepath.Join(loras, "fresh.safetensors"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(models, "gamma.safetensors"), []byte("x"), 0o644)
	call(t, "POST", ts.URL+"/sdapi/v1/refresh-loras", nil, nil)
	call(t, "POST", ts.URL+"/sdapi/v1/refresh-checkpoints", nil, nil)
	call(t, "GET", ts.URL+"/sdapi/v1/loras", nil, &ls)
	var ms []map[string]any
	call(t, "GET", ts.URL+"/sdapi/v1/sd-models", nil, &ms)
	if len(ls) != 1 || ls[0]["name"] != "fresh" || len(ms) != 3 {
		t.Errorf("after refresh: loras %v, %d models", ls, len(ms))
	}
	var r a1111Resp
	if code := call(t, "POST", ts.URL+"/sdapi/v1/txt2img", map[string]any{"prompt": "x", "steps": 1, "override_settings": map[string]any{"sd_model_checkpoint": "gamma"}}, &r); code != 200 {
		t.Errorf("new model: %d", code)
	}
}

// TestNamesStayInsideFolders tries to reach files outside the configured
// folders through every API that takes a name: relative and absolute
// paths, and symbolic links inside the folders pointing out.
func TestNamesStayInsideFolders(t *testing.T) {
	fm := &fakeModel{}
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret.safetensors")
	os.WriteFile(secret, []byte("x"), 0o644)
	os.MkdirAll(filepath.Join(outside, "pipe"), 0o755)
	os.WriteFile(filepath.Join(outside, "pipe", "model_index.json"), []byte("{}"), 0o644)
	models, loras := twoModels(t), t.TempDir()
	os.WriteFile(filepath.Join(loras, "ok.safetensors"), []byte("x"), 0o644)
	for _, d := range []string{models, loras} {
		if err := os.Symlink(secret, filepath.Join(d, "link.safetensors")); err != nil {
			t.Skip("no symbolic links here:", err)
		}
		os.Symlink(filepath.Join(outside, "pipe"), filepath.Join(d, "linkdir"))
	}
	var opened []string
	_, ts := newTestServer(t, func(c *Config) {
		c.ModelsDir, c.LoRADir, c.Model = models, loras, ""
		c.Open = func(ctx context.Context, path string, o pipeline.Options) (pipeline.Model, error) {
			opened = append(opened, path)
			return fm, nil
		}
	})
	var ms []map[string]any
	call(t, "GET", ts.URL+"/sdapi/v1/sd-models", nil, &ms)
	if len(ms) != 2 {
		t.Errorf("sd-models lists links out of the folder: %v", ms)
	}
	names := []string{"../" + filepath.Base(outside) + "/secret", secret, "link", "link.safetensors", "linkdir", filepath.Join(outside, "pipe"), "alpha/../../x", "%2e%2e/x"}
	for _, n := range names {
		var a map[string]any
		if code := call(t, "POST", ts.URL+"/sdapi/v1/txt2img", map[string]any{"prompt": "x", "override_settings": map[string]any{"sd_model_checkpoint": n}}, &a); code != 404 || a["errors"] != "model_not_found" {
			t.Errorf("A1111 model %q: %d %v", n, code, a)
		}
		if code := call(t, "POST", ts.URL+"/sdapi/v1/options", map[string]any{"sd_model_checkpoint": n}, &a); code != 404 {
			t.Errorf("options model %q: %d %v", n, code, a)
		}
		var o openAIResp
		if code := call(t, "POST", ts.URL+"/v1/images/generations", map[string]any{"prompt": "x", "model": n}, &o); code != 404 || o.Error == nil || o.Error.Code != "model_not_found" {
			t.Errorf("OpenAI model %q: %d %+v", n, code, o.Error)
		}
		var e map[string]map[string]string
		if code := call(t, "POST", ts.URL+"/api/v1/jobs", map[string]any{"prompt": "x", "model": n}, &e); code != 404 || e["error"]["code"] != "model_not_found" {
			t.Errorf("native model %q: %d %v", n, code, e)
		}
		if code := call(t, "POST", ts.URL+"/api/v1/jobs", map[string]any{"prompt": "x", "loras": []any{map[string]any{"name": n, "weight": 1}}}, &e); code != 404 || e["error"]["code"] != "lora_not_found" {
			t.Errorf("native LoRA %q: %d %v", n, code, e)
		}
		if code := call(t, "POST", ts.URL+"/sdapi/v1/txt2img", map[string]any{"prompt": "x <lora:" + n + ":1>"}, &a); code/100 != 4 {
			t.Errorf("LoRA tag %q: %d %v", n, code, a)
		}
	}
	for _, p := range []string{"/v1/files/images/..%2f..%2fsecret.safetensors", "/v1/files/images/" + url.PathEscape(secret)} {
		resp, err := http.Get(ts.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
	for _, p := range opened {
		if !strings.HasPrefix(p, models) {
			t.Errorf("opened %s, outside the models folder", p)
		}
	}
}

// TestHandlerPanic: a panic in a handler (not in the engine) answers 500
// with an id that the log holds with the stack, counts as an error, and
// the server keeps serving.
func TestHandlerPanic(t *testing.T) {
	var logs syncBuffer
	s, ts := newTestServer(t, func(c *Config) {
		c.Open = fakeOpen(&fakeModel{})
		c.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	})
	s.mux.HandleFunc("GET /sdapi/v1/boom", func(http.ResponseWriter, *http.Request) { panic("handler bug") })
	s.mux.HandleFunc("GET /v1/boom", func(http.ResponseWriter, *http.Request) { panic("handler bug") })
	var a map[string]any
	code := call(t, "GET", ts.URL+"/sdapi/v1/boom", nil, &a)
	detail, _ := a["detail"].(string)
	id, ok := strings.CutPrefix(detail, "internal error ")
	if code != 500 || !ok || len(id) < 16 || !strings.Contains(logs.String(), id) || !strings.Contains(logs.String(), "goroutine") {
		t.Errorf("A1111 shape: %d %v; logs %s", code, a, logs.String())
	}
	var o openAIResp
	if code := call(t, "GET", ts.URL+"/v1/boom", nil, &o); code != 500 || o.Error == nil || o.Error.Type != "server_error" || strings.Contains(o.Error.Message, "handler bug") {
		t.Errorf("OpenAI shape: %d %+v", code, o.Error)
	}
	if value(scrape(t, ts.URL), "diffuse_errors_total") != 2 {
		t.Error("panics not counted")
	}
	if code := call(t, "GET", ts.URL+"/sdapi/v1/samplers", nil, nil); code != 200 {
		t.Errorf("after the panics: %d", code)
	}
}

// TestMaskOptions checks what reaches the model from img2img's mask
// fields: inpainting_mask_invert flips it, mask_blur softens its edge
// (and 0 keeps it hard), and an out-of-range blur is refused.
func TestMaskOptions(t *testing.T) {
	fm := &fakeModel{}
	_, ts := newTestServer(t, func(c *Config) { c.Open = fakeOpen(fm) })
	// Left half black (keep), right half white (repaint).
	m := image.NewGray(image.Rect(0, 0, 64, 64))
	for y := range 64 {
		for x := 32; x < 64; x++ {
			m.SetGray(x, y, color.Gray{255})
		}
	}
	mask := pngOf(m)
	run := func(extra map[string]any) *image.Gray {
		t.Helper()
		body := map[string]any{"prompt": "x", "steps": 1, "init_images": []string{pngB64(64, 64, false)}, "mask": mask}
		for k, v := range extra {
			body[k] = v
		}
		var r a1111Resp
		if code := call(t, "POST", ts.URL+"/sdapi/v1/img2img", body, &r); code != 200 {
			t.Fatalf("%v: %d", extra, code)
		}
		fm.mu.Lock()
		defer fm.mu.Unlock()
		g, ok := fm.calls[len(fm.calls)-1].Mask.(*image.Gray)
		if !ok {
			t.Fatalf("mask %T", fm.calls[len(fm.calls)-1].Mask)
		}
		return g
	}
	hard := run(map[string]any{"mask_blur": 0})
	if hard.GrayAt(31, 10).Y != 0 || hard.GrayAt(32, 10).Y != 255 {
		t.Errorf("mask_blur 0: edge %d %d, want 0 255", hard.GrayAt(31, 10).Y, hard.GrayAt(32, 10).Y)
	}
	inv := run(map[string]any{"mask_blur": 0, "inpainting_mask_invert": 1})
	if inv.GrayAt(0, 0).Y != 255 || inv.GrayAt(63, 63).Y != 0 {
		t.Errorf("inverted: %d %d, want 255 0", inv.GrayAt(0, 0).Y, inv.GrayAt(63, 63).Y)
	}
	soft := run(map[string]any{"mask_blur": 8})
	if e := soft.GrayAt(31, 10).Y; e == 0 || e == 255 || soft.GrayAt(0, 10).Y != 0 || soft.GrayAt(63, 10).Y != 255 {
		t.Errorf("mask_blur 8: edge %d, far left %d, far right %d", e, soft.GrayAt(0, 10).Y, soft.GrayAt(63, 10).Y)
	}
	if def := run(nil); def.GrayAt(31, 10).Y == 0 {
		t.Error("the default mask_blur (4) left the edge hard")
	}
	var e map[string]any
	if code := call(t, "POST", ts.URL+"/sdapi/v1/img2img", map[string]any{"prompt": "x", "init_images": []string{pngB64(64, 64, false)}, "mask": mask, "mask_blur": 100}, &e); code != 400 || e["errors"] != "bad_mask_blur" {
		t.Errorf("mask_blur 100: %d %v", code, e)
	}
}

// TestOverrideSettingsOneRequest: override_settings.sd_model_checkpoint
// applies to its request only; the default model stays.
func TestOverrideSettingsOneRequest(t *testing.T) {
	fm := &fakeModel{}
	_, ts := newTestServer(t, func(c *Config) { c.Open = fakeOpen(fm); c.ModelsDir = twoModels(t); c.Model = "" })
	var r a1111Resp
	call(t, "POST", ts.URL+"/sdapi/v1/txt2img", map[string]any{"prompt": "x", "steps": 1, "override_settings": map[string]any{"sd_model_checkpoint": "beta.safetensors"}}, &r)
	var opts map[string]any
	call(t, "GET", ts.URL+"/sdapi/v1/options", nil, &opts)
	if !strings.Contains(r.Info, `"sd_model_name":"beta"`) || opts["sd_model_checkpoint"] != "alpha.safetensors" {
		t.Errorf("info %s; default after the request %v", r.Info, opts["sd_model_checkpoint"])
	}
	var e map[string]any
	if code := call(t, "POST", ts.URL+"/sdapi/v1/txt2img", map[string]any{"prompt": "x", "override_settings": map[string]any{"CLIP_stop_at_last_layers": 1.5}}, &e); code != 400 || e["errors"] != "bad_field" {
		t.Errorf("fractional clip skip: %d %v", code, e)
	}
}

// TestNATSQueueFull: the JetStream queue is bounded too, with the same
// 429 and Retry-After.
func TestNATSQueueFull(t *testing.T) {
	ns := embeddedNATS(t, t.TempDir())
	defer ns.Shutdown()
	fm := &fakeModel{}
	_, ts := newTestServer(t, func(c *Config) {
		c.Open = fakeOpen(fm)
		c.NATS, c.NATSAckWait, c.QueueSize = connect(t, ns), time.Second, 2
	})
	codes := []int{}
	for i := range 3 {
		req, _ := http.NewRequest("POST", ts.URL+"/api/v1/jobs", strings.NewReader(`{"prompt":"p","id":"q-`+string(rune('a'+i))+`"}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
		if resp.StatusCode == 429 && resp.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	if codes[0] != 202 || codes[1] != 202 || codes[2] != 429 {
		t.Errorf("codes %v, want 202 202 429 (no worker, queue of 2)", codes)
	}
}

// TestSaveImages writes the images of save_images requests, with their
// parameters, into the output folder, and nothing else there.
func TestSaveImages(t *testing.T) {
	out := t.TempDir()
	_, ts := newTestServer(t, func(c *Config) { c.Open = fakeOpen(&fakeModel{}); c.OutputDir = out })
	call(t, "POST", ts.URL+"/sdapi/v1/txt2img", map[string]any{"prompt": "kept", "steps": 1, "batch_size": 2, "seed": 3, "save_images": true}, nil)
	call(t, "POST", ts.URL+"/sdapi/v1/txt2img", map[string]any{"prompt": "not kept", "steps": 1}, nil)
	files, _ := os.ReadDir(out)
	if len(files) != 2 {
		t.Fatalf("%d files in the output folder, want 2", len(files))
	}
	for i, f := range files {
		data, err := os.ReadFile(filepath.Join(out, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		text, err := imageio.DecodePNGText(data)
		if err != nil || !strings.HasPrefix(text[imageio.ParametersKey], "kept") || !strings.HasSuffix(f.Name(), "-"+string(rune('3'+i))+".png") {
			t.Errorf("%s: parameters %q (%v)", f.Name(), text[imageio.ParametersKey], err)
		}
	}
}

// TestImageURLExpires: an OpenAI image URL is served until URLTTL, then
// answers 404 in OpenAI's shape; it needs no key (the random name is the
// capability) while the API does.
func TestImageURLExpires(t *testing.T) {
	_, ts := newTestServer(t, func(c *Config) { c.Open = fakeOpen(&fakeModel{}); c.URLTTL = 300 * time.Millisecond; c.APIKey = "k" })
	req, _ := http.NewRequest("POST", ts.URL+"/v1/images/generations", strings.NewReader(`{"prompt":"x","response_format":"url"}`))
	req.Header.Set("Authorization", "Bearer k")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var o openAIResp
	json.NewDecoder(resp.Body).Decode(&o)
	resp.Body.Close()
	if len(o.Data) != 1 || o.Data[0].URL == "" {
		t.Fatalf("generations: %d %+v", resp.StatusCode, o)
	}
	get := func() int {
		r, err := http.Get(o.Data[0].URL)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.StatusCode
	}
	if code := get(); code != 200 {
		t.Errorf("fresh URL: %d", code)
	}
	time.Sleep(400 * time.Millisecond)
	var e openAIResp
	if code := call(t, "GET", o.Data[0].URL, nil, &e); code != 404 || e.Error == nil || e.Error.Code != "file_not_found" {
		t.Errorf("expired URL: %d %+v", code, e.Error)
	}
}

// TestEventStreamKey: EventSource cannot send headers, so the event
// stream takes the key as ?api_key=; a wrong one is refused.
func TestEventStreamKey(t *testing.T) {
	_, ts := newTestServer(t, func(c *Config) { c.Open = fakeOpen(&fakeModel{}); c.APIKey = "k" })
	req, _ := http.NewRequest("POST", ts.URL+"/api/v1/jobs", strings.NewReader(`{"prompt":"x","steps":1}`))
	req.Header.Set("Authorization", "Bearer k")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var st jobStatus
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	for key, want := range map[string]int{"k": 200, "wrong": 401, "": 401} {
		r, err := http.Get(ts.URL + "/api/v1/jobs/" + st.ID + "/events?api_key=" + key)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != want {
			t.Errorf("api_key %q: %d, want %d", key, r.StatusCode, want)
		}
	}
}

// TestShutdownFinishesInFlight stops the HTTP server the way diffuse
// serve does (http.Server.Shutdown, then Close): the request whose job
// is running gets its image, and a request after Close is refused.
func TestShutdownFinishesInFlight(t *testing.T) {
	fm := &fakeModel{delay: 40 * time.Millisecond}
	f, dir := tinyModels(t)
	s, err := New(Config{Model: f.SD, ControlNetDir: dir, Open: fakeOpen(fm), Logger: newTestServerLogger()})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(s)
	hs.Start()
	done := make(chan int, 1)
	var r a1111Resp
	go func() {
		done <- call(t, "POST", hs.URL+"/sdapi/v1/txt2img", map[string]any{"prompt": "x", "steps": 8}, &r)
	}()
	for fm.running.Load() == 0 {
		time.Sleep(2 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Config.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if code := <-done; code != 200 || len(r.Images) != 1 {
		t.Errorf("in-flight request: %d, %d images", code, len(r.Images))
	}
	s.Close()
	if _, err := s.submit(newJob(context.Background(), "", "test", "tiny-sd", pipeline.Params{})); err != errShuttingDown {
		t.Errorf("submit after Close: %v", err)
	}
}
