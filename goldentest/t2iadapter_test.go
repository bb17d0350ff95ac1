package goldentest

import (
	"fmt"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/t2iadapter"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
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

// TestT2IAdapterPipelineStates checks the adapter states the adapter
// pipeline hands the UNet (single adapter times its scale, and the
// MultiAdapter weighted sum), as recorded by the pipeline_t2i_adapter case.
// The recorded states are CFG-doubled ([s, s]); the pipeline loop itself is
// left to that case's own runner.
func TestT2IAdapterPipelineStates(t *testing.T) {
	c, err := golden.Find("pipeline_t2i_adapter")
	if err != nil {
		t.Skipf("pipeline_t2i_adapter case not available: %v", err)
	}
	defer c.Close()
	var cfg struct {
		Single struct {
			Scale float32 `json:"adapter_conditioning_scale"`
		} `json:"single"`
		Multi struct {
			Scales []float32 `json:"adapter_conditioning_scale"`
		} `json:"multi"`
	}
	if err := c.Field("config", &cfg); err != nil {
		t.Fatal(err)
	}
	ac, err := c.Sibling(c.UsesWeightsOf["adapter"])
	if err != nil {
		t.Fatal(err)
	}
	w1, err := c.Weights("adapter")
	if err != nil {
		t.Fatal(err)
	}
	a1 := buildT2IAdapter(t, ac.Config, w1)
	cfg2, ok := c.Raw["adapter_2_config"]
	if !ok {
		t.Fatal("pipeline_t2i_adapter: no adapter_2_config")
	}
	w2, err := c.Open("adapter_2.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	a2 := buildT2IAdapter(t, cfg2, w2)

	img1, img2 := caseTensor(t, c, "adapter_image"), caseTensor(t, c, "adapter_image_2")
	f, err := a1.Forward(img1)
	if err != nil {
		t.Fatal(err)
	}
	checkStates(t, c, "single", t2iadapter.Scale(f, cfg.Single.Scale))

	mf, err := t2iadapter.Multi{Adapters: []*t2iadapter.Model{a1, a2}, Weights: cfg.Multi.Scales}.
		Forward([]*tensor.Tensor{img1, img2})
	if err != nil {
		t.Fatal(err)
	}
	checkStates(t, c, "multi", mf)
}

// checkStates compares CFG-doubled states <prefix>.adapter_state.k.
func checkStates(t *testing.T, c *golden.Case, prefix string, states []*tensor.Tensor) {
	t.Helper()
	n := 0
	for k := 0; ; k++ {
		name := fmt.Sprintf("%s.adapter_state.%d", prefix, k)
		if _, ok := c.Outputs[name]; !ok {
			break
		}
		n++
		if k >= len(states) {
			t.Errorf("%s: no feature %d", prefix, k)
			continue
		}
		s := tensor.Concat(0, states[k], states[k])
		c.Check(t, name, s.Data(), s.Shape())
	}
	if n != len(states) {
		t.Errorf("%s: %d states, case has %d", prefix, len(states), n)
	}
}
