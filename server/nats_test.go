package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// embeddedNATS starts a JetStream server on 127.0.0.1 storing in dir.
func embeddedNATS(t *testing.T, dir string) *natsserver.Server {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not start")
	}
	return ns
}

func connect(t *testing.T, ns *natsserver.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// natsServer serves HTTP with jobs on JetStream at nc.
func natsServer(t *testing.T, nc *nats.Conn, fm *fakeModel, local bool) (*Server, *httptest.Server) {
	t.Helper()
	return newTestServer(t, func(c *Config) {
		c.Open = fakeOpen(fm)
		c.NATS, c.LocalWorker, c.NATSAckWait = nc, local, time.Second
	})
}

// startWorker runs a worker on its own connection until the returned
// stop is called.
func startWorker(t *testing.T, ns *natsserver.Server, fm *fakeModel, name string) (nc *nats.Conn, stop func()) {
	t.Helper()
	nc = connect(t, ns)
	f, dir := tinyModels(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		cfg := Config{Model: f.SD, ControlNetDir: dir, Open: fakeOpen(fm), Logger: newTestServerLogger()}
		if err := RunWorker(ctx, cfg, nc, name); err != nil {
			t.Error(err)
		}
	}()
	return nc, func() { cancel(); wg.Wait() }
}

func TestNATSQueue(t *testing.T) {
	ns := embeddedNATS(t, t.TempDir())
	defer ns.Shutdown()
	fm := &fakeModel{delay: 5 * time.Millisecond}
	_, ts := natsServer(t, connect(t, ns), fm, true)
	// The A1111 API through JetStream, with progress.
	var r a1111Resp
	if code := call(t, "POST", ts.URL+"/sdapi/v1/txt2img", map[string]any{"prompt": "over nats", "steps": 3, "seed": 9, "batch_size": 2}, &r); code != 200 || len(r.Images) != 2 {
		t.Fatalf("txt2img: %d, %d images", code, len(r.Images))
	}
	var info struct {
		AllSeeds []int64 `json:"all_seeds"`
	}
	json.Unmarshal([]byte(r.Info), &info)
	if len(info.AllSeeds) != 2 || info.AllSeeds[1] != 10 {
		t.Errorf("seeds %v", info.AllSeeds)
	}
	// The jobs API: events, cancel.
	var st jobStatus
	call(t, "POST", ts.URL+"/api/v1/jobs", map[string]any{"id": "n-1", "prompt": "p", "steps": 4}, &st)
	steps := 0
	sseEvents(t, context.Background(), ts.URL+"/api/v1/jobs/n-1/events", func(event string, data []byte) bool {
		if event == "progress" && strings.Contains(string(data), "data:image/png") {
			steps++
		}
		return event != "done"
	})
	waitState(t, ts.URL, "n-1", "done")
	if steps == 0 {
		t.Error("no progress events with previews through NATS")
	}
	if code := call(t, "POST", ts.URL+"/api/v1/jobs", map[string]any{"id": "n-2", "prompt": "p", "steps": 150}, &st); code != 202 {
		t.Fatalf("submit n-2: %d %+v", code, st)
	}
	time.Sleep(100 * time.Millisecond)
	var c jobStatus
	if code := call(t, "DELETE", ts.URL+"/api/v1/jobs/n-2", nil, &c); code != 200 {
		t.Errorf("cancel: %d", code)
	}
	waitState(t, ts.URL, "n-2", "cancelled")
}

// TestNATSWorkerKilled kills a worker mid-job (its connection drops, as
// when its process dies): JetStream redelivers the job to the second
// worker, which finishes it; the result is recorded once.
func TestNATSWorkerKilled(t *testing.T) {
	ns := embeddedNATS(t, t.TempDir())
	defer ns.Shutdown()
	_, ts := natsServer(t, connect(t, ns), &fakeModel{}, false)
	slow := &fakeModel{delay: 50 * time.Millisecond}
	ncA, stopA := startWorker(t, ns, slow, "A")
	var st jobStatus
	if code := call(t, "POST", ts.URL+"/api/v1/jobs", map[string]any{"id": "k-1", "prompt": "survive", "steps": 20, "seed": 4}, &st); code != 202 {
		t.Fatalf("submit %d", code)
	}
	waitState(t, ts.URL, "k-1", "running")
	ncA.Close() // worker A dies
	defer stopA()
	fast := &fakeModel{delay: time.Millisecond}
	_, stopB := startWorker(t, ns, fast, "B")
	defer stopB()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		call(t, "GET", ts.URL+"/api/v1/jobs/k-1", nil, &st)
		if st.Status == "done" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.Status != "done" || len(st.Result) != 1 || st.Result[0].Seed != 4 {
		t.Fatalf("after the worker died: %+v", st)
	}
	fast.mu.Lock()
	n := len(fast.calls)
	fast.mu.Unlock()
	if n != 1 {
		t.Errorf("worker B generated %d times, want 1", n)
	}
	// A redelivery of a finished job does not run it again.
	time.Sleep(1500 * time.Millisecond)
	fast.mu.Lock()
	n = len(fast.calls)
	fast.mu.Unlock()
	if n != 1 {
		t.Errorf("the job ran %d times on B", n)
	}
}

// TestNATSRestart queues jobs with no worker, restarts NATS and the
// server on the same store, and sees the jobs complete.
func TestNATSRestart(t *testing.T) {
	store := t.TempDir()
	ns := embeddedNATS(t, store)
	nc := connect(t, ns)
	s1, err := New(Config{Model: tinyFolder(t), Open: fakeOpen(&fakeModel{}), NATS: nc, NATSAckWait: time.Second, Logger: newTestServerLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ts1 := httptest.NewServer(s1)
	for _, id := range []string{"r-1", "r-2", "r-3"} {
		var st jobStatus
		if code := call(t, "POST", ts1.URL+"/api/v1/jobs", map[string]any{"id": id, "prompt": id, "steps": 2}, &st); code != 202 {
			t.Fatalf("submit %s: %d", id, code)
		}
	}
	ts1.Close()
	s1.Close()
	nc.Close()
	ns.Shutdown()
	ns.WaitForShutdown()

	ns2 := embeddedNATS(t, store)
	defer ns2.Shutdown()
	fm := &fakeModel{delay: time.Millisecond}
	_, ts := natsServer(t, connect(t, ns2), fm, true)
	for _, id := range []string{"r-1", "r-2", "r-3"} {
		waitState(t, ts.URL, id, "done")
	}
	var st jobStatus
	call(t, "GET", ts.URL+"/api/v1/jobs/r-2", nil, &st)
	if len(st.Result) != 1 {
		t.Errorf("r-2 after the restart: %+v", st)
	}
	resp, err := http.Get(ts.URL + st.Result[0].URL)
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("image after the restart: %v %v", err, resp)
	}
}
