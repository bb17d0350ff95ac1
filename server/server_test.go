package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/diffuse-go/diffuse/internal/testmodel"
)

var (
	tinyOnce sync.Once
	tiny     testmodel.Folders
	tinyDir  string
	tinyErr  error
)

// tinyModels writes the tiny golden models once: ModelsDir holds
// tiny-sd, ControlNetDir control-tiny.
func tinyModels(t testing.TB) (testmodel.Folders, string) {
	t.Helper()
	tinyOnce.Do(func() {
		tinyDir, tinyErr = os.MkdirTemp("", "diffuse-server-test")
		if tinyErr == nil {
			tiny, tinyErr = testmodel.Write(tinyDir)
		}
	})
	if tinyErr != nil {
		t.Fatal(tinyErr)
	}
	return tiny, tinyDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if tinyDir != "" {
		os.RemoveAll(tinyDir)
	}
	os.Exit(code)
}

func newTestServerLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// tinyFolder is the tiny SD folder.
func tinyFolder(t testing.TB) string {
	f, _ := tinyModels(t)
	return f.SD
}

// newTestServer serves the tiny models; edit adjusts the config.
func newTestServer(t testing.TB, edit func(*Config)) (*Server, *httptest.Server) {
	t.Helper()
	f, dir := tinyModels(t)
	cfg := Config{Model: f.SD, ControlNetDir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		ts.Close()
		s.Close()
	})
	return s, ts
}

// call sends a JSON request and decodes the JSON answer into out (when
// not nil); it returns the status code.
func call(t testing.TB, method, url string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		if s, ok := body.(string); ok {
			rd = strings.NewReader(s)
		} else {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %q: %v", method, url, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

// pngB64 encodes a w×h test picture.
func pngB64(w, h int, alpha bool) string {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := color.NRGBA{uint8(x * 4), uint8(y * 4), 128, 255}
			if alpha && x < w/2 {
				c.A = 0
			}
			img.SetNRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	png.Encode(&buf, img)
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

func decodePNG(t testing.TB, b64 string) image.Image {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestTxt2ImgSmoke(t *testing.T) {
	_, ts := newTestServer(t, nil)
	var resp struct {
		Images     []string       `json:"images"`
		Parameters map[string]any `json:"parameters"`
		Info       string         `json:"info"`
	}
	code := call(t, "POST", ts.URL+"/sdapi/v1/txt2img", map[string]any{"prompt": "a cat", "steps": 2, "width": 64, "height": 64, "seed": 7, "batch_size": 2}, &resp)
	if code != 200 || len(resp.Images) != 2 {
		t.Fatalf("code %d, %d images", code, len(resp.Images))
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(resp.Info), &info); err != nil {
		t.Fatal(err)
	}
	t.Logf("info %v", info)
}
