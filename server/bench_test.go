package server

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diffuse-go/diffuse/pipeline"
)

// BenchmarkQueueOverhead measures a whole A1111 request with a model
// that does no work (1 step, no delay) at 64² and 512²: HTTP, JSON, the
// queue hand-off, progress bookkeeping, PNG and base64 encoding of the
// answer — what the server adds to each job.
func BenchmarkQueueOverhead(b *testing.B) {
	for _, size := range []int{64, 512} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			fm := &fakeModel{}
			_, ts := newTestServer(b, func(c *Config) { c.Open = fakeOpen(fm); c.Limits.MaxPixels = 512 * 512 })
			body := fmt.Sprintf(`{"prompt":"x","steps":1,"width":%d,"height":%d,"seed":1}`, size, size)
			b.ResetTimer()
			for range b.N {
				resp, err := http.Post(ts.URL+"/sdapi/v1/txt2img", "application/json", strings.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatal(resp.Status)
				}
			}
		})
	}
}

var sd15 = flag.String("sd15", "", "a full-size SD 1.5 checkpoint: TestFullSizeOverhead measures the server's overhead per job on it")

// timedModel records how long each Generate call of the model takes.
type timedModel struct {
	pipeline.Model
	mu    sync.Mutex
	spent time.Duration
}

func (m *timedModel) Generate(ctx context.Context, p pipeline.Params) (*pipeline.Output, error) {
	t0 := time.Now()
	out, err := m.Model.Generate(ctx, p)
	m.mu.Lock()
	m.spent += time.Since(t0)
	m.mu.Unlock()
	return out, err
}

func (m *timedModel) take() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.spent
	m.spent = 0
	return d
}

// TestFullSizeOverhead runs one job of 1 step at 512² on a full-size SD
// 1.5 checkpoint (go test ./server -run FullSizeOverhead -sd15 FILE -v;
// without -sd15, at 64² on the tiny model):
// directly with Generate, as `diffuse generate` does, then through the
// A1111 API with the model already loaded. It logs both, and the time the
// request spent outside Generate (HTTP, queue, progress, PNG): the
// server's overhead, measured within the same request so that the
// machine's load does not blur it.
func TestFullSizeOverhead(t *testing.T) {
	path, size := *sd15, 512
	if path == "" {
		path, size = tinyFolder(t), 64 // the same measurement, on the tiny model
	}
	t0 := time.Now()
	m, err := pipeline.Open(context.Background(), path, pipeline.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	load := time.Since(t0)
	tm := &timedModel{Model: m}
	params := pipeline.Params{Prompt: "a lighthouse at dusk", Width: size, Height: size, Steps: 1, Seed: 1, Guidance: 7}
	t0 = time.Now()
	if _, err := tm.Generate(context.Background(), params); err != nil {
		t.Fatal(err)
	}
	direct := time.Since(t0)
	tm.take()
	_, ts := newTestServer(t, func(c *Config) {
		c.Model = path
		c.Open = func(context.Context, string, pipeline.Options) (pipeline.Model, error) { return tm, nil }
	})
	body := fmt.Sprintf(`{"prompt":"a lighthouse at dusk","steps":1,"width":%d,"height":%d,"seed":1,"cfg_scale":7}`, size, size)
	t0 = time.Now()
	resp, err := http.Post(ts.URL+"/sdapi/v1/txt2img", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var r a1111Resp
	err = json.NewDecoder(resp.Body).Decode(&r)
	resp.Body.Close()
	served := time.Since(t0)
	if err != nil || resp.StatusCode != 200 || len(r.Images) != 1 {
		t.Fatalf("txt2img: %d %v", resp.StatusCode, err)
	}
	inside := tm.take()
	if b := decodePNG(t, r.Images[0]).Bounds(); b.Dx() != size || inside <= 0 || served < inside {
		t.Fatalf("image %v; %v served, %v inside Generate", b, served, inside)
	}
	t.Logf("%s %d², 1 step: load %.1f s; Generate directly %.2f s; through the server %.2f s, of which Generate %.2f s: overhead %.0f ms",
		filepath.Base(path), size, load.Seconds(), direct.Seconds(), served.Seconds(), inside.Seconds(), float64(served-inside)/float64(time.Millisecond))
}
