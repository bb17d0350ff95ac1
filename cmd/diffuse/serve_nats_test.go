package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diffuse-go/diffuse/internal/testmodel"
)

// freePort returns a port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestServeAndWorkerOverNATS runs README_SERVE's two-machine commands on
// one machine: diffuse serve with an embedded NATS server guarded by a
// token, and diffuse worker joining it with the token in its URL. Jobs
// submitted together are shared by the two workers and all complete; a
// worker with a wrong token is refused.
func TestServeAndWorkerOverNATS(t *testing.T) {
	f, err := testmodel.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	port, natsPort := freePort(t), freePort(t)
	natsURL := func(token string) string { return fmt.Sprintf("nats://%s@127.0.0.1:%d", token, natsPort) }
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := runServe(ctx, []string{"-m", f.SD, "--port", strconv.Itoa(port), "--log-level", "error", "--nats", "embedded",
			"--nats-listen", "127.0.0.1:" + strconv.Itoa(natsPort), "--nats-token", "T", "--nats-store", t.TempDir()})
		if err != nil {
			t.Error("serve:", err)
		}
	}()
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(base + "/api/v1/health"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server did not start")
		}
	}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := runWorker(wctx, []string{"--nats", natsURL("wrong"), "-m", f.SD}); err == nil || !strings.Contains(strings.ToLower(err.Error()), "author") {
		t.Errorf("a worker with a wrong token: %v", err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := runWorker(ctx, []string{"--nats", natsURL("T"), "-m", f.SD, "--name", "B"}); err != nil {
			t.Error("worker:", err)
		}
	}()
	workers, total := map[string]int{}, 0
	for round := 0; round < 3 && workers["B"] == 0; round++ {
		var ids []string
		for i := range 4 {
			body := fmt.Sprintf(`{"prompt":"p","steps":3,"width":64,"height":64,"seed":%d}`, 10*round+i)
			resp, err := http.Post(base+"/api/v1/jobs", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			var st struct{ ID string }
			json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if resp.StatusCode != 202 {
				t.Fatalf("submit: %d", resp.StatusCode)
			}
			ids = append(ids, st.ID)
		}
		for _, id := range ids {
			st := waitDone(t, base, id)
			if st.Status != "done" || len(st.Result) != 1 {
				t.Fatalf("job %s: %+v", id, st)
			}
			workers[st.Worker]++
			total++
		}
	}
	if workers["B"] == 0 || workers["local"]+workers["B"] != total {
		t.Errorf("jobs by worker %v: want some on B, all on local or B", workers)
	}
	t.Logf("jobs by worker: %v", workers)
}

type doneStatus struct {
	Status, Worker string
	Result         []struct{ Seed int64 }
}

func waitDone(t *testing.T, base, id string) doneStatus {
	t.Helper()
	var st doneStatus
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get(base + "/api/v1/jobs/" + id)
		if err != nil {
			t.Fatal(err)
		}
		json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if st.Status == "done" || st.Status == "failed" || st.Status == "cancelled" {
			return st
		}
	}
	t.Fatalf("job %s did not end: %+v", id, st)
	return st
}
