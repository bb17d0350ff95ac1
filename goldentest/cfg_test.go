package goldentest

import (
	"encoding/json"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/scheduler"
)

func init() {
	golden.Register("diffusers.pipelines.stable_diffusion.rescale_noise_cfg / DDPMScheduler._threshold_sample", runCFG)
}

func runCFG(t *testing.T, c *golden.Case) {
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(c.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	var scale, rescale float64
	if err := json.Unmarshal(cfg["guidance_scale"], &scale); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(cfg["guidance_rescale"], &rescale); err != nil {
		t.Fatal(err)
	}
	uncond, shape := c.MustF32(t, "noise_pred_uncond")
	text, _ := c.MustF32(t, "noise_pred_text")
	x0, _ := c.MustF32(t, "x0_pred")
	batch := shape[0]

	// Guide on the doubled batch [uncond; text], as a pipeline does.
	both := append(append([]float32(nil), uncond...), text...)
	guided, err := scheduler.Guide(both, scale)
	if err != nil {
		t.Fatal(err)
	}
	c.Check(t, "guided", guided, shape)

	rescaled, err := scheduler.RescaleNoiseCFG(guided, text, batch, rescale)
	if err != nil {
		t.Fatal(err)
	}
	c.Check(t, "rescaled_0p7", rescaled, shape)

	for _, name := range []string{"thresholded", "thresholded_r0p9_max1p5"} {
		var th struct {
			Ratio    float64 `json:"dynamic_thresholding_ratio"`
			MaxValue float64 `json:"sample_max_value"`
		}
		if err := json.Unmarshal(cfg[name], &th); err != nil {
			t.Fatal(err)
		}
		x := append([]float32(nil), x0...)
		scheduler.DynamicThreshold(x, batch, th.Ratio, th.MaxValue)
		c.Check(t, name, x, shape)
	}
}
