package goldentest

import (
	"fmt"
	"strings"
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

// controlNetScales lists the scale groups of the controlnet case: output
// prefixes s<scale> ("s1", "s0p5" = 0.5), in order of their names.
func controlNetScales(c *golden.Case) map[string]float32 {
	out := map[string]float32{}
	for _, sub := range subCases(c) {
		if v, ok := pointName(strings.TrimPrefix(sub, "s")); strings.HasPrefix(sub, "s") && ok {
			out[sub] = float32(v)
		}
	}
	return out
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
	k := newOutputChecker(c)
	scales := controlNetScales(c)
	if len(scales) == 0 {
		t.Fatalf("case %s: no s<scale>.* outputs", c.Name)
	}
	residuals := map[string]*controlnet.Residuals{}
	for prefix, scale := range scales {
		res, err := cn.Forward(sample, ts, cond, image, scale, false)
		if err != nil {
			t.Fatal(err)
		}
		for i, d := range res.Down {
			k.check(t, fmt.Sprintf("%s.down_block_res_samples.%d", prefix, i), d.Data(), d.Shape())
		}
		k.check(t, prefix+".mid_block_res_sample", res.Mid.Data(), res.Mid.Shape())
		residuals[prefix] = res
	}
	// unet_out_with_<prefix>_residuals: the UNet with that group's residuals.
	for name := range c.Outputs {
		prefix, ok := strings.CutSuffix(strings.TrimPrefix(name, "unet_out_with_"), "_residuals")
		if !ok || !strings.HasPrefix(name, "unet_out_with_") {
			continue
		}
		res := residuals[prefix]
		if res == nil {
			t.Errorf("%s: no residual group %s", name, prefix)
			continue
		}
		ucfg, uw := component(t, c, "unet")
		u := buildUNet(t, ucfg, uw)
		withRes := cond
		withRes.DownBlockAdditionalResiduals, withRes.MidBlockAdditionalResidual = res.Down, res.Mid
		out, err := u.Forward(sample, ts, withRes)
		if err != nil {
			t.Fatal(err)
		}
		k.check(t, name, out.Data(), out.Shape())
	}
	k.allChecked(t, "")
}
