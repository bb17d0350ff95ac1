package server

import (
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the Prometheus series of /metrics. Each Server has its own
// registry rather than the global default one, so that several servers
// in one process (tests, a worker beside a server) count apart.
type metrics struct {
	reg *prometheus.Registry
	// queued counts the jobs waiting on JetStream (submitted, not yet
	// started by a worker).
	queued atomic.Int64
	// depth is the queue depth the gauge reports (set by New before the
	// server serves).
	depth    func() int64
	rejected prometheus.Counter
	errors   prometheus.Counter
	steps    prometheus.Counter
	requests *prometheus.CounterVec // route, code
	jobs     *prometheus.CounterVec // final state
	jobSecs  prometheus.Histogram
	stepSecs prometheus.Histogram
	// routes are the fixed endpoint paths that get their own label
	// (filled by Server.routes before any request, read-only after).
	routes map[string]bool
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), routes: map[string]bool{"/": true}}
	m.depth = m.queued.Load
	m.rejected = prometheus.NewCounter(prometheus.CounterOpts{Name: "diffuse_queue_rejected_total",
		Help: "Submissions refused because the queue was full."})
	m.errors = prometheus.NewCounter(prometheus.CounterOpts{Name: "diffuse_errors_total",
		Help: "Failed jobs and recovered panics."})
	m.steps = prometheus.NewCounter(prometheus.CounterOpts{Name: "diffuse_steps_total",
		Help: "Denoising steps run."})
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "diffuse_http_requests_total",
		Help: "HTTP requests by route and status code."}, []string{"route", "code"})
	m.jobs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "diffuse_jobs_total",
		Help: "Finished jobs by final state."}, []string{"state"})
	// Jobs last from a tenth of a second (tiny models) to minutes (large
	// ones on CPU); steps from milliseconds to tens of seconds.
	m.jobSecs = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "diffuse_job_seconds",
		Help:    "Job latency from submission to the end.",
		Buckets: []float64{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}})
	m.stepSecs = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "diffuse_step_seconds",
		Help:    "Time per denoising step.",
		Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}})
	depth := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "diffuse_queue_depth", Help: "Jobs waiting in the queue."},
		func() float64 { return float64(m.depth()) })
	m.reg.MustRegister(m.rejected, m.errors, m.steps, m.requests, m.jobs, m.jobSecs, m.stepSecs, depth,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// handler serves the registry in the exposition format the scraper asks
// for.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// observeRequest counts a request by route family and status code.
func (m *metrics) observeRequest(path string, code int) {
	m.requests.WithLabelValues(m.routeLabel(path), strconv.Itoa(code)).Inc()
}

// routeLabel bounds the label's values: ids in paths are cut off, and
// paths that are no endpoint (a client probing random URLs) share one
// value instead of growing the label set.
func (m *metrics) routeLabel(path string) string {
	for _, p := range []string{"/api/v1/jobs/", "/v1/files/"} {
		if strings.HasPrefix(path, p) {
			return p
		}
	}
	if m.routes[path] {
		return path
	}
	return "other"
}

func (m *metrics) observeJob(j *Job, state string) {
	m.jobs.WithLabelValues(state).Inc()
	if state == stateFailed {
		m.errors.Inc()
	}
	m.jobSecs.Observe(time.Since(j.Created).Seconds())
}

func (m *metrics) observeImage(d time.Duration, steps int) {
	m.stepSecs.Observe(d.Seconds() / float64(max(steps, 1)))
}
