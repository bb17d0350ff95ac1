package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// client replays a program's calls with its auth header.
type client struct {
	t    *testing.T
	base string
	auth string
}

func (c client) do(method, path string, body any, out any) int {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", c.auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		c.t.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
		return resp.StatusCode
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Errorf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

// twoModels is a models folder with two checkpoints for the stand-in
// model (their contents are never read).
func twoModels(t *testing.T) string {
	dir := t.TempDir()
	for _, n := range []string{"alpha.safetensors", "beta.safetensors"} {
		os.WriteFile(filepath.Join(dir, n), []byte("stand-in"), 0o644)
	}
	return dir
}

// TestOpenWebUIAutomatic1111 replays Open WebUI's A1111 engine: verify the
// URL with GET options, list sd-models (id = title), switch the model with
// GET options → POST options when it differs, then txt2img and read
// images and the info JSON.
func TestOpenWebUIAutomatic1111(t *testing.T) {
	fm := &fakeModel{delay: time.Millisecond}
	_, ts := newTestServer(t, func(c *Config) {
		c.Open = fakeOpen(fm)
		c.ModelsDir = twoModels(t)
		c.Model = ""
		c.BasicAuth = "webui:pw"
	})
	c := client{t, ts.URL, "Basic " + base64.StdEncoding.EncodeToString([]byte("webui:pw"))}
	var opts map[string]any
	c.do("GET", "/sdapi/v1/options", nil, &opts)
	var models []struct{ Title, ModelName string }
	c.do("GET", "/sdapi/v1/sd-models", nil, &models)
	if len(models) != 2 || opts["sd_model_checkpoint"] != models[0].Title {
		t.Fatalf("models %+v, options %v", models, opts["sd_model_checkpoint"])
	}
	want := models[1].Title
	if opts["sd_model_checkpoint"] != want {
		c.do("POST", "/sdapi/v1/options", map[string]any{"sd_model_checkpoint": want}, nil)
	}
	c.do("GET", "/sdapi/v1/options", nil, &opts)
	if opts["sd_model_checkpoint"] != want {
		t.Errorf("after the switch: %v, want %s", opts["sd_model_checkpoint"], want)
	}
	var r a1111Resp
	c.do("POST", "/sdapi/v1/txt2img", map[string]any{"prompt": "a lighthouse", "batch_size": 2, "width": 64, "height": 64, "steps": 2,
		"negative_prompt": "", "cfg_scale": 7, "sampler_name": "Euler a", "scheduler": "Automatic"}, &r)
	var info map[string]any
	if err := json.Unmarshal([]byte(r.Info), &info); err != nil || len(r.Images) != 2 || info["sd_model_name"] != "beta" {
		t.Errorf("txt2img: %d images, info %v (%v)", len(r.Images), info, err)
	}
}

// TestOpenWebUIOpenAI replays Open WebUI's OpenAI engine: generations with
// b64_json, then an edit with the image only (no mask, no
// response_format), both with a bearer key.
func TestOpenWebUIOpenAI(t *testing.T) {
	fm := &fakeModel{delay: time.Millisecond}
	_, ts := newTestServer(t, func(c *Config) { c.Open = fakeOpen(fm); c.APIKey = "sk-local" })
	c := client{t, ts.URL + "/v1", "Bearer sk-local"}
	var r openAIResp
	c.do("POST", "/images/generations", map[string]any{"model": "dall-e-2", "prompt": "a lighthouse", "n": 1, "size": "64x64", "response_format": "b64_json"}, &r)
	if len(r.Data) != 1 || r.Data[0].B64 == "" {
		t.Fatalf("generations %+v", r)
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("model", "gpt-image-1")
	mw.WriteField("prompt", "make it night")
	fw, _ := mw.CreateFormFile("image", "image.png")
	fw.Write(must64(r.Data[0].B64))
	mw.Close()
	req, _ := http.NewRequest("POST", ts.URL+"/v1/images/edits", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer sk-local")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var e openAIResp
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	// gpt-image-1 answers base64 without being asked.
	if resp.StatusCode != 200 || len(e.Data) != 1 || e.Data[0].B64 == "" {
		t.Errorf("edits: %d %+v", resp.StatusCode, e)
	}
	fm.mu.Lock()
	last := fm.calls[len(fm.calls)-1]
	fm.mu.Unlock()
	if last.InitImage == nil || last.Mask != nil || last.Strength != 0.75 {
		t.Errorf("edit without mask should be image-to-image: init %v, mask %v, strength %v", last.InitImage != nil, last.Mask != nil, last.Strength)
	}
}

// TestSillyTavern replays SillyTavern's Stable Diffusion (A1111) source:
// connect (options), fill the pickers (samplers, schedulers, sd-models,
// upscalers, latent-upscale-modes, sd-vae), set the model, generate while
// polling progress, and abort a generation with interrupt.
func TestSillyTavern(t *testing.T) {
	fm := &fakeModel{delay: 15 * time.Millisecond}
	_, ts := newTestServer(t, func(c *Config) {
		c.Open = fakeOpen(fm)
		c.ModelsDir = twoModels(t)
		c.Model = ""
		c.BasicAuth = "st:pw"
	})
	c := client{t, ts.URL, "Basic " + base64.StdEncoding.EncodeToString([]byte("st:pw"))}
	var opts map[string]any
	c.do("GET", "/sdapi/v1/options", nil, &opts)
	var samplers, schedulers, models, upscalers, latent, vaes []map[string]any
	c.do("GET", "/sdapi/v1/samplers", nil, &samplers)
	c.do("GET", "/sdapi/v1/schedulers", nil, &schedulers)
	c.do("GET", "/sdapi/v1/sd-models", nil, &models)
	c.do("GET", "/sdapi/v1/upscalers", nil, &upscalers)
	c.do("GET", "/sdapi/v1/latent-upscale-modes", nil, &latent)
	c.do("GET", "/sdapi/v1/sd-vae", nil, &vaes)
	if len(samplers) == 0 || len(schedulers) == 0 || len(models) != 2 || upscalers[0]["name"] != "None" {
		t.Fatalf("pickers: %d samplers, %d schedulers, %d models, upscalers %v", len(samplers), len(schedulers), len(models), upscalers)
	}
	c.do("POST", "/sdapi/v1/options", map[string]any{"sd_model_checkpoint": models[1]["title"]}, nil)
	c.do("GET", "/sdapi/v1/options", nil, &opts)
	if opts["sd_model_checkpoint"] != models[1]["title"] {
		t.Errorf("model not set: %v", opts["sd_model_checkpoint"])
	}
	body := map[string]any{"prompt": "a knight", "negative_prompt": "blurry", "sampler_name": samplers[0]["name"], "scheduler": schedulers[0]["name"],
		"steps": 6, "cfg_scale": 7, "width": 64, "height": 64, "restore_faces": false, "enable_hr": false, "hr_upscaler": "None",
		"denoising_strength": 0.7, "seed": -1, "override_settings": map[string]any{"CLIP_stop_at_last_layers": 1}, "override_settings_restore_afterwards": true,
		"save_images": false, "send_images": true, "do_not_save_grid": false, "do_not_save_samples": false}
	for _, abort := range []bool{false, true} {
		var wg sync.WaitGroup
		var r a1111Resp
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.do("POST", "/sdapi/v1/txt2img", body, &r)
		}()
		sawStep := false
		for i := 0; i < 1000; i++ {
			var p struct {
				Progress float64
				State    struct {
					JobCount     int `json:"job_count"`
					SamplingStep int `json:"sampling_step"`
				}
			}
			c.do("GET", "/sdapi/v1/progress?skip_current_image=true", nil, &p)
			if p.State.SamplingStep > 0 {
				sawStep = true
				if abort {
					c.do("POST", "/sdapi/v1/interrupt", nil, nil)
					break
				}
			}
			if sawStep && p.State.JobCount == 0 {
				break
			}
			time.Sleep(3 * time.Millisecond)
		}
		wg.Wait()
		if !sawStep || !abort && len(r.Images) != 1 || abort && len(r.Images) != 0 || r.Info == "" {
			t.Errorf("abort %v: saw a step %v, %d images", abort, sawStep, len(r.Images))
		}
	}
}
