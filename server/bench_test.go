package server

import (
	"net/http"
	"strings"
	"testing"
)

// BenchmarkQueueOverhead measures a whole A1111 request with a model
// that does no work (1 step, no delay): HTTP, JSON, the queue hand-off,
// progress bookkeeping and PNG encoding of a 64×64 image — what the
// server adds to each job.
func BenchmarkQueueOverhead(b *testing.B) {
	fm := &fakeModel{}
	_, ts := newTestServer(b, func(c *Config) { c.Open = fakeOpen(fm) })
	body := `{"prompt":"x","steps":1,"width":64,"height":64,"seed":1}`
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
}
