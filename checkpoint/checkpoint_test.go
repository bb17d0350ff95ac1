package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/safetensors"
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

// ---- An independent diffusers → LDM renaming, written the way diffusers'
// conversion script works (string rules on the name), to check the
// enumeration in params.go against.

func atoi(t *testing.T, s string) int {
	t.Helper()
	i, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("bad index %q", s)
	}
	return i
}

func renameUNetResnet(rest string) string {
	for _, r := range [][2]string{
		{"norm1.", "in_layers.0."}, {"conv1.", "in_layers.2."}, {"time_emb_proj.", "emb_layers.1."},
		{"norm2.", "out_layers.0."}, {"conv2.", "out_layers.3."}, {"conv_shortcut.", "skip_connection."},
	} {
		if strings.HasPrefix(rest, r[0]) {
			return r[1] + rest[len(r[0]):]
		}
	}
	return "?" + rest
}

// ldmUNetName is the LDM name of a diffusers UNet parameter.
func ldmUNetName(t *testing.T, name string, l UNetLayout) string {
	t.Helper()
	for _, r := range [][2]string{
		{"conv_in.", "input_blocks.0.0."}, {"time_embedding.linear_1.", "time_embed.0."},
		{"time_embedding.linear_2.", "time_embed.2."}, {"add_embedding.linear_1.", "label_emb.0.0."},
		{"add_embedding.linear_2.", "label_emb.0.2."}, {"conv_norm_out.", "out.0."}, {"conv_out.", "out.2."},
	} {
		if strings.HasPrefix(name, r[0]) {
			return r[1] + name[len(r[0]):]
		}
	}
	f := strings.SplitN(name, ".", 5)
	per := l.LayersPerBlock + 1
	switch f[0] {
	case "mid_block":
		rest := strings.Join(f[3:], ".")
		switch f[1] + f[2] {
		case "resnets0":
			return "middle_block.0." + renameUNetResnet(rest)
		case "attentions0":
			return "middle_block.1." + rest
		case "resnets1":
			return "middle_block.2." + renameUNetResnet(rest)
		}
	case "down_blocks":
		b, j, rest := atoi(t, f[1]), atoi(t, f[3]), f[4]
		switch f[2] {
		case "resnets":
			return fmt.Sprintf("input_blocks.%d.0.%s", 1+b*per+j, renameUNetResnet(rest))
		case "attentions":
			return fmt.Sprintf("input_blocks.%d.1.%s", 1+b*per+j, rest)
		case "downsamplers":
			return fmt.Sprintf("input_blocks.%d.0.op.%s", 1+b*per+l.LayersPerBlock, strings.TrimPrefix(rest, "conv."))
		}
	case "up_blocks":
		b, j, rest := atoi(t, f[1]), atoi(t, f[3]), f[4]
		switch f[2] {
		case "resnets":
			return fmt.Sprintf("output_blocks.%d.0.%s", b*per+j, renameUNetResnet(rest))
		case "attentions":
			return fmt.Sprintf("output_blocks.%d.1.%s", b*per+j, rest)
		case "upsamplers":
			slot := 1
			if l.UpBlockTypes[b] == "CrossAttnUpBlock2D" {
				slot = 2
			}
			return fmt.Sprintf("output_blocks.%d.%d.%s", b*per+l.LayersPerBlock, slot, rest)
		}
	}
	t.Fatalf("no LDM name for UNet parameter %s", name)
	return ""
}

// ldmVAEName is the LDM name of a diffusers VAE parameter, and whether LDM
// stores it as a 1×1 convolution where diffusers has a Linear.
func ldmVAEName(t *testing.T, name string, l VAELayout) (string, bool) {
	t.Helper()
	n := len(l.BlockOutChannels)
	f := strings.Split(name, ".")
	shortcut := func(s string) string { return strings.Replace(s, "conv_shortcut", "nin_shortcut", 1) }
	switch {
	case len(f) > 2 && f[1] == "mid_block":
		pre := f[0] + ".mid."
		if f[2] == "resnets" {
			return pre + "block_" + strconv.Itoa(atoi(t, f[3])+1) + "." + shortcut(strings.Join(f[4:], ".")), false
		}
		attn := map[string]string{"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}
		last := f[len(f)-1]
		return pre + "attn_1." + attn[f[4]] + "." + last, f[4] != "group_norm" && last == "weight"
	case len(f) > 2 && f[1] == "down_blocks":
		if f[3] == "downsamplers" {
			return "encoder.down." + f[2] + ".downsample." + strings.Join(f[5:], "."), false
		}
		return "encoder.down." + f[2] + ".block." + f[4] + "." + shortcut(strings.Join(f[5:], ".")), false
	case len(f) > 2 && f[1] == "up_blocks":
		src := "decoder.up." + strconv.Itoa(n-1-atoi(t, f[2]))
		if f[3] == "upsamplers" {
			return src + ".upsample." + strings.Join(f[5:], "."), false
		}
		return src + ".block." + f[4] + "." + shortcut(strings.Join(f[5:], ".")), false
	case len(f) == 3 && f[1] == "conv_norm_out":
		return f[0] + ".norm_out." + f[2], false
	}
	return name, false
}

// ---- golden helpers

func loadCase(t *testing.T, name string) *golden.Case {
	t.Helper()
	c, err := golden.Find(name)
	if err != nil {
		t.Fatalf("golden case %s: %v", name, err)
	}
	t.Cleanup(c.Close)
	return c
}

func decode[T any](t *testing.T, raw json.RawMessage) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decoding config: %v", err)
	}
	return v
}

func openWeights(t *testing.T, c *golden.Case, file string) *safetensors.File {
	t.Helper()
	f, err := c.Open(file)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return f
}

// goldenModel is the tiny SD 1.5-style model of the golden cases.
func goldenModel(t *testing.T) (Model, map[string]*safetensors.File) {
	unet := loadCase(t, "unet_sd15")
	vae := loadCase(t, "vae")
	clip := loadCase(t, "clip_text")
	m := Model{
		Name:        "tiny SD 1.5",
		UNet:        decode[UNetLayout](t, unet.Config),
		VAE:         decode[VAELayout](t, vae.Config),
		TextEncoder: decode[TextEncoderLayout](t, clip.Config),
	}
	return m, map[string]*safetensors.File{
		UNetPrefix:        openWeights(t, unet, "weights.safetensors"),
		VAEPrefix:         openWeights(t, vae, "weights.safetensors"),
		TextEncoderPrefix: openWeights(t, clip, "weights.safetensors"),
	}
}

// checkParams compares an enumeration with a diffusers weights file: same
// names, same shapes, and distinct LDM names.
func checkParams(t *testing.T, what string, params []Param, err error, f *safetensors.File) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	got := map[string][]int{}
	sources := map[string]string{}
	for _, p := range params {
		if _, dup := got[p.Name]; dup {
			t.Errorf("%s: parameter %s listed twice", what, p.Name)
		}
		got[p.Name] = p.Shape
		if other, dup := sources[p.Source]; dup {
			t.Errorf("%s: LDM name %s used by %s and %s", what, p.Source, other, p.Name)
		}
		sources[p.Source] = p.Name
	}
	for _, info := range f.Tensors() {
		shape, ok := got[info.Name]
		if !ok {
			t.Errorf("%s: diffusers has %s %v, the enumeration lacks it", what, info.Name, info.Shape)
			continue
		}
		if !slices.Equal(shape, info.Shape) {
			t.Errorf("%s: %s has shape %v in diffusers, enumerated %v", what, info.Name, info.Shape, shape)
		}
		delete(got, info.Name)
	}
	for name := range got {
		t.Errorf("%s: enumerated %s, which diffusers does not have", what, name)
	}
}

func TestParamsMatchDiffusers(t *testing.T) {
	m, files := goldenModel(t)
	p, err := UNetParams(m.UNet)
	checkParams(t, "unet_sd15", p, err, files[UNetPrefix])
	p, err = VAEParams(m.VAE)
	checkParams(t, "vae", p, err, files[VAEPrefix])
	p, err = TextEncoderParams(m.TextEncoder)
	checkParams(t, "clip_text", p, err, files[TextEncoderPrefix])

	xl := loadCase(t, "unet_sdxl")
	p, err = UNetParams(decode[UNetLayout](t, xl.Config))
	checkParams(t, "unet_sdxl", p, err, openWeights(t, xl, "weights.safetensors"))

	inp := loadCase(t, "pipeline_inpaint")
	p, err = UNetParams(decode[UNetLayout](t, inp.Raw["unet9_config"]))
	checkParams(t, "unet9", p, err, openWeights(t, inp, "unet9.safetensors"))
}

// ldmTensors renames a diffusers component into LDM layout (test-side
// rules), returning the tensors to write and the expected mapping.
func ldmTensors(t *testing.T, prefix string, f *safetensors.File, rename func(string) (string, bool)) ([]safetensors.Tensor, map[string]Ref) {
	var ts []safetensors.Tensor
	want := map[string]Ref{}
	for _, info := range f.Tensors() {
		src, conv := rename(info.Name)
		shape := info.Shape
		if conv {
			shape = append(slices.Clone(shape), 1, 1)
		}
		_, data, err := f.Bytes(info.Name)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, safetensors.Tensor{Name: prefix + src, DType: info.DType, Shape: shape, Data: data})
		want[info.Name] = Ref{Source: prefix + src, DType: info.DType, SourceShape: shape, Shape: info.Shape, Reshape: conv}
	}
	return ts, want
}

// writeGoldenLDM writes the golden tiny SD 1.5 as an LDM single file and
// returns its path, the model and the expected mapping per prefix.
func writeGoldenLDM(t *testing.T) (string, Model, map[string]map[string]Ref, map[string]*safetensors.File) {
	m, files := goldenModel(t)
	var all []safetensors.Tensor
	want := map[string]map[string]Ref{}
	add := func(prefix string, rename func(string) (string, bool)) {
		ts, w := ldmTensors(t, prefix, files[prefix], rename)
		all = append(all, ts...)
		want[prefix] = w
	}
	add(UNetPrefix, func(n string) (string, bool) { return ldmUNetName(t, n, m.UNet), false })
	add(VAEPrefix, func(n string) (string, bool) { return ldmVAEName(t, n, m.VAE) })
	add(TextEncoderPrefix, func(n string) (string, bool) { return n, false })
	all = append(all,
		safetensors.F32Tensor("betas", []int{3}, []float32{1, 2, 3}),
		safetensors.F32Tensor("alphas_cumprod", []int{3}, []float32{1, 2, 3}),
		safetensors.F32Tensor("model_ema.decay", nil, []float32{0.9999}),
		safetensors.I64Tensor(TextEncoderPrefix+"text_model.embeddings.position_ids", []int{1, 3}, []int64{0, 1, 2}),
	)
	path := filepath.Join(t.TempDir(), "tiny-sd15.safetensors")
	if err := safetensors.WriteFile(path, all, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	return path, m, want, files
}

func TestConvertLDMGoldenRoundTrip(t *testing.T) {
	path, m, want, files := writeGoldenLDM(t)
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := ConvertLDM(f, m)
	if err != nil {
		t.Fatalf("ConvertLDM: %v", err)
	}
	if got.Model.Name != m.Name {
		t.Errorf("Model = %q", got.Model.Name)
	}
	reshapes := 0
	for _, c := range []struct {
		prefix string
		comp   Component
	}{{UNetPrefix, got.UNet}, {VAEPrefix, got.VAE}, {TextEncoderPrefix, got.TextEncoder}} {
		w := want[c.prefix]
		if len(c.comp) != len(w) {
			t.Errorf("%s: %d entries, want %d", c.prefix, len(c.comp), len(w))
		}
		for name, wr := range w {
			r, ok := c.comp[name]
			if !ok {
				t.Errorf("%s: no entry for %s", c.prefix, name)
				continue
			}
			if r.Source != wr.Source || r.Reshape != wr.Reshape || r.DType != wr.DType ||
				!slices.Equal(r.Shape, wr.Shape) || !slices.Equal(r.SourceShape, wr.SourceShape) {
				t.Errorf("%s: %s maps to %+v, want %+v", c.prefix, name, r, wr)
				continue
			}
			if r.Reshape {
				reshapes++
			}
			// The bytes behind the source name are the diffusers tensor's.
			_, a, err := f.Bytes(r.Source)
			if err != nil {
				t.Fatal(err)
			}
			_, b, _ := files[c.prefix].Bytes(name)
			if string(a) != string(b) {
				t.Errorf("%s: data of %s differs from %s", c.prefix, r.Source, name)
			}
		}
	}
	if reshapes != 8 {
		t.Errorf("%d reshaped entries, want 8 (q, k, v, proj_out of two VAE mid attentions)", reshapes)
	}
	wantIgnored := []string{"alphas_cumprod", "betas", TextEncoderPrefix + "text_model.embeddings.position_ids", "model_ema.decay"}
	if !slices.Equal(got.Ignored, wantIgnored) {
		t.Errorf("Ignored = %v, want %v", got.Ignored, wantIgnored)
	}
	if r := got.VAE["encoder.mid_block.attentions.0.to_q.weight"]; r.Source != VAEPrefix+"encoder.mid.attn_1.q.weight" || !r.Reshape {
		t.Errorf("VAE to_q maps to %+v", r)
	}
	if r := got.UNet["down_blocks.0.attentions.0.proj_in.weight"]; r.Reshape || len(r.Shape) != 4 {
		t.Errorf("SD 1.x proj_in must keep its 1×1 conv shape, got %+v", r)
	}
}

// goldenLDMSource is the golden tiny SD 1.5 as an LDM table of contents.
func goldenLDMSource(t *testing.T) (fakeSource, Model) {
	m, files := goldenModel(t)
	src := fakeSource{}
	for prefix, rename := range map[string]func(string) (string, bool){
		UNetPrefix:        func(n string) (string, bool) { return ldmUNetName(t, n, m.UNet), false },
		VAEPrefix:         func(n string) (string, bool) { return ldmVAEName(t, n, m.VAE) },
		TextEncoderPrefix: func(n string) (string, bool) { return n, false },
	} {
		for _, info := range files[prefix].Tensors() {
			name, conv := rename(info.Name)
			shape := info.Shape
			if conv {
				shape = append(slices.Clone(shape), 1, 1)
			}
			src[prefix+name] = shape
		}
	}
	return src, m
}

func TestConvertLDMErrors(t *testing.T) {
	base, m := goldenLDMSource(t)
	if _, err := ConvertLDM(base, m); err != nil {
		t.Fatalf("unmodified source: %v", err)
	}
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
		{"wrong shape", func(s fakeSource) { s[teFC1] = []int{36, 32} },
			func(e *LayoutError) bool {
				return len(e.Shapes) == 1 && e.Shapes[0].Source == teFC1 && e.Shapes[0].Name == "text_model.encoder.layers.1.mlp.fc1.weight" &&
					slices.Equal(e.Shapes[0].Got, []int{36, 32}) && slices.Equal(e.Shapes[0].Want, []int{37, 32})
			},
			[]string{teFC1, "[36 32]", "want [37 32]"}},
		{"linear proj_in in an SD 1.x layout", func(s fakeSource) { s[UNetPrefix+"input_blocks.1.1.proj_in.weight"] = []int{32, 32} },
			func(e *LayoutError) bool { return len(e.Shapes) == 1 },
			[]string{UNetPrefix + "input_blocks.1.1.proj_in.weight", "[32 32]", "want [32 32 1 1]"}},
		{"VAE attention neither conv nor linear", func(s fakeSource) { s[vaeQ] = []int{32, 32, 3, 3} },
			func(e *LayoutError) bool { return len(e.Shapes) == 1 },
			[]string{vaeQ, "want [32 32 1 1]"}},
		{"everything at once", func(s fakeSource) {
			delete(s, unetConv)
			s["foo"] = []int{1}
			s[VAEPrefix+"bar"] = []int{1}
			s[teFC1] = []int{1}
		},
			func(e *LayoutError) bool {
				return len(e.Missing) == 1 && len(e.Unknown) == 1 && len(e.Unexpected) == 1 && len(e.Shapes) == 1
			},
			[]string{unetConv, "foo", VAEPrefix + "bar", teFC1, "tiny SD 1.5"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := base.clone()
			c.edit(src)
			mp, err := ConvertLDM(src, m)
			if err == nil {
				t.Fatalf("ConvertLDM accepted the checkpoint (%d UNet entries)", len(mp.UNet))
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

func TestMapComponentSDXLUNet(t *testing.T) {
	xl := loadCase(t, "unet_sdxl")
	l := decode[UNetLayout](t, xl.Config)
	f := openWeights(t, xl, "weights.safetensors")
	src := fakeSource{"first_stage_model.other": {1}}
	want := map[string]string{}
	for _, info := range f.Tensors() {
		n := ldmUNetName(t, info.Name, l)
		src[UNetPrefix+n] = info.Shape
		want[info.Name] = UNetPrefix + n
	}
	params, err := UNetParams(l)
	if err != nil {
		t.Fatal(err)
	}
	c, err := MapComponent(src, UNetPrefix, params)
	if err != nil {
		t.Fatalf("MapComponent: %v", err)
	}
	for name, s := range want {
		if r := c[name]; r.Source != s || r.Reshape {
			t.Errorf("%s maps to %+v, want %s", name, r, s)
		}
	}
	if r := c["add_embedding.linear_1.weight"]; r.Source != UNetPrefix+"label_emb.0.0.weight" {
		t.Errorf("add_embedding maps to %+v", r)
	}
	if r := c["mid_block.attentions.0.proj_out.weight"]; !slices.Equal(r.Shape, []int{64, 64}) {
		t.Errorf("linear proj_out has shape %v", r.Shape)
	}
	src[UNetPrefix+"input_blocks.4.1.transformer_blocks.1.norm1.weight"] = []int{64}
	_, err = MapComponent(src, UNetPrefix, params)
	if err == nil || !strings.Contains(err.Error(), "input_blocks.4.1.transformer_blocks.1.norm1.weight") {
		t.Errorf("extra transformer block: err = %v", err)
	}
}

// fullSource lists every tensor of a model in LDM layout, at LDM shapes.
func fullSource(t *testing.T, m Model) fakeSource {
	t.Helper()
	src := fakeSource{}
	u, err := UNetParams(m.UNet)
	if err != nil {
		t.Fatal(err)
	}
	v, err := VAEParams(m.VAE)
	if err != nil {
		t.Fatal(err)
	}
	te, err := TextEncoderParams(m.TextEncoder)
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []struct {
		prefix string
		ps     []Param
	}{{UNetPrefix, u}, {VAEPrefix, v}, {TextEncoderPrefix, te}} {
		for _, p := range part.ps {
			src[part.prefix+p.Source] = p.SourceShape
		}
	}
	return src
}

func TestDetectSD15(t *testing.T) {
	for _, want := range []Model{SD15(), SD15Inpainting()} {
		src := fullSource(t, want)
		src["betas"] = []int{1000}
		src["model_ema.num_updates"] = []int{}
		src[TextEncoderPrefix+"text_model.embeddings.position_ids"] = []int{1, 77}
		m, err := ConvertSD1(src)
		if err != nil {
			t.Fatalf("%s: %v", want.Name, err)
		}
		if m.Model.Name != want.Name || m.Model.UNet.InChannels != want.UNet.InChannels {
			t.Errorf("detected %s (in %d), want %s", m.Model.Name, m.Model.UNet.InChannels, want.Name)
		}
		// The sizes of diffusers' SD 1.5 state dicts.
		if len(m.UNet) != 686 || len(m.VAE) != 248 || len(m.TextEncoder) != 196 || len(m.Ignored) != 3 {
			t.Errorf("%s: %d UNet, %d VAE, %d text encoder entries, %d ignored; want 686, 248, 196, 3",
				want.Name, len(m.UNet), len(m.VAE), len(m.TextEncoder), len(m.Ignored))
		}
		for name, r := range map[string]struct {
			src   string
			shape []int
		}{
			"conv_in.weight":                                                    {"input_blocks.0.0.weight", []int{320, want.UNet.InChannels, 3, 3}},
			"up_blocks.1.upsamplers.0.conv.weight":                              {"output_blocks.5.2.conv.weight", []int{1280, 1280, 3, 3}},
			"up_blocks.0.upsamplers.0.conv.weight":                              {"output_blocks.2.1.conv.weight", []int{1280, 1280, 3, 3}},
			"down_blocks.2.downsamplers.0.conv.weight":                          {"input_blocks.9.0.op.weight", []int{1280, 1280, 3, 3}},
			"down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight": {"input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight", []int{640, 768}},
			"up_blocks.3.resnets.2.conv_shortcut.weight":                        {"output_blocks.11.0.skip_connection.weight", []int{320, 640, 1, 1}},
		} {
			got := m.UNet[name]
			if got.Source != UNetPrefix+r.src || !slices.Equal(got.Shape, r.shape) {
				t.Errorf("%s: %s maps to %s %v, want %s %v", want.Name, name, got.Source, got.Shape, r.src, r.shape)
			}
		}
	}
}

func TestDetectRejects(t *testing.T) {
	sd := fullSource(t, SD15())
	cases := []struct {
		name string
		edit func(fakeSource)
		want string
	}{
		{"instruct-pix2pix style 8 channels", func(s fakeSource) { s[UNetPrefix+"input_blocks.0.0.weight"] = []int{320, 8, 3, 3} }, "[320 8 3 3]"},
		{"SD 2.x", func(s fakeSource) {
			for n := range s {
				if strings.HasPrefix(n, TextEncoderPrefix) {
					delete(s, n)
				}
			}
			s["cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"] = []int{3072, 1024}
		}, "SD 2.x"},
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
		{"no conv_in", func(s fakeSource) { delete(s, UNetPrefix+"input_blocks.0.0.weight") }, "input_blocks.0.0.weight is missing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := sd.clone()
			c.edit(src)
			_, err := ConvertSD1(src)
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
	m, err := ConvertLDM(src, SD15())
	if err != nil {
		t.Fatal(err)
	}
	if r := m.VAE["encoder.mid_block.attentions.0.to_q.weight"]; r.Source != q || r.Reshape || !slices.Equal(r.Shape, []int{512, 512}) {
		t.Errorf("linear VAE attention maps to %+v", r)
	}
	if r := m.VAE["encoder.mid_block.attentions.0.to_k.weight"]; !r.Reshape || !slices.Equal(r.SourceShape, []int{512, 512, 1, 1}) {
		t.Errorf("conv VAE attention maps to %+v", r)
	}
	if r := m.TextEncoder["text_model.final_layer_norm.weight"]; r.Source != TextEncoderPrefix+"final_layer_norm.weight" {
		t.Errorf("old-style text encoder name maps to %+v", r)
	}
}

func TestBadLayouts(t *testing.T) {
	u := func(edit func(*UNetLayout)) error {
		l := SD15().UNet
		edit(&l)
		_, err := UNetParams(l)
		return err
	}
	for what, err := range map[string]error{
		"no blocks":      u(func(l *UNetLayout) { l.BlockOutChannels = nil }),
		"type count":     u(func(l *UNetLayout) { l.UpBlockTypes = l.UpBlockTypes[:3] }),
		"block type":     u(func(l *UNetLayout) { l.DownBlockTypes[0] = "SimpleCrossAttnDownBlock2D" }),
		"layers":         u(func(l *UNetLayout) { l.LayersPerBlock = 0 }),
		"depth list":     u(func(l *UNetLayout) { l.TransformerLayersPerBlock = IntOrList{1, 2} }),
		"mid block":      u(func(l *UNetLayout) { l.MidBlockType = "UNetMidBlock2DSimpleCrossAttn" }),
		"addition embed": u(func(l *UNetLayout) { l.AdditionEmbedType = "image" }),
		"zero channels":  u(func(l *UNetLayout) { l.BlockOutChannels[1] = 0 }),
		"no cross dim":   u(func(l *UNetLayout) { l.CrossAttentionDim = 0 }),
		"vae block type": func() error {
			l := SD15().VAE
			l.UpBlockTypes[2] = "AttnUpDecoderBlock2D"
			_, err := VAEParams(l)
			return err
		}(),
		"vae no latent": func() error { l := SD15().VAE; l.LatentChannels = 0; _, err := VAEParams(l); return err }(),
		"text no layers": func() error {
			l := SD15().TextEncoder
			l.NumHiddenLayers = 0
			_, err := TextEncoderParams(l)
			return err
		}(),
		"convert bad vae": func() error {
			m := SD15()
			m.VAE.BlockOutChannels = nil
			_, err := ConvertLDM(fakeSource{}, m)
			return err
		}(),
	} {
		if err == nil {
			t.Errorf("%s: no error", what)
		}
	}
}

func TestIntOrList(t *testing.T) {
	for in, want := range map[string][]int{`null`: {7, 7, 7}, `2`: {2, 2, 2}, `[1,2,10]`: {1, 2, 10}} {
		var l IntOrList
		if err := json.Unmarshal([]byte(in), &l); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		got, err := l.For(3, 7)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: For(3) = %v %v, want %v", in, got, err, want)
		}
	}
	var l IntOrList
	if err := json.Unmarshal([]byte(`"x"`), &l); err == nil {
		t.Error(`"x" accepted`)
	}
	if _, err := (IntOrList{1, 2}).For(3, 1); err == nil {
		t.Error("a 2-list accepted for 3 blocks")
	}
}
