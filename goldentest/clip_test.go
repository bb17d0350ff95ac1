package goldentest

import (
	"fmt"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/nn"
)

func init() {
	golden.Register("transformers.CLIPTextModel", func(t *testing.T, c *golden.Case) { runCLIP(t, c, false) })
	golden.Register("transformers.CLIPTextModelWithProjection", func(t *testing.T, c *golden.Case) { runCLIP(t, c, true) })
}

// loadCLIP builds a CLIP text model from a case's config and weights file.
func loadCLIP(t *testing.T, c *golden.Case, cfgJSON []byte, weights string, proj bool) *clip.Model {
	t.Helper()
	cfg, err := clip.ParseConfig(cfgJSON)
	if err != nil {
		t.Fatal(err)
	}
	cfg.WithProjection = proj
	m, err := clip.New(cfg)
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

func runCLIP(t *testing.T, c *golden.Case, proj bool) {
	m := loadCLIP(t, c, c.Config, "weights.safetensors", proj)
	ids, shape := c.MustI64(t, "input_ids")
	out, err := m.Forward(ids, shape[0], shape[1])
	if err != nil {
		t.Fatal(err)
	}
	hs := out.HiddenStates
	got := map[string]interface{ Data() []float32 }{
		"last_hidden_state": out.LastHiddenState,
		"pooler_output":     out.Pooled,
	}
	if out.TextEmbeds != nil {
		got["text_embeds"] = out.TextEmbeds
	}
	// hidden_states_<i> = hidden_states[i], hidden_states_m<i> = hidden_states[-i].
	for i := range hs {
		got[fmt.Sprintf("hidden_states_%d", i)] = hs[i]
		got[fmt.Sprintf("hidden_states_m%d", len(hs)-i)] = hs[i]
	}
	for name := range c.Outputs {
		g, ok := got[name]
		if !ok {
			t.Errorf("output %s not produced", name)
			continue
		}
		c.Check(t, name, g.Data(), nil)
	}
}
