package server

import (
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestFiftyClients sends 50 concurrent txt2img requests to the tiny model
// through a queue of 8: every client gets an answer (its image, or 429
// with Retry-After, after which it retries), each image comes back once to
// the client that asked for it (seeds are unique per client), and the
// queue never holds more than its bound.
func TestFiftyClients(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	const clients, bound = 50, 8
	s, ts := newTestServer(t, func(c *Config) { c.QueueSize = bound })
	var maxDepth atomic.Int64
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if d := s.metrics.queued.Load(); d > maxDepth.Load() {
				maxDepth.Store(d)
			}
			if d := int64(len(s.queue)); d > maxDepth.Load() {
				maxDepth.Store(d)
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	var wg sync.WaitGroup
	var rejected atomic.Int64
	lat := make([]time.Duration, clients)
	seeds := make([][]int64, clients)
	start := time.Now()
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			body := `{"prompt":"client ` + strconv.Itoa(i) + `","steps":1,"width":64,"height":64,"seed":` + strconv.Itoa(1000+i) + `}`
			for {
				resp, err := http.Post(ts.URL+"/sdapi/v1/txt2img", "application/json", strings.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				if resp.StatusCode == http.StatusTooManyRequests {
					resp.Body.Close()
					if resp.Header.Get("Retry-After") == "" {
						t.Error("429 without Retry-After")
					}
					rejected.Add(1)
					time.Sleep(100 * time.Millisecond) // shorter than Retry-After, to keep the test fast
					continue
				}
				var r a1111Resp
				err = json.NewDecoder(resp.Body).Decode(&r)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					t.Errorf("client %d: %d %v", i, resp.StatusCode, err)
					return
				}
				var info struct {
					AllSeeds   []int64  `json:"all_seeds"`
					AllPrompts []string `json:"all_prompts"`
				}
				json.Unmarshal([]byte(r.Info), &info)
				if len(r.Images) != 1 || len(info.AllPrompts) != 1 || info.AllPrompts[0] != "client "+strconv.Itoa(i) {
					t.Errorf("client %d got %d images for %v", i, len(r.Images), info.AllPrompts)
				}
				seeds[i] = info.AllSeeds
				lat[i] = time.Since(t0)
				return
			}
		}()
	}
	wg.Wait()
	close(stop)
	elapsed := time.Since(start)
	seen := map[int64]bool{}
	for i, ss := range seeds {
		if len(ss) != 1 || ss[0] != int64(1000+i) || seen[ss[0]] {
			t.Errorf("client %d: seeds %v", i, ss)
		}
		for _, x := range ss {
			seen[x] = true
		}
	}
	if d := maxDepth.Load(); d > bound {
		t.Errorf("queue depth reached %d, bound %d", d, bound)
	}
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	t.Logf("%d clients: %.1f requests/s, p50 %v, p95 %v, %d refusals (429), max queue depth %d",
		clients, float64(clients)/elapsed.Seconds(), lat[clients/2].Round(time.Millisecond), lat[clients*95/100].Round(time.Millisecond), rejected.Load(), maxDepth.Load())
}
