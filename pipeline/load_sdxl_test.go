package pipeline

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/diffuse-go/diffuse/checkpoint"
	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// tinySDXL loads the golden cases' tiny SDXL (diffusers names): unet_sdxl
// or the pipeline_sdxl refiner UNet, vae, clip_text (not for the refiner)
// and clip_text_proj, as the SDXL base or refiner model. It also returns
// each component's config.json.
func tinySDXL(t *testing.T, refiner bool) (*SDXLComponents, checkpoint.Model, map[string]json.RawMessage) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	m := checkpoint.SDXLBase()
	m.Name = "tiny SDXL"
	raw := map[string]json.RawMessage{}
	u, uFile := findGolden(t, "unet_sdxl"), "weights.safetensors"
	raw["unet"] = u.Config
	if refiner {
		m = checkpoint.SDXLRefiner()
		m.Name = "tiny SDXL refiner"
		u, uFile = findGolden(t, "pipeline_sdxl"), "refiner_unet.safetensors"
		raw["unet"] = goldenConfig(t, u, "refiner_unet_config")
	}
	var err error
	m.UNet, err = unet.ParseConfig(raw["unet"])
	must(err)
	v := findGolden(t, "vae")
	raw["vae"] = v.Config
	m.VAE, err = vae.ParseConfig(v.Config)
	must(err)
	var te *golden.Case
	if !refiner {
		te = findGolden(t, "clip_text")
		raw["text_encoder"] = te.Config
		tc, err := clip.ParseConfig(te.Config)
		must(err)
		m.TextEncoder = &tc
	}
	te2 := findGolden(t, "clip_text_proj")
	raw["text_encoder_2"] = te2.Config
	tc2, err := clip.ParseConfig(te2.Config)
	must(err)
	tc2.WithProjection = true
	m.TextEncoder2 = &tc2

	c, err := NewSDXLComponents(m)
	must(err)
	loadGolden(t, u, uFile, c.UNet, nn.LoadOptions{})
	loadGolden(t, v, "weights.safetensors", c.VAE, nn.LoadOptions{})
	if te != nil {
		loadGolden(t, te, "weights.safetensors", c.TextEncoder, nn.LoadOptions{})
	}
	loadGolden(t, te2, "weights.safetensors", c.TextEncoder2, nn.LoadOptions{})
	return c, m, raw
}

// compareSDXL checks that b's parameters equal a's, rounded to dtype for
// matrices (which b must keep in that dtype) and exact for vectors.
func compareSDXL(t *testing.T, a, b *SDXLComponents, dtype tensor.DType) {
	t.Helper()
	if (a.TextEncoder == nil) != (b.TextEncoder == nil) {
		t.Fatalf("text encoder presence differs")
	}
	pa, pb := a.parts(), b.parts()
	for i := range pa {
		var x, y nn.Params
		pa[i].m.Params("", &x)
		pb[i].m.Params("", &y)
		if len(x.List()) != len(y.List()) {
			t.Fatalf("%s: %d parameters, want %d", pa[i].name, len(y.List()), len(x.List()))
		}
		for j, p := range x.List() {
			q := y.List()[j]
			want, have := *p.Ptr, *q.Ptr
			if p.Name != q.Name || have == nil || !slices.Equal(want.Shape(), have.Shape()) {
				t.Fatalf("%s: parameter %d is %s %v, want %s %v", pa[i].name, j, q.Name, have, p.Name, want.Shape())
			}
			wantType := tensor.F32
			if len(p.Shape) >= 2 {
				wantType = dtype
				want = want.ToDType(dtype)
			}
			if have.DType() != wantType {
				t.Fatalf("%s: %s stored as %v, want %v", pa[i].name, q.Name, have.DType(), wantType)
			}
			wd, hd := want.Float32().Data(), have.Float32().Data()
			for k := range wd {
				if wd[k] != hd[k] {
					t.Fatalf("%s: %s[%d] = %g after the round trip, want %g", pa[i].name, q.Name, k, hd[k], wd[k])
				}
			}
		}
	}
}

func writeTinySGM(t *testing.T, c *SDXLComponents, layout checkpoint.Model, dtype tensor.DType) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tiny-sdxl.safetensors")
	if err := WriteSGM(path, layout, c, dtype); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSGMRoundTrip writes the tiny base and refiner as SGM single files (f32,
// f16, bf16) and loads them back through the checkpoint mapping.
func TestSGMRoundTrip(t *testing.T) {
	for _, refiner := range []bool{false, true} {
		c, layout, _ := tinySDXL(t, refiner)
		for _, dtype := range []tensor.DType{tensor.F32, tensor.F16, tensor.BF16} {
			t.Run(layout.Name+"/"+dtype.String(), func(t *testing.T) {
				path := writeTinySGM(t, c, layout, dtype)
				f, err := safetensors.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				got, err := loadSGM(f, layout, LoadOptions{})
				if err != nil {
					t.Fatal(err)
				}
				defer got.Close()
				if got.Refiner != refiner || (got.TextEncoder == nil) != refiner || got.Name != layout.Name {
					t.Errorf("Refiner %v, text encoder %v, name %q", got.Refiner, got.TextEncoder != nil, got.Name)
				}
				compareSDXL(t, c, got, dtype)
			})
		}
	}
}

// TestWriteSGMLayout checks the written file itself against the models:
// q, k and v stacked in in_proj, the projection transposed, names as in
// SGM files.
func TestWriteSGMLayout(t *testing.T) {
	c, layout, _ := tinySDXL(t, false)
	f, err := safetensors.Open(writeTinySGM(t, c, layout, tensor.F32))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ps nn.Params
	c.TextEncoder2.Params("", &ps)
	param := map[string][]float32{}
	for _, p := range ps.List() {
		param[p.Name] = (*p.Ptr).Data()
	}
	h, proj := c.TextEncoder2.Cfg.HiddenSize, c.TextEncoder2.Cfg.ProjectionDim
	read := func(name string, shape ...int) []float32 {
		t.Helper()
		v, s, err := f.Float32(checkpoint.SGMOpenCLIPPrefix + name)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(s, shape) {
			t.Fatalf("%s has shape %v, want %v", name, s, shape)
		}
		return v
	}
	w := read("transformer.resblocks.1.attn.in_proj_weight", 3*h, h)
	b := read("transformer.resblocks.1.attn.in_proj_bias", 3*h)
	for i, n := range []string{"q_proj", "k_proj", "v_proj"} {
		pre := "text_model.encoder.layers.1.self_attn." + n
		if !slices.Equal(w[i*h*h:(i+1)*h*h], param[pre+".weight"]) || !slices.Equal(b[i*h:(i+1)*h], param[pre+".bias"]) {
			t.Errorf("in_proj rows %d..%d are not %s", i*h, (i+1)*h, pre)
		}
	}
	p := read("text_projection", h, proj)
	want := param["text_projection.weight"] // [proj, h]
	for i := range h {
		for j := range proj {
			if p[i*proj+j] != want[j*h+i] {
				t.Fatalf("text_projection[%d, %d] = %g, want text_projection.weight[%d, %d] = %g", i, j, p[i*proj+j], j, i, want[j*h+i])
			}
		}
	}
	if v := read("transformer.resblocks.2.mlp.c_proj.weight", h, c.TextEncoder2.Cfg.IntermediateSize); !slices.Equal(v, param["text_model.encoder.layers.2.mlp.fc2.weight"]) {
		t.Error("mlp.c_proj is not fc2")
	}
	for _, name := range []string{
		checkpoint.SGMTextEncoderPrefix + "text_model.encoder.layers.0.self_attn.q_proj.weight",
		checkpoint.UNetPrefix + "label_emb.0.0.weight",
		checkpoint.VAEPrefix + "decoder.mid.attn_1.q.weight",
	} {
		if !f.Has(name) {
			t.Errorf("written file lacks %s", name)
		}
	}
	if info, _ := f.Info(checkpoint.VAEPrefix + "decoder.mid.attn_1.q.weight"); len(info.Shape) != 4 {
		t.Errorf("VAE attention q is %v, want a 1×1 convolution", info.Shape)
	}
}

// TestSGMSourceNonSquare checks the adapter on a non-square projection and
// 16-bit data: rows are cut and the transpose is a real one, dtype kept.
func TestSGMSourceNonSquare(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.safetensors")
	qkv := []float32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11} // [6, 2]
	p := []float32{1, 2, 3, 4, 5, 6}                       // [2, 3]: x @ p
	if err := safetensors.WriteFile(path, []safetensors.Tensor{
		safetensors.F16Tensor("qkv", []int{6, 2}, qkv),
		safetensors.F16Tensor("p", []int{2, 3}, p),
	}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	src := componentSource{f, checkpoint.Component{
		"k":   {Source: "qkv", DType: safetensors.F16, SourceShape: []int{6, 2}, Shape: []int{2, 2}, Rows: [2]int{2, 4}},
		"w":   {Source: "p", DType: safetensors.F16, SourceShape: []int{2, 3}, Shape: []int{3, 2}, Transpose: true},
		"bad": {Source: "p", DType: safetensors.F16, SourceShape: []int{3, 2}, Shape: []int{2, 3}, Transpose: true},
	}}
	k, err := src.Tensor("k")
	if err != nil || k.DType() != tensor.F16 || !slices.Equal(k.Float32().Data(), []float32{4, 5, 6, 7}) {
		t.Errorf("k = %v %v", k, err)
	}
	w, err := src.Tensor("w")
	if err != nil || w.DType() != tensor.F16 || !slices.Equal(w.Shape(), []int{3, 2}) || !slices.Equal(w.Float32().Data(), []float32{1, 4, 2, 5, 3, 6}) {
		t.Errorf("w = %v %v", w, err)
	}
	if _, err := src.Tensor("bad"); err == nil || !strings.Contains(err.Error(), "want [3 2]") {
		t.Errorf("misdescribed tensor: %v", err)
	}
	if _, err := src.Tensor("none"); err == nil {
		t.Error("unknown name accepted")
	}
}

// writeFolder writes c as a diffusers folder.
func writeFolder(t *testing.T, c *SDXLComponents, raw map[string]json.RawMessage, index string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tiny-sdxl")
	write := func(name string, b []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "model_index.json"), []byte(index))
	write(filepath.Join(dir, "scheduler", "scheduler_config.json"), []byte(`{"_class_name": "EulerDiscreteScheduler"}`))
	for _, part := range c.parts() {
		var ps nn.Params
		part.m.Params("", &ps)
		var ts []safetensors.Tensor
		for _, p := range ps.List() {
			ts = append(ts, safetensors.F32Tensor(p.Name, p.Shape, (*p.Ptr).Data()))
		}
		file := "diffusion_pytorch_model.safetensors"
		if strings.HasPrefix(part.name, "text_encoder") {
			file = "model.safetensors"
			// Older transformers saved this buffer.
			ts = append(ts, safetensors.I64Tensor("text_model.embeddings.position_ids", []int{1, 3}, []int64{0, 1, 2}))
		}
		write(filepath.Join(dir, part.name, "config.json"), raw[part.name])
		if err := safetensors.WriteFile(filepath.Join(dir, part.name, file), ts, nil); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const (
	baseIndex = `{"_class_name": "StableDiffusionXLPipeline", "force_zeros_for_empty_prompt": true,
		"scheduler": ["diffusers", "EulerDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
		"text_encoder_2": ["transformers", "CLIPTextModelWithProjection"], "tokenizer": ["transformers", "CLIPTokenizer"],
		"tokenizer_2": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}`
	refinerIndex = `{"_class_name": "StableDiffusionXLImg2ImgPipeline", "force_zeros_for_empty_prompt": false, "requires_aesthetics_score": true,
		"scheduler": ["diffusers", "EulerDiscreteScheduler"], "text_encoder": [null, null], "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
		"tokenizer": [null, null], "tokenizer_2": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}`
)

func TestLoadSDXLFolder(t *testing.T) {
	for _, refiner := range []bool{false, true} {
		c, _, raw := tinySDXL(t, refiner)
		index := baseIndex
		if refiner {
			index = refinerIndex
		}
		dir := writeFolder(t, c, raw, index)
		got, err := LoadSDXL(dir, LoadOptions{})
		if err != nil {
			t.Fatalf("refiner %v: %v", refiner, err)
		}
		if got.Refiner != refiner || got.Name != "tiny-sdxl" || !strings.Contains(string(got.Scheduler), "EulerDiscreteScheduler") {
			t.Errorf("Refiner %v, Name %q, Scheduler %s", got.Refiner, got.Name, got.Scheduler)
		}
		if got.TextEncoder2.Cfg.ProjectionDim == 0 {
			t.Error("text_encoder_2 has no projection")
		}
		compareSDXL(t, c, got, tensor.F32)
		got.Close()

		// LoadOptions.DType converts the matrices.
		h := tensor.F16
		got, err = LoadSDXL(dir, LoadOptions{DType: &h})
		if err != nil {
			t.Fatal(err)
		}
		compareSDXL(t, c, got, tensor.F16)
		got.Close()
	}
}

// rewrite copies a safetensors file through edit (which may drop or
// replace tensors).
func rewrite(t *testing.T, path string, edit func([]safetensors.Tensor) []safetensors.Tensor) string {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ts []safetensors.Tensor
	for _, info := range f.Tensors() {
		_, b, err := f.Bytes(info.Name)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, safetensors.Tensor{Name: info.Name, DType: info.DType, Shape: info.Shape, Data: slices.Clone(b)})
	}
	out := filepath.Join(t.TempDir(), "edited.safetensors")
	if err := safetensors.WriteFile(out, edit(ts), nil); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestLoadSDXLErrors(t *testing.T) {
	c, layout, raw := tinySDXL(t, false)
	path := writeTinySGM(t, c, layout, tensor.F32)
	const inProj = checkpoint.SGMOpenCLIPPrefix + "transformer.resblocks.1.attn.in_proj_weight"
	load := func(p string) error {
		f, err := safetensors.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := loadSGM(f, layout, LoadOptions{})
		if err == nil {
			got.Close()
		}
		return err
	}
	for name, tc := range map[string]struct {
		edit func([]safetensors.Tensor) []safetensors.Tensor
		want []string
	}{
		"missing tensor": {func(ts []safetensors.Tensor) []safetensors.Tensor {
			return slices.DeleteFunc(ts, func(x safetensors.Tensor) bool { return x.Name == inProj })
		}, []string{"1 missing", inProj}},
		"wrong fused qkv shape": {func(ts []safetensors.Tensor) []safetensors.Tensor {
			for i, x := range ts {
				if x.Name == inProj {
					ts[i].Shape = []int{64, 32}
					ts[i].Data = x.Data[:64*32*4]
				}
			}
			return ts
		}, []string{inProj, "is [64 32], want [96 32]"}},
	} {
		t.Run(name, func(t *testing.T) {
			p := rewrite(t, path, tc.edit)
			err := load(p)
			for _, w := range append(tc.want, p) {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want one mentioning %q", err, w)
				}
			}
		})
	}

	// An SD 1.x file given to LoadSDXL, and an SDXL file given to Load.
	sd1, sd1Layout := tinyModels(t)
	sd1Path := filepath.Join(t.TempDir(), "sd1.safetensors")
	if err := WriteLDM(sd1Path, sd1Layout, sd1, tensor.F16); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSDXL(sd1Path, LoadOptions{}); err == nil || !strings.Contains(err.Error(), "SD 1.x/2.x") || !strings.Contains(err.Error(), "pipeline.Load") {
		t.Errorf("LoadSDXL of an SD 1.x file: %v", err)
	}
	if _, err := Load(path, LoadOptions{}); err == nil || !strings.Contains(err.Error(), "LoadSDXL") {
		t.Errorf("Load of an SDXL file: %v", err)
	}
	// The tiny models are not the built-in SDXL: detection passes, the layout check names tensors.
	if _, err := LoadSDXL(path, LoadOptions{}); err == nil || !strings.Contains(err.Error(), "SDXL base") || !strings.Contains(err.Error(), path) {
		t.Errorf("LoadSDXL of a tiny file: %v", err)
	}

	dir := t.TempDir()
	for p, want := range map[string]string{
		filepath.Join(dir, "missing.safetensors"): "no such file",
		filepath.Join(dir, "x.ckpt"):              "pickle",
		filepath.Join(dir, "x.gguf"):              "unknown checkpoint type",
		dir:                                       "model_index.json",
	} {
		if p != dir && !strings.HasSuffix(p, "missing.safetensors") {
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := LoadSDXL(p, LoadOptions{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error mentioning %q", filepath.Base(p), err, want)
		}
	}

	// Folders: an SD 1.x one, and a refiner UNet under base encoders.
	sd1Dir := filepath.Join(t.TempDir(), "sd1")
	os.MkdirAll(sd1Dir, 0o755)
	os.WriteFile(filepath.Join(sd1Dir, "model_index.json"), []byte(`{"_class_name": "StableDiffusionPipeline", "text_encoder": ["transformers", "CLIPTextModel"]}`), 0o644)
	if _, err := LoadSDXL(sd1Dir, LoadOptions{}); err == nil || !strings.Contains(err.Error(), "no text_encoder_2") || !strings.Contains(err.Error(), "pipeline.Load") {
		t.Errorf("SD 1.x folder: %v", err)
	}
	r, _, rraw := tinySDXL(t, true)
	c.UNet = r.UNet
	raw["unet"] = rraw["unet"]
	if _, err := LoadSDXL(writeFolder(t, c, raw, baseIndex), LoadOptions{}); err == nil || !strings.Contains(err.Error(), "cross_attention_dim") {
		t.Errorf("refiner UNet with two encoders: %v", err)
	}
	if err := WriteSGM(filepath.Join(t.TempDir(), "x.safetensors"), layout, r, tensor.F16); err == nil {
		t.Error("WriteSGM of refiner components with a base layout: no error")
	}
}

// TestFullSizeSDXL writes a random-weight full-size SDXL (base, or refiner
// with DIFFUSE_FULL_SDXL=refiner) as an f16 SGM file and loads it back. It
// needs about 8 GB of disk and 16 GB of memory, so it only runs when
// DIFFUSE_FULL_SDXL is set.
func TestFullSizeSDXL(t *testing.T) {
	which := os.Getenv("DIFFUSE_FULL_SDXL")
	if which == "" {
		t.Skip("set DIFFUSE_FULL_SDXL=base or refiner to run")
	}
	layout := checkpoint.SDXLBase()
	if which == "refiner" {
		layout = checkpoint.SDXLRefiner()
	}
	c, err := NewSDXLComponents(layout)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i, p := range c.parts() {
		nn.Init(p.m, uint64(i+1), tensor.F16)
	}
	t.Logf("init: %v", time.Since(start))
	// A few parameters to compare after loading.
	samples := map[string]*tensor.Tensor{}
	for _, p := range c.parts() {
		var ps nn.Params
		p.m.Params("", &ps)
		for _, q := range ps.List() {
			if strings.Contains(q.Name, "k_proj.weight") || strings.Contains(q.Name, "text_projection") || q.Name == "add_embedding.linear_1.weight" {
				samples[p.name+"/"+q.Name] = *q.Ptr
			}
		}
	}
	path := filepath.Join(t.TempDir(), "sdxl-random.safetensors")
	start = time.Now()
	if err := WriteSGM(path, layout, c, tensor.F16); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("WriteSGM: %v, %.2f GB", time.Since(start), float64(st.Size())/1e9)
	c = nil
	runtime.GC()
	start = time.Now()
	got, err := LoadSDXL(path, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	t.Logf("LoadSDXL: %v (%s)", time.Since(start), got.Name)
	if got.Name != layout.Name {
		t.Errorf("detected %s, want %s", got.Name, layout.Name)
	}
	loaded := map[string]*tensor.Tensor{}
	for _, p := range got.parts() {
		var ps nn.Params
		p.m.Params("", &ps)
		for _, q := range ps.List() {
			if samples[p.name+"/"+q.Name] != nil {
				loaded[p.name+"/"+q.Name] = *q.Ptr
			}
		}
	}
	if len(loaded) != len(samples) {
		t.Errorf("%d of %d sampled parameters found", len(loaded), len(samples))
	}
	for n, want := range samples {
		have := loaded[n]
		if have == nil || have.DType() != tensor.F16 || !slices.Equal(have.U16(), want.U16()) {
			t.Errorf("%s differs after the round trip", n)
		}
	}
}
