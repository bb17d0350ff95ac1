package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"strings"
	"time"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The JetStream names: a work-queue stream of jobs, per-job progress and
// control subjects, a key-value bucket of results (one key per job id,
// written once) and an object store of finished images.
const (
	natsStream   = "DIFFUSE_JOBS"
	natsJobs     = "diffuse.jobs"
	natsEvents   = "diffuse.events."
	natsControl  = "diffuse.control."
	natsConsumer = "diffuse-workers"
	natsResults  = "diffuse-results"
	natsImages   = "diffuse-images"
)

// broker is the server's side of JetStream.
type broker struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	kv  jetstream.KeyValue
	obj jetstream.ObjectStore
	sub *nats.Subscription
}

// jetStream opens (creating when missing) the stream, its consumer, the
// results bucket and the image store. queue bounds the stream: a job past
// it is refused.
func jetStream(ctx context.Context, nc *nats.Conn, queue int, ackWait time.Duration) (jetstream.JetStream, jetstream.KeyValue, jetstream.ObjectStore, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, nil, nil, err
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: natsStream, Subjects: []string{natsJobs},
		Retention: jetstream.WorkQueuePolicy, MaxMsgs: int64(queue), Discard: jetstream.DiscardNew,
		Storage: jetstream.FileStorage, Duplicates: time.Hour}); err != nil {
		return nil, nil, nil, fmt.Errorf("server: JetStream stream: %w", err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, natsStream, jetstream.ConsumerConfig{Durable: natsConsumer,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait, MaxAckPending: -1}); err != nil {
		return nil, nil, nil, fmt.Errorf("server: JetStream consumer: %w", err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: natsResults, TTL: 24 * time.Hour, Storage: jetstream.FileStorage})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("server: JetStream results bucket: %w", err)
	}
	obj, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: natsImages, TTL: 24 * time.Hour, Storage: jetstream.FileStorage})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("server: JetStream image store: %w", err)
	}
	return js, kv, obj, nil
}

// jobSpec is a job as it travels to a worker: names, not paths (each
// worker resolves them in its own folders), images as PNG.
type jobSpec struct {
	ID, API                string
	Model                  string
	Prompt, NegativePrompt string
	Width, Height, Steps   int
	CFG                    float64
	Sampler                string
	Seed                   int64
	Count, ClipSkip        int
	Init, Mask             []byte
	Strength               float64
	LoRAs                  []namedWeight
	ControlNets            []specUnit
	VAE                    string // sd_vae, resolved by the worker in its VAE folder
	FullPreview            bool
	PreviewEvery           int
}

type specUnit struct {
	Model               string
	Image               []byte
	Canny               bool
	CannyLow, CannyHigh float64
	Weight, Start, End  float64
	GuessMode           bool
}

func encodePNG(img image.Image) []byte {
	if img == nil {
		return nil
	}
	var buf bytes.Buffer
	png.Encode(&buf, img)
	return buf.Bytes()
}

func decodeSpecImage(b []byte) (image.Image, error) {
	if b == nil {
		return nil, nil
	}
	return png.Decode(bytes.NewReader(b))
}

func specOf(j *Job) jobSpec {
	g := j.gen
	s := jobSpec{ID: j.ID, API: j.API, Model: g.Model, Prompt: g.Prompt, NegativePrompt: g.NegativePrompt, Width: g.Width,
		Height: g.Height, Steps: g.Steps, CFG: g.CFG, Sampler: g.Sampler, Seed: g.Seed, Count: g.Count, ClipSkip: g.ClipSkip,
		Init: encodePNG(g.Init), Mask: encodePNG(g.Mask), Strength: g.Strength, LoRAs: g.LoRAs, VAE: g.VAE,
		FullPreview: g.FullPreview, PreviewEvery: g.PreviewEvery}
	for _, c := range g.ControlNets {
		s.ControlNets = append(s.ControlNets, specUnit{Model: c.Model, Image: encodePNG(c.Image), Canny: c.Canny, CannyLow: c.CannyLow,
			CannyHigh: c.CannyHigh, Weight: c.Weight, Start: c.Start, End: c.End, GuessMode: c.GuessMode})
	}
	return s
}

func (s jobSpec) request() (genRequest, error) {
	g := genRequest{Model: s.Model, Prompt: s.Prompt, NegativePrompt: s.NegativePrompt, Width: s.Width, Height: s.Height,
		Steps: s.Steps, CFG: s.CFG, Sampler: s.Sampler, Seed: s.Seed, Count: s.Count, ClipSkip: s.ClipSkip,
		Strength: s.Strength, LoRAs: s.LoRAs, VAE: s.VAE, FullPreview: s.FullPreview, PreviewEvery: s.PreviewEvery}
	var err error
	if g.Init, err = decodeSpecImage(s.Init); err != nil {
		return g, err
	}
	if g.Mask, err = decodeSpecImage(s.Mask); err != nil {
		return g, err
	}
	for _, c := range s.ControlNets {
		img, err := decodeSpecImage(c.Image)
		if err != nil {
			return g, err
		}
		g.ControlNets = append(g.ControlNets, controlUnit{Model: c.Model, Image: img, Canny: c.Canny, CannyLow: c.CannyLow,
			CannyHigh: c.CannyHigh, Weight: c.Weight, Start: c.Start, End: c.End, GuessMode: c.GuessMode})
	}
	return g, nil
}

// jobEvent is what a worker publishes on diffuse.events.<id>.
type jobEvent struct {
	Kind               string // "start", "step" or "end"
	Worker             string
	Image, Step, Steps int
	Latents            []float32
	Shape              []int
	Family             string
	// Preview is the step's VAE preview as PNG, when the job asked for
	// full previews and the step got one.
	Preview []byte
}

// jobResult is the value of a job's key in the results bucket.
type jobResult struct {
	State   string
	Code    string
	Status  int
	Message string
	Images  []resultImage
	Worker  string
}

type resultImage struct {
	Object string
	Seed   int64
}

// startBroker connects the server to JetStream and follows the workers'
// events.
func (s *Server) startBroker(nc *nats.Conn) error {
	js, kv, obj, err := jetStream(s.ctx, nc, s.cfg.QueueSize, s.cfg.NATSAckWait)
	if err != nil {
		return err
	}
	b := &broker{nc: nc, js: js, kv: kv, obj: obj}
	b.sub, err = nc.Subscribe(natsEvents+">", func(m *nats.Msg) {
		s.onEvent(strings.TrimPrefix(m.Subject, natsEvents), m.Data)
	})
	if err != nil {
		return fmt.Errorf("server: NATS subscribe: %w", err)
	}
	s.broker = b
	return nil
}

// publish queues j on the stream; the message id makes a repeated
// submission (a retry after a lost answer) a no-op.
func (s *Server) publish(j *Job) error {
	b := s.broker
	data, err := json.Marshal(specOf(j))
	if err != nil {
		return err
	}
	j.remote = func(action string) { s.control(j, action) }
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	if _, err := b.js.Publish(ctx, natsJobs, data, jetstream.WithMsgID(j.ID)); err != nil {
		if strings.Contains(err.Error(), "maximum messages") {
			return errQueueFull
		}
		return fmt.Errorf("server: queueing on JetStream: %w", err)
	}
	return nil
}

// control sends cancel, interrupt or skip to the worker running j; a job
// still queued is cancelled by writing its result first, so that no
// worker starts it.
func (s *Server) control(j *Job, action string) {
	b := s.broker
	b.nc.Publish(natsControl+j.ID, []byte(action))
	snap, _ := j.snapshot()
	if action == "cancel" && snap.State == stateQueued {
		res, _ := json.Marshal(jobResult{State: stateCancelled, Code: "cancelled", Status: 499, Message: "cancelled"})
		b.kv.Create(context.Background(), j.ID, res)
	}
}

// onEvent applies a worker's event to the job it is about.
func (s *Server) onEvent(id string, data []byte) {
	var ev jobEvent
	if json.Unmarshal(data, &ev) != nil {
		return
	}
	s.mu.Lock()
	j, ok := s.jobs[id] // events of other servers' jobs are not ours
	s.mu.Unlock()
	if !ok {
		return
	}
	switch ev.Kind {
	case "start":
		j.mu.Lock()
		queued := j.state == stateQueued
		if queued {
			j.state, j.started, j.family = stateRunning, time.Now(), ev.Family
			j.notify()
		}
		j.mu.Unlock()
		if queued {
			s.metrics.queued.Add(-1)
		}
		s.mu.Lock()
		s.current = j
		s.mu.Unlock()
	case "step":
		s.metrics.steps.Inc()
		j.mu.Lock()
		j.image, j.step, j.steps = ev.Image, ev.Step, ev.Steps
		j.latents, j.latentShape, j.family = ev.Latents, ev.Shape, ev.Family
		if ev.Preview != nil {
			if img, err := png.Decode(bytes.NewReader(ev.Preview)); err == nil {
				j.full, j.fullImage = toNRGBA(img), ev.Image
			}
		}
		j.notify()
		j.mu.Unlock()
	case "end":
		s.collect(j)
	}
}

// collect reads a finished job's result and images and ends it.
func (s *Server) collect(j *Job) {
	res, imgs, err := s.broker.result(s.ctx, j.ID)
	if err != nil {
		s.log.Error("collecting a result", "job", j.ID, "err", err)
		return
	}
	s.mu.Lock()
	if s.current == j {
		s.current = nil
	}
	s.mu.Unlock()
	j.mu.Lock()
	wasQueued := j.state == stateQueued
	j.images, j.worker = imgs, res.Worker
	j.mu.Unlock()
	if wasQueued {
		s.metrics.queued.Add(-1)
	}
	var jerr error
	if res.State != stateDone {
		jerr = &apiError{Status: res.Status, Code: res.Code, Message: res.Message}
	}
	if j.finish(res.State, jerr) {
		s.metrics.observeJob(j, res.State)
	}
}

// result reads a job's result record and images (errNoResult when the
// job has none yet).
func (b *broker) result(ctx context.Context, id string) (jobResult, []pipeline.Image, error) {
	var res jobResult
	e, err := b.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return res, nil, errNoResult
	}
	if err != nil {
		return res, nil, err
	}
	if err := json.Unmarshal(e.Value(), &res); err != nil {
		return res, nil, err
	}
	var imgs []pipeline.Image
	for _, ri := range res.Images {
		data, err := b.obj.GetBytes(ctx, ri.Object)
		if err != nil {
			return res, nil, fmt.Errorf("image %s: %w", ri.Object, err)
		}
		img, err := png.Decode(bytes.NewReader(data))
		if err != nil {
			return res, nil, err
		}
		text, _ := imageio.DecodePNGText(data)
		params, _ := imageio.ParseParams(text[imageio.ParametersKey])
		imgs = append(imgs, pipeline.Image{Image: toNRGBA(img), Seed: ri.Seed, Params: params})
	}
	return res, imgs, nil
}

var errNoResult = errors.New("no result yet")

func toNRGBA(img image.Image) *image.NRGBA {
	if n, ok := img.(*image.NRGBA); ok {
		return n
	}
	b := img.Bounds()
	out := image.NewNRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			out.Set(x, y, img.At(b.Min.X+x, b.Min.Y+y))
		}
	}
	return out
}

// recovered finds a job this server process does not know (submitted
// before a restart) in the results bucket.
func (s *Server) recovered(id string) (*Job, bool) {
	if s.broker == nil {
		return nil, false
	}
	res, imgs, err := s.broker.result(s.ctx, id)
	if err != nil {
		return nil, false
	}
	j := newJob(s.ctx, id, "recovered", "", pipeline.Params{Count: len(imgs)})
	j.images, j.worker = imgs, res.Worker
	var jerr error
	if res.State != stateDone {
		jerr = &apiError{Status: res.Status, Code: res.Code, Message: res.Message}
	}
	j.finish(res.State, jerr)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.jobs[id]; ok {
		return old, true
	}
	s.jobs[id] = j
	return j, true
}
