package checkpoint

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/flux"
	"github.com/diffuse-go/diffuse/model/sd3"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// fakeSource is a checkpoint table of contents without data.
type fakeSource map[string][]int

func (f fakeSource) Names() []string {
	out := make([]string, 0, len(f))
	for n := range f {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (f fakeSource) Info(name string) (safetensors.TensorInfo, bool) {
	s, ok := f[name]
	if !ok {
		return safetensors.TensorInfo{}, false
	}
	return safetensors.TensorInfo{Name: name, DType: safetensors.F16, Shape: s}, true
}

func (f fakeSource) clone() fakeSource {
	g := make(fakeSource, len(f))
	for k, v := range f {
		g[k] = v
	}
	return g
}

// fullSource lists every tensor of a model at its single-file shape, with
// the buffers real files carry.
func fullSource(t *testing.T, m Model) fakeSource {
	t.Helper()
	cps, err := m.Components()
	if err != nil {
		t.Fatal(err)
	}
	src := fakeSource{}
	for _, c := range cps {
		for _, p := range c.Params {
			src[c.Prefix+p.Source] = p.SourceShape
		}
		switch c.Rules {
		case CLIP:
			src[c.Prefix+"text_model.embeddings.position_ids"] = []int{1, 77}
		case OpenCLIP:
			src[c.Prefix+"logit_scale"] = []int{}
		}
	}
	return src
}

// ref is an expected mapping: the original name (without prefix), the
// diffusers shape, the fused rows and the transposition.
type ref struct {
	src   string
	shape []int
	rows  [2]int
	tr    bool
}

func checkRefs(t *testing.T, what string, c Component, prefix string, want map[string]ref) {
	t.Helper()
	for name, r := range want {
		got, ok := c[name]
		if !ok {
			t.Errorf("%s: no entry for %s", what, name)
			continue
		}
		if got.Source != prefix+r.src || !slices.Equal(got.Shape, r.shape) || got.Rows != r.rows || got.Transpose != r.tr {
			t.Errorf("%s: %s maps to %s %v rows %v transpose %v, want %s %v rows %v transpose %v",
				what, name, got.Source, got.Shape, got.Rows, got.Transpose, prefix+r.src, r.shape, r.rows, r.tr)
		}
	}
}

// TestSD15 maps a full-size SD 1.5 (and inpainting) file: the sizes of
// diffusers' state dicts and names known from real files.
func TestSD15(t *testing.T) {
	for _, want := range []Model{SD15(), SD15Inpainting()} {
		src := fullSource(t, want)
		src["betas"] = []int{1000}
		src["model_ema.num_updates"] = []int{}
		m, err := ConvertSD(src)
		if err != nil {
			t.Fatalf("%s: %v", want.Name, err)
		}
		if m.Model.Name != want.Name || m.Model.UNet.InChannels != want.UNet.InChannels {
			t.Errorf("detected %s (in %d), want %s", m.Model.Name, m.Model.UNet.InChannels, want.Name)
		}
		u, v, te := m.Component("unet"), m.Component("vae"), m.Component("text_encoder")
		if len(u) != 686 || len(v) != 248 || len(te) != 196 || len(m.Ignored) != 3 {
			t.Errorf("%s: %d UNet, %d VAE, %d text encoder entries, %d ignored; want 686, 248, 196, 3",
				want.Name, len(u), len(v), len(te), len(m.Ignored))
		}
		checkRefs(t, want.Name, u, UNetPrefix, map[string]ref{
			"conv_in.weight":                                                     {"input_blocks.0.0.weight", []int{320, want.UNet.InChannels, 3, 3}, [2]int{}, false},
			"time_embedding.linear_2.bias":                                       {"time_embed.2.bias", []int{1280}, [2]int{}, false},
			"up_blocks.1.upsamplers.0.conv.weight":                               {"output_blocks.5.2.conv.weight", []int{1280, 1280, 3, 3}, [2]int{}, false},
			"up_blocks.0.upsamplers.0.conv.weight":                               {"output_blocks.2.1.conv.weight", []int{1280, 1280, 3, 3}, [2]int{}, false},
			"down_blocks.2.downsamplers.0.conv.weight":                           {"input_blocks.9.0.op.weight", []int{1280, 1280, 3, 3}, [2]int{}, false},
			"down_blocks.3.resnets.1.norm2.weight":                               {"input_blocks.11.0.out_layers.0.weight", []int{1280}, [2]int{}, false},
			"down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight":  {"input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight", []int{640, 768}, [2]int{}, false},
			"down_blocks.0.attentions.1.proj_in.weight":                          {"input_blocks.2.1.proj_in.weight", []int{320, 320, 1, 1}, [2]int{}, false},
			"mid_block.resnets.1.time_emb_proj.weight":                           {"middle_block.2.emb_layers.1.weight", []int{1280, 1280}, [2]int{}, false},
			"mid_block.attentions.0.norm.bias":                                   {"middle_block.1.norm.bias", []int{1280}, [2]int{}, false},
			"up_blocks.3.resnets.2.conv_shortcut.weight":                         {"output_blocks.11.0.skip_connection.weight", []int{320, 640, 1, 1}, [2]int{}, false},
			"up_blocks.3.attentions.2.transformer_blocks.0.ff.net.0.proj.weight": {"output_blocks.11.1.transformer_blocks.0.ff.net.0.proj.weight", []int{2560, 320}, [2]int{}, false},
			"conv_norm_out.weight":                                               {"out.0.weight", []int{320}, [2]int{}, false},
			"conv_out.bias":                                                      {"out.2.bias", []int{4}, [2]int{}, false},
		})
		checkRefs(t, want.Name, v, VAEPrefix, map[string]ref{
			"encoder.down_blocks.1.resnets.0.conv_shortcut.weight": {"encoder.down.1.block.0.nin_shortcut.weight", []int{256, 128, 1, 1}, [2]int{}, false},
			"encoder.down_blocks.2.downsamplers.0.conv.bias":       {"encoder.down.2.downsample.conv.bias", []int{512}, [2]int{}, false},
			"decoder.up_blocks.0.resnets.2.conv1.weight":           {"decoder.up.3.block.2.conv1.weight", []int{512, 512, 3, 3}, [2]int{}, false},
			"decoder.up_blocks.3.resnets.0.conv_shortcut.bias":     {"decoder.up.0.block.0.nin_shortcut.bias", []int{128}, [2]int{}, false},
			"decoder.up_blocks.1.upsamplers.0.conv.weight":         {"decoder.up.2.upsample.conv.weight", []int{512, 512, 3, 3}, [2]int{}, false},
			"decoder.mid_block.resnets.1.norm2.weight":             {"decoder.mid.block_2.norm2.weight", []int{512}, [2]int{}, false},
			"encoder.mid_block.attentions.0.group_norm.bias":       {"encoder.mid.attn_1.norm.bias", []int{512}, [2]int{}, false},
			"encoder.mid_block.attentions.0.to_out.0.weight":       {"encoder.mid.attn_1.proj_out.weight", []int{512, 512}, [2]int{}, false},
			"decoder.conv_norm_out.weight":                         {"decoder.norm_out.weight", []int{128}, [2]int{}, false},
			"quant_conv.weight":                                    {"quant_conv.weight", []int{8, 8, 1, 1}, [2]int{}, false},
		})
		if r := v["decoder.mid_block.attentions.0.to_q.weight"]; r.Source != VAEPrefix+"decoder.mid.attn_1.q.weight" || !r.Reshape ||
			!slices.Equal(r.SourceShape, []int{512, 512, 1, 1}) {
			t.Errorf("VAE to_q maps to %+v, want a reshaped 1×1 convolution", r)
		}
		checkRefs(t, want.Name, te, TextEncoderPrefix, map[string]ref{
			"text_model.encoder.layers.11.self_attn.q_proj.weight": {"text_model.encoder.layers.11.self_attn.q_proj.weight", []int{768, 768}, [2]int{}, false},
		})
	}
}

func TestConvertErrors(t *testing.T) {
	base := fullSource(t, SD15())
	const (
		unetConv = UNetPrefix + "input_blocks.1.0.in_layers.2.weight"
		vaeQ     = VAEPrefix + "decoder.mid.attn_1.q.weight"
		teFC1    = TextEncoderPrefix + "text_model.encoder.layers.1.mlp.fc1.weight"
	)
	cases := []struct {
		name   string
		edit   func(fakeSource)
		check  func(*LayoutError) bool
		inText []string
	}{
		{"missing UNet tensor", func(s fakeSource) { delete(s, unetConv) },
			func(e *LayoutError) bool { return slices.Equal(e.Missing, []string{unetConv}) },
			[]string{"1 missing", unetConv}},
		{"missing VAE attention", func(s fakeSource) { delete(s, vaeQ) },
			func(e *LayoutError) bool { return slices.Equal(e.Missing, []string{vaeQ}) },
			[]string{"missing", vaeQ}},
		{"extra tensor under the UNet prefix", func(s fakeSource) { s[UNetPrefix+"input_blocks.99.0.weight"] = []int{1} },
			func(e *LayoutError) bool {
				return slices.Equal(e.Unexpected, []string{UNetPrefix + "input_blocks.99.0.weight"})
			},
			[]string{"1 unexpected", UNetPrefix + "input_blocks.99.0.weight"}},
		{"unknown top-level tensor", func(s fakeSource) { s["lora_unet_foo.alpha"] = []int{} },
			func(e *LayoutError) bool { return slices.Equal(e.Unknown, []string{"lora_unet_foo.alpha"}) },
			[]string{"1 unknown", "lora_unet_foo.alpha"}},
		{"wrong shape", func(s fakeSource) { s[teFC1] = []int{3071, 768} },
			func(e *LayoutError) bool {
				return len(e.Shapes) == 1 && e.Shapes[0].Source == teFC1 && e.Shapes[0].Name == "text_model.encoder.layers.1.mlp.fc1.weight" &&
					slices.Equal(e.Shapes[0].Got, []int{3071, 768}) && slices.Equal(e.Shapes[0].Want, []int{3072, 768})
			},
			[]string{teFC1, "[3071 768]", "want [3072 768]"}},
		{"linear proj_in in an SD 1.x layout", func(s fakeSource) { s[UNetPrefix+"input_blocks.1.1.proj_in.weight"] = []int{320, 320} },
			func(e *LayoutError) bool { return len(e.Shapes) == 1 },
			[]string{UNetPrefix + "input_blocks.1.1.proj_in.weight", "[320 320]", "want [320 320 1 1]"}},
		{"VAE attention neither conv nor linear", func(s fakeSource) { s[vaeQ] = []int{512, 512, 3, 3} },
			func(e *LayoutError) bool { return len(e.Shapes) == 1 },
			[]string{vaeQ, "want [512 512 1 1]"}},
		{"everything at once", func(s fakeSource) {
			delete(s, unetConv)
			s["foo"] = []int{1}
			s[VAEPrefix+"bar"] = []int{1}
			s[teFC1] = []int{1}
		},
			func(e *LayoutError) bool {
				return len(e.Missing) == 1 && len(e.Unknown) == 1 && len(e.Unexpected) == 1 && len(e.Shapes) == 1
			},
			[]string{unetConv, "foo", VAEPrefix + "bar", teFC1, "SD 1.5"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := base.clone()
			c.edit(src)
			mp, err := Convert(src, SD15())
			if err == nil {
				t.Fatalf("Convert accepted the checkpoint (%d UNet entries)", len(mp.Component("unet")))
			}
			var le *LayoutError
			if !errors.As(err, &le) {
				t.Fatalf("error %v is not a *LayoutError", err)
			}
			if !c.check(le) {
				t.Errorf("LayoutError = %+v", le)
			}
			for _, s := range c.inText {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestLayoutErrorTruncates(t *testing.T) {
	e := &LayoutError{Layout: "x"}
	for i := range 20 {
		e.Missing = append(e.Missing, fmt.Sprintf("t%02d", i))
	}
	msg := e.Error()
	if !strings.Contains(msg, "20 missing") || !strings.Contains(msg, "t07") || strings.Contains(msg, "t08") || !strings.Contains(msg, "and 12 more") {
		t.Errorf("Error() = %q", msg)
	}
}

func TestDetectRejects(t *testing.T) {
	sd := fullSource(t, SD15())
	cases := []struct {
		name string
		edit func(fakeSource)
		want string
	}{
		{"instruct-pix2pix style 8 channels", func(s fakeSource) { s[convIn] = []int{320, 8, 3, 3} }, "[320 8 3 3]"},
		{"SD 2.x with 8 channels", func(s fakeSource) {
			s[convIn] = []int{320, 8, 3, 3}
			s[sd2Key] = []int{320, 1024}
		}, "SD 2.x has [320 4 3 3]"},
		{"SDXL", func(s fakeSource) {
			s["conditioner.embedders.0.transformer.text_model.final_layer_norm.bias"] = []int{768}
		}, "SDXL"},
		{"no UNet", func(s fakeSource) {
			for n := range s {
				if strings.HasPrefix(n, UNetPrefix) {
					delete(s, n)
				}
			}
		}, "no model.diffusion_model.*"},
		{"no conv_in", func(s fakeSource) { delete(s, convIn) }, "input_blocks.0.0.weight is missing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := sd.clone()
			c.edit(src)
			_, err := ConvertSD(src)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want one mentioning %q", err, c.want)
			}
		})
	}
}

func TestAlternativeSourceForms(t *testing.T) {
	src := fullSource(t, SD15())
	// A VAE whose attention was saved already as Linear.
	q := VAEPrefix + "encoder.mid.attn_1.q.weight"
	src[q] = []int{512, 512}
	// A text encoder saved without the text_model level.
	old := TextEncoderPrefix + "text_model.final_layer_norm.weight"
	delete(src, old)
	src[TextEncoderPrefix+"final_layer_norm.weight"] = []int{768}
	m, err := Convert(src, SD15())
	if err != nil {
		t.Fatal(err)
	}
	v := m.Component("vae")
	if r := v["encoder.mid_block.attentions.0.to_q.weight"]; r.Source != q || r.Reshape || !slices.Equal(r.Shape, []int{512, 512}) {
		t.Errorf("linear VAE attention maps to %+v", r)
	}
	if r := v["encoder.mid_block.attentions.0.to_k.weight"]; !r.Reshape || !slices.Equal(r.SourceShape, []int{512, 512, 1, 1}) {
		t.Errorf("conv VAE attention maps to %+v", r)
	}
	if r := m.Component("text_encoder")["text_model.final_layer_norm.weight"]; r.Source != TextEncoderPrefix+"final_layer_norm.weight" {
		t.Errorf("old-style text encoder name maps to %+v", r)
	}
}

// module is a hand-made parameter list.
type module []nn.Param

func (m module) Params(prefix string, p *nn.Params) {
	for _, q := range m {
		p.Add(prefix+q.Name, q.Shape, new(*tensor.Tensor))
	}
}

func TestRulesRefuseUnknownParameters(t *testing.T) {
	for _, c := range []struct {
		rules Rules
		name  string
	}{
		{LDMUNet, "encoder_hid_proj.weight"},
		{LDMUNet, "down_blocks.0.resnets.x.conv1.weight"},
		{LDMUNet, "down_blocks.0.downsamplers.0.norm1.weight"},
		{LDMVAE, "encoder.mid_block.attentions.1.to_q.weight"},
		{LDMVAE, "decoder.foo.weight"},
		{OpenCLIP, "text_model.encoder.layers.0.self_attn.q_norm.weight"},
		{OpenCLIP, "logit_scale"},
		{LDMControlNet, "controlnet_cond_embedding.blocks.x.weight"},
		{Rules(0), "x"},
	} {
		_, err := c.rules.Names(module{{Name: c.name, Shape: []int{4, 4}}})
		if err == nil || !strings.Contains(err.Error(), c.name) && c.rules != 0 {
			t.Errorf("%s %s: err = %v, want one naming it", c.rules, c.name, err)
		}
	}
	// Two parameters onto one name.
	_, err := LDMUNet.Names(module{{Name: "conv_in.weight", Shape: []int{1}}, {Name: "add_embedding.linear_1.weight", Shape: []int{1}},
		{Name: "class_embedding.linear_1.weight", Shape: []int{1}}})
	if err == nil || !strings.Contains(err.Error(), "label_emb.0.0.weight") {
		t.Errorf("add and class embedding together: %v", err)
	}
}

// TestUNetRulesFollowTheModel checks the block numbering on UNets whose
// blocks differ: per-block layers_per_block, a mid block without
// attention.
func TestUNetRulesFollowTheModel(t *testing.T) {
	c := unet.SD15(4)
	c.BlockOutChannels = []int{32, 64, 64}
	c.NormNumGroups = 8
	c.CrossAttentionDim = unet.IntList{16}
	c.AttentionHeadDim = unet.IntList{2}
	c.DownBlockTypes = []string{"CrossAttnDownBlock2D", "DownBlock2D", "DownBlock2D"}
	c.UpBlockTypes = []string{"UpBlock2D", "UpBlock2D", "CrossAttnUpBlock2D"}
	c.LayersPerBlock = unet.IntList{1, 3, 2}
	m, err := unet.New(c)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := LDMUNet.Names(m)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range ps {
		got[p.Name] = p.Source
	}
	for name, want := range map[string]string{
		"down_blocks.0.attentions.0.proj_in.weight": "input_blocks.1.1.proj_in.weight",
		"down_blocks.0.downsamplers.0.conv.weight":  "input_blocks.2.0.op.weight",
		"down_blocks.1.resnets.2.conv1.weight":      "input_blocks.5.0.in_layers.2.weight",
		"down_blocks.1.downsamplers.0.conv.bias":    "input_blocks.6.0.op.bias",
		"down_blocks.2.resnets.1.norm1.weight":      "input_blocks.8.0.in_layers.0.weight",
		// diffusers reverses layers_per_block for the up path: 3, 4, 2 resnets.
		"up_blocks.0.upsamplers.0.conv.weight":       "output_blocks.2.1.conv.weight",
		"up_blocks.1.resnets.3.conv2.weight":         "output_blocks.6.0.out_layers.3.weight",
		"up_blocks.1.upsamplers.0.conv.weight":       "output_blocks.6.1.conv.weight",
		"up_blocks.2.attentions.1.norm.weight":       "output_blocks.8.1.norm.weight",
		"mid_block.attentions.0.proj_out.bias":       "middle_block.1.proj_out.bias",
		"mid_block.resnets.1.conv2.weight":           "middle_block.2.out_layers.3.weight",
		"up_blocks.2.resnets.0.conv_shortcut.weight": "output_blocks.7.0.skip_connection.weight",
	} {
		if got[name] != want {
			t.Errorf("%s maps to %q, want %q", name, got[name], want)
		}
	}
}

// TestRulesOnGoldenModels names every parameter of the golden cases' tiny
// diffusers models, whose weights files are the real state dicts: each
// name must have an original one, distinct from the others.
func TestRulesOnGoldenModels(t *testing.T) {
	build := map[string]func([]byte) (nn.Module, error){
		"unet": func(b []byte) (nn.Module, error) {
			c, err := unet.ParseConfig(b)
			if err != nil {
				return nil, err
			}
			return unet.New(c)
		},
		"vae": func(b []byte) (nn.Module, error) {
			c, err := vae.ParseConfig(b)
			if err != nil {
				return nil, err
			}
			return vae.New(c)
		},
		"clip": func(b []byte) (nn.Module, error) {
			c, err := clip.ParseConfig(b)
			if err != nil {
				return nil, err
			}
			c.WithProjection = true
			return clip.New(c)
		},
		"sd3": func(b []byte) (nn.Module, error) {
			c, err := sd3.ParseConfig(b)
			if err != nil {
				return nil, err
			}
			return sd3.New(c)
		},
		"flux": func(b []byte) (nn.Module, error) {
			c, err := flux.ParseConfig(b)
			if err != nil {
				return nil, err
			}
			return flux.New(c)
		},
	}
	for _, c := range []struct {
		golden, kind string
		rules        Rules
	}{{"unet_sd15", "unet", LDMUNet}, {"unet_sdxl", "unet", LDMUNet}, {"vae", "vae", LDMVAE},
		{"clip_text", "clip", CLIP}, {"clip_text_proj", "clip", OpenCLIP},
		{"sd3_transformer", "sd3", SD3}, {"flux_transformer", "flux", Flux}} {
		gc, err := golden.Find(c.golden)
		if err != nil {
			t.Fatal(err)
		}
		m, err := build[c.kind](gc.Config)
		gc.Close()
		if err != nil {
			t.Fatalf("%s: %v", c.golden, err)
		}
		ps, err := c.rules.Names(m)
		if err != nil {
			t.Errorf("%s: %v", c.golden, err)
			continue
		}
		var all nn.Params
		m.Params("", &all)
		if len(ps) != len(all.List()) {
			t.Errorf("%s: %d names for %d parameters", c.golden, len(ps), len(all.List()))
		}
	}
}

func TestRefApply(t *testing.T) {
	r := Ref{Source: "x", SourceShape: []int{6, 2}, Shape: []int{2, 2}, Rows: [2]int{2, 4}}
	if s, err := r.Apply([]int{6, 2}); err != nil || !slices.Equal(s, []int{2, 2}) {
		t.Errorf("rows: %v %v", s, err)
	}
	r = Ref{Source: "p", SourceShape: []int{3, 5}, Shape: []int{5, 3}, Transpose: true}
	if s, err := r.Apply([]int{3, 5}); err != nil || !slices.Equal(s, []int{5, 3}) {
		t.Errorf("transpose: %v %v", s, err)
	}
	if _, err := r.Apply([]int{5, 3}); err == nil || !strings.Contains(err.Error(), "p has shape [5 3], want [3 5]") {
		t.Errorf("wrong shape: %v", err)
	}
	for _, bad := range []Ref{
		{Source: "a", SourceShape: []int{4}, Rows: [2]int{3, 5}},
		{Source: "b", SourceShape: []int{4}, Rows: [2]int{2, 1}},
		{Source: "c", SourceShape: []int{4}, Transpose: true},
	} {
		if _, err := bad.Apply(bad.SourceShape); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// TestSD2 maps a full-size SD 2.x file: OpenCLIP ViT-H with its 24 layers,
// of which diffusers keeps 23, and its unused projection.
func TestSD2(t *testing.T) {
	for _, want := range []Model{SD21(), SD2Inpainting()} {
		src := fullSource(t, want)
		// What the file holds beyond diffusers' model (single_file_utils'
		// SD_2_TEXT_ENCODER_KEYS_TO_IGNORE).
		for _, n := range []string{"ln_1.weight", "ln_1.bias", "attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight",
			"attn.out_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"} {
			src[OpenCLIPPrefix+"transformer.resblocks.23."+n] = []int{1}
		}
		src[OpenCLIPPrefix+"text_projection"] = []int{1024, 1024}
		src["alphas_cumprod"] = []int{1000}
		mp, err := ConvertSD(src)
		if err != nil {
			t.Fatalf("%s: %v", want.Name, err)
		}
		if mp.Model.Name != want.Name || mp.Model.Prediction != want.Prediction {
			t.Errorf("detected %s (%s), want %s", mp.Model.Name, mp.Model.Prediction, want.Name)
		}
		u, v, te := mp.Component("unet"), mp.Component("vae"), mp.Component("text_encoder")
		// 4 + 23 layers × 16 text encoder tensors; 12 + 1 + logit_scale and
		// alphas_cumprod ignored.
		if len(u) != 686 || len(v) != 248 || len(te) != 372 || len(mp.Ignored) != 15 {
			t.Errorf("%s: %d UNet, %d VAE, %d text encoder entries, %d ignored; want 686, 248, 372, 15",
				want.Name, len(u), len(v), len(te), len(mp.Ignored))
		}
		checkRefs(t, want.Name, u, UNetPrefix, map[string]ref{
			"down_blocks.0.attentions.1.proj_in.weight":                         {"input_blocks.2.1.proj_in.weight", []int{320, 320}, [2]int{}, false},
			"down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_k.weight": {"input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight", []int{320, 1024}, [2]int{}, false},
		})
		checkRefs(t, want.Name, te, OpenCLIPPrefix, map[string]ref{
			"text_model.encoder.layers.22.self_attn.v_proj.weight": {"transformer.resblocks.22.attn.in_proj_weight", []int{1024, 1024}, [2]int{2048, 3072}, false},
			"text_model.encoder.layers.0.self_attn.q_proj.bias":    {"transformer.resblocks.0.attn.in_proj_bias", []int{1024}, [2]int{0, 1024}, false},
			"text_model.encoder.layers.5.mlp.fc1.weight":           {"transformer.resblocks.5.mlp.c_fc.weight", []int{4096, 1024}, [2]int{}, false},
			"text_model.final_layer_norm.weight":                   {"ln_final.weight", []int{1024}, [2]int{}, false},
			"text_model.embeddings.position_embedding.weight":      {"positional_embedding", []int{77, 1024}, [2]int{}, false},
		})
		if _, ok := te["text_projection.weight"]; ok {
			t.Error("SD 2.x text encoder maps a projection")
		}
	}
	// A layer beyond the unused one is not silently dropped.
	src := fullSource(t, SD21())
	src[OpenCLIPPrefix+"transformer.resblocks.24.ln_1.weight"] = []int{1024}
	if _, err := ConvertSD(src); err == nil || !strings.Contains(err.Error(), "resblocks.24.ln_1.weight") {
		t.Errorf("a 25th OpenCLIP layer: %v", err)
	}
}
