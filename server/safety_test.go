package server

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAuth(t *testing.T) {
	fm := &fakeModel{delay: time.Millisecond}
	_, ts := newTestServer(t, func(c *Config) { c.Open = fakeOpen(fm); c.BasicAuth = "user:secret"; c.APIKey = "sk-test" })
	for _, c := range []struct {
		name string
		set  func(*http.Request)
		code int
	}{
		{"none", func(*http.Request) {}, 401},
		{"basic", func(r *http.Request) { r.SetBasicAuth("user", "secret") }, 200},
		{"basic wrong", func(r *http.Request) { r.SetBasicAuth("user", "secreT") }, 401},
		{"bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer sk-test") }, 200},
		{"bearer wrong", func(r *http.Request) { r.Header.Set("Authorization", "Bearer sk-tes") }, 401},
	} {
		for _, path := range []string{"/sdapi/v1/sd-models", "/v1/models", "/api/v1/health", "/metrics", "/"} {
			req, _ := http.NewRequest("GET", ts.URL+path, nil)
			c.set(req)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.code {
				t.Errorf("%s %s: %d, want %d", c.name, path, resp.StatusCode, c.code)
			}
			if c.code == 401 && path == "/v1/models" && !strings.Contains(string(body), `"authentication_error"`) {
				t.Errorf("OpenAI 401 shape: %s", body)
			}
			if c.code == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
		}
	}
}

func TestCORS(t *testing.T) {
	fm := &fakeModel{}
	_, open := newTestServer(t, func(c *Config) { c.Open = fakeOpen(fm) })
	_, ts := newTestServer(t, func(c *Config) { c.Open = fakeOpen(fm); c.CORSOrigins = []string{"http://app.example"} })
	get := func(base, origin, method string) *http.Response {
		req, _ := http.NewRequest(method, base+"/sdapi/v1/options", nil)
		req.Header.Set("Origin", origin)
		if method == "OPTIONS" {
			req.Header.Set("Access-Control-Request-Method", "POST")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := get(open.URL, "http://app.example", "GET"); r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Error("CORS headers without --cors-allow-origins")
	}
	if r := get(ts.URL, "http://evil.example", "GET"); r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Error("CORS allowed an unlisted origin")
	}
	if r := get(ts.URL, "http://app.example", "GET"); r.Header.Get("Access-Control-Allow-Origin") != "http://app.example" {
		t.Error("CORS refused a listed origin")
	}
	if r := get(ts.URL, "http://app.example", "OPTIONS"); r.StatusCode != 204 || r.Header.Get("Access-Control-Allow-Methods") == "" {
		t.Errorf("preflight %d", r.StatusCode)
	}
}

func TestBodyLimit(t *testing.T) {
	fm := &fakeModel{}
	_, ts := newTestServer(t, func(c *Config) { c.Open = fakeOpen(fm); c.Limits.MaxBodyBytes = 1000 })
	big := `{"prompt":"` + strings.Repeat("a", 2000) + `"}`
	var e map[string]any
	if code := call(t, "POST", ts.URL+"/sdapi/v1/txt2img", big, &e); code != 413 || e["errors"] != "body_too_large" {
		t.Errorf("A1111: %d %v", code, e)
	}
	var o openAIResp
	if code := call(t, "POST", ts.URL+"/v1/images/generations", big, &o); code != 413 || o.Error == nil || o.Error.Code != "body_too_large" {
		t.Errorf("OpenAI: %d %+v", code, o.Error)
	}
	var p map[string]any
	if code := call(t, "POST", ts.URL+"/sdapi/v1/txt2img", `{"prompt":"`+strings.Repeat("a", 900)+`"}`, &p); code != 200 {
		t.Errorf("under the limit: %d %v", code, p)
	}
}

// syncBuffer is a log sink the worker and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestPanicIsA500 checks that an engine panic fails its request with an
// id that the log holds, and that the server keeps serving.
func TestPanicIsA500(t *testing.T) {
	fm := &fakeModel{panicOn: "boom"}
	var logs syncBuffer
	_, ts := newTestServer(t, func(c *Config) {
		c.Open = fakeOpen(fm)
		c.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	})
	var e map[string]any
	code := call(t, "POST", ts.URL+"/sdapi/v1/txt2img", map[string]any{"prompt": "boom", "steps": 1}, &e)
	detail, _ := e["detail"].(string)
	id := strings.TrimPrefix(detail, "internal error ")
	if code != 500 || id == detail || !strings.Contains(logs.String(), id) || strings.Contains(detail, "fake engine") {
		t.Errorf("panic: %d %v; logs %s", code, e, logs.String())
	}
	var r a1111Resp
	if code := call(t, "POST", ts.URL+"/sdapi/v1/txt2img", map[string]any{"prompt": "fine", "steps": 1}, &r); code != 200 || len(r.Images) != 1 {
		t.Errorf("after the panic: %d", code)
	}
	var metrics bytes.Buffer
	resp, _ := http.Get(ts.URL + "/metrics")
	io.Copy(&metrics, resp.Body)
	resp.Body.Close()
	for _, want := range []string{"diffuse_errors_total 1", `diffuse_jobs_total{state="failed"} 1`, `diffuse_jobs_total{state="done"} 1`, "diffuse_queue_depth 0", "diffuse_step_seconds_count 1"} {
		if !strings.Contains(metrics.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, metrics.String())
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for _, c := range []Config{
		{},
		{Model: "/does/not/exist"},
		{Model: "x", BasicAuth: "nopassword"},
		{ModelsDir: t.TempDir()},
	} {
		if s, err := New(c); err == nil {
			s.Close()
			t.Errorf("%+v: no error", c)
		}
	}
}
