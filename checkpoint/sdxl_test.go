package checkpoint

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestDetectSDXL(t *testing.T) {
	base := fullSource(t, SDXLBase())
	// sd_xl_base_1.0.safetensors holds 2515 tensors.
	if len(base) != 2515 {
		t.Errorf("SDXL base has %d tensors, want 2515", len(base))
	}
	for _, want := range []Model{SDXLBase(), SDXLInpainting(), SDXLRefiner()} {
		mp, err := ConvertSDXL(fullSource(t, want))
		if err != nil {
			t.Fatalf("%s: %v", want.Name, err)
		}
		if mp.Model.Name != want.Name || mp.Model.Refiner() != want.Refiner() || mp.Model.UNet.InChannels != want.UNet.InChannels {
			t.Errorf("detected %s, want %s", mp.Model.Name, want.Name)
		}
		// The sizes of diffusers' state dicts: SDXL UNet 1680, VAE 248,
		// CLIPTextModel 196, CLIPTextModelWithProjection (bigG) 517.
		// The refiner UNet, counted by hand: 14 single modules, down
		// blocks 22 + 196 + 196 + 20, mid 106, up 38 + 296 + 296 + 36.
		unet, te, ignored := 1680, 196, 2
		if want.Refiner() {
			unet, te, ignored = 1220, 0, 1
		}
		u, v, t1, t2 := mp.Component("unet"), mp.Component("vae"), mp.Component("text_encoder"), mp.Component("text_encoder_2")
		if len(u) != unet || len(v) != 248 || len(t1) != te || len(t2) != 517 || len(mp.Ignored) != ignored {
			t.Errorf("%s: %d UNet, %d VAE, %d + %d text encoder entries, %d ignored",
				want.Name, len(u), len(v), len(t1), len(t2), len(mp.Ignored))
		}
	}
	mp, err := ConvertSDXL(base)
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]ref{
		"text_model.encoder.layers.3.mlp.fc2.weight":             {"transformer.resblocks.3.mlp.c_proj.weight", []int{1280, 5120}, [2]int{}, false},
		"text_model.encoder.layers.0.layer_norm2.weight":         {"transformer.resblocks.0.ln_2.weight", []int{1280}, [2]int{}, false},
		"text_model.encoder.layers.31.self_attn.q_proj.weight":   {"transformer.resblocks.31.attn.in_proj_weight", []int{1280, 1280}, [2]int{0, 1280}, false},
		"text_model.encoder.layers.31.self_attn.k_proj.weight":   {"transformer.resblocks.31.attn.in_proj_weight", []int{1280, 1280}, [2]int{1280, 2560}, false},
		"text_model.encoder.layers.7.self_attn.v_proj.bias":      {"transformer.resblocks.7.attn.in_proj_bias", []int{1280}, [2]int{2560, 3840}, false},
		"text_model.encoder.layers.7.self_attn.out_proj.bias":    {"transformer.resblocks.7.attn.out_proj.bias", []int{1280}, [2]int{}, false},
		"text_model.embeddings.position_embedding.weight":        {"positional_embedding", []int{77, 1280}, [2]int{}, false},
		"text_model.embeddings.token_embedding.weight":           {"token_embedding.weight", []int{49408, 1280}, [2]int{}, false},
		"text_model.final_layer_norm.bias":                       {"ln_final.bias", []int{1280}, [2]int{}, false},
		"text_projection.weight":                                 {"text_projection", []int{1280, 1280}, [2]int{}, true},
		"text_model.encoder.layers.30.mlp.fc1.weight":            {"transformer.resblocks.30.mlp.c_fc.weight", []int{5120, 1280}, [2]int{}, false},
		"text_model.encoder.layers.30.self_attn.out_proj.weight": {"transformer.resblocks.30.attn.out_proj.weight", []int{1280, 1280}, [2]int{}, false},
	} {
		got := mp.Component("text_encoder_2")[name]
		if got.Source != SGMOpenCLIPPrefix+r.src || !slices.Equal(got.Shape, r.shape) || got.Rows != r.rows || got.Transpose != r.tr || got.Reshape {
			t.Errorf("%s maps to %+v, want %s %v rows %v transpose %v", name, got, r.src, r.shape, r.rows, r.tr)
		}
	}
	for name, r := range map[string]ref{
		"add_embedding.linear_1.weight":                                      {"label_emb.0.0.weight", []int{1280, 2816}, [2]int{}, false},
		"add_embedding.linear_2.bias":                                        {"label_emb.0.2.bias", []int{1280}, [2]int{}, false},
		"down_blocks.2.attentions.1.transformer_blocks.9.attn2.to_k.weight":  {"input_blocks.8.1.transformer_blocks.9.attn2.to_k.weight", []int{1280, 2048}, [2]int{}, false},
		"down_blocks.1.downsamplers.0.conv.weight":                           {"input_blocks.6.0.op.weight", []int{640, 640, 3, 3}, [2]int{}, false},
		"mid_block.attentions.0.transformer_blocks.9.ff.net.2.weight":        {"middle_block.1.transformer_blocks.9.ff.net.2.weight", []int{1280, 5120}, [2]int{}, false},
		"up_blocks.0.attentions.2.proj_out.weight":                           {"output_blocks.2.1.proj_out.weight", []int{1280, 1280}, [2]int{}, false},
		"up_blocks.0.upsamplers.0.conv.weight":                               {"output_blocks.2.2.conv.weight", []int{1280, 1280, 3, 3}, [2]int{}, false},
		"up_blocks.2.resnets.2.conv_shortcut.weight":                         {"output_blocks.8.0.skip_connection.weight", []int{320, 640, 1, 1}, [2]int{}, false},
		"up_blocks.1.attentions.0.transformer_blocks.1.attn1.to_out.0.bias":  {"output_blocks.3.1.transformer_blocks.1.attn1.to_out.0.bias", []int{640}, [2]int{}, false},
		"down_blocks.0.resnets.1.time_emb_proj.weight":                       {"input_blocks.2.0.emb_layers.1.weight", []int{320, 1280}, [2]int{}, false},
		"up_blocks.1.upsamplers.0.conv.bias":                                 {"output_blocks.5.2.conv.bias", []int{640}, [2]int{}, false},
		"down_blocks.1.attentions.1.transformer_blocks.1.ff.net.0.proj.bias": {"input_blocks.5.1.transformer_blocks.1.ff.net.0.proj.bias", []int{5120}, [2]int{}, false},
	} {
		got := mp.Component("unet")[name]
		if got.Source != UNetPrefix+r.src || !slices.Equal(got.Shape, r.shape) {
			t.Errorf("%s maps to %s %v, want %s %v", name, got.Source, got.Shape, r.src, r.shape)
		}
	}
	if r := mp.Component("text_encoder")["text_model.encoder.layers.11.self_attn.q_proj.weight"]; r.Source != SGMTextEncoderPrefix+"text_model.encoder.layers.11.self_attn.q_proj.weight" {
		t.Errorf("CLIP ViT-L q_proj maps to %+v", r)
	}

	refiner, err := ConvertSDXL(fullSource(t, SDXLRefiner()))
	if err != nil {
		t.Fatal(err)
	}
	if r := refiner.Component("text_encoder_2")["text_model.encoder.layers.2.self_attn.k_proj.bias"]; r.Source != SGMRefinerOpenCLIPPrefix+"transformer.resblocks.2.attn.in_proj_bias" || r.Rows != [2]int{1280, 2560} {
		t.Errorf("refiner k_proj.bias maps to %+v", r)
	}
	if r := refiner.Component("unet")["add_embedding.linear_1.weight"]; !slices.Equal(r.Shape, []int{1536, 2560}) {
		t.Errorf("refiner add_embedding has shape %v, want [1536 2560]", r.Shape)
	}
	if r := refiner.Component("unet")["mid_block.attentions.0.transformer_blocks.3.attn2.to_v.weight"]; r.Source != UNetPrefix+"middle_block.1.transformer_blocks.3.attn2.to_v.weight" || !slices.Equal(r.Shape, []int{1536, 1280}) {
		t.Errorf("refiner mid attention maps to %+v", r)
	}
	if te := refiner.Component("text_encoder"); te != nil {
		t.Errorf("refiner has %d CLIP ViT-L entries", len(te))
	}
}

func TestConvertSGMErrors(t *testing.T) {
	base := fullSource(t, SDXLBase())
	const (
		inProj = SGMOpenCLIPPrefix + "transformer.resblocks.4.attn.in_proj_weight"
		proj   = SGMOpenCLIPPrefix + "text_projection"
		fc1    = SGMTextEncoderPrefix + "text_model.encoder.layers.1.mlp.fc1.weight"
	)
	cases := []struct {
		name   string
		edit   func(fakeSource)
		check  func(*LayoutError) bool
		inText []string
	}{
		{"missing fused qkv, reported once", func(s fakeSource) { delete(s, inProj) },
			func(e *LayoutError) bool { return slices.Equal(e.Missing, []string{inProj}) },
			[]string{"1 missing", inProj, "SDXL base"}},
		{"wrong fused qkv shape", func(s fakeSource) { s[inProj] = []int{3 * 1280, 1024} },
			func(e *LayoutError) bool {
				return len(e.Shapes) == 1 && e.Shapes[0].Source == inProj && slices.Equal(e.Shapes[0].Want, []int{3840, 1280})
			},
			[]string{inProj, "is [3840 1024], want [3840 1280]"}},
		{"unfused qkv", func(s fakeSource) { s[inProj] = []int{1280, 1280} },
			func(e *LayoutError) bool { return len(e.Shapes) == 1 },
			[]string{inProj, "want [3840 1280]"}},
		{"projection in transformers' form", func(s fakeSource) {
			delete(s, proj)
			s[proj+".weight"] = []int{1280, 1280}
		},
			func(e *LayoutError) bool {
				return slices.Equal(e.Missing, []string{proj}) && slices.Equal(e.Unexpected, []string{proj + ".weight"})
			},
			[]string{proj, "unexpected"}},
		{"wrong CLIP ViT-L shape", func(s fakeSource) { s[fc1] = []int{3072, 1024} },
			func(e *LayoutError) bool { return len(e.Shapes) == 1 },
			[]string{fc1, "want [3072 768]"}},
		{"extra OpenCLIP layer", func(s fakeSource) { s[SGMOpenCLIPPrefix+"transformer.resblocks.32.ln_1.weight"] = []int{1280} },
			func(e *LayoutError) bool { return len(e.Unexpected) == 1 },
			[]string{"resblocks.32.ln_1.weight"}},
		{"unknown top-level tensor", func(s fakeSource) { s["edm_mean"] = []int{1, 4, 1, 1} },
			func(e *LayoutError) bool { return slices.Equal(e.Unknown, []string{"edm_mean"}) },
			[]string{"1 unknown", "edm_mean"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := base.clone()
			c.edit(src)
			_, err := Convert(src, SDXLBase())
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
	m := SDXLBase()
	m.TextEncoder2.WithProjection = false
	if _, err := Convert(base, m); err == nil || !strings.Contains(err.Error(), "text_projection") {
		t.Errorf("a model without the projection: %v", err)
	}
}

func TestDetectSDXLRejects(t *testing.T) {
	sd1 := fullSource(t, SD15())
	xl := fullSource(t, SDXLBase())
	cases := []struct {
		name string
		src  fakeSource
		edit func(fakeSource)
		want []string
	}{
		{"SD 1.5", sd1, func(fakeSource) {}, []string{"SD 1.x/2.x", "pipeline.Load"}},
		{"SD 2.x", fakeSource{UNetPrefix + "input_blocks.0.0.weight": {320, 4, 3, 3}, "cond_stage_model.model.token_embedding.weight": {49408, 1024}}, func(fakeSource) {}, []string{"SD 1.x/2.x"}},
		{"nothing known", fakeSource{"foo": {1}}, func(fakeSource) {}, []string{"no conditioner.embedders"}},
		{"no UNet", xl, func(s fakeSource) {
			for n := range s {
				if strings.HasPrefix(n, UNetPrefix) {
					delete(s, n)
				}
			}
		}, []string{"no model.diffusion_model.*"}},
		{"CLIP ViT-L alone", xl, func(s fakeSource) {
			for n := range s {
				if strings.HasPrefix(n, SGMOpenCLIPPrefix) {
					delete(s, n)
				}
			}
		}, []string{"not recognised", SGMRefinerOpenCLIPPrefix}},
		{"conv_in", xl, func(s fakeSource) { s[UNetPrefix+"input_blocks.0.0.weight"] = []int{320, 8, 3, 3} },
			[]string{"[320 8 3 3]", "[320 4 3 3] (SDXL base) or [320 9 3 3] (SDXL inpainting)"}},
		{"no conv_in", xl, func(s fakeSource) { delete(s, UNetPrefix+"input_blocks.0.0.weight") }, []string{"input_blocks.0.0.weight is missing"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := c.src.clone()
			c.edit(src)
			_, err := ConvertSDXL(src)
			for _, w := range c.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want one mentioning %q", err, w)
				}
			}
		})
	}
	// And the SD 1.x/2.x detection sends SDXL files here.
	if _, err := ConvertSD(xl); err == nil || !strings.Contains(err.Error(), "LoadSDXL") {
		t.Errorf("ConvertSD1 of an SDXL file: %v, want a pointer to LoadSDXL", err)
	}
}
