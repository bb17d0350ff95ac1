package unet

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// tiny is a two-block UNet small enough to run in a test: 8×8 samples give
// skips [B,8,8,8] (conv_in, the first block's resnet), [B,8,4,4] (its
// downsampler) and [B,16,4,4] (the second block's resnet), and a mid block
// output of [B,16,4,4].
func tiny() Config {
	c := Defaults()
	c.BlockOutChannels = []int{8, 16}
	c.DownBlockTypes = []string{"CrossAttnDownBlock2D", "DownBlock2D"}
	c.UpBlockTypes = []string{"UpBlock2D", "CrossAttnUpBlock2D"}
	c.LayersPerBlock = IntList{1}
	c.NormNumGroups = 4
	c.CrossAttentionDim = IntList{8}
	c.AttentionHeadDim = IntList{2}
	return c
}

func str(s string) *string { return &s }

// TestRefusedConfigs checks that every config value this package does not
// build is refused by New with an error naming the field and its value.
func TestRefusedConfigs(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(c *Config)
		want []string // in the error
	}{
		{"act_fn", func(c *Config) { c.ActFn = "tanh" }, []string{"act_fn", "tanh"}},
		{"time_embedding_act_fn", func(c *Config) { c.TimeEmbeddingActFn = "gelu_new" }, []string{"time_embedding_act_fn", "gelu_new"}},
		{"timestep_post_act", func(c *Config) { c.TimestepPostAct = "softplus" }, []string{"timestep_post_act", "softplus"}},
		{"resnet_time_scale_shift", func(c *Config) { c.ResnetTimeScaleShift = "ada_group" }, []string{"resnet_time_scale_shift", "ada_group"}},
		{"attention_type", func(c *Config) { c.AttentionType = "gated" }, []string{"attention_type", "gated"}},
		{"addition_embed_type", func(c *Config) { c.AdditionEmbedType = "image_hint" }, []string{"addition_embed_type", "image_hint"}},
		{"addition text_time without dims", func(c *Config) { c.AdditionEmbedType = "text_time" }, []string{"text_time", "addition_time_embed_dim"}},
		{"time_embedding_type", func(c *Config) { c.TimeEmbeddingType = "fourier" }, []string{"time_embedding_type", "fourier"}},
		{"mid_block_type", func(c *Config) { c.MidBlockType = str("UNetMidBlockFlat") }, []string{"mid_block_type", "UNetMidBlockFlat"}},
		{"up_block_types", func(c *Config) { c.UpBlockTypes[0] = "KUpBlock2D" }, []string{"up_block_types", "KUpBlock2D"}},
		{"down_block_types", func(c *Config) { c.DownBlockTypes[1] = "KDownBlock2D" }, []string{"down_block_types", "KDownBlock2D"}},
		{"class_embed_type", func(c *Config) { c.ClassEmbedType = "label" }, []string{"class_embed_type", "label"}},
		{"projection without dim", func(c *Config) { c.ClassEmbedType = "projection" }, []string{"projection", "projection_class_embeddings_input_dim"}},
		{"simple_projection without dim", func(c *Config) { c.ClassEmbedType = "simple_projection" }, []string{"simple_projection", "projection_class_embeddings_input_dim"}},
		{"encoder_hid_dim_type", func(c *Config) { c.EncoderHidDimType = "image_proj"; c.EncoderHidDim = 8 }, []string{"encoder_hid_dim_type", "image_proj"}},
		{"text_proj without dim", func(c *Config) { c.EncoderHidDimType = "text_proj" }, []string{"encoder_hid_dim_type", "encoder_hid_dim"}},
		{"dual_cross_attention", func(c *Config) { c.DualCrossAttention = true }, []string{"dual_cross_attention"}},
		{"class_embeddings_concat", func(c *Config) { c.ClassEmbeddingsConcat = true }, []string{"class_embeddings_concat"}},
		{"conv_in_kernel", func(c *Config) { c.ConvInKernel = 0 }, []string{"conv_in_kernel", "0"}},
		{"conv_out_kernel", func(c *Config) { c.ConvOutKernel = -1 }, []string{"conv_out_kernel", "-1"}},
		{"conv_in_kernel even", func(c *Config) { c.ConvInKernel = 2 }, []string{"conv_in_kernel", "2"}},
		{"norm_num_groups", func(c *Config) { c.NormNumGroups = 3 }, []string{"norm_num_groups", "3"}},
		{"norm_num_groups zero", func(c *Config) { c.NormNumGroups = 0 }, []string{"norm_num_groups", "0"}},
		{"layers_per_block length", func(c *Config) { c.LayersPerBlock = IntList{1, 1, 1} }, []string{"layers_per_block", "3 entries"}},
		{"layers_per_block empty", func(c *Config) { c.LayersPerBlock = IntList{} }, []string{"layers_per_block", "0 entries"}},
		{"layers_per_block zero", func(c *Config) { c.LayersPerBlock = IntList{1, 0} }, []string{"layers_per_block", "[1 0]"}},
		{"layers_per_block negative", func(c *Config) { c.LayersPerBlock = IntList{-1} }, []string{"layers_per_block", "-1"}},
		{"num_attention_heads length", func(c *Config) { c.NumAttentionHeads = IntList{1, 2, 3} }, []string{"num_attention_heads", "3 entries"}},
		{"only_cross_attention length", func(c *Config) { c.OnlyCrossAttention = BoolList{true, false, true} }, []string{"only_cross_attention", "3 entries"}},
		{"zero heads", func(c *Config) { c.AttentionHeadDim = IntList{0} }, []string{"attention heads", "0"}},
		{"more heads than channels", func(c *Config) { c.AttentionHeadDim = IntList{9} }, []string{"attention heads", "9"}},
		{"cross_attention_dim", func(c *Config) { c.CrossAttentionDim = IntList{0} }, []string{"cross_attention_dim", "0"}},
		{"in_channels", func(c *Config) { c.InChannels = 0 }, []string{"in_channels", "0"}},
		{"out_channels", func(c *Config) { c.OutChannels = 0 }, []string{"out_channels", "0"}},
		{"block counts", func(c *Config) { c.UpBlockTypes = c.UpBlockTypes[:1] }, []string{"up_block_types"}},
		{"text heads", func(c *Config) { c.AdditionEmbedType = "text"; c.AdditionEmbedTypeNumHeads = 3 }, []string{"addition_embed_type_num_heads", "3"}},
		{"encoder_hid_dim with a cross_attention_dim list", func(c *Config) { c.EncoderHidDim = 4; c.CrossAttentionDim = IntList{8, 8} }, []string{"cross_attention_dim", "[8 8]"}},
		{"cross_attention_norm", func(c *Config) {
			c.DownBlockTypes = []string{resnetDownBlock, simpleCrossDownBlock}
			c.CrossAttentionNorm = "layer_norm"
		}, []string{"cross_attention_norm", "layer_norm"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tiny()
			tc.set(&c)
			m, err := New(c)
			if err == nil {
				t.Fatalf("built %v", m != nil)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
	if _, err := New(tiny()); err != nil {
		t.Fatalf("the base config is refused: %v", err)
	}
}

// TestParseConfigNulls checks that JSON null is refused where diffusers'
// default is a value, and accepted where it is None.
func TestParseConfigNulls(t *testing.T) {
	for _, k := range []string{"norm_num_groups", "act_fn", "attention_head_dim", "layers_per_block"} {
		_, err := ParseConfig([]byte(`{"` + k + `": null}`))
		if err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s null: error %v", k, err)
		}
	}
	c, err := ParseConfig([]byte(`{"mid_block_type": null, "class_embed_type": null, "encoder_hid_dim": null, "num_attention_heads": null}`))
	if err != nil || c.MidBlockType != nil {
		t.Errorf("None-default keys null: %v, mid block %v", err, c.MidBlockType)
	}
}

// initTiny builds c with random weights.
func initTiny(t *testing.T, c Config) *Model {
	t.Helper()
	m, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	nn.Init(m, 1, tensor.F32)
	return m
}

func randT(r *rand.Rand, shape ...int) *tensor.Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return tensor.FromSlice(v, shape...)
}

// classDelta returns Embed's emb with class labels minus emb with zero
// labels (in: the labels' width).
func classDelta(t *testing.T, m *Model, labels *tensor.Tensor) []float32 {
	t.Helper()
	B := labels.Dim(0)
	ehs := tensor.Zeros(B, 3, 8)
	with, _, err := m.Embed(B, []float32{10}, Cond{EncoderHiddenStates: ehs, ClassLabels: labels})
	if err != nil {
		t.Fatal(err)
	}
	without, _, err := m.Embed(B, []float32{10}, Cond{EncoderHiddenStates: ehs, ClassLabels: tensor.Zeros(labels.Shape()...)})
	if err != nil {
		t.Fatal(err)
	}
	d := make([]float32, with.Numel())
	w, o := with.Data(), without.Data()
	for i := range d {
		d[i] = w[i] - o[i]
	}
	return d
}

func near(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Abs(float64(got[i]-want[i])) > tol*(1+math.Abs(float64(want[i]))) {
			t.Fatalf("%s: [%d] = %v, want %v", what, i, got[i], want[i])
		}
	}
}

// TestClassEmbedTypes checks class_embed_type identity (the labels are
// added to the time embedding as they are) and simple_projection (one
// Linear, class_embedding.weight/bias), the SiLU of projection whatever
// act_fn, and that class labels of the wrong shape are an error.
func TestClassEmbedTypes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const B, timeDim, proj = 2, 32, 6 // timeDim: 4·block_out_channels[0]

	c := tiny()
	c.ClassEmbedType = "identity"
	m := initTiny(t, c)
	var ps nn.Params
	m.Params("", &ps)
	for _, p := range ps.List() {
		if strings.HasPrefix(p.Name, "class_embedding") {
			t.Errorf("identity registers %s", p.Name)
		}
	}
	labels := randT(r, B, timeDim)
	near(t, "identity", classDelta(t, m, labels), labels.Data(), 1e-5)

	c.ClassEmbedType, c.ProjectionClassEmbeddingsDim = "simple_projection", proj
	m = initTiny(t, c)
	ps = nn.Params{}
	m.Params("", &ps)
	shapes := map[string][]int{}
	for _, p := range ps.List() {
		shapes[p.Name] = p.Shape
	}
	if !tensor.SameShape(shapes["class_embedding.weight"], []int{timeDim, proj}) || !tensor.SameShape(shapes["class_embedding.bias"], []int{timeDim}) {
		t.Fatalf("simple_projection params %v, %v", shapes["class_embedding.weight"], shapes["class_embedding.bias"])
	}
	labels = randT(r, B, proj)
	w := m.classLinear.Weight.Data()
	want := make([]float32, B*timeDim)
	for b := range B {
		for o := range timeDim {
			var s float64
			for i := range proj {
				s += float64(w[o*proj+i]) * float64(labels.Data()[b*proj+i])
			}
			want[b*timeDim+o] = float32(s) // the bias cancels in the difference
		}
	}
	near(t, "simple_projection", classDelta(t, m, labels), want, 1e-4)

	c.ClassEmbedType, c.ActFn = "projection", "gelu"
	m = initTiny(t, c)
	if m.classEmb.Act != "silu" || m.timeEmb.Act != "gelu" {
		t.Errorf("projection class embedding act %q, time embedding %q: want silu and gelu", m.classEmb.Act, m.timeEmb.Act)
	}
	ehs := tensor.Zeros(B, 3, 8)
	for _, bad := range []*tensor.Tensor{nil, tensor.Zeros(B), tensor.Zeros(B, proj+1), tensor.Zeros(B+1, proj)} {
		if _, _, err := m.Embed(B, []float32{1}, Cond{EncoderHiddenStates: ehs, ClassLabels: bad}); err == nil || !strings.Contains(err.Error(), "class_labels") {
			t.Errorf("class labels %v: error %v", shapeOf(bad), err)
		}
	}
}

// TestEncoderHidDimAlone checks diffusers' rule that encoder_hid_dim alone
// means encoder_hid_dim_type text_proj.
func TestEncoderHidDimAlone(t *testing.T) {
	c := tiny()
	c.EncoderHidDim = 12
	m, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	if m.encoderProj == nil || m.encoderProj.In != 12 || m.encoderProj.Out != 8 {
		t.Fatalf("encoder_hid_proj %+v, want Linear(12, 8)", m.encoderProj)
	}
}

// TestResidualErrors checks that ControlNet and T2I-Adapter residuals of
// the wrong count or shape are ErrResidual errors, not panics, and that
// residuals that fit are added (zeros change nothing).
func TestResidualErrors(t *testing.T) {
	m := initTiny(t, tiny())
	const B = 1
	r := rand.New(rand.NewPCG(3, 4))
	sample, ehs := randT(r, B, 4, 8, 8), randT(r, B, 3, 8)
	ts := []float32{7}
	base, err := m.Forward(sample, ts, Cond{EncoderHiddenStates: ehs})
	if err != nil {
		t.Fatal(err)
	}
	z := func(shape ...int) *tensor.Tensor { return tensor.Zeros(shape...) }
	skips := func() []*tensor.Tensor {
		return []*tensor.Tensor{z(B, 8, 8, 8), z(B, 8, 8, 8), z(B, 8, 4, 4), z(B, 16, 4, 4)}
	}
	intra := func() []*tensor.Tensor { return []*tensor.Tensor{z(B, 8, 8, 8), z(B, 16, 4, 4)} }
	for _, ok := range []Cond{
		{DownBlockAdditionalResiduals: skips(), MidBlockAdditionalResidual: z(B, 16, 4, 4)},
		{DownIntrablockAdditionalResidual: intra()},
		{DownIntrablockAdditionalResidual: append(intra(), z(B, 16, 4, 4))}, // XL: one more for the mid block
	} {
		ok.EncoderHiddenStates = ehs
		out, err := m.Forward(sample, ts, ok)
		if err != nil {
			t.Fatalf("fitting residuals: %v", err)
		}
		near(t, "zero residuals", out.Data(), base.Data(), 0)
	}
	set := func(l []*tensor.Tensor, i int, v *tensor.Tensor) []*tensor.Tensor { l[i] = v; return l }
	for _, tc := range []struct {
		name string
		cond Cond
	}{
		{"down count", Cond{DownBlockAdditionalResiduals: skips()[:3], MidBlockAdditionalResidual: z(B, 16, 4, 4)}},
		{"down shape", Cond{DownBlockAdditionalResiduals: set(skips(), 2, z(B, 8, 8, 8)), MidBlockAdditionalResidual: z(B, 16, 4, 4)}},
		{"down nil", Cond{DownBlockAdditionalResiduals: set(skips(), 1, nil), MidBlockAdditionalResidual: z(B, 16, 4, 4)}},
		{"down batch", Cond{DownBlockAdditionalResiduals: set(skips(), 0, z(B+1, 8, 8, 8)), MidBlockAdditionalResidual: z(B, 16, 4, 4)}},
		{"mid alone", Cond{MidBlockAdditionalResidual: z(B, 16, 4, 4)}},
		{"down alone", Cond{DownBlockAdditionalResiduals: skips()}},
		{"mid shape", Cond{DownBlockAdditionalResiduals: skips(), MidBlockAdditionalResidual: z(B, 16, 2, 2)}},
		{"intra too few", Cond{DownIntrablockAdditionalResidual: intra()[:1]}},
		{"intra too many", Cond{DownIntrablockAdditionalResidual: append(intra(), z(B, 16, 4, 4), z(B, 16, 4, 4))}},
		{"intra shape", Cond{DownIntrablockAdditionalResidual: set(intra(), 0, z(B, 8, 4, 4))}},
		{"intra nil", Cond{DownIntrablockAdditionalResidual: set(intra(), 1, nil)}},
		{"intra mid shape", Cond{DownIntrablockAdditionalResidual: append(intra(), z(B, 8, 4, 4))}},
	} {
		tc.cond.EncoderHiddenStates = ehs
		_, err := m.Forward(sample, ts, tc.cond)
		if !errors.Is(err, ErrResidual) {
			t.Errorf("%s: error %v, want ErrResidual", tc.name, err)
		}
	}
}

// FuzzConfig decodes arbitrary config JSON and builds what ParseConfig
// accepts: neither may panic.
func FuzzConfig(f *testing.F) {
	for _, c := range []Config{Defaults(), SDXL(), SDXLRefiner(), tiny()} {
		b, err := json.Marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"block_out_channels": [8, 16], "down_block_types": ["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"],
		"up_block_types": ["SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"], "mid_block_type": "UNetMidBlock2DSimpleCrossAttn",
		"norm_num_groups": 4, "attention_head_dim": 4, "cross_attention_norm": "group_norm", "class_embed_type": "identity"}`))
	f.Add([]byte(`{"class_embed_type": "simple_projection", "projection_class_embeddings_input_dim": 3, "layers_per_block": [1, 2, 1, 2]}`))
	f.Add([]byte(`{"act_fn": null, "layers_per_block": [], "attention_head_dim": [0, 1]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil || !small(c) {
			return
		}
		if _, err := New(c); err != nil {
			return
		}
	})
}

// small bounds what the fuzzer builds, so that a valid config with
// millions of layers does not exhaust the test's memory.
func small(c Config) bool {
	n := len(c.BlockOutChannels)
	if n > 8 {
		return false
	}
	for _, l := range []IntList{c.LayersPerBlock, c.TransformerLayersPerBlock, c.ReverseTransformerLayers} {
		for _, v := range l {
			if v > 8 {
				return false
			}
		}
	}
	return true
}

// TestResnetOptionsScope checks that resnet_out_scale_factor and
// resnet_skip_time_act reach only the UnCLIP / IF blocks' resnets, as
// diffusers' get_*_block pass them, and that the legacy "UNetRes" block
// names build the blocks they name.
func TestResnetOptionsScope(t *testing.T) {
	c := tiny()
	c.ResnetOutScaleFactor, c.ResnetSkipTimeAct, c.MidBlockScaleFactor = 2, true, 3
	c.DownBlockTypes[1] = "UNetResDownBlock2D"
	m, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	var all []*nn.ResnetBlock2D
	for _, b := range m.down {
		all = append(all, b.resnets...)
	}
	for _, b := range m.up {
		all = append(all, b.resnets...)
	}
	for i, r := range all {
		if r.Cfg.OutputScale != 1 || r.Cfg.SkipTimeAct {
			t.Errorf("resnet %d: output scale %v, skip time act %v; want 1, false", i, r.Cfg.OutputScale, r.Cfg.SkipTimeAct)
		}
	}
	for i, r := range m.mid.resnets {
		if r.Cfg.OutputScale != 3 || r.Cfg.SkipTimeAct {
			t.Errorf("mid resnet %d: output scale %v, skip time act %v; want 3, false", i, r.Cfg.OutputScale, r.Cfg.SkipTimeAct)
		}
	}
	if m.Cfg.DownBlockTypes[1] != "DownBlock2D" {
		t.Errorf("down block types %v", m.Cfg.DownBlockTypes)
	}

	c = tiny()
	c.ResnetOutScaleFactor, c.ResnetSkipTimeAct = 2, true
	c.DownBlockTypes = []string{resnetDownBlock, simpleCrossDownBlock}
	c.UpBlockTypes = []string{simpleCrossUpBlock, resnetUpBlock}
	c.MidBlockType = str(simpleCrossMidBlock)
	m, err = New(c)
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range m.down {
		for _, r := range b.resnets {
			if r.Cfg.OutputScale != 2 || !r.Cfg.SkipTimeAct {
				t.Errorf("IF down block %d resnet: output scale %v, skip time act %v; want 2, true", i, r.Cfg.OutputScale, r.Cfg.SkipTimeAct)
			}
		}
	}
	if r := m.mid.resnets[0]; !r.Cfg.SkipTimeAct {
		t.Error("UNetMidBlock2DSimpleCrossAttn resnet without skip_time_act")
	}
}

// FuzzTinyConfig builds small UNets from fuzzed sizes and block kinds and
// runs what New accepts: a config that validates must run without a panic.
func FuzzTinyConfig(f *testing.F) {
	f.Add(uint8(8), uint8(16), uint8(4), uint8(2), uint8(1), uint8(8), uint8(3), uint8(0))
	f.Add(uint8(16), uint8(32), uint8(8), uint8(8), uint8(2), uint8(64), uint8(3), uint8(0xff))
	f.Add(uint8(6), uint8(9), uint8(3), uint8(7), uint8(0), uint8(5), uint8(1), uint8(0x5a))
	f.Fuzz(func(t *testing.T, ch0, ch1, groups, heads, layers, cross, kernel, kinds uint8) {
		c := tiny()
		c.BlockOutChannels = []int{int(ch0 % 33), int(ch1 % 33)}
		c.NormNumGroups = int(groups % 17)
		c.AttentionHeadDim = IntList{int(heads % 17)}
		c.LayersPerBlock = IntList{int(layers % 3)}
		c.CrossAttentionDim = IntList{int(cross % 65)}
		c.ConvInKernel, c.ConvOutKernel = int(kernel%6), int(kernel%5)
		down := []string{"CrossAttnDownBlock2D", "DownBlock2D", resnetDownBlock, simpleCrossDownBlock}
		up := []string{"CrossAttnUpBlock2D", "UpBlock2D", resnetUpBlock, simpleCrossUpBlock}
		mid := []string{"UNetMidBlock2DCrossAttn", "UNetMidBlock2D", simpleCrossMidBlock, ""}
		c.DownBlockTypes = []string{down[kinds&3], down[kinds>>2&3]}
		c.UpBlockTypes = []string{up[kinds>>4&3], up[kinds>>6&3]}
		if m := mid[(kinds^kinds>>3)&3]; m != "" {
			c.MidBlockType = &m
		} else {
			c.MidBlockType = nil
		}
		m, err := New(c)
		if err != nil {
			return
		}
		nn.Init(m, 1, tensor.F32)
		r := rand.New(rand.NewPCG(1, 1))
		out, err := m.Forward(randT(r, 1, 4, 8, 8), []float32{3}, Cond{EncoderHiddenStates: randT(r, 1, 2, c.CrossAttentionDim[0])})
		// conv_out keeps the size with an odd kernel and shrinks it by one
		// with an even one, as in diffusers.
		s := 7 + c.ConvOutKernel%2
		if err == nil && !tensor.SameShape(out.Shape(), []int{1, 4, s, s}) {
			t.Errorf("%+v: output %v, want [1 4 %d %d]", c, out.Shape(), s, s)
		}
	})
}

// TestCondErrors checks that conditioning inputs of the wrong width are
// errors, not panics in a product.
func TestCondErrors(t *testing.T) {
	c := tiny()
	c.AdditionEmbedType, c.AdditionTimeEmbedDim, c.ProjectionClassEmbeddingsDim = "text_time", 2, 10 // 4 text + 3 ids × 2
	m := initTiny(t, c)
	r := rand.New(rand.NewPCG(5, 6))
	sample := randT(r, 1, 4, 8, 8)
	good := Cond{EncoderHiddenStates: randT(r, 1, 3, 8), TextEmbeds: randT(r, 1, 4), TimeIDs: randT(r, 1, 3)}
	if _, err := m.Forward(sample, []float32{1}, good); err != nil {
		t.Fatalf("fitting conditioning: %v", err)
	}
	for _, tc := range []struct {
		name string
		set  func(c *Cond)
		want string
	}{
		{"encoder width", func(c *Cond) { c.EncoderHiddenStates = randT(r, 1, 3, 5) }, "encoder_hidden_states"},
		{"encoder no features", func(c *Cond) { c.EncoderHiddenStates = tensor.Zeros(1, 3, 0) }, "encoder_hidden_states"},
		{"encoder batch", func(c *Cond) { c.EncoderHiddenStates = randT(r, 2, 3, 8) }, "encoder_hidden_states"},
		{"timestep_cond without cond_proj", func(c *Cond) { c.TimestepCond = randT(r, 1, 4) }, "timestep_cond"},
		{"text_embeds width", func(c *Cond) { c.TextEmbeds = randT(r, 1, 5) }, "text_embeds"},
		{"time_ids count", func(c *Cond) { c.TimeIDs = randT(r, 1, 2) }, "time_ids"},
		{"text_time missing", func(c *Cond) { c.TimeIDs = nil }, "time_ids"},
	} {
		cond := good
		tc.set(&cond)
		_, err := m.Forward(sample, []float32{1}, cond)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %s", tc.name, err, tc.want)
		}
	}
}
