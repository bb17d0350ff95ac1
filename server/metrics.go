package server

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// metrics are the Prometheus series of /metrics, written in the text
// exposition format by hand (a handful of counters and two histograms do
// not need a client library).
type metrics struct {
	queued   atomic.Int64 // jobs waiting
	rejected atomic.Int64 // submissions refused for a full queue
	errors   atomic.Int64 // panics and failed jobs
	steps    atomic.Int64 // denoising steps run

	mu       sync.Mutex
	requests map[string]int64 // "path code" → count
	jobs     map[string]int64 // final state → count
	jobSecs  histogram
	stepSecs histogram
}

// histogram is a cumulative Prometheus histogram.
type histogram struct {
	bounds []float64
	counts []int64
	sum    float64
	n      int64
}

func newHistogram(bounds ...float64) histogram {
	return histogram{bounds: bounds, counts: make([]int64, len(bounds))}
}

func (h *histogram) observe(v float64) {
	for i, b := range h.bounds {
		if v <= b {
			h.counts[i]++
		}
	}
	h.sum += v
	h.n++
}

func (h *histogram) write(b *strings.Builder, name, help string) {
	fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name)
	for i, bound := range h.bounds {
		fmt.Fprintf(b, "%s_bucket{le=\"%g\"} %d\n", name, bound, h.counts[i])
	}
	fmt.Fprintf(b, "%s_bucket{le=\"+Inf\"} %d\n%s_sum %g\n%s_count %d\n", name, h.n, name, h.sum, name, h.n)
}

func newMetrics() *metrics {
	return &metrics{requests: map[string]int64{}, jobs: map[string]int64{},
		jobSecs:  newHistogram(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
		stepSecs: newHistogram(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)}
}

// observeRequest counts a request by route family and status code.
func (m *metrics) observeRequest(path string, code int, _ time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests[routeLabel(path)+" "+fmt.Sprint(code)]++
}

// routeLabel bounds the label's values: ids in paths are cut off.
func routeLabel(path string) string {
	for _, p := range []string{"/api/v1/jobs", "/v1/files/", "/static/"} {
		if strings.HasPrefix(path, p) {
			return p
		}
	}
	if strings.HasPrefix(path, "/sdapi/v1/") || strings.HasPrefix(path, "/v1/") || strings.HasPrefix(path, "/controlnet/") || path == "/" || path == "/metrics" {
		return path
	}
	return "other"
}

func (m *metrics) observeJob(j *Job, state string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.jobs[state]++
	if state == stateFailed {
		m.errors.Add(1)
	}
	m.jobSecs.observe(time.Since(j.Created).Seconds())
}

func (m *metrics) observeImage(d time.Duration, steps int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stepSecs.observe(d.Seconds() / float64(max(steps, 1)))
}

func (m *metrics) serve(w http.ResponseWriter, _ *http.Request) {
	var b strings.Builder
	gauge := func(name, help, typ string, v int64) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n%s %d\n", name, help, name, typ, name, v)
	}
	gauge("diffuse_queue_depth", "Jobs waiting in the queue.", "gauge", m.queued.Load())
	gauge("diffuse_queue_rejected_total", "Submissions refused because the queue was full.", "counter", m.rejected.Load())
	gauge("diffuse_errors_total", "Failed jobs and recovered panics.", "counter", m.errors.Load())
	gauge("diffuse_steps_total", "Denoising steps run.", "counter", m.steps.Load())
	m.mu.Lock()
	fmt.Fprintf(&b, "# HELP diffuse_http_requests_total HTTP requests by route and status code.\n# TYPE diffuse_http_requests_total counter\n")
	for _, k := range sortedKeys(m.requests) {
		route, code, _ := strings.Cut(k, " ")
		fmt.Fprintf(&b, "diffuse_http_requests_total{route=%q,code=%q} %d\n", route, code, m.requests[k])
	}
	fmt.Fprintf(&b, "# HELP diffuse_jobs_total Finished jobs by final state.\n# TYPE diffuse_jobs_total counter\n")
	for _, k := range sortedKeys(m.jobs) {
		fmt.Fprintf(&b, "diffuse_jobs_total{state=%q} %d\n", k, m.jobs[k])
	}
	m.jobSecs.write(&b, "diffuse_job_seconds", "Job latency from submission to the end.")
	m.stepSecs.write(&b, "diffuse_step_seconds", "Time per denoising step.")
	m.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Write([]byte(b.String()))
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
