package goldentest

import (
	"fmt"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/t2iadapter"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
)

func init() { golden.Register("diffusers.T2IAdapter", runT2IAdapter) }

// buildT2IAdapter builds an adapter from a config and loads it from a
// weights file.
func buildT2IAdapter(t *testing.T, cfgJSON []byte, w *safetensors.File) *t2iadapter.Model {
	t.Helper()
	cfg, err := t2iadapter.ParseConfig(cfgJSON)
	if err != nil {
		t.Fatal(err)
	}
	m, err := t2iadapter.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := nn.Load(m, "", nn.FileSource{F: w}, nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	return m
}

// runT2IAdapter serves every adapter type: the layout comes from the case
// config, the UNet from the case named by uses_weights_of["unet"].
func runT2IAdapter(t *testing.T, c *golden.Case) {
	w, err := c.Weights("")
	if err != nil {
		t.Fatal(err)
	}
	ad := buildT2IAdapter(t, c.Config, w)
	feats, err := ad.Forward(caseTensor(t, c, "image"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		name := fmt.Sprintf("features.%d", i)
		if _, ok := c.Outputs[name]; !ok {
			if i != len(feats) {
				t.Errorf("adapter gave %d features, case has %d", len(feats), i)
			}
			break
		}
		if i >= len(feats) {
			t.Errorf("case has %s, adapter gave %d features", name, len(feats))
			continue
		}
		c.Check(t, name, feats[i].Data(), feats[i].Shape())
	}

	var scale float32
	if err := c.Field("adapter_conditioning_scale", &scale); err != nil {
		t.Fatal(err)
	}
	uw, err := c.Weights("unet")
	if err != nil {
		t.Fatal(err)
	}
	uc, err := c.Sibling(c.UsesWeightsOf["unet"])
	if err != nil {
		t.Fatal(err)
	}
	u := buildUNet(t, uc.Config, uw)
	ts, _ := c.MustF32(t, "timestep")
	cond := unet.Cond{
		EncoderHiddenStates:              caseTensor(t, c, "encoder_hidden_states"),
		DownIntrablockAdditionalResidual: t2iadapter.Scale(feats, scale),
	}
	if _, ok := c.Inputs["text_embeds"]; ok {
		cond.TextEmbeds = caseTensor(t, c, "text_embeds")
		cond.TimeIDs = caseTensor(t, c, "time_ids")
	}
	out, err := u.Forward(caseTensor(t, c, "sample"), ts, cond)
	if err != nil {
		t.Fatal(err)
	}
	c.Check(t, "unet_out", out.Data(), out.Shape())
}
