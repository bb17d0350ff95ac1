package pixart

import (
	"strings"
	"testing"
)

// TestRefusedConfigs checks that ParseConfig refuses every config value
// this package does not build, naming the field and its value.
func TestRefusedConfigs(t *testing.T) {
	base := `"num_embeds_ada_norm": 1000, "num_attention_heads": 2, "attention_head_dim": 8, "num_layers": 1, "sample_size": 8`
	for _, tc := range []struct {
		json string
		want []string
	}{
		{`"norm_type": "ada_norm_zero"`, []string{"norm_type", "ada_norm_zero"}},
		{`"activation_fn": "swiglu"`, []string{"activation_fn", "swiglu"}},
		{`"num_embeds_ada_norm": 0`, []string{"num_embeds_ada_norm", "0"}},
		{`"patch_size": 0`, []string{"patch_size", "0"}},
		{`"num_layers": -1`, []string{"num_layers", "-1"}},
		{`"out_channels": -4`, []string{"out_channels", "-4"}},
		{`"norm_eps": null`, []string{"norm_eps", "null"}},
		{`"attention_type": "gated"`, []string{"attention_type", "gated"}},
		{`"interpolation_scale": 0`, []string{"interpolation_scale", "0"}},
		{`"cross_attention_dim": -1`, []string{"cross_attention_dim", "-1"}},
	} {
		_, err := ParseConfig([]byte("{" + base + ", " + tc.json + "}"))
		if err == nil {
			t.Errorf("%s: accepted", tc.json)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not name %q", tc.json, err, w)
			}
		}
	}
	c, err := ParseConfig([]byte("{" + base + `, "out_channels": null}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(c); err != nil {
		t.Fatalf("base config: %v", err)
	}
}
