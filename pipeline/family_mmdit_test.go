package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/checkpoint"
	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/flux"
	"github.com/diffuse-go/diffuse/model/sd3"
	"github.com/diffuse-go/diffuse/model/t5"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

var flowSpiece = filepath.Join("..", "tokenizer", "t5", "testdata", "t5_test_sentencepiece.model")

// Tiny configs of the real layouts.
func flowTinySD3() sd3.Config {
	c := sd3.Defaults()
	c.NumLayers, c.NumAttentionHeads, c.CaptionProjectionDim = 2, 1, 64
	c.JointAttentionDim, c.PooledProjectionDim, c.PosEmbedMaxSize, c.SampleSize = 128, 64, 16, 16
	return c
}

// flowTinySD35 is a tiny SD3.5 Medium: qk norms, three blocks, the first
// two with dual attention (as Medium's 0..12 of 24), two heads.
func flowTinySD35() sd3.Config {
	c := flowTinySD3()
	rms := sd3.QKNormRMS
	c.NumLayers, c.NumAttentionHeads, c.CaptionProjectionDim = 3, 2, 128
	c.QKNorm, c.DualAttentionLayers = &rms, []int{0, 1}
	return c
}

func flowTinyFlux(dev bool) flux.Config {
	return flux.Config{PatchSize: 1, InChannels: 64, OutChannels: 64, NumLayers: 1, NumSingleLayers: 2, AttentionHeadDim: 32,
		NumAttentionHeads: 2, JointAttentionDim: 128, PooledProjectionDim: 64, GuidanceEmbeds: dev, AxesDimsRope: []int{4, 14, 14}}
}

func flowTinyCLIP(proj int) clip.Config {
	c := clip.SD15()
	c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads, c.ProjectionDim = 64, 128, 2, 1, proj
	return c
}

func flowTinyT5() t5.Config {
	return t5.Config{VocabSize: 32128, DModel: 128, DKV: 64, DFF: 256, NumLayers: 2, NumHeads: 2,
		RelativeAttentionNumBuckets: 32, RelativeAttentionMaxDistance: 128, LayerNormEpsilon: 1e-6, FeedForwardProj: "gated-gelu"}
}

func flowTinyVAE(c vae.Config) vae.Config {
	c.BlockOutChannels, c.LayersPerBlock = []int{32, 32}, 1
	c.DownBlockTypes, c.UpBlockTypes = c.DownBlockTypes[:2], c.UpBlockTypes[:2]
	return c
}

// testPart is one sub-folder of a test pipeline folder.
type testPart struct {
	name, class string
	cfg         any
	m           nn.Module
	shards      int
}

// writeFlowFolder writes a diffusers folder with random weights (named by the
// models' own parameters), sharding a component when asked.
func writeFlowFolder(t *testing.T, dir, class, sched string, comps []testPart) {
	t.Helper()
	index := map[string]any{"_class_name": class}
	for i, c := range comps {
		sub := filepath.Join(dir, c.name)
		flowMust(t, os.MkdirAll(sub, 0o755))
		index[c.name] = []string{"diffusers", c.class}
		b, err := json.Marshal(c.cfg)
		flowMust(t, err)
		flowMust(t, os.WriteFile(filepath.Join(sub, "config.json"), b, 0o644))
		nn.Init(c.m, uint64(i+1), tensor.F32)
		flowWeights(t, sub, c.m, c.shards)
	}
	index["tokenizer"] = []string{"transformers", "CLIPTokenizer"}
	b, err := json.Marshal(index)
	flowMust(t, err)
	flowMust(t, os.WriteFile(filepath.Join(dir, "model_index.json"), b, 0o644))
	flowMust(t, os.MkdirAll(filepath.Join(dir, "scheduler"), 0o755))
	flowMust(t, os.WriteFile(filepath.Join(dir, "scheduler", "scheduler_config.json"), []byte(sched), 0o644))
}

// flowWeights saves m in one file, or in shards with an index.
func flowWeights(t *testing.T, dir string, m nn.Module, shards int) {
	t.Helper()
	var ps nn.Params
	m.Params("", &ps)
	if shards <= 1 {
		var ts []safetensors.Tensor
		for _, p := range ps.List() {
			ts = append(ts, safetensors.F32Tensor(p.Name, p.Shape, (*p.Ptr).Float32().Data()))
		}
		flowMust(t, safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), ts, nil))
		return
	}
	parts := make([][]safetensors.Tensor, shards)
	weightMap := map[string]string{}
	for i, p := range ps.List() {
		parts[i%shards] = append(parts[i%shards], safetensors.F32Tensor(p.Name, p.Shape, (*p.Ptr).Float32().Data()))
		weightMap[p.Name] = fmt.Sprintf("model-%05d-of-%05d.safetensors", i%shards+1, shards)
	}
	for i, ts := range parts {
		flowMust(t, safetensors.WriteFile(filepath.Join(dir, fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, shards)), ts, nil))
	}
	b, err := json.Marshal(map[string]any{"weight_map": weightMap})
	flowMust(t, err)
	flowMust(t, os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), b, 0o644))
}

func flowMust(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func flowNew[C any, M nn.Module](t *testing.T, c C, build func(C) (M, error)) M {
	t.Helper()
	m, err := build(c)
	flowMust(t, err)
	return m
}

// sd3Folder writes a tiny StableDiffusion3Pipeline folder.
func sd3Folder(t *testing.T, withT5 bool, tr sd3.Config) string {
	dir := t.TempDir()
	l, g := flowTinyCLIP(32), flowTinyCLIP(32)
	l.WithProjection, g.WithProjection = true, true
	v := flowTinyVAE(SD3VAE())
	comps := []testPart{
		{name: "text_encoder", class: "CLIPTextModelWithProjection", cfg: l, m: flowNew(t, l, clip.New)},
		{name: "text_encoder_2", class: "CLIPTextModelWithProjection", cfg: g, m: flowNew(t, g, clip.New)},
		{name: "transformer", class: "SD3Transformer2DModel", cfg: tr, m: flowNew(t, tr, sd3.New), shards: 2},
		{name: "vae", class: "AutoencoderKL", cfg: v, m: flowNew(t, v, vae.New)},
	}
	if withT5 {
		c := flowTinyT5()
		comps = append(comps, testPart{name: "text_encoder_3", class: "T5EncoderModel", cfg: c, m: flowNew(t, c, t5.New)})
	}
	writeFlowFolder(t, dir, "StableDiffusion3Pipeline", SD3SchedulerConfig, comps)
	if withT5 {
		flowCopy(t, flowSpiece, filepath.Join(dir, "tokenizer_3", "spiece.model"))
		flowIndex(t, dir, "tokenizer_3")
	}
	return dir
}

// flowIndex lists a component in model_index.json.
func flowIndex(t *testing.T, dir, name string) {
	t.Helper()
	path := filepath.Join(dir, "model_index.json")
	b, err := os.ReadFile(path)
	flowMust(t, err)
	var idx map[string]any
	flowMust(t, json.Unmarshal(b, &idx))
	idx[name] = []string{"transformers", "T5TokenizerFast"}
	b, err = json.Marshal(idx)
	flowMust(t, err)
	flowMust(t, os.WriteFile(path, b, 0o644))
}

func flowCopy(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	flowMust(t, err)
	flowMust(t, os.MkdirAll(filepath.Dir(to), 0o755))
	flowMust(t, os.WriteFile(to, b, 0o644))
}

var flowRequest = Params{Prompt: "a red fox", Width: 32, Height: 32, Steps: 2, Seed: 5, Guidance: 4}

func TestSD3FolderReleasesEncoders(t *testing.T) {
	dir := sd3Folder(t, true, flowTinySD3())
	for _, keep := range []bool{false, true} {
		m, err := Open(context.Background(), dir, Options{KeepTextEncoders: keep})
		flowMust(t, err)
		if m.Info().Family != "sd3" || m.Info().Kind != "SD3" {
			t.Fatalf("info %+v", m.Info())
		}
		first, err := m.Generate(context.Background(), flowRequest)
		flowMust(t, err)
		sm := m.(*sd3Model)
		if loaded := sm.pipe.TextEncoder != nil && sm.pipe.TextEncoder3 != nil; loaded != keep {
			t.Errorf("keep %v: text encoders loaded after a request: %v", keep, loaded)
		}
		again, err := m.Generate(context.Background(), flowRequest)
		flowMust(t, err)
		if !bytes.Equal(first.Images[0].Image.Pix, again.Images[0].Image.Pix) {
			t.Errorf("keep %v: the second request (encoders reloaded) gave another image", keep)
		}
		m.Close()
	}
}

func TestSD3FolderWithoutT5(t *testing.T) {
	m, err := Open(context.Background(), sd3Folder(t, false, flowTinySD3()), Options{})
	flowMust(t, err)
	defer m.Close()
	if m.Info().Kind != "SD3 (without T5)" {
		t.Fatalf("kind %q", m.Info().Kind)
	}
	if _, err := m.Generate(context.Background(), flowRequest); err != nil {
		t.Fatal(err)
	}
	req := flowRequest
	req.InitImage = image.NewRGBA(image.Rect(0, 0, 40, 24))
	req.Strength = 0.5
	out, err := m.Generate(context.Background(), req)
	if err != nil {
		t.Fatalf("img2img: %v", err)
	}
	if got := out.Images[0].Params.DenoisingStrength; got != 0.5 {
		t.Errorf("img2img: denoising strength %v in the parameters, want 0.5", got)
	}
	req.Mask = image.NewGray(image.Rect(0, 0, 32, 32))
	if _, err := m.Generate(context.Background(), req); err == nil || !strings.Contains(err.Error(), "inpaint") {
		t.Errorf("inpaint: err = %v, want a refusal naming it", err)
	}
}

// An SD3.5 Medium folder (qk norms, dual attention) opens and generates;
// its kind names it.
func TestSD35Folder(t *testing.T) {
	m, err := Open(context.Background(), sd3Folder(t, false, flowTinySD35()), Options{})
	flowMust(t, err)
	defer m.Close()
	if in := m.Info(); in.Family != "sd3" || in.Kind != "SD3.5 Medium (without T5)" {
		t.Fatalf("info %+v", in)
	}
	if _, err := m.Generate(context.Background(), flowRequest); err != nil {
		t.Fatal(err)
	}
}

// A transformer config.json with an SD3.5 key this package cannot build
// is refused by Open with an error naming the key.
func TestSD3FolderConfigErrors(t *testing.T) {
	for key, value := range map[string]any{"qk_norm": "layer_norm", "dual_attention_layers": []int{0, 7}} {
		dir := sd3Folder(t, false, flowTinySD35())
		path := filepath.Join(dir, "transformer", "config.json")
		b, err := os.ReadFile(path)
		flowMust(t, err)
		var cfg map[string]any
		flowMust(t, json.Unmarshal(b, &cfg))
		cfg[key] = value
		b, err = json.Marshal(cfg)
		flowMust(t, err)
		flowMust(t, os.WriteFile(path, b, 0o644))
		_, err = Open(context.Background(), dir, Options{})
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s %v: err = %v, want one naming %s", key, value, err, key)
		}
	}
}

// fluxFolder writes a tiny FluxPipeline folder (transformer in shards).
func fluxFolder(t *testing.T, dev bool) string {
	dir := t.TempDir()
	l, c5, v, tr := flowTinyCLIP(64), flowTinyT5(), flowTinyVAE(FluxVAE()), flowTinyFlux(dev)
	writeFlowFolder(t, dir, "FluxPipeline", FluxSchnellSchedulerConfig, []testPart{
		{name: "text_encoder", class: "CLIPTextModel", cfg: l, m: flowNew(t, l, clip.New)},
		{name: "text_encoder_2", class: "T5EncoderModel", cfg: c5, m: flowNew(t, c5, t5.New)},
		{name: "transformer", class: "FluxTransformer2DModel", cfg: tr, m: flowNew(t, tr, flux.New), shards: 3},
		{name: "vae", class: "AutoencoderKL", cfg: v, m: flowNew(t, v, vae.New)},
	})
	flowCopy(t, flowSpiece, filepath.Join(dir, "tokenizer_2", "spiece.model"))
	flowIndex(t, dir, "tokenizer_2")
	return dir
}

func TestFluxFolder(t *testing.T) {
	for _, dev := range []bool{false, true} {
		m, err := Open(context.Background(), fluxFolder(t, dev), Options{})
		flowMust(t, err)
		if in := m.Info(); in.Family != "flux" || (in.Kind == "FLUX.1 dev") != dev {
			t.Fatalf("info %+v", in)
		}
		var events []Event
		out, err := m.Generate(context.Background(), Params{Prompt: "a fox", Width: 32, Height: 32, Steps: 2, Seed: 1, Count: 2,
			OnProgress: func(e Event) { events = append(events, e) }})
		flowMust(t, err)
		if len(events) != 4 || events[3].Image != 1 || events[3].Step != 2 || events[3].Latents == nil || events[3].Latents.Dim(1) != 16 {
			t.Errorf("progress events %+v, want 2 steps of 2 images with unpacked 16-channel latents", events)
		}
		if len(out.Images) != 2 || out.Images[1].Seed != 2 || bytes.Equal(out.Images[0].Image.Pix, out.Images[1].Image.Pix) {
			t.Errorf("two images from seeds 1 and 2 expected, got %d", len(out.Images))
		}
		if _, err := m.Generate(context.Background(), Params{Prompt: "a fox", Width: 34, Height: 32, Steps: 1}); err == nil {
			t.Error("a width that is not whole packed tokens was accepted")
		}
		m.Close()
	}
}

// Where the loaders take each diffusers tensor from, as diffusers'
// convert scripts (v0.30.3) say: spot checks of fused q/k/v rows, the
// single blocks' fused MLP input, the scale/shift swaps and the plain
// renames, against files whose values name their source tensor and row.
func TestOriginalLayoutRows(t *testing.T) {
	t.Run("flux", func(t *testing.T) {
		c := flowTinyFlux(true)
		specs, err := FluxFileLayout(c)
		flowMust(t, err)
		D := c.InnerDim()
		m := loadTagged(t, specs, "", func(p compSource) (nn.Module, error) { m, _, err := loadFluxTransformer(p, Options{}); return m, err })
		checkRow(t, m, specs, "transformer_blocks.0.attn.to_k.weight", 0, "double_blocks.0.img_attn.qkv.weight", D)
		checkRow(t, m, specs, "transformer_blocks.0.attn.add_v_proj.bias", 0, "double_blocks.0.txt_attn.qkv.bias", 2*D)
		checkRow(t, m, specs, "single_transformer_blocks.1.proj_mlp.weight", 0, "single_blocks.1.linear1.weight", 3*D)
		checkRow(t, m, specs, "single_transformer_blocks.1.attn.to_v.weight", 1, "single_blocks.1.linear1.weight", 2*D+1)
		checkRow(t, m, specs, "norm_out.linear.weight", 0, "final_layer.adaLN_modulation.1.weight", D)
		checkRow(t, m, specs, "norm_out.linear.bias", D, "final_layer.adaLN_modulation.1.bias", 0)
		checkRow(t, m, specs, "transformer_blocks.0.attn.norm_added_k.weight", 3, "double_blocks.0.txt_attn.norm.key_norm.scale", 3)
		checkRow(t, m, specs, "time_text_embed.guidance_embedder.linear_2.weight", 0, "guidance_in.out_layer.weight", 0)
		checkRow(t, m, specs, "single_transformer_blocks.0.proj_out.weight", 2, "single_blocks.0.linear2.weight", 2)
	})
	t.Run("sd3", func(t *testing.T) {
		c := flowTinySD3()
		specs, err := SD3FileLayout(c, flowTinyCLIP(32), flowTinyCLIP(32), nil, flowTinyVAE(SD3VAE()))
		flowMust(t, err)
		D := c.InnerDim()
		m := loadTagged(t, specs, sd3FileTransformer, func(p compSource) (nn.Module, error) {
			m, _, err := loadSD3Transformer(p, Options{})
			return m, err
		})
		p := sd3FileTransformer
		checkRow(t, m, specs, "transformer_blocks.0.attn.to_v.weight", 0, p+"joint_blocks.0.x_block.attn.qkv.weight", 2*D)
		checkRow(t, m, specs, "transformer_blocks.1.attn.add_k_proj.weight", 0, p+"joint_blocks.1.context_block.attn.qkv.weight", D)
		// The last block's context norm is swapped, the others are not.
		checkRow(t, m, specs, "transformer_blocks.1.norm1_context.linear.weight", 0, p+"joint_blocks.1.context_block.adaLN_modulation.1.weight", D)
		checkRow(t, m, specs, "transformer_blocks.0.norm1_context.linear.weight", 0, p+"joint_blocks.0.context_block.adaLN_modulation.1.weight", 0)
		checkRow(t, m, specs, "norm_out.linear.weight", D, p+"final_layer.adaLN_modulation.1.weight", 0)
		checkRow(t, m, specs, "pos_embed.pos_embed", 0, p+"pos_embed", 0)
		checkRow(t, m, specs, "pos_embed.proj.weight", 1, p+"x_embedder.proj.weight", 1)
		checkRow(t, m, specs, "time_text_embed.text_embedder.linear_1.weight", 0, p+"y_embedder.mlp.0.weight", 0)
		checkRow(t, m, specs, "transformer_blocks.0.ff_context.net.2.weight", 0, p+"joint_blocks.0.context_block.mlp.fc2.weight", 0)
	})
	t.Run("sd3.5", func(t *testing.T) {
		c := flowTinySD35()
		m, err := sd3.New(c)
		flowMust(t, err)
		specs, err := originalTensors(m, checkpoint.SD3, "")
		flowMust(t, err)
		D := c.InnerDim()
		tm := loadTagged(t, specs, "", func(p compSource) (nn.Module, error) { m, _, err := loadSD3Transformer(p, Options{}); return m, err })
		checkRow(t, tm, specs, "transformer_blocks.1.attn2.to_k.weight", 3, "joint_blocks.1.x_block.attn2.qkv.weight", D+3)
		checkRow(t, tm, specs, "transformer_blocks.0.attn2.to_v.bias", 0, "joint_blocks.0.x_block.attn2.qkv.bias", 2*D)
		checkRow(t, tm, specs, "transformer_blocks.0.attn2.to_out.0.weight", 1, "joint_blocks.0.x_block.attn2.proj.weight", 1)
		checkRow(t, tm, specs, "transformer_blocks.0.attn2.norm_k.weight", 5, "joint_blocks.0.x_block.attn2.ln_k.weight", 5)
		checkRow(t, tm, specs, "transformer_blocks.2.attn.norm_added_q.weight", 2, "joint_blocks.2.context_block.attn.ln_q.weight", 2)
		checkRow(t, tm, specs, "transformer_blocks.1.attn.norm_k.weight", 0, "joint_blocks.1.x_block.attn.ln_k.weight", 0)
		// The nine-chunk modulation is not reordered: gate_msa2 stays last.
		checkRow(t, tm, specs, "transformer_blocks.0.norm1.linear.weight", 8*D, "joint_blocks.0.x_block.adaLN_modulation.1.weight", 8*D)
		checkRow(t, tm, specs, "transformer_blocks.2.norm1_context.linear.weight", 0, "joint_blocks.2.context_block.adaLN_modulation.1.weight", D)
	})
}

// rowTag is the value every element of row r of spec i holds.
func rowTag(i, r int) float32 { return float32(i*4096 + r) }

// loadTagged writes specs with tagged values and loads them with load.
func loadTagged(t *testing.T, specs []TensorSpec, prefix string, load func(compSource) (nn.Module, error)) nn.Module {
	t.Helper()
	var ts []safetensors.Tensor
	for i, s := range specs {
		n, rows := 1, s.Shape[0]
		for _, d := range s.Shape {
			n *= d
		}
		v := make([]float32, n)
		for j := range v {
			r := j / (n / rows)
			if s.Shape[0] == 1 && len(s.Shape) > 1 {
				r = j / (n / s.Shape[1]) // pos_embed [1, N, D]: tag its rows
			}
			v[j] = rowTag(i, r)
		}
		ts = append(ts, safetensors.F32Tensor(s.Name, s.Shape, v))
	}
	path := filepath.Join(t.TempDir(), "tagged.safetensors")
	flowMust(t, safetensors.WriteFile(path, ts, nil))
	m, err := load(compSource{name: "transformer", file: path, prefix: prefix})
	flowMust(t, err)
	return m
}

// checkRow checks that row r of the model's parameter comes from row sr
// of the checkpoint tensor src.
func checkRow(t *testing.T, m nn.Module, specs []TensorSpec, param string, r int, src string, sr int) {
	t.Helper()
	id := -1
	for i, s := range specs {
		if s.Name == src {
			id = i
		}
	}
	if id < 0 {
		t.Fatalf("the layout has no %s", src)
	}
	var ps nn.Params
	m.Params("", &ps)
	for _, p := range ps.List() {
		if p.Name != param {
			continue
		}
		x := (*p.Ptr).Float32().Contiguous()
		rows := x.Dim(0)
		if x.Rank() == 3 { // pos_embed [1, N, D]
			rows = x.Dim(1)
		}
		got := x.Data()[r*(x.Numel()/rows)]
		if want := rowTag(id, sr); got != want {
			t.Errorf("%s row %d = %v, want row %d of %s (%v)", param, r, got, sr, src, want)
		}
		return
	}
	t.Fatalf("model has no %s", param)
}

// The configs read from the shapes of real-size original files are the
// models' own: SD3 medium's MMDiT, CLIP-L, CLIP-G, T5-XXL and VAE, and
// FLUX.1 dev's and schnell's transformers.
func TestInferRealSizes(t *testing.T) {
	sh := func(specs []TensorSpec, prefix string) shapeFn {
		m := map[string][]int{}
		for _, s := range specs {
			if strings.HasPrefix(s.Name, prefix) {
				m[strings.TrimPrefix(s.Name, prefix)] = s.Shape
			}
		}
		return func(n string) ([]int, bool) { s, ok := m[n]; return s, ok }
	}
	tr := sd3.Defaults()
	tr.NumLayers, tr.NumAttentionHeads, tr.CaptionProjectionDim, tr.PosEmbedMaxSize = 24, 24, 1536, 192
	l := clip.SD15()
	l.WithProjection = true
	xxl := t5.Config{VocabSize: 32128, DModel: 4096, DKV: 64, DFF: 10240, NumLayers: 24, NumHeads: 64,
		RelativeAttentionNumBuckets: 32, RelativeAttentionMaxDistance: 128, LayerNormEpsilon: 1e-6, FeedForwardProj: "gated-gelu"}
	specs, err := SD3FileLayout(tr, l, clip.BigG(), &xxl, SD3VAE())
	flowMust(t, err)
	same := func(what string, got, want any) {
		t.Helper()
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		if !bytes.Equal(g, w) {
			t.Errorf("%s: inferred %s, want %s", what, g, w)
		}
	}
	got, err := inferSD3(sh(specs, sd3FileTransformer))
	flowMust(t, err)
	same("SD3 MMDiT", got, tr)
	for _, enc := range []struct {
		prefix string
		want   clip.Config
	}{{sd3FileCLIPL, l}, {sd3FileCLIPG, clip.BigG()}} {
		got, err := inferCLIP(sh(specs, enc.prefix))
		flowMust(t, err)
		got.WithProjection = true
		same(enc.prefix, got, enc.want)
	}
	g5, err := inferT5(sh(specs, sd3FileT5))
	flowMust(t, err)
	same("T5-XXL", g5, xxl)
	gv, err := inferVAE(sh(specs, sd3FileVAE), SD3VAE())
	flowMust(t, err)
	same("VAE", gv, SD3VAE())
	for name, want := range sd35RealConfigs(t) {
		m, err := sd3.New(want)
		flowMust(t, err)
		specs, err := originalTensors(m, checkpoint.SD3, "")
		flowMust(t, err)
		got, err := inferSD3(sh(specs, ""))
		flowMust(t, err)
		same(name, got, want)
	}
	for _, dev := range []bool{true, false} {
		want, err := flux.ParseConfig([]byte(fmt.Sprintf(`{"guidance_embeds": %v}`, dev)))
		flowMust(t, err)
		fs, err := FluxFileLayout(want)
		flowMust(t, err)
		got, err := inferFlux(sh(fs, ""))
		flowMust(t, err)
		same(fmt.Sprintf("FLUX (guidance %v)", dev), got, want)
	}
}

// sd35RealConfigs are SD3.5 Large's and Medium's transformer configs as
// their diffusers config.json files give them.
func sd35RealConfigs(t *testing.T) map[string]sd3.Config {
	t.Helper()
	out := map[string]sd3.Config{}
	for name, js := range map[string]string{
		"SD3.5 Large": `{"caption_projection_dim": 2432, "num_attention_heads": 38, "num_layers": 38, "pos_embed_max_size": 192,
			"qk_norm": "rms_norm"}`,
		"SD3.5 Medium": `{"caption_projection_dim": 1536, "num_attention_heads": 24, "num_layers": 24, "pos_embed_max_size": 384,
			"qk_norm": "rms_norm", "dual_attention_layers": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]}`,
	} {
		c, err := sd3.ParseConfig([]byte(js))
		flowMust(t, err)
		out[name] = c
	}
	return out
}

// writeLayout writes specs with small pseudo-random values (vectors: one
// for scales, zero for biases), enough for a model to run.
func writeLayout(t *testing.T, path string, specs []TensorSpec) {
	t.Helper()
	var ts []safetensors.Tensor
	state := uint64(12345)
	for _, s := range specs {
		n := 1
		for _, d := range s.Shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			switch {
			case len(s.Shape) >= 2:
				state = state*6364136223846793005 + 1442695040888963407
				v[i] = (float32(state>>40)/float32(1<<24) - 0.5) * 0.2
			case !strings.HasSuffix(s.Name, "bias"):
				v[i] = 1
			}
		}
		ts = append(ts, safetensors.F16Tensor(s.Name, s.Shape, v))
	}
	flowMust(t, safetensors.WriteFile(path, ts, nil))
}

// prefixed puts specs under prefix.
func prefixed(prefix string, specs []TensorSpec) []TensorSpec {
	out := make([]TensorSpec, len(specs))
	for i, s := range specs {
		out[i] = TensorSpec{Name: prefix + s.Name, Shape: s.Shape}
	}
	return out
}

// A ComfyUI-style all-in-one FLUX checkpoint: the transformer under
// model.diffusion_model., the encoders under text_encoders.*, the VAE
// beside them; only the T5 tokenizer comes from Options.Components.
func TestFluxAllInOneFile(t *testing.T) {
	tr, err := FluxFileLayout(flowTinyFlux(false))
	flowMust(t, err)
	cl, err := CLIPFileLayout(flowTinyCLIP(64))
	flowMust(t, err)
	t5s, err := T5FileLayout(flowTinyT5())
	flowMust(t, err)
	ae, err := VAEFileLayout(flowTinyVAE(FluxVAE()), "first_stage_model.")
	flowMust(t, err)
	specs := append(prefixed("model.diffusion_model.", tr), prefixed(fluxFileCLIP[0], cl)...)
	specs = append(append(specs, prefixed(fluxFileT5[0], t5s)...), ae...)
	path := filepath.Join(t.TempDir(), "flux-aio.safetensors")
	writeLayout(t, path, specs)
	m, err := Open(context.Background(), path, Options{Components: ComponentPaths{Tokenizer2: flowSpiece}})
	flowMust(t, err)
	defer m.Close()
	if in := m.Info(); in.Family != "flux" || in.Kind != "FLUX.1 schnell" || in.Steps != 4 {
		t.Fatalf("info %+v", in)
	}
	if _, err := m.Generate(context.Background(), Params{Prompt: "a fox", Width: 32, Height: 32, Steps: 1}); err != nil {
		t.Fatal(err)
	}
}

// A BFL transformer file takes its other components from a diffusers
// folder named in Options.Components (its sub-folders are used).
func TestFluxTransformerFileWithFolderComponents(t *testing.T) {
	dir := fluxFolder(t, true)
	tr, err := FluxFileLayout(flowTinyFlux(true))
	flowMust(t, err)
	path := filepath.Join(t.TempDir(), "flux1-dev.safetensors")
	writeLayout(t, path, tr)
	c := ComponentPaths{TextEncoder: dir, TextEncoder2: dir, Tokenizer2: dir, VAE: dir}
	m, err := Open(context.Background(), path, Options{Components: c})
	flowMust(t, err)
	defer m.Close()
	if in := m.Info(); in.Kind != "FLUX.1 dev" || in.Guidance != 3.5 {
		t.Fatalf("info %+v", in)
	}
	out, err := m.Generate(context.Background(), Params{Prompt: "a fox", Width: 32, Height: 32, Steps: 1})
	flowMust(t, err)
	if txt := out.Images[0].Params.String(); !strings.Contains(txt, "Distilled CFG Scale: 3.5") {
		t.Errorf("parameters %q lack the distilled guidance", txt)
	}
	c.VAE = ""
	if _, err := Open(context.Background(), path, Options{Components: c}); !errors.Is(err, ErrMissingComponent) || !strings.Contains(err.Error(), "vae") {
		t.Errorf("without a VAE: err = %v, want ErrMissingComponent naming vae", err)
	}
}
