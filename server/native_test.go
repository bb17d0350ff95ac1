package server

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

type jobStatus struct {
	ID, Status string
	Progress   float64
	Images     int
	ImagesDone int `json:"images_done"`
	Error      *struct{ Code, Message string }
	Result     []struct {
		URL        string
		Seed       int64
		Parameters string
	}
}

// sseEvents reads server-sent events until the stream ends.
func sseEvents(t *testing.T, ctx context.Context, url string, each func(event string, data []byte) bool) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	var event string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = line[7:]
		case strings.HasPrefix(line, "data: "):
			if !each(event, []byte(line[6:])) {
				return
			}
		}
	}
}

func TestJobsAPI(t *testing.T) {
	fm := &fakeModel{delay: 10 * time.Millisecond}
	_, ts := newTestServer(t, func(c *Config) { c.Open = fakeOpen(fm) })
	var st jobStatus
	code := call(t, "POST", ts.URL+"/api/v1/jobs", map[string]any{"id": "job-1", "prompt": "p", "steps": 4, "count": 2, "seed": 5}, &st)
	if code != 202 || st.ID != "job-1" || st.Status == "" {
		t.Fatalf("submit: %d %+v", code, st)
	}
	var progress, previews int
	var done jobStatus
	sseEvents(t, context.Background(), ts.URL+"/api/v1/jobs/job-1/events", func(event string, data []byte) bool {
		switch event {
		case "progress":
			var ev struct {
				Step, Steps int
				Preview     string
				ETA         *float64 `json:"eta_seconds"`
			}
			json.Unmarshal(data, &ev)
			progress++
			if strings.HasPrefix(ev.Preview, "data:image/png;base64,") {
				previews++
			}
			if ev.Steps != 4 || ev.ETA == nil {
				t.Errorf("progress event %s", data)
			}
		case "done":
			json.Unmarshal(data, &done)
			return false
		}
		return true
	})
	if progress < 2 || previews != progress || done.Status != "done" || len(done.Result) != 2 || done.Result[1].Seed != 6 {
		t.Errorf("%d progress events, %d previews, done %+v", progress, previews, done)
	}
	// The same id again is the same job, not a second one.
	var again jobStatus
	if code := call(t, "POST", ts.URL+"/api/v1/jobs", map[string]any{"id": "job-1", "prompt": "other"}, &again); code != 200 || again.ID != "job-1" || len(again.Result) != 2 {
		t.Errorf("idempotent submit: %d %+v", code, again)
	}
	if n := len(fm.calls); n != 2 {
		t.Errorf("%d generations, want 2", n)
	}
	resp, err := http.Get(ts.URL + done.Result[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" || !strings.Contains(string(body), "parameters") {
		t.Errorf("image: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, u := range []string{"/api/v1/jobs/nope", "/api/v1/jobs/job-1/images/9"} {
		var e map[string]map[string]string
		if code := call(t, "GET", ts.URL+u, nil, &e); code != 404 || e["error"]["code"] == "" {
			t.Errorf("%s: %d %v", u, code, e)
		}
	}
	var health map[string]any
	call(t, "GET", ts.URL+"/api/v1/health", nil, &health)
	if health["status"] != "ok" || health["loaded_model"] != "fake" {
		t.Errorf("health %v", health)
	}
}

func TestJobCancelAndDisconnect(t *testing.T) {
	fm := &fakeModel{delay: 20 * time.Millisecond}
	_, ts := newTestServer(t, func(c *Config) { c.Open = fakeOpen(fm) })
	var st jobStatus
	call(t, "POST", ts.URL+"/api/v1/jobs", map[string]any{"prompt": "p", "steps": 100}, &st)
	time.Sleep(50 * time.Millisecond)
	var c jobStatus
	if code := call(t, "DELETE", ts.URL+"/api/v1/jobs/"+st.ID, nil, &c); code != 200 || c.Status != "cancelled" {
		t.Errorf("cancel: %d %+v", code, c)
	}
	// An event client that leaves with cancel_on_disconnect cancels.
	call(t, "POST", ts.URL+"/api/v1/jobs", map[string]any{"prompt": "p", "steps": 100}, &st)
	ctx, cancel := context.WithCancel(context.Background())
	sseEvents(t, ctx, ts.URL+"/api/v1/jobs/"+st.ID+"/events?cancel_on_disconnect=1", func(event string, _ []byte) bool {
		if event == "progress" {
			cancel()
			return false
		}
		return true
	})
	waitState(t, ts.URL, st.ID, "cancelled")
	// A synchronous A1111 client that hangs up cancels its job too.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	req, _ := http.NewRequestWithContext(ctx2, "POST", ts.URL+"/sdapi/v1/txt2img", strings.NewReader(`{"prompt":"hang up","steps":100}`))
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("the request should time out")
	}
	deadline := time.Now().Add(5 * time.Second)
	for fm.running.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if fm.running.Load() != 0 {
		t.Error("the job of a client that hung up still runs")
	}
}

func waitState(t *testing.T, base, id, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var st jobStatus
	for time.Now().Before(deadline) {
		call(t, "GET", base+"/api/v1/jobs/"+id, nil, &st)
		if st.Status == want {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Errorf("job %s: state %q, want %q", id, st.Status, want)
}

func TestQueueFull(t *testing.T) {
	fm := &fakeModel{delay: 20 * time.Millisecond}
	_, ts := newTestServer(t, func(c *Config) { c.Open = fakeOpen(fm); c.QueueSize = 2 })
	codes := map[int]int{}
	var ids []string
	for range 6 {
		req, _ := http.NewRequest("POST", ts.URL+"/api/v1/jobs", strings.NewReader(`{"prompt":"p","steps":20}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var st jobStatus
		json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		codes[resp.StatusCode]++
		if resp.StatusCode == 429 && resp.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
		if st.ID != "" {
			ids = append(ids, st.ID)
		}
	}
	// Two waiting and one running at most: two or three accepted (two
	// when the worker has not taken the first yet).
	if codes[202] < 2 || codes[202] > 3 || codes[429] != 6-codes[202] {
		t.Errorf("codes %v", codes)
	}
	for _, id := range ids {
		call(t, "DELETE", ts.URL+"/api/v1/jobs/"+id, nil, nil)
	}
}
