package main

import (
	"testing"

	"github.com/diffuse-go/diffuse/pipeline"
)

// TestRandomFolderSizes builds the real-size folders' models from their
// configs (no weights) and checks their parameter counts against the
// published sizes, so a wrong config value shows.
func TestRandomFolderSizes(t *testing.T) {
	spiece := []byte("unused")
	for _, c := range []struct {
		name   string
		folder pipeline.RandomFolder
		// want are millions of parameters by component, within 5% (the published
		// figures are rounded to two digits).
		want map[string]float64
	}{
		// DiT's 675 M plus the timestep and class embedders diffusers
		// keeps in each of the 28 blocks (copies of one in the original).
		{"DiT-XL/2", ditXL2(), map[string]float64{"transformer": 750, "vae": 83.7}},
		{"PixArt-XL-2", pixartXL2(spiece), map[string]float64{"transformer": 611, "text_encoder": 4762}},
		{"IF-I-XL", ifIXL(spiece), map[string]float64{"unet": 4300, "text_encoder": 4762}},
		{"IF-II-L", ifIIL(spiece), map[string]float64{"unet": 1200}},
		{"SD 2.1", sd21(), map[string]float64{"unet": 866, "text_encoder": 340}},
	} {
		got, err := c.folder.ParamCounts()
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		for comp, want := range c.want {
			m := float64(got[comp]) / 1e6
			if m < want*0.95 || m > want*1.05 {
				t.Errorf("%s %s: %.1f M parameters, want about %.0f M", c.name, comp, m, want)
			}
		}
		t.Logf("%s: %v", c.name, got)
	}
}
