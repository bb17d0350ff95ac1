package goldentest

import (
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/t5"
	"github.com/diffuse-go/diffuse/nn"
)

func init() {
	golden.Register("transformers.T5EncoderModel", runT5Encoder)
}

// loadT5 builds a T5 encoder from a config and a weights file of the case.
func loadT5(t *testing.T, c *golden.Case, cfgJSON []byte, weights string) *t5.Model {
	t.Helper()
	cfg, err := t5.ParseConfig(cfgJSON)
	if err != nil {
		t.Fatal(err)
	}
	m, err := t5.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.Open(weights)
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
	mask, _ := c.MustI64(t, "attention_mask")
	for _, run := range []struct {
		name string
		mask []int64
	}{{"last_hidden_state", nil}, {"last_hidden_state_masked", mask}} {
		out, err := m.Forward(ids, run.mask, shape[0], shape[1])
		if err != nil {
			t.Fatal(err)
		}
		c.Check(t, run.name, out.Data(), out.Shape())
	}
}
