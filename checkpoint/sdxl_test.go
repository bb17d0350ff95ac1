package checkpoint

import (
	"encoding/binary"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/safetensors"
)

// ---- An independent transformers → OpenCLIP renaming, written as string
// rules the way diffusers' single_file_utils maps the names.

// openCLIPName is the OpenCLIP name of a CLIPTextModelWithProjection
// parameter, which third of a fused in_proj tensor it is (-1: not fused) and
// whether OpenCLIP stores it transposed.
func openCLIPName(t *testing.T, name string) (string, int, bool) {
	t.Helper()
	switch name {
	case "text_model.embeddings.token_embedding.weight":
		return "token_embedding.weight", -1, false
	case "text_model.embeddings.position_embedding.weight":
		return "positional_embedding", -1, false
	case "text_projection.weight":
		return "text_projection", -1, true
	}
	if rest, ok := strings.CutPrefix(name, "text_model.final_layer_norm."); ok {
		return "ln_final." + rest, -1, false
	}
	rest, ok := strings.CutPrefix(name, "text_model.encoder.layers.")
	if !ok {
		t.Fatalf("no OpenCLIP name for %s", name)
	}
	for i, p := range []string{".self_attn.q_proj.", ".self_attn.k_proj.", ".self_attn.v_proj."} {
		if strings.Contains(rest, p) {
			return "transformer.resblocks." + strings.Replace(rest, p, ".attn.in_proj_", 1), i, false
		}
	}
	for _, r := range [][2]string{{"layer_norm1", "ln_1"}, {"layer_norm2", "ln_2"}, {".mlp.fc1.", ".mlp.c_fc."},
		{".mlp.fc2.", ".mlp.c_proj."}, {".self_attn.", ".attn."}} {
		rest = strings.Replace(rest, r[0], r[1], 1)
	}
	return "transformer.resblocks." + rest, -1, false
}

func f32s(b []byte) []float32 {
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

func f32bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// openCLIPTensors converts a diffusers CLIPTextModelWithProjection file to
// OpenCLIP tensors under prefix: q, k, v concatenated along rows and the
// projection transposed (f32 files only).
func openCLIPTensors(t *testing.T, prefix string, f *safetensors.File) []safetensors.Tensor {
	t.Helper()
	fused := map[string]*safetensors.Tensor{}
	var out []safetensors.Tensor
	infos := slices.Clone(f.Tensors())
	// q before k before v, whatever order the file lists them in.
	slices.SortStableFunc(infos, func(a, b safetensors.TensorInfo) int {
		_, i, _ := openCLIPName(t, a.Name)
		_, j, _ := openCLIPName(t, b.Name)
		return i - j
	})
	for _, info := range infos {
		if info.DType != safetensors.F32 {
			t.Fatalf("%s is %s, want F32", info.Name, info.DType)
		}
		name, third, transpose := openCLIPName(t, info.Name)
		_, data, err := f.Bytes(info.Name)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case third >= 0:
			ft := fused[name]
			if ft == nil {
				shape := slices.Clone(info.Shape)
				shape[0] *= 3
				ft = &safetensors.Tensor{Name: prefix + name, DType: info.DType, Shape: shape}
				fused[name] = ft
			}
			if len(ft.Data) != third*len(data) {
				t.Fatalf("%s: fused out of order", info.Name)
			}
			ft.Data = append(ft.Data, data...)
		case transpose:
			r, c := info.Shape[0], info.Shape[1]
			v := f32s(data)
			tv := make([]float32, len(v))
			for i := range r {
				for j := range c {
					tv[j*r+i] = v[i*c+j]
				}
			}
			out = append(out, safetensors.Tensor{Name: prefix + name, DType: info.DType, Shape: []int{c, r}, Data: f32bytes(tv)})
		default:
			out = append(out, safetensors.Tensor{Name: prefix + name, DType: info.DType, Shape: info.Shape, Data: data})
		}
	}
	for _, ft := range fused {
		out = append(out, *ft)
	}
	return out
}

// goldenSDXL is the tiny SDXL of the golden cases: unet_sdxl, vae,
// clip_text (CLIP ViT-L's place) and clip_text_proj (OpenCLIP's place).
func goldenSDXL(t *testing.T) (SDXLModel, map[string]*safetensors.File) {
	unet := loadCase(t, "unet_sdxl")
	vae := loadCase(t, "vae")
	clip := loadCase(t, "clip_text")
	proj := loadCase(t, "clip_text_proj")
	te := decode[TextEncoderLayout](t, clip.Config)
	te2 := decode[TextEncoderLayout](t, proj.Config)
	te2.WithProjection = true
	m := SDXLModel{
		Name:         "tiny SDXL",
		UNet:         decode[UNetLayout](t, unet.Config),
		VAE:          decode[VAELayout](t, vae.Config),
		TextEncoder:  &te,
		TextEncoder2: te2,
	}
	return m, map[string]*safetensors.File{
		"unet":           openWeights(t, unet, "weights.safetensors"),
		"vae":            openWeights(t, vae, "weights.safetensors"),
		"text_encoder":   openWeights(t, clip, "weights.safetensors"),
		"text_encoder_2": openWeights(t, proj, "weights.safetensors"),
	}
}

// TestConvertSGMGolden writes the golden tiny SDXL in SGM layout with the
// test's own renaming, fusing and transposing, and checks that ConvertSGM
// maps every diffusers parameter back onto the bytes it came from.
func TestConvertSGMGolden(t *testing.T) {
	m, files := goldenSDXL(t)
	var all []safetensors.Tensor
	for comp, prefix := range map[string]string{"unet": UNetPrefix, "vae": VAEPrefix, "text_encoder": SGMTextEncoderPrefix} {
		ts, _ := ldmTensors(t, prefix, files[comp], func(n string) (string, bool) {
			switch comp {
			case "unet":
				return ldmUNetName(t, n, m.UNet), false
			case "vae":
				return ldmVAEName(t, n, m.VAE)
			}
			return n, false
		})
		all = append(all, ts...)
	}
	all = append(all, openCLIPTensors(t, SGMOpenCLIPPrefix, files["text_encoder_2"])...)
	all = append(all,
		safetensors.F32Tensor(SGMOpenCLIPPrefix+"logit_scale", nil, []float32{4.6052}),
		safetensors.I64Tensor(SGMTextEncoderPrefix+"text_model.embeddings.position_ids", []int{1, 3}, []int64{0, 1, 2}),
		safetensors.F32Tensor("denoiser.sigmas", []int{2}, []float32{0.1, 14}),
	)
	path := filepath.Join(t.TempDir(), "tiny-sdxl.safetensors")
	if err := safetensors.WriteFile(path, all, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mp, err := ConvertSGM(f, m)
	if err != nil {
		t.Fatalf("ConvertSGM: %v", err)
	}
	wantIgnored := []string{SGMTextEncoderPrefix + "text_model.embeddings.position_ids", SGMOpenCLIPPrefix + "logit_scale", "denoiser.sigmas"}
	slices.Sort(wantIgnored)
	if !slices.Equal(mp.Ignored, wantIgnored) {
		t.Errorf("Ignored = %v, want %v", mp.Ignored, wantIgnored)
	}
	var sliced, transposed int
	for comp, gf := range files {
		c := *mp.Component(comp)
		if len(c) != len(gf.Tensors()) {
			t.Errorf("%s: %d entries, want %d", comp, len(c), len(gf.Tensors()))
		}
		for _, info := range gf.Tensors() {
			r, ok := c[info.Name]
			if !ok {
				t.Errorf("%s: no entry for %s", comp, info.Name)
				continue
			}
			if !slices.Equal(r.Shape, info.Shape) {
				t.Errorf("%s: %s has shape %v, want %v", comp, info.Name, r.Shape, info.Shape)
			}
			_, src, err := f.Bytes(r.Source)
			if err != nil {
				t.Fatal(err)
			}
			_, want, _ := gf.Bytes(info.Name)
			got := src
			if r.Sliced() {
				sliced++
				row := len(src) / r.SourceShape[0]
				got = src[r.Rows[0]*row : r.Rows[1]*row]
			}
			if r.Transpose {
				transposed++
				rows, cols := r.SourceShape[0], r.SourceShape[1]
				v := f32s(src)
				tv := make([]float32, len(v))
				for i := range rows {
					for j := range cols {
						tv[j*rows+i] = v[i*cols+j]
					}
				}
				got = f32bytes(tv)
			}
			if string(got) != string(want) {
				t.Errorf("%s: %s read from %s %+v differs from the diffusers tensor", comp, info.Name, r.Source, r)
			}
		}
	}
	// q, k, v weight and bias of every layer; one projection.
	if want := 6 * m.TextEncoder2.NumHiddenLayers; sliced != want || transposed != 1 {
		t.Errorf("%d sliced, %d transposed entries; want %d, 1", sliced, transposed, want)
	}
}

// sgmSource lists every tensor of an SDXL layout at its SGM shape, plus the
// non-weight entries real files carry.
func sgmSource(t *testing.T, m SDXLModel) fakeSource {
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
	}
	src[m.TextEncoder2Prefix()+"logit_scale"] = []int{}
	if !m.Refiner() {
		src[SGMTextEncoderPrefix+"text_model.embeddings.position_ids"] = []int{1, 77}
	}
	return src
}

func TestDetectSDXL(t *testing.T) {
	base := sgmSource(t, SDXLBase())
	// sd_xl_base_1.0.safetensors holds 2515 tensors.
	if len(base) != 2515 {
		t.Errorf("SDXL base has %d tensors, want 2515", len(base))
	}
	for _, want := range []SDXLModel{SDXLBase(), SDXLInpainting(), SDXLRefiner()} {
		mp, err := ConvertSDXL(sgmSource(t, want))
		if err != nil {
			t.Fatalf("%s: %v", want.Name, err)
		}
		if mp.Model.Name != want.Name || mp.Model.Refiner() != want.Refiner() || mp.Model.UNet.InChannels != want.UNet.InChannels {
			t.Errorf("detected %s, want %s", mp.Model.Name, want.Name)
		}
		// The sizes of diffusers' state dicts: SDXL UNet 1680, VAE 248,
		// CLIPTextModel 196, CLIPTextModelWithProjection (bigG) 517.
		unet, te, ignored := 1680, 196, 2
		if want.Refiner() {
			// The refiner UNet's count is checked against the model in
			// package pipeline.
			unet, te, ignored = len(mp.UNet), 0, 1
		}
		if len(mp.UNet) != unet || len(mp.VAE) != 248 || len(mp.TextEncoder) != te || len(mp.TextEncoder2) != 517 || len(mp.Ignored) != ignored {
			t.Errorf("%s: %d UNet, %d VAE, %d + %d text encoder entries, %d ignored",
				want.Name, len(mp.UNet), len(mp.VAE), len(mp.TextEncoder), len(mp.TextEncoder2), len(mp.Ignored))
		}
	}
	mp, err := ConvertSDXL(base)
	if err != nil {
		t.Fatal(err)
	}
	type ref struct {
		src   string
		shape []int
		rows  [2]int
		tr    bool
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
		got := mp.TextEncoder2[name]
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
		got := mp.UNet[name]
		if got.Source != UNetPrefix+r.src || !slices.Equal(got.Shape, r.shape) {
			t.Errorf("%s maps to %s %v, want %s %v", name, got.Source, got.Shape, r.src, r.shape)
		}
	}
	if r := mp.TextEncoder["text_model.encoder.layers.11.self_attn.q_proj.weight"]; r.Source != SGMTextEncoderPrefix+"text_model.encoder.layers.11.self_attn.q_proj.weight" {
		t.Errorf("CLIP ViT-L q_proj maps to %+v", r)
	}

	refiner, err := ConvertSDXL(sgmSource(t, SDXLRefiner()))
	if err != nil {
		t.Fatal(err)
	}
	if r := refiner.TextEncoder2["text_model.encoder.layers.2.self_attn.k_proj.bias"]; r.Source != SGMRefinerOpenCLIPPrefix+"transformer.resblocks.2.attn.in_proj_bias" || r.Rows != [2]int{1280, 2560} {
		t.Errorf("refiner k_proj.bias maps to %+v", r)
	}
	if r := refiner.UNet["add_embedding.linear_1.weight"]; !slices.Equal(r.Shape, []int{1536, 2560}) {
		t.Errorf("refiner add_embedding has shape %v, want [1536 2560]", r.Shape)
	}
	if r := refiner.UNet["mid_block.attentions.0.transformer_blocks.3.attn2.to_v.weight"]; r.Source != UNetPrefix+"middle_block.1.transformer_blocks.3.attn2.to_v.weight" || !slices.Equal(r.Shape, []int{1536, 1280}) {
		t.Errorf("refiner mid attention maps to %+v", r)
	}
	if refiner.TextEncoder != nil {
		t.Errorf("refiner has %d CLIP ViT-L entries", len(refiner.TextEncoder))
	}
}

func TestConvertSGMErrors(t *testing.T) {
	base := sgmSource(t, SDXLBase())
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
			_, err := ConvertSGM(src, SDXLBase())
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
	if _, err := ConvertSGM(base, m); err == nil {
		t.Error("a layout without the projection was accepted")
	}
}

func TestDetectSDXLRejects(t *testing.T) {
	sd1 := fullSource(t, SD15())
	xl := sgmSource(t, SDXLBase())
	cases := []struct {
		name string
		src  fakeSource
		edit func(fakeSource)
		want []string
	}{
		{"SD 1.5", sd1, func(fakeSource) {}, []string{"SD 1.x", "pipeline.Load"}},
		{"SD 2.x", fakeSource{UNetPrefix + "input_blocks.0.0.weight": {320, 4, 3, 3}, "cond_stage_model.model.token_embedding.weight": {49408, 1024}}, func(fakeSource) {}, []string{"SD 2.x"}},
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
	// And the SD 1.x detection sends SDXL files here.
	if _, err := ConvertSD1(xl); err == nil || !strings.Contains(err.Error(), "LoadSDXL") {
		t.Errorf("ConvertSD1 of an SDXL file: %v, want a pointer to LoadSDXL", err)
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
