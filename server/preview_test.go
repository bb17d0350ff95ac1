package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// previewSizes submits a native job and returns the width of the preview
// of every progress event, by step.
func previewSizes(t *testing.T, base string, body map[string]any) map[int]int {
	t.Helper()
	var st jobStatus
	if code := call(t, "POST", base+"/api/v1/jobs", body, &st); code != 202 {
		t.Fatalf("submit: %d", code)
	}
	sizes := map[int]int{}
	sseEvents(t, context.Background(), base+"/api/v1/jobs/"+st.ID+"/events", func(event string, data []byte) bool {
		if event != "progress" {
			return event == "queued"
		}
		var ev struct {
			Step    int
			Preview string
		}
		json.Unmarshal(data, &ev)
		if b64, ok := strings.CutPrefix(ev.Preview, "data:image/png;base64,"); ok {
			sizes[ev.Step] = decodePNG(t, b64).Bounds().Dx()
		}
		return true
	})
	return sizes
}

// TestFullPreviews asks for VAE previews: every preview is image-sized
// (64 wide) where cheap ones are latent-sized (8), and the VAE runs at
// the asked steps only: every 2nd of 5 and the last.
func TestFullPreviews(t *testing.T) {
	fm := &fakeModel{delay: 30 * time.Millisecond}
	_, ts := newTestServer(t, func(c *Config) { c.Open = fakeOpen(fm) })
	cheap := previewSizes(t, ts.URL, map[string]any{"prompt": "p", "steps": 3, "width": 64, "height": 64})
	if len(cheap) == 0 || fm.decodes.Load() != 0 {
		t.Fatalf("cheap previews %v, %d decodes", cheap, fm.decodes.Load())
	}
	for step, w := range cheap {
		if w != 8 {
			t.Errorf("cheap preview of step %d is %d wide, want 8", step, w)
		}
	}
	full := previewSizes(t, ts.URL, map[string]any{"prompt": "p", "steps": 5, "width": 64, "height": 64, "preview": "full", "preview_every": 2})
	if d := fm.decodes.Load(); d != 3 {
		t.Errorf("%d VAE decodes, want 3 (steps 2, 4, 5)", d)
	}
	for step, w := range full {
		if want := map[bool]int{true: 8, false: 64}[step < 2]; w != want {
			t.Errorf("full previews: step %d is %d wide, want %d", step, w, want)
		}
	}
	if len(full) == 0 {
		t.Error("no previews")
	}
	var e map[string]map[string]string
	if code := call(t, "POST", ts.URL+"/api/v1/jobs", map[string]any{"prompt": "p", "preview": "sharp"}, &e); code != 400 || e["error"]["code"] != "bad_preview" {
		t.Errorf("bad preview: %d %v", code, e)
	}
}

// TestA1111FullPreview sets show_progress_type "Full" through options:
// progress then shows the VAE preview (image-sized) as current_image.
func TestA1111FullPreview(t *testing.T) {
	fm := &fakeModel{delay: 40 * time.Millisecond}
	_, ts := newTestServer(t, func(c *Config) { c.Open = fakeOpen(fm) })
	if code := call(t, "POST", ts.URL+"/sdapi/v1/options", map[string]any{"show_progress_type": "Full", "show_progress_every_n_steps": 1}, nil); code != 200 {
		t.Fatalf("options %d", code)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		call(t, "POST", ts.URL+"/sdapi/v1/txt2img", map[string]any{"prompt": "p", "steps": 6, "width": 64, "height": 64}, nil)
	}()
	width := 0
	for deadline := time.Now().Add(10 * time.Second); width == 0 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		var p struct {
			CurrentImage *string `json:"current_image"`
		}
		call(t, "GET", ts.URL+"/sdapi/v1/progress", nil, &p)
		if p.CurrentImage != nil {
			b, _ := base64.StdEncoding.DecodeString(*p.CurrentImage)
			if len(b) > 0 {
				width = decodePNG(t, *p.CurrentImage).Bounds().Dx()
			}
		}
	}
	<-done
	if width != 64 || fm.decodes.Load() != 6 {
		t.Errorf("current_image %d wide, %d decodes; want 64 and 6", width, fm.decodes.Load())
	}
	// A request's override_settings take precedence over the options.
	call(t, "POST", ts.URL+"/sdapi/v1/txt2img", map[string]any{"prompt": "p", "steps": 3, "width": 64, "height": 64,
		"override_settings": map[string]any{"show_progress_type": "Approx cheap"}}, nil)
	if d := fm.decodes.Load(); d != 6 {
		t.Errorf("override to cheap still decoded (%d)", d)
	}
}

// TestNATSFullPreview carries VAE previews from a worker to the server.
func TestNATSFullPreview(t *testing.T) {
	ns := embeddedNATS(t, t.TempDir())
	defer ns.Shutdown()
	fm := &fakeModel{delay: 30 * time.Millisecond}
	_, ts := natsServer(t, connect(t, ns), fm, true)
	sizes := previewSizes(t, ts.URL, map[string]any{"prompt": "p", "steps": 4, "width": 64, "height": 64, "preview": "full"})
	got64 := false
	for _, w := range sizes {
		got64 = got64 || w == 64
	}
	if !got64 || fm.decodes.Load() != 4 {
		t.Errorf("previews through NATS %v, %d decodes", sizes, fm.decodes.Load())
	}
}
