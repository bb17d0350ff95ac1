package goldentest

import (
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/t5"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
)

func init() {
	golden.Register("transformers.T5EncoderModel", runT5Encoder)
}

// loadT5 builds a T5 encoder from a config and a weights file of the case.
func loadT5(t *testing.T, c *golden.Case, cfgJSON []byte, weights string) *t5.Model {
	t.Helper()
	w, err := c.Open(weights)
	if err != nil {
		t.Fatal(err)
	}
	return loadT5From(t, cfgJSON, w)
}

// loadT5From builds a T5 encoder from a config and its weights.
func loadT5From(t *testing.T, cfgJSON []byte, w *safetensors.File) *t5.Model {
	t.Helper()
	cfg, err := t5.ParseConfig(cfgJSON)
	if err != nil {
		t.Fatal(err)
	}
	m, err := t5.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := nn.Load(m, "", nn.FileSource{F: w}, nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	return m
}

func runT5Encoder(t *testing.T, c *golden.Case) {
	m := loadT5(t, c, c.Config, "weights.safetensors")
	ids, shape := c.MustI64(t, "input_ids")
	var mask []int64
	if hasInput(c, "attention_mask") {
		mask, _ = c.MustI64(t, "attention_mask")
	}
	k := newOutputChecker(c)
	for _, run := range []struct {
		name string
		mask []int64
	}{{"last_hidden_state", nil}, {"last_hidden_state_masked", mask}} {
		if !hasOutput(c, run.name) {
			continue
		}
		if run.mask == nil && run.name != "last_hidden_state" {
			t.Fatalf("%s needs the input attention_mask", run.name)
		}
		out, err := m.Forward(ids, run.mask, shape[0], shape[1])
		if err != nil {
			t.Fatal(err)
		}
		k.check(t, run.name, out.Data(), out.Shape())
	}
	k.allChecked(t, "")
}
