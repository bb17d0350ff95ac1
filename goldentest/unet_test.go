package goldentest

import (
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

func init() {
	golden.Register("diffusers.UNet2DConditionModel", runUNet)
}

// buildUNet builds a UNet from a config and loads it from a weights file.
func buildUNet(t *testing.T, cfgJSON []byte, w *safetensors.File) *unet.Model {
	t.Helper()
	cfg, err := unet.ParseConfig(cfgJSON)
	if err != nil {
		t.Fatal(err)
	}
	m, err := unet.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := nn.Load(m, "", nn.FileSource{F: w}, nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	return m
}

// caseTensor reads an io tensor as a *tensor.Tensor.
func caseTensor(t *testing.T, c *golden.Case, name string) *tensor.Tensor {
	t.Helper()
	v, shape := c.MustF32(t, name)
	return tensor.FromSlice(v, shape...)
}

func runUNet(t *testing.T, c *golden.Case) {
	if _, ok := c.Raw["stage1_config"]; ok || hasOutput(c, "superres_out") {
		runIFUNet(t, c) // DeepFloyd IF stage I/II and the super-resolution pipeline
		return
	}
	if _, ok := c.Outputs["out_sample"]; !ok || len(c.Outputs) != 1 {
		t.Fatalf("case %s: UNet case with outputs this runner does not know (only out_sample, or the IF outputs)", c.Name)
	}
	w, err := c.Weights("")
	if err != nil {
		t.Fatal(err)
	}
	m := buildUNet(t, c.Config, w)
	ts, _ := c.MustF32(t, "timestep")
	cond := unet.Cond{EncoderHiddenStates: caseTensor(t, c, "encoder_hidden_states")}
	if _, ok := c.Inputs["text_embeds"]; ok {
		cond.TextEmbeds = caseTensor(t, c, "text_embeds")
		cond.TimeIDs = caseTensor(t, c, "time_ids")
	}
	out, err := m.Forward(caseTensor(t, c, "sample"), ts, cond)
	if err != nil {
		t.Fatal(err)
	}
	c.Check(t, "out_sample", out.Data(), out.Shape())
}
