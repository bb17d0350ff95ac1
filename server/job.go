package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"image"
	"sync"
	"time"

	"github.com/diffuse-go/diffuse/pipeline"
)

// Job states.
const (
	stateQueued    = "queued"
	stateRunning   = "running"
	stateDone      = "done"
	stateFailed    = "failed"
	stateCancelled = "cancelled"
)

// Job is one generation request on the queue: count images of one model,
// generated one after the other so that A1111's skip can drop one image
// and an interrupted job still returns the images it finished.
type Job struct {
	ID      string
	API     string // which API submitted it, for logs and metrics
	Model   string // the catalog name
	VAE     string // the VAE's name inside the VAE folder ("": the model's own)
	Params  pipeline.Params
	Created time.Time
	// loadOnly jobs only load their model (A1111's options switch).
	loadOnly bool
	// gen is the request the job was made from, with its seed drawn:
	// what goes to a remote worker.
	gen genRequest
	// remote, when set, carries cancel/interrupt/skip to the worker
	// that runs the job elsewhere.
	remote func(action string)
	// worker names the NATS worker that ran the job ("" in process).
	worker string

	ctx    context.Context
	cancel context.CancelFunc

	mu                  sync.Mutex
	state               string
	started, finished   time.Time
	image, step, steps  int
	stepStart           time.Time // when the current image started
	latents             []float32 // the latest latents, copied
	latentShape         []int
	family              string
	preview             *image.NRGBA // cache of the preview of previewStep
	previewStep         int
	full                *image.NRGBA // the latest VAE preview
	fullImage           int          // the image it belongs to
	skipImage           context.CancelFunc
	skipped, interrupts bool
	images              []pipeline.Image
	err                 error
	changed             chan struct{} // closed and replaced on every change
	done                chan struct{}
}

func newJob(parent context.Context, id, api, model string, p pipeline.Params) *Job {
	if id == "" {
		id = newID()
	}
	ctx, cancel := context.WithCancel(parent)
	return &Job{ID: id, API: api, Model: model, Params: p, Created: time.Now(), ctx: ctx, cancel: cancel,
		state: stateQueued, changed: make(chan struct{}), done: make(chan struct{}), previewStep: -1}
}

// newID returns a random job id.
func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// notify wakes the watchers (j.mu held).
func (j *Job) notify() {
	close(j.changed)
	j.changed = make(chan struct{})
}

// Snapshot is a job's state at one moment.
type Snapshot struct {
	ID, Model, State  string
	Created, Started  time.Time
	Finished          time.Time
	Image, Images     int
	Step, Steps       int
	Progress          float64 // fraction of all steps of all images done
	ETA               time.Duration
	Skipped, Interrup bool
	Done              int // images finished
	Err               error
}

// snapshot returns the job's state and the channel closed at its next
// change.
func (j *Job) snapshot() (Snapshot, <-chan struct{}) {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := max(j.Params.Count, 1)
	s := Snapshot{ID: j.ID, Model: j.Model, State: j.state, Created: j.Created, Started: j.started, Finished: j.finished,
		Image: j.image, Images: n, Step: j.step, Steps: j.steps, Skipped: j.skipped, Interrup: j.interrupts,
		Done: len(j.images), Err: j.err}
	if j.steps > 0 {
		s.Progress = (float64(j.image) + float64(j.step)/float64(j.steps)) / float64(n)
	}
	if j.state == stateDone {
		s.Progress = 1
	}
	if s.Progress > 0 && s.Progress < 1 && !j.started.IsZero() {
		el := time.Since(j.started)
		s.ETA = time.Duration(float64(el)/s.Progress) - el
	}
	return s, j.changed
}

// onStep records a step of image i.
func (j *Job) onStep(i int, e pipeline.Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.image, j.step, j.steps = i, e.Step, e.Steps
	if e.Latents != nil {
		j.latents = append(j.latents[:0], e.Latents.Data()...)
		j.latentShape = append(j.latentShape[:0], e.Latents.Shape()...)
	}
	j.notify()
}

// wantsFull reports whether step of steps gets a VAE preview.
func (j *Job) wantsFull(step, steps int) bool {
	if !j.gen.FullPreview {
		return false
	}
	every := j.gen.PreviewEvery
	return step == steps || every > 0 && step%every == 0
}

// setFull records a VAE preview of image i.
func (j *Job) setFull(i int, img *image.NRGBA) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.full, j.fullImage = img, i
}

// previewImage is the latest VAE preview of the current image when there
// is one, else the cheap preview of the latest step (nil before the first
// step).
func (j *Job) previewImage() *image.NRGBA {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.full != nil && j.fullImage == j.image {
		return j.full
	}
	if j.latents == nil {
		return nil
	}
	key := j.image*100000 + j.step
	if j.preview == nil || j.previewStep != key {
		j.preview = cheapPreview(j.latents, j.latentShape, j.family)
		j.previewStep = key
	}
	return j.preview
}

// result returns the finished images and the error, if any.
func (j *Job) result() ([]pipeline.Image, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]pipeline.Image(nil), j.images...), j.err
}

// skip drops the image being generated (A1111's skip).
func (j *Job) skip() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.remote != nil {
		j.skipped = true
		go j.remote("skip")
		return
	}
	if j.skipImage != nil {
		j.skipped = true
		j.skipImage()
	}
}

// interrupt stops the job; the images finished so far stay its result.
func (j *Job) interrupt() {
	j.mu.Lock()
	j.interrupts = true
	remote := j.remote
	j.mu.Unlock()
	if remote != nil {
		remote("interrupt")
		return
	}
	j.cancel()
}

func (j *Job) set(f func()) {
	j.mu.Lock()
	defer j.mu.Unlock()
	f()
	j.notify()
}

// finish ends the job in state with err; it reports false when the job
// had already ended (a queued job cancelled before the worker took it).
func (j *Job) finish(state string, err error) bool {
	j.mu.Lock()
	if !j.finished.IsZero() {
		j.mu.Unlock()
		return false
	}
	j.state, j.err, j.finished = state, err, time.Now()
	j.latents, j.full = nil, nil
	j.notify()
	j.mu.Unlock()
	j.cancel()
	close(j.done)
	return true
}

// abort cancels the job; a job still queued ends at once (the worker
// skips it when it comes out of the queue).
func (j *Job) abort() {
	j.mu.Lock()
	queued, remote := j.state == stateQueued, j.remote
	j.mu.Unlock()
	if remote != nil {
		remote("cancel")
		if !queued {
			return // the worker reports the end
		}
	}
	j.cancel()
	if queued {
		j.finish(stateCancelled, context.Canceled)
	}
}
