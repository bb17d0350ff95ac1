package controlnet

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

func tinyConfig() Config {
	u := unet.Defaults()
	u.BlockOutChannels = []int{8, 16}
	u.DownBlockTypes = []string{"CrossAttnDownBlock2D", "DownBlock2D"}
	u.UpBlockTypes = []string{"UpBlock2D", "CrossAttnUpBlock2D"}
	u.LayersPerBlock = unet.IntList{1}
	u.NormNumGroups = 4
	u.CrossAttentionDim = unet.IntList{8}
	u.AttentionHeadDim = unet.IntList{2}
	return FromUNet(u)
}

// TestRefusedConfigs checks that New refuses what ControlNetModel builds
// differently from the UNet encoder, naming the field and its value.
func TestRefusedConfigs(t *testing.T) {
	mid := "UNetMidBlock2DSimpleCrossAttn"
	for _, tc := range []struct {
		name string
		set  func(c *Config)
		want []string
	}{
		{"mid_block_type", func(c *Config) { c.MidBlockType = &mid }, []string{"mid_block_type", mid}},
		{"mid_block_type null", func(c *Config) { c.MidBlockType = nil }, []string{"mid_block_type", "null"}},
		{"layers_per_block list", func(c *Config) { c.LayersPerBlock = unet.IntList{1, 2} }, []string{"layers_per_block", "[1 2]"}},
		{"cross_attention_dim list", func(c *Config) { c.CrossAttentionDim = unet.IntList{8, 8} }, []string{"cross_attention_dim", "[8 8]"}},
		{"simple_projection", func(c *Config) { c.ClassEmbedType = "simple_projection"; c.ProjectionClassEmbeddingsDim = 4 }, []string{"class_embed_type", "simple_projection"}},
		{"timestep with gelu", func(c *Config) { c.ClassEmbedType = "timestep"; c.ActFn = "gelu" }, []string{"timestep", "gelu"}},
		{"channel order", func(c *Config) { c.ChannelOrder = "rbg" }, []string{"controlnet_conditioning_channel_order", "rbg"}},
		{"conditioning_channels", func(c *Config) { c.ConditioningChannels = 0 }, []string{"conditioning_channels", "0"}},
		{"conditioning_embedding_out_channels", func(c *Config) { c.ConditioningEmbeddingOutChannels = []int{16, 0} }, []string{"conditioning_embedding_out_channels"}},
		{"encoder_hid_dim", func(c *Config) { c.EncoderHidDim = 8 }, []string{"encoder_hid_dim", "8"}},
		{"encoder act_fn", func(c *Config) { c.ActFn = "tanh" }, []string{"act_fn", "tanh"}},
	} {
		c := tinyConfig()
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
	if _, err := New(tinyConfig()); err != nil {
		t.Fatalf("base config: %v", err)
	}
	if _, err := ParseConfig([]byte(`{"act_fn": null}`)); err == nil || !strings.Contains(err.Error(), "act_fn") {
		t.Errorf("act_fn null: error %v", err)
	}
}

// TestResidualsAdd checks that summing residuals of another count or shape
// is an ErrResidual error that leaves the sum unchanged.
func TestResidualsAdd(t *testing.T) {
	mk := func(down ...[]int) *Residuals {
		r := &Residuals{Mid: tensor.Full(1, 1, 4, 2, 2)}
		for _, s := range down {
			r.Down = append(r.Down, tensor.Full(1, s...))
		}
		return r
	}
	a := mk([]int{1, 2, 4, 4}, []int{1, 4, 2, 2})
	for _, bad := range []*Residuals{
		mk([]int{1, 2, 4, 4}),
		mk([]int{1, 2, 4, 4}, []int{1, 4, 4, 4}),
		{Down: mk([]int{1, 2, 4, 4}, []int{1, 4, 2, 2}).Down},
		{Down: mk([]int{1, 2, 4, 4}, []int{1, 4, 2, 2}).Down, Mid: tensor.Zeros(1, 4, 1, 1)},
	} {
		if err := a.Add(bad); !errors.Is(err, unet.ErrResidual) {
			t.Errorf("adding %d down residuals: error %v", len(bad.Down), err)
		}
	}
	if err := a.Add(mk([]int{1, 2, 4, 4}, []int{1, 4, 2, 2})); err != nil {
		t.Fatal(err)
	}
	if got := a.Down[1].Data()[0]; got != 2 {
		t.Errorf("sum %v, want 2 (the refused additions changed it)", got)
	}
}

// TestGuessModeGlobalPool checks diffusers' rule that with
// global_pool_conditions guess mode does not ramp the residual scales.
func TestGuessModeGlobalPool(t *testing.T) {
	c := tinyConfig()
	c.ConditioningEmbeddingOutChannels = []int{4, 8}
	c.GlobalPoolConditions = true
	m, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	nn.Init(m, 3, tensor.F32)
	sample, img := tensor.Full(0.5, 1, 4, 8, 8), tensor.Full(0.25, 1, 3, 16, 16)
	cond := unet.Cond{EncoderHiddenStates: tensor.Full(0.1, 1, 2, 8)}
	plain, err := m.Forward(sample, []float32{5}, cond, img, 0.7, false)
	if err != nil {
		t.Fatal(err)
	}
	guess, err := m.Forward(sample, []float32{5}, cond, img, 0.7, true)
	if err != nil {
		t.Fatal(err)
	}
	for i := range plain.Down {
		p, g := plain.Down[i].Data(), guess.Down[i].Data()
		for k := range p {
			if p[k] != g[k] {
				t.Fatalf("down residual %d: guess mode %v, plain %v", i, g[k], p[k])
			}
		}
	}
}

func TestEmbeddingChannels(t *testing.T) {
	for _, c := range []struct {
		factor int
		want   []int
	}{{8, []int{16, 32, 96, 256}}, {4, []int{16, 32, 96}}, {2, []int{16, 32}}} {
		got, err := EmbeddingChannels(c.factor)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("factor %d: %v, %v; want %v", c.factor, got, err, c.want)
		}
	}
	for _, f := range []int{0, 1, 3, 16} {
		if _, err := EmbeddingChannels(f); err == nil {
			t.Errorf("factor %d accepted", f)
		}
	}
}
