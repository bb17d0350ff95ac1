package goldentest

import (
	"encoding/json"
	"sort"
	"strings"
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
	var scale float64
	if err := json.Unmarshal(cfg["guidance_scale"], &scale); err != nil {
		t.Fatalf("config guidance_scale: %v", err)
	}
	uncond, shape := c.MustF32(t, "noise_pred_uncond")
	text, _ := c.MustF32(t, "noise_pred_text")
	batch := shape[0]

	// Guide on the doubled batch [uncond; text], as a pipeline does.
	both := append(append([]float32(nil), uncond...), text...)
	guided, err := scheduler.Guide(both, scale)
	if err != nil {
		t.Fatal(err)
	}
	k := newOutputChecker(c)
	names := make([]string, 0, len(c.Outputs))
	for name := range c.Outputs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		var th struct {
			Ratio    *float64 `json:"dynamic_thresholding_ratio"`
			MaxValue float64  `json:"sample_max_value"`
		}
		switch {
		case name == "guided":
			k.check(t, name, guided, shape)
		case strings.HasPrefix(name, "rescaled"):
			// rescaled_<r>: rescale_noise_cfg with guidance_rescale r
			// ("0p7" = 0.7), else the config's guidance_rescale.
			r, ok := pointName(strings.TrimPrefix(name, "rescaled_"))
			if !ok {
				if err := json.Unmarshal(cfg["guidance_rescale"], &r); err != nil {
					t.Fatalf("%s: config guidance_rescale: %v", name, err)
				}
			}
			rescaled, err := scheduler.RescaleNoiseCFG(guided, text, batch, r)
			if err != nil {
				t.Fatal(err)
			}
			k.check(t, name, rescaled, shape)
		case json.Unmarshal(cfg[name], &th) == nil && th.Ratio != nil:
			// A thresholded output: its config entry holds the
			// thresholding parameters, applied to x0_pred.
			x0, _ := c.MustF32(t, "x0_pred")
			x := append([]float32(nil), x0...)
			scheduler.DynamicThreshold(x, batch, *th.Ratio, th.MaxValue)
			k.check(t, name, x, shape)
		}
	}
	k.allChecked(t, "")
}
