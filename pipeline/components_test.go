package pipeline_test

import (
	"context"
	"testing"

	"github.com/diffuse-go/diffuse/pipeline"
)

// TestUNetComponents: an opened SD model hands out its own parts (the
// tokenizer and the scheduler config with them); a closed one does not.
func TestUNetComponents(t *testing.T) {
	m, err := pipeline.Open(context.Background(), tinyModels(t).SD, pipeline.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, ok := pipeline.UNetComponents(m)
	if !ok || p.UNet == nil || p.VAE == nil || p.TextEncoder == nil || p.Tokenizer == nil {
		t.Fatalf("parts %+v, %v", p, ok)
	}
	if p.Scheduler.NumTrainTimesteps == nil || *p.Scheduler.NumTrainTimesteps != 1000 {
		t.Errorf("scheduler config %+v", p.Scheduler)
	}
	if _, ok := pipeline.XLComponents(m); ok {
		t.Error("an SD model hands out SDXL parts")
	}
	m.Close()
	if _, ok := pipeline.UNetComponents(m); ok {
		t.Error("a closed model still hands out its parts")
	}
}
