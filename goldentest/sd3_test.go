package goldentest

import (
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/sd3"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
)

func init() { golden.Register("diffusers.SD3Transformer2DModel", runSD3Transformer) }

// buildSD3 builds an SD3 transformer from a case config and loads its weights.
func buildSD3(t *testing.T, cfgJSON []byte, w *safetensors.File) *sd3.Model {
	t.Helper()
	cfg, err := sd3.ParseConfig(cfgJSON)
	if err != nil {
		t.Fatal(err)
	}
	m, err := sd3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := nn.Load(m, "", nn.FileSource{F: w}, nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	return m
}

func runSD3Transformer(t *testing.T, c *golden.Case) {
	w, err := c.Weights("")
	if err != nil {
		t.Fatal(err)
	}
	m := buildSD3(t, c.Config, w)
	x := caseTensor(t, c, "hidden_states")
	ts, _ := c.MustF32(t, "timestep")
	pooled := caseTensor(t, c, "pooled_projections")
	if _, ok := c.Outputs["pos_embed_cropped"]; ok {
		pos, err := m.CroppedPosEmbed(x.Dim(2), x.Dim(3))
		if err != nil {
			t.Fatal(err)
		}
		c.Check(t, "pos_embed_cropped", pos.Data(), pos.Shape())
	}
	if _, ok := c.Outputs["temb"]; ok {
		temb, err := m.TimeTextEmbed(ts, pooled)
		if err != nil {
			t.Fatal(err)
		}
		c.Check(t, "temb", temb.Data(), temb.Shape())
	}
	out, err := m.Forward(x, caseTensor(t, c, "encoder_hidden_states"), pooled, ts)
	if err != nil {
		t.Fatal(err)
	}
	c.Check(t, "out_sample", out.Data(), out.Shape())
}
