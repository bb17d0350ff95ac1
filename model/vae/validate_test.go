package vae

import (
	"strings"
	"testing"
)

// TestRefusedConfigs checks that New refuses every config value this
// package does not build, with an error naming the field and its value.
func TestRefusedConfigs(t *testing.T) {
	base := func() Config {
		c := Defaults()
		c.BlockOutChannels = []int{8, 16}
		c.NormNumGroups = 4
		c.DownBlockTypes = []string{"DownEncoderBlock2D", "DownEncoderBlock2D"}
		c.UpBlockTypes = []string{"UpDecoderBlock2D", "UpDecoderBlock2D"}
		return c
	}
	for _, tc := range []struct {
		name string
		set  func(c *Config)
		want []string
	}{
		{"act_fn", func(c *Config) { c.ActFn = "gelu_new" }, []string{"act_fn", "gelu_new"}},
		{"down_block_types", func(c *Config) { c.DownBlockTypes[0] = "DownEncoderBlockCausal3D" }, []string{"down_block_types", "DownEncoderBlockCausal3D"}},
		{"up_block_types", func(c *Config) { c.UpBlockTypes[1] = "AttnUpDecoderBlock2D" }, []string{"up_block_types", "AttnUpDecoderBlock2D"}},
		{"block count", func(c *Config) { c.UpBlockTypes = c.UpBlockTypes[:1] }, []string{"block_out_channels", "up_block_types"}},
		{"norm_num_groups", func(c *Config) { c.NormNumGroups = 3 }, []string{"norm_num_groups", "3"}},
		{"latent_channels", func(c *Config) { c.LatentChannels = 0 }, []string{"latent_channels", "0"}},
		{"in_channels", func(c *Config) { c.InChannels = -1 }, []string{"in_channels", "-1"}},
		{"layers_per_block", func(c *Config) { c.LayersPerBlock = -2 }, []string{"layers_per_block", "-2"}},
	} {
		c := base()
		tc.set(&c)
		_, err := New(c)
		if err == nil {
			t.Errorf("%s: built", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not name %q", tc.name, err, w)
			}
		}
	}
	if _, err := New(base()); err != nil {
		t.Fatalf("base config refused: %v", err)
	}
	if _, err := ParseConfig([]byte(`{"norm_num_groups": null}`)); err == nil || !strings.Contains(err.Error(), "norm_num_groups") {
		t.Errorf("norm_num_groups null: error %v", err)
	}
}
