package server

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diffuse-go/diffuse/pipeline"
)

// vaeFolder writes a VAE folder: two files (one in a sub-folder), a
// diffusers VAE folder, and what is not a VAE (a UNet folder, a text
// file).
func vaeFolder(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	write := func(rel, data string) {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("vae-ft-mse.safetensors", "x")
	write("sub/anime.safetensors", "x")
	write("sdxl-vae/config.json", `{"_class_name": "AutoencoderKL", "latent_channels": 4}`)
	write("sdxl-vae/diffusion_pytorch_model.safetensors", "x")
	write("unet/config.json", `{"_class_name": "UNet2DConditionModel"}`)
	write("notes.txt", "x")
	return dir
}

// openRecorder is a Config.Open that records the VAE each open was given.
type openRecorder struct {
	mu   sync.Mutex
	vaes []string
	opts []pipeline.Options
	fm   fakeModel
}

func (o *openRecorder) open(_ context.Context, _ string, opt pipeline.Options) (pipeline.Model, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.vaes = append(o.vaes, opt.Components.VAE)
	o.opts = append(o.opts, opt)
	return &o.fm, nil
}

// opened returns the VAEs opened so far.
func (o *openRecorder) opened() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.vaes...)
}

func TestSDVAEList(t *testing.T) {
	dir := vaeFolder(t)
	_, ts := newTestServer(t, func(c *Config) { c.VAEDir = dir })
	var list []map[string]any
	if code := call(t, "GET", ts.URL+"/sdapi/v1/sd-vae", nil, &list); code != 200 {
		t.Fatalf("sd-vae: %d", code)
	}
	want := []map[string]any{
		{"model_name": "sdxl-vae", "filename": filepath.Join(dir, "sdxl-vae")},
		{"model_name": "sub/anime.safetensors", "filename": filepath.Join(dir, "sub", "anime.safetensors")},
		{"model_name": "vae-ft-mse.safetensors", "filename": filepath.Join(dir, "vae-ft-mse.safetensors")},
	}
	if len(list) != len(want) {
		t.Fatalf("sd-vae %v, want %v", list, want)
	}
	for i, w := range want {
		if list[i]["model_name"] != w["model_name"] || list[i]["filename"] != w["filename"] || !filepath.IsAbs(list[i]["filename"].(string)) {
			t.Errorf("sd-vae[%d] = %v, want %v", i, list[i], w)
		}
	}
}

// TestSDVAESelection: the VAE comes from override_settings.sd_vae, then
// the sd_vae option, else the checkpoint's own; it reaches the Open call
// as Options.Components.VAE (a copy of the server's Options) and the
// info as sd_vae_name; a change reloads the model, the same VAE does not.
func TestSDVAESelection(t *testing.T) {
	dir := vaeFolder(t)
	rec := &openRecorder{}
	s, ts := newTestServer(t, func(c *Config) {
		c.VAEDir, c.Open = dir, rec.open
		c.Options.Components.TextEncoder = "/keep/te"
	})
	gen := func(override map[string]any) string {
		t.Helper()
		var r a1111Resp
		body := map[string]any{"prompt": "x", "steps": 1, "width": 64, "height": 64}
		if override != nil {
			body["override_settings"] = override
		}
		if code := call(t, "POST", ts.URL+"/sdapi/v1/txt2img", body, &r); code != 200 {
			t.Fatalf("txt2img %v: %d", override, code)
		}
		var info struct {
			VAE *string `json:"sd_vae_name"`
		}
		json.Unmarshal([]byte(r.Info), &info)
		if info.VAE == nil {
			return ""
		}
		return *info.VAE
	}
	mse := filepath.Join(dir, "vae-ft-mse.safetensors")
	if v := gen(nil); v != "" {
		t.Errorf("default: sd_vae_name %q, want null", v)
	}
	if code := call(t, "POST", ts.URL+"/sdapi/v1/options", map[string]any{"sd_vae": "vae-ft-mse"}, nil); code != 200 {
		t.Fatalf("POST options sd_vae: %d", code)
	}
	var opts map[string]any
	call(t, "GET", ts.URL+"/sdapi/v1/options", nil, &opts)
	if opts["sd_vae"] != "vae-ft-mse.safetensors" {
		t.Errorf("options sd_vae %v", opts["sd_vae"])
	}
	steps := []struct {
		override map[string]any
		info     string
	}{
		{nil, "vae-ft-mse.safetensors"}, // the option: reloads
		{nil, "vae-ft-mse.safetensors"}, // the same: no reload
		{map[string]any{"sd_vae": "Automatic"}, ""},
		{map[string]any{"sd_vae": "sdxl-vae"}, "sdxl-vae"},
		{map[string]any{"sd_vae": "anime.safetensors"}, "sub/anime.safetensors"},
		{map[string]any{"sd_vae": "None"}, ""},
	}
	for _, st := range steps {
		if v := gen(st.override); v != st.info {
			t.Errorf("override %v: sd_vae_name %q, want %q", st.override, v, st.info)
		}
	}
	want := []string{"", mse, "", filepath.Join(dir, "sdxl-vae"), filepath.Join(dir, "sub", "anime.safetensors"), ""}
	if got := rec.opened(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("opened with VAEs %q, want %q", got, want)
	}
	for _, o := range rec.opts {
		if o.Components.TextEncoder != "/keep/te" {
			t.Errorf("Open lost the server's Options: %+v", o.Components)
		}
	}
	if s.cfg.Options.Components.VAE != "" {
		t.Errorf("the server's Options were changed: %+v", s.cfg.Options.Components)
	}
}

// TestSDVAEOptionSwitchesWithModel: a model switch through POST options
// loads the model with the sd_vae given beside it.
func TestSDVAEOptionSwitchesWithModel(t *testing.T) {
	dir := vaeFolder(t)
	rec := &openRecorder{}
	_, ts := newTestServer(t, func(c *Config) { c.VAEDir, c.Open = dir, rec.open })
	if code := call(t, "POST", ts.URL+"/sdapi/v1/options", map[string]any{"sd_model_checkpoint": "tiny-sd", "sd_vae": "sdxl-vae"}, nil); code != 200 {
		t.Fatalf("POST options: %d", code)
	}
	if got := rec.opened(); len(got) != 1 || got[0] != filepath.Join(dir, "sdxl-vae") {
		t.Errorf("opened with VAEs %q", got)
	}
}

// TestSDVAERefused: a name outside the VAE folder (unknown, a traversal,
// an absolute path, a non-VAE folder) or of the wrong type is a 400 naming
// sd_vae, in override_settings and in POST options alike; a refused
// option leaves the stored one.
func TestSDVAERefused(t *testing.T) {
	dir := vaeFolder(t)
	outside := filepath.Join(t.TempDir(), "secret.safetensors")
	os.WriteFile(outside, []byte("x"), 0o644)
	rec := &openRecorder{}
	_, ts := newTestServer(t, func(c *Config) { c.VAEDir, c.Open = dir, rec.open })
	rel, _ := filepath.Rel(dir, outside)
	for _, n := range []any{"nope", "../x", rel, outside, "unet", "notes.txt", 3} {
		var e map[string]any
		code := call(t, "POST", ts.URL+"/sdapi/v1/txt2img", map[string]any{"prompt": "x", "override_settings": map[string]any{"sd_vae": n}}, &e)
		if detail, _ := e["detail"].(string); code != 400 || !strings.Contains(detail, "sd_vae") {
			t.Errorf("override sd_vae %v: %d %v", n, code, e)
		}
		code = call(t, "POST", ts.URL+"/sdapi/v1/options", map[string]any{"sd_vae": n}, &e)
		if detail, _ := e["detail"].(string); code != 400 || !strings.Contains(detail, "sd_vae") {
			t.Errorf("options sd_vae %v: %d %v", n, code, e)
		}
	}
	var opts map[string]any
	call(t, "GET", ts.URL+"/sdapi/v1/options", nil, &opts)
	if opts["sd_vae"] != "Automatic" {
		t.Errorf("a refused sd_vae was stored: %v", opts["sd_vae"])
	}
	if got := rec.opened(); len(got) != 0 {
		t.Errorf("a refused request opened a model: %q", got)
	}
	// Without a VAE folder only the checkpoint's own VAE may be asked for.
	_, ts2 := newTestServer(t, func(c *Config) { c.Open = rec.open })
	var e map[string]any
	if code := call(t, "POST", ts2.URL+"/sdapi/v1/txt2img", map[string]any{"prompt": "x", "override_settings": map[string]any{"sd_vae": "vae-ft-mse"}}, &e); code != 400 || e["errors"] != "sd_vae_not_found" {
		t.Errorf("no VAE folder: %d %v", code, e)
	}
	if code := call(t, "POST", ts2.URL+"/sdapi/v1/txt2img", map[string]any{"prompt": "x", "steps": 1, "override_settings": map[string]any{"sd_vae": "None"}}, nil); code != 200 {
		t.Errorf("no VAE folder, sd_vae None: %d", code)
	}
}

// TestSDVAEOverNATS: the job carries the VAE's name; the worker resolves
// it in its own VAE folder.
func TestSDVAEOverNATS(t *testing.T) {
	ns := embeddedNATS(t, t.TempDir())
	defer ns.Shutdown()
	serverDir, workerDir := vaeFolder(t), vaeFolder(t)
	_, ts := newTestServer(t, func(c *Config) {
		c.VAEDir, c.Open = serverDir, fakeOpen(&fakeModel{})
		c.NATS, c.NATSAckWait = connect(t, ns), time.Second
	})
	rec := &openRecorder{}
	f, _ := tinyModels(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		cfg := Config{Model: f.SD, VAEDir: workerDir, Open: rec.open, Logger: newTestServerLogger()}
		if err := RunWorker(ctx, cfg, connect(t, ns), "w"); err != nil {
			t.Error(err)
		}
	}()
	defer func() { cancel(); <-done }()
	var r a1111Resp
	body := map[string]any{"prompt": "x", "steps": 1, "override_settings": map[string]any{"sd_vae": "vae-ft-mse"}}
	if code := call(t, "POST", ts.URL+"/sdapi/v1/txt2img", body, &r); code != 200 {
		t.Fatalf("txt2img: %d", code)
	}
	if got := rec.opened(); len(got) != 1 || got[0] != filepath.Join(workerDir, "vae-ft-mse.safetensors") {
		t.Errorf("worker opened with VAEs %q, want its own folder's", got)
	}
	if !strings.Contains(r.Info, `"sd_vae_name":"vae-ft-mse.safetensors"`) {
		t.Errorf("info %s", r.Info)
	}
}
