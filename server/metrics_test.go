package server

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads a server's /metrics with Prometheus' own text parser.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// value is the value of the sample of fam whose labels include want
// (-1 when there is none).
func value(fams map[string]*dto.MetricFamily, fam string, want ...string) float64 {
	f := fams[fam]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, l := range m.Label {
				found = found || l.GetName() == want[i] && l.GetValue() == want[i+1]
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

// TestMetrics follows the series through a queue of one: a running job,
// a waiting one, a refused one; then two finished jobs, their steps and
// latencies, requests by route (unknown paths under one label), and a
// second server in the same process that counts apart.
func TestMetrics(t *testing.T) {
	fm := &fakeModel{delay: 20 * time.Millisecond}
	s, ts := newTestServer(t, func(c *Config) { c.Open = fakeOpen(fm); c.QueueSize = 1 })
	_, other := newTestServer(t, func(c *Config) { c.Open = fakeOpen(fm) })
	var a, b jobStatus
	if code := call(t, "POST", ts.URL+"/api/v1/jobs", map[string]any{"prompt": "a", "steps": 5}, &a); code != 202 {
		t.Fatalf("first job %d", code)
	}
	waitState(t, ts.URL, a.ID, stateRunning)
	if code := call(t, "POST", ts.URL+"/api/v1/jobs", map[string]any{"prompt": "b", "steps": 5}, &b); code != 202 {
		t.Fatalf("second job %d", code)
	}
	if code := call(t, "POST", ts.URL+"/api/v1/jobs", map[string]any{"prompt": "c", "steps": 5}, nil); code != 429 {
		t.Fatalf("third job %d, want 429", code)
	}
	f := scrape(t, ts.URL)
	if d, r := value(f, "diffuse_queue_depth"), value(f, "diffuse_queue_rejected_total"); d != 1 || r != 1 {
		t.Errorf("queue depth %v, rejected %v; want 1 and 1", d, r)
	}
	waitState(t, ts.URL, b.ID, stateDone)
	for _, p := range []string{"/sdapi/v1/nope", "/sdapi/v1/nope2", "/v1/whatever"} {
		call(t, "GET", ts.URL+p, nil, nil)
	}
	call(t, "GET", ts.URL+"/sdapi/v1/samplers", nil, nil)
	f = scrape(t, ts.URL)
	for _, c := range []struct {
		fam    string
		labels []string
		want   float64
	}{
		{"diffuse_queue_depth", nil, 0},
		{"diffuse_jobs_total", []string{"state", "done"}, 2},
		{"diffuse_job_seconds", nil, 2},
		{"diffuse_step_seconds", nil, 2},
		{"diffuse_steps_total", nil, 10},
		{"diffuse_errors_total", nil, 0},
		{"diffuse_http_requests_total", []string{"route", "/api/v1/jobs", "code", "202"}, 2},
		{"diffuse_http_requests_total", []string{"route", "/api/v1/jobs", "code", "429"}, 1},
		{"diffuse_http_requests_total", []string{"route", "/api/v1/jobs/", "code", "200"}, -2}, // polled: any count
		{"diffuse_http_requests_total", []string{"route", "other", "code", "404"}, 3},
		{"diffuse_http_requests_total", []string{"route", "/sdapi/v1/samplers", "code", "200"}, 1},
	} {
		got := value(f, c.fam, c.labels...)
		if c.want == -2 && got < 1 || c.want != -2 && got != c.want {
			t.Errorf("%s%v = %v, want %v", c.fam, c.labels, got, c.want)
		}
	}
	if got := value(f, "diffuse_http_requests_total", "route", "/sdapi/v1/nope"); got != -1 {
		t.Errorf("an unknown path got its own label (%v)", got)
	}
	if value(f, "go_goroutines") <= 0 || value(f, "process_resident_memory_bytes") < 0 && value(f, "process_cpu_seconds_total") < 0 {
		t.Error("runtime and process series missing")
	}
	if got := value(scrape(t, other.URL), "diffuse_jobs_total", "state", "done"); got != -1 {
		t.Errorf("the other server counts this one's jobs: %v", got)
	}
	problems, err := testutil.GatherAndLint(s.metrics.reg)
	if err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %v", problems, err)
	}
	if ct := contentType(t, ts.URL+"/metrics"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("content type %q", ct)
	}
}

func contentType(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.Header.Get("Content-Type")
}
