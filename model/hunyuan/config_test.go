package hunyuan

import (
	"strings"
	"testing"
)

// TestRefusedConfigs checks that ParseConfig refuses every config value
// this package does not build, naming the field and its value.
func TestRefusedConfigs(t *testing.T) {
	base := `"num_attention_heads": 2, "attention_head_dim": 8, "hidden_size": 16, "in_channels": 4, "patch_size": 2,
		"num_layers": 2, "cross_attention_dim": 8, "cross_attention_dim_t5": 8, "pooled_projection_dim": 8, "text_len": 4, "text_len_t5": 4`
	for _, tc := range []struct {
		json string
		want []string
	}{
		{`"norm_type": "ada_norm"`, []string{"norm_type", "ada_norm"}},
		{`"activation_fn": "swiglu"`, []string{"activation_fn", "swiglu"}},
		{`"mlp_ratio": 0`, []string{"mlp_ratio", "0"}},
		{`"mlp_ratio": null`, []string{"mlp_ratio", "null"}},
		{`"in_channels": 0`, []string{"in_channels", "0"}},
		{`"patch_size": null`, []string{"patch_size", "null"}},
		{`"sample_size": -1`, []string{"sample_size", "-1"}},
		{`"text_len_t5": 0`, []string{"text_len_t5", "0"}},
		{`"num_layers": 3`, []string{"num_layers", "3"}},
		{`"hidden_size": 15`, []string{"hidden_size", "15"}},
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
	c, err := ParseConfig([]byte("{" + base + "}"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(c); err != nil {
		t.Fatalf("base config: %v", err)
	}
}
