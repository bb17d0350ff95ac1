package goldentest

import (
	"fmt"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/controlnet"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
)

func init() { golden.Register("diffusers.ControlNetModel", runControlNet) }

func buildControlNet(t *testing.T, cfgJSON []byte, w *safetensors.File) *controlnet.Model {
	t.Helper()
	cfg, err := controlnet.ParseConfig(cfgJSON)
	if err != nil {
		t.Fatal(err)
	}
	m, err := controlnet.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := nn.Load(m, "", nn.FileSource{F: w}, nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	return m
}

func runControlNet(t *testing.T, c *golden.Case) {
	w, err := c.Weights("")
	if err != nil {
		t.Fatal(err)
	}
	cn := buildControlNet(t, c.Config, w)
	ts, _ := c.MustF32(t, "timestep")
	cond := unet.Cond{EncoderHiddenStates: caseTensor(t, c, "encoder_hidden_states")}
	sample := caseTensor(t, c, "sample")
	image := caseTensor(t, c, "controlnet_cond")
	var s1 *controlnet.Residuals
	for _, sc := range []struct {
		prefix string
		scale  float32
	}{{"s1", 1}, {"s0p5", 0.5}} {
		res, err := cn.Forward(sample, ts, cond, image, sc.scale, false)
		if err != nil {
			t.Fatal(err)
		}
		for i, d := range res.Down {
			c.Check(t, fmt.Sprintf("%s.down_block_res_samples.%d", sc.prefix, i), d.Data(), d.Shape())
		}
		c.Check(t, sc.prefix+".mid_block_res_sample", res.Mid.Data(), res.Mid.Shape())
		if sc.prefix == "s1" {
			s1 = res
		}
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
	cond.DownBlockAdditionalResiduals = s1.Down
	cond.MidBlockAdditionalResidual = s1.Mid
	out, err := u.Forward(sample, ts, cond)
	if err != nil {
		t.Fatal(err)
	}
	c.Check(t, "unet_out_with_s1_residuals", out.Data(), out.Shape())
}
