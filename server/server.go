package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"runtime/debug"
	"sort"
	"sync"
	"time"

	"github.com/diffuse-go/diffuse/pipeline"
)

// Server is the HTTP server. It implements http.Handler; Close stops its
// worker.
type Server struct {
	cfg        Config
	lim        Limits
	log        *slog.Logger
	mux        *http.ServeMux
	extraModel entry
	open       func(ctx context.Context, path string, opt pipeline.Options) (pipeline.Model, error)
	metrics    *metrics
	files      *fileStore
	broker     *broker // nil: the in-process queue

	queue chan *Job
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup

	mu       sync.Mutex
	jobs     map[string]*Job
	current  *Job   // the running job
	defModel string // the catalog name of the default model
	options  map[string]any

	// The worker's model: touched by the worker, read under mu for Info.
	model     pipeline.Model
	modelName string
	modelVAE  string // the VAE folder's name of its VAE ("": its own)
}

// New builds a server from cfg and starts its worker. The default model is
// resolved now (a typo fails here) but loaded by the first job.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, lim: cfg.Limits.withDefaults(), log: cfg.Logger, open: cfg.Open,
		jobs: map[string]*Job{}, options: map[string]any{}, metrics: newMetrics()}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.open == nil {
		s.open = pipeline.Open
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 16
		s.cfg.QueueSize = 16
	}
	if cfg.URLTTL == 0 {
		s.cfg.URLTTL = time.Hour
	}
	s.files = newFileStore(s.cfg.URLTTL)
	if err := s.resolveDefault(); err != nil {
		return nil, err
	}
	if s.cfg.NATSAckWait == 0 {
		s.cfg.NATSAckWait = 30 * time.Second
	}
	s.queue = make(chan *Job, s.cfg.QueueSize)
	s.metrics.depth = s.queueDepth
	s.ctx, s.stop = context.WithCancel(context.Background())
	if cfg.NATS != nil {
		if err := s.startBroker(cfg.NATS); err != nil {
			s.stop()
			return nil, err
		}
		if cfg.LocalWorker {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				if err := RunWorker(s.ctx, s.cfg, cfg.NATS, "local"); err != nil {
					s.log.Error("local worker", "err", err)
				}
			}()
		}
	}
	s.routes()
	s.wg.Add(1)
	go s.work()
	return s, nil
}

// resolveDefault finds the default model among the catalog, or takes a
// path outside ModelsDir as one more catalog entry.
func (s *Server) resolveDefault() error {
	m := s.cfg.Model
	if m != "" {
		if e, err := find(scan(s.cfg.ModelsDir, isPipelineDir, true), m, "model"); err == nil {
			s.defModel = e.Name
			return nil
		}
		if _, err := pipeline.Probe(m); err != nil {
			return fmt.Errorf("server: model %s: %w", m, err)
		}
		abs, _ := filepath.Abs(m)
		base := filepath.Base(abs)
		s.extraModel = entry{Name: pipeline.ModelName(abs), Title: base, Path: abs}
		s.defModel = s.extraModel.Name
		return nil
	}
	list := s.models()
	if len(list) == 0 {
		return fmt.Errorf("server: no models in %s", s.cfg.ModelsDir)
	}
	s.defModel = list[0].Name
	return nil
}

// Close stops taking jobs, cancels the queued and running ones, waits for
// the worker and closes the model.
func (s *Server) Close() error {
	s.stop()
	s.wg.Wait()
	if s.broker != nil {
		s.broker.sub.Unsubscribe()
	}
	if s.model != nil {
		s.model.Close()
		s.model = nil
	}
	return nil
}

// ServeHTTP serves a request through the middleware: panics become a 500
// with an id, auth and CORS are checked, bodies are bounded.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusWriter{ResponseWriter: w, status: 200}
	defer func() {
		if v := recover(); v != nil {
			id := newID()
			s.log.Error("panic", "id", id, "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			s.metrics.errors.Inc()
			if !rec.wrote {
				writeError(rec, styleOf(r.URL.Path), &apiError{Status: 500, Code: "internal_error", Message: "internal error " + id})
			}
		}
		s.metrics.observeRequest(r.URL.Path, rec.status)
		s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", rec.status, "duration", time.Since(start))
	}()
	if !s.cors(rec, r) {
		return
	}
	if !s.authorized(r) {
		if s.cfg.BasicAuth != "" {
			rec.Header().Set("WWW-Authenticate", `Basic realm="diffuse"`)
		}
		writeError(rec, styleOf(r.URL.Path), &apiError{Status: http.StatusUnauthorized, Code: "unauthorized", Message: "missing or wrong credentials"})
		return
	}
	if r.Body != nil {
		r.Body = http.MaxBytesReader(rec, r.Body, s.lim.MaxBodyBytes)
	}
	s.mux.ServeHTTP(rec, r)
}

// statusWriter remembers the status for logs and whether a header went out.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Flush lets server-sent events through.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// errQueueFull is the refusal of a submission past the queue bound.
var errQueueFull = &apiError{Status: http.StatusTooManyRequests, Code: "queue_full", Message: "the queue is full; retry later", RetryAfter: 2}

// errShuttingDown refuses work while the server stops.
var errShuttingDown = &apiError{Status: http.StatusServiceUnavailable, Code: "shutting_down", Message: "the server is shutting down"}

// submit queues a job, or returns the job already known under its id
// (idempotent submission).
func (s *Server) submit(j *Job) (*Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return nil, errShuttingDown
	}
	s.sweep()
	if old, ok := s.jobs[j.ID]; ok {
		j.cancel()
		return old, nil
	}
	if s.broker != nil {
		if err := s.publish(j); err != nil {
			j.cancel()
			if err == errQueueFull {
				s.metrics.rejected.Inc()
			}
			return nil, err
		}
		s.jobs[j.ID] = j
		s.metrics.queued.Add(1)
		s.log.Info("job queued on JetStream", "job", j.ID, "api", j.API, "model", j.Model)
		return j, nil
	}
	select {
	case s.queue <- j:
	default:
		j.cancel()
		s.metrics.rejected.Inc()
		return nil, errQueueFull
	}
	s.jobs[j.ID] = j
	s.metrics.queued.Add(1)
	s.log.Info("job queued", "job", j.ID, "api", j.API, "model", j.Model, "images", j.Params.Count, "steps", j.Params.Steps)
	return j, nil
}

// queueDepth is the number of jobs waiting. In process it is the length
// of the queue itself: a counter kept beside it would, for a moment after
// the worker takes a job and before it counts it out, read one over the
// bound.
func (s *Server) queueDepth() int64 {
	if s.broker == nil {
		return int64(len(s.queue))
	}
	return s.metrics.queued.Load()
}

// maxKeptJobs bounds the finished jobs kept for their results.
const maxKeptJobs = 1000

// sweep forgets finished jobs older than the URL lifetime, and the oldest
// finished ones past maxKeptJobs (s.mu held).
func (s *Server) sweep() {
	type ended struct {
		id  string
		end time.Time
	}
	var finished []ended
	for id, j := range s.jobs {
		j.mu.Lock()
		end := j.finished
		j.mu.Unlock()
		switch {
		case end.IsZero():
		case time.Since(end) > s.cfg.URLTTL:
			delete(s.jobs, id)
		default:
			finished = append(finished, ended{id, end})
		}
	}
	if len(finished) > maxKeptJobs {
		sort.Slice(finished, func(a, b int) bool { return finished[a].end.Before(finished[b].end) })
		for _, e := range finished[:len(finished)-maxKeptJobs] {
			delete(s.jobs, e.id)
		}
	}
}

func (s *Server) job(id string) (*Job, bool) {
	s.mu.Lock()
	j, ok := s.jobs[id]
	s.mu.Unlock()
	if !ok {
		return s.recovered(id)
	}
	return j, ok
}

// wait blocks until j ends; a client that goes away cancels it.
func (s *Server) wait(r *http.Request, j *Job) {
	select {
	case <-j.done:
	case <-r.Context().Done():
		j.abort()
		<-j.done
	}
}

// work runs the queued jobs one at a time.
func (s *Server) work() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			s.drain()
			return
		case j := <-s.queue:
			s.run(j)
		}
	}
}

// drain cancels the jobs still queued at shutdown.
func (s *Server) drain() {
	for {
		select {
		case j := <-s.queue:
			j.finish(stateCancelled, errShuttingDown)
		default:
			return
		}
	}
}

// run generates a job's images, one Generate call per image so that skip
// drops one image and an interruption keeps the finished ones.
func (s *Server) run(j *Job) {
	s.metrics.queued.Add(-1)
	j.mu.Lock()
	if j.ctx.Err() != nil || j.state != stateQueued {
		j.mu.Unlock()
		j.finish(stateCancelled, context.Canceled)
		return
	}
	j.state, j.started = stateRunning, time.Now()
	j.notify()
	j.mu.Unlock()
	s.mu.Lock()
	s.current = j
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.current = nil
		s.mu.Unlock()
	}()
	state, err := s.generate(j)
	if !j.finish(state, err) {
		return
	}
	s.metrics.observeJob(j, state)
	snap, _ := j.snapshot()
	s.log.Info("job finished", "job", j.ID, "state", state, "images", snap.Done, "seconds", time.Since(j.Created).Seconds(), "err", err)
}

// generate runs j and returns its final state; a panic inside the engine
// fails the job instead of the process.
func (s *Server) generate(j *Job) (state string, err error) {
	defer func() {
		if v := recover(); v != nil {
			id := newID()
			s.log.Error("panic in job", "id", id, "job", j.ID, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			state, err = stateFailed, &apiError{Status: 500, Code: "internal_error", Message: "internal error " + id}
		}
	}()
	m, err := s.load(j.ctx, j.Model, j.VAE)
	if err != nil {
		if j.ctx.Err() != nil {
			return stateCancelled, err
		}
		return stateFailed, err
	}
	j.set(func() { j.family = m.Info().Family })
	if j.loadOnly {
		return stateDone, nil
	}
	n := max(j.Params.Count, 1)
	for i := 0; i < n; i++ {
		if j.ctx.Err() != nil {
			break
		}
		ictx, icancel := context.WithCancel(j.ctx)
		j.set(func() { j.skipImage, j.image, j.step = icancel, i, 0 })
		p := j.Params
		p.Count, p.Seed = 1, j.Params.Seed+int64(i)
		p.OnProgress = func(e pipeline.Event) {
			s.metrics.steps.Inc()
			if e.Decode != nil && j.wantsFull(e.Step, e.Steps) {
				// Decoded before the step is published, so that its
				// watchers see this step's full preview.
				if img, err := e.Decode(); err == nil {
					j.setFull(i, img)
				} else {
					s.log.Warn("full preview", "job", j.ID, "err", err)
				}
			}
			j.onStep(i, e)
		}
		t0 := time.Now()
		out, err := m.Generate(ictx, p)
		icancel()
		switch {
		case err == nil:
			s.metrics.observeImage(time.Since(t0), p.Steps)
			j.set(func() { j.images = append(j.images, out.Images...) })
		case j.ctx.Err() != nil:
			// interrupted or cancelled: the finished images stay
		case ictx.Err() != nil:
			continue // skipped
		default:
			return stateFailed, &apiError{Status: http.StatusUnprocessableEntity, Code: "generation_failed", Message: err.Error()}
		}
	}
	if j.ctx.Err() != nil {
		j.mu.Lock()
		interrupted := j.interrupts
		j.mu.Unlock()
		if interrupted {
			return stateDone, nil // A1111: an interrupted job returns what it has
		}
		return stateCancelled, context.Canceled
	}
	return stateDone, nil
}

// load returns the model named name with the VAE named vae ("": its
// own), closing the previous one when either differs (one model in
// memory at a time).
func (s *Server) load(ctx context.Context, name, vae string) (pipeline.Model, error) {
	if s.model != nil && s.modelName == name && s.modelVAE == vae {
		return s.model, nil
	}
	e, err := find(s.models(), name, "model")
	if err != nil {
		return nil, err
	}
	opt := s.cfg.Options // a copy: the VAE is this load's only
	if vae != "" {
		if opt.Components.VAE, err = s.vaePath(vae); err != nil {
			return nil, err
		}
	}
	if s.model != nil {
		s.model.Close()
		s.setModel(nil, "", "")
	}
	t0 := time.Now()
	m, err := s.open(ctx, e.Path, opt)
	if err != nil {
		return nil, &apiError{Status: http.StatusUnprocessableEntity, Code: "model_load_failed", Message: err.Error()}
	}
	s.log.Info("model loaded", "model", name, "vae", vae, "seconds", time.Since(t0).Seconds())
	s.setModel(m, name, vae)
	return m, nil
}

func (s *Server) setModel(m pipeline.Model, name, vae string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.model, s.modelName, s.modelVAE = m, name, vae
}

// loadedInfo is the loaded model's info, if one is loaded.
func (s *Server) loadedInfo() (pipeline.Info, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.model == nil {
		return pipeline.Info{}, false
	}
	return s.model.Info(), true
}

// defaultModel is the catalog name requests without a model use.
func (s *Server) defaultModel() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.defModel
}

func (s *Server) running() *Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current
}

// errorsIsCancel reports a cancellation.
func errorsIsCancel(err error) bool { return errors.Is(err, context.Canceled) }
