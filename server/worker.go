package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsWorker takes jobs from the JetStream work queue and runs them with a
// local engine (a Server without HTTP: its folders, model and limits).
type natsWorker struct {
	name  string
	nc    *nats.Conn
	kv    jetstream.KeyValue
	obj   jetstream.ObjectStore
	local *Server
}

// RunWorker takes jobs from the JetStream queue at nc until ctx ends,
// running them with the model and folders of cfg; name identifies the
// worker in logs and results. A job whose result is already recorded is
// acknowledged without running (a redelivery after another worker
// finished it), so each job completes once. When ctx ends mid-job, the job
// is handed back to the queue for another worker.
func RunWorker(ctx context.Context, cfg Config, nc *nats.Conn, name string) error {
	cfg.NATS, cfg.LocalWorker = nil, false
	local, err := New(cfg)
	if err != nil {
		return err
	}
	defer local.Close()
	if name == "" {
		host, _ := os.Hostname()
		name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	w := &natsWorker{name: name, nc: nc, local: local}
	var cons jetstream.Consumer
	// The server creates the stream and buckets; wait for them.
	for {
		cons, err = js.Consumer(ctx, natsStream, natsConsumer)
		if err == nil {
			if w.kv, err = js.KeyValue(ctx, natsResults); err == nil {
				w.obj, err = js.ObjectStore(ctx, natsImages)
			}
		}
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
	local.log.Info("worker ready", "worker", name)
	for ctx.Err() == nil {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, nats.ErrConnectionClosed) {
				return nil
			}
			time.Sleep(200 * time.Millisecond)
			continue
		}
		for msg := range batch.Messages() {
			w.handle(ctx, msg)
		}
	}
	return nil
}

// handle runs one delivered job.
func (w *natsWorker) handle(ctx context.Context, msg jetstream.Msg) {
	var spec jobSpec
	if err := json.Unmarshal(msg.Data(), &spec); err != nil || spec.ID == "" {
		w.local.log.Error("dropping a malformed job", "err", err)
		msg.Term()
		return
	}
	if _, err := w.kv.Get(ctx, spec.ID); err == nil {
		msg.Ack() // finished (or cancelled) before: nothing to do again
		return
	}
	res, handedBack := w.run(ctx, msg, spec)
	if handedBack {
		msg.Nak()
		return
	}
	res.Worker = w.name
	b, _ := json.Marshal(res)
	if _, err := w.kv.Create(context.Background(), spec.ID, b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		// Not recorded: leave the message unacknowledged so that it is
		// delivered again.
		w.local.log.Error("recording a result", "job", spec.ID, "err", err)
		return
	}
	w.event(spec.ID, jobEvent{Kind: "end"})
	msg.Ack()
}

// run generates spec's images and stores them; handedBack reports that
// the worker is stopping and the job goes back to the queue.
func (w *natsWorker) run(ctx context.Context, msg jetstream.Msg, spec jobSpec) (res jobResult, handedBack bool) {
	fail := func(err error) jobResult {
		ae := asAPIError(err)
		return jobResult{State: stateFailed, Code: ae.Code, Status: ae.Status, Message: ae.Message}
	}
	g, err := spec.request()
	if err != nil {
		return fail(err), false
	}
	model, p, err := w.local.params(&g)
	if err != nil {
		return fail(err), false
	}
	// The job's context is not ctx: stopping the worker hands the job
	// back instead of cancelling it for its client.
	j := newJob(context.Background(), spec.ID, spec.API, model, p)
	j.gen, j.VAE = g, jobVAE(g.VAE)
	defer j.cancel()
	sub, err := w.nc.Subscribe(natsControl+spec.ID, func(m *nats.Msg) {
		switch string(m.Data) {
		case "cancel":
			j.cancel()
		case "interrupt":
			j.interrupt()
		case "skip":
			j.skip()
		}
	})
	if err == nil {
		defer sub.Unsubscribe()
	}
	stopped := context.AfterFunc(ctx, j.cancel)
	defer stopped()
	w.event(spec.ID, jobEvent{Kind: "start", Worker: w.name})
	progressDone := make(chan struct{})
	go w.progress(j, msg, progressDone)
	state, err := w.local.generate(j)
	j.finish(state, err)
	<-progressDone
	if ctx.Err() != nil {
		return jobResult{}, true
	}
	if err != nil && state != stateDone {
		res = fail(err)
		res.State = state
		if state == stateCancelled {
			res.Code, res.Status, res.Message = "cancelled", 499, "cancelled"
		}
	} else {
		res.State = stateDone
	}
	imgs, _ := j.result()
	for i, im := range imgs {
		data, err := imageio.EncodePNG(im.Image, im.Text())
		if err == nil {
			name := fmt.Sprintf("%s/%d.png", spec.ID, i)
			if _, err = w.obj.PutBytes(context.Background(), name, data); err == nil {
				res.Images = append(res.Images, resultImage{Object: name, Seed: im.Seed})
				continue
			}
		}
		return fail(fmt.Errorf("storing image %d: %w", i, err)), false
	}
	return res, false
}

// progress publishes j's steps with their latents and tells JetStream the
// job is alive (so that it is not redelivered while it runs).
func (w *natsWorker) progress(j *Job, msg jetstream.Msg, done chan<- struct{}) {
	defer close(done)
	last, lastAlive := -1, time.Now()
	for {
		snap, changed := j.snapshot()
		if !snap.Finished.IsZero() {
			return
		}
		if key := snap.Image*100000 + snap.Step; snap.Steps > 0 && key != last {
			last = key
			j.mu.Lock()
			ev := jobEvent{Kind: "step", Image: snap.Image, Step: snap.Step, Steps: snap.Steps,
				Latents: append([]float32(nil), j.latents...), Shape: append([]int(nil), j.latentShape...), Family: j.family}
			full := j.full
			if j.fullImage != snap.Image {
				full = nil
			}
			j.mu.Unlock()
			if full != nil && j.wantsFull(snap.Step, snap.Steps) {
				ev.Preview = encodePNG(full)
			}
			w.event(j.ID, ev)
		}
		if time.Since(lastAlive) > time.Second/2 {
			msg.InProgress()
			lastAlive = time.Now()
		}
		select {
		case <-changed:
		case <-time.After(time.Second / 2):
		}
	}
}

func (w *natsWorker) event(id string, ev jobEvent) {
	b, _ := json.Marshal(ev)
	w.nc.Publish(natsEvents+id, b)
}
