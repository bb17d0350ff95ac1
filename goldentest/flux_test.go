package goldentest

import (
	"encoding/json"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/flux"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
)

func init() {
	golden.Register("diffusers.FluxTransformer2DModel", runFluxTransformer)
}

// withoutNames hides some tensors of a source, so that a model lacking
// those parameters loads strictly from the rest of the file.
type withoutNames struct {
	nn.Source
	hidden map[string]bool
}

func (s withoutNames) Names() []string {
	var out []string
	for _, n := range s.Source.Names() {
		if !s.hidden[n] {
			out = append(out, n)
		}
	}
	return out
}

func (s withoutNames) Shape(name string) ([]int, bool) {
	if s.hidden[name] {
		return nil, false
	}
	return s.Source.Shape(name)
}

// loadFlux builds a Flux transformer from the case config with the JSON
// object override applied on top (nil: none) and loads the case weights,
// minus the names listed in unused.
func loadFlux(t *testing.T, c *golden.Case, override json.RawMessage, unused []string) *flux.Model {
	t.Helper()
	w, err := c.Weights("")
	if err != nil {
		t.Fatal(err)
	}
	return buildFlux(t, mergeJSON(t, c.Config, override), w, unused)
}

// mergeJSON returns the JSON object base with the keys of the object
// override (may be nil) set on top.
func mergeJSON(t *testing.T, base, override json.RawMessage) []byte {
	t.Helper()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(base, &raw); err != nil {
		t.Fatal(err)
	}
	if override != nil {
		var o map[string]json.RawMessage
		if err := json.Unmarshal(override, &o); err != nil {
			t.Fatal(err)
		}
		for k, v := range o {
			raw[k] = v
		}
	}
	b, err := json.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// buildFlux builds a Flux transformer from a config and loads it from w,
// minus the tensors named in unused.
func buildFlux(t *testing.T, b []byte, w *safetensors.File, unused []string) *flux.Model {
	t.Helper()
	cfg, err := flux.ParseConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	m, err := flux.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hidden := map[string]bool{}
	for _, n := range unused {
		hidden[n] = true
	}
	if err := nn.Load(m, "", withoutNames{nn.FileSource{F: w}, hidden}, nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	return m
}

// fluxCond reads the conditioning inputs of the case; imgIDs names the
// image-ids input.
func fluxCond(t *testing.T, c *golden.Case, imgIDs string) flux.Cond {
	t.Helper()
	ts, _ := c.MustF32(t, "timestep")
	cond := flux.Cond{EncoderHiddenStates: caseTensor(t, c, "encoder_hidden_states"),
		PooledProjections: caseTensor(t, c, "pooled_projections"), Timesteps: ts,
		TxtIDs: caseTensor(t, c, "txt_ids"), ImgIDs: caseTensor(t, c, imgIDs)}
	if _, ok := c.Inputs["guidance"]; ok {
		cond.Guidance, _ = c.MustF32(t, "guidance")
	}
	return cond
}

func checkFluxOut(t *testing.T, c *golden.Case, m *flux.Model, cond flux.Cond, name string) {
	t.Helper()
	out, err := m.Forward(caseTensor(t, c, "hidden_states"), cond)
	if err != nil {
		t.Fatal(err)
	}
	c.Check(t, name, out.Contiguous().Data(), out.Shape())
}

func runFluxTransformer(t *testing.T, c *golden.Case) {
	m := loadFlux(t, c, nil, nil)
	cond := fluxCond(t, c, "img_ids")
	if _, ok := c.Outputs["rotary_emb"]; ok {
		ids, err := flux.PosIDs(cond.TxtIDs, cond.ImgIDs)
		if err != nil {
			t.Fatal(err)
		}
		tab, err := flux.RotaryTable(ids, m.Cfg.AxesDimsRope)
		if err != nil {
			t.Fatal(err)
		}
		c.Check(t, "rotary_emb", tab.Data(), tab.Shape())
	}
	if _, ok := c.Outputs["temb_dev"]; ok {
		scale := func(v []float32) []float32 {
			out := make([]float32, len(v))
			for i, x := range v {
				out[i] = x * 1000
			}
			return out
		}
		temb, err := m.Embed(scale(cond.Timesteps), scale(cond.Guidance), cond.PooledProjections)
		if err != nil {
			t.Fatal(err)
		}
		c.Check(t, "temb_dev", temb.Contiguous().Data(), temb.Shape())
	}
	checkFluxOut(t, c, m, cond, "out_sample")
	if _, ok := c.Outputs["out_sample_ids_axis0"]; ok {
		checkFluxOut(t, c, m, fluxCond(t, c, "img_ids_axis0"), "out_sample_ids_axis0")
	}
	if _, ok := c.Outputs["out_sample_schnell"]; ok {
		var unused []string
		if err := c.Field("schnell_unused_weights", &unused); err != nil {
			t.Fatal(err)
		}
		schnell := loadFlux(t, c, c.Raw["schnell_config_override"], unused)
		checkFluxOut(t, c, schnell, cond, "out_sample_schnell")
	}
}
