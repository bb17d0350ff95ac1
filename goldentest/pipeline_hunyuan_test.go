package goldentest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/bert"
	"github.com/diffuse-go/diffuse/model/hunyuan"
	"github.com/diffuse-go/diffuse/model/t5"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
	berttok "github.com/diffuse-go/diffuse/tokenizer/bert"
	t5tok "github.com/diffuse-go/diffuse/tokenizer/t5"
)

func init() { golden.Register("diffusers.HunyuanDiTPipeline", runPipelineHunyuan) }

// hunyuanCall is the pipeline call of a HunyuanDiTPipeline case.
type hunyuanCall struct {
	Prompt             json.RawMessage `json:"prompt"`
	NegativePrompt     json.RawMessage `json:"negative_prompt"`
	Height, Width      int
	ImagesPerPrompt    int     `json:"num_images_per_prompt"`
	Steps              int     `json:"num_inference_steps"`
	Guidance           float64 `json:"guidance_scale"`
	GuidanceRescale    float64 `json:"guidance_rescale"`
	OriginalSize       []int   `json:"original_size"`
	TargetSize         []int   `json:"target_size"`
	CropsCoordsTopLeft []int   `json:"crops_coords_top_left"`
	ResolutionBinning  *bool   `json:"use_resolution_binning"`
	GeneratorSeed      *uint64 `json:"generator_seed"`
	SchedulerClass     string  `json:"scheduler_class"`
}

// hunyuanPrompts decodes a prompt argument: a string, a list of strings, or
// null (none).
func hunyuanPrompts(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatalf("prompt %s: %v", raw, err)
	}
	return list
}

// hunyuanPair turns an optional (a, b) list into a pair (zero when absent).
func hunyuanPair(t *testing.T, name string, v []int) [2]int {
	t.Helper()
	switch len(v) {
	case 0:
		return [2]int{}
	case 2:
		return [2]int{v[0], v[1]}
	}
	t.Fatalf("%s %v is not a pair", name, v)
	return [2]int{}
}

// vocabPath finds a vocabulary file a case names relative to the folder
// holding golden/ (e.g. "vocab/bert_tiny_vocab.txt", as MANIFEST.md lays
// them out): beside the case's golden folder first, else the repository's
// copy under tokenizer/<pkg>/testdata.
func vocabPath(t *testing.T, c *golden.Case, rel, pkg string) string {
	t.Helper()
	var tried []string
	for _, root := range []string{filepath.Dir(filepath.Dir(c.Dir)), filepath.Dir(golden.Dir())} {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if _, err := os.Stat(p); err == nil {
			return p
		}
		tried = append(tried, p)
	}
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "tokenizer", pkg, "testdata", filepath.Base(rel))
	if _, err := os.Stat(p); err == nil {
		return p
	}
	t.Fatalf("vocabulary %s not found (tried %s and %s)", rel, strings.Join(tried, ", "), p)
	return ""
}

// loadBERTTokenizer builds the case's BertTokenizer from its bert_vocab
// field (else the vocabulary uses_weights_of names, uncased).
func loadBERTTokenizer(t *testing.T, c *golden.Case) *berttok.Tokenizer {
	t.Helper()
	var v struct {
		File        string `json:"file"`
		Size        int    `json:"size"`
		DoLowerCase *bool  `json:"do_lower_case"`
	}
	if _, ok := c.Raw["bert_vocab"]; ok {
		if err := c.Field("bert_vocab", &v); err != nil {
			t.Fatal(err)
		}
	}
	if v.File == "" {
		v.File = c.UsesWeightsOf["tokenizer"]
	}
	if v.File == "" {
		t.Fatal("the case names no BERT vocabulary (bert_vocab.file or uses_weights_of.tokenizer)")
	}
	opts := berttok.DefaultOptions()
	if v.DoLowerCase != nil {
		opts.DoLowerCase = *v.DoLowerCase
	}
	tok, err := berttok.Load(vocabPath(t, c, v.File, "bert"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if v.Size != 0 && tok.VocabSize() != v.Size {
		t.Fatalf("BERT vocabulary has %d tokens, case says %d", tok.VocabSize(), v.Size)
	}
	return tok
}

// hunyuanComponent returns a component's config and weights: the case's
// <name>_config field and <name>.safetensors where the case folder holds
// them, else the config and weights of the case uses_weights_of names.
func hunyuanComponent(t *testing.T, c *golden.Case, name string) (json.RawMessage, *safetensors.File) {
	t.Helper()
	var cfg json.RawMessage
	if _, ok := c.Raw[name+"_config"]; ok {
		if err := c.Field(name+"_config", &cfg); err != nil {
			t.Fatal(err)
		}
	} else {
		sib, err := c.Sibling(c.UsesWeightsOf[name])
		if err != nil {
			t.Fatalf("%s: no %s_config and no sibling case: %v", name, name, err)
		}
		cfg = sib.Config
	}
	file := name + ".safetensors"
	var w *safetensors.File
	var err error
	if _, statErr := os.Stat(filepath.Join(c.Dir, file)); statErr == nil {
		w, err = c.Open(file)
	} else {
		w, err = c.Weights(name)
	}
	if err != nil {
		t.Fatal(err)
	}
	return cfg, w
}

// hunyuanLoad loads weights into a built model, strictly.
func hunyuanLoad(t *testing.T, m nn.Module, w *safetensors.File) {
	t.Helper()
	if err := nn.Load(m, "", nn.FileSource{F: w}, nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
}

// buildHunyuanPipeline assembles the case's components (see
// hunyuanComponent) and the tokenizers from the shared vocabularies.
func buildHunyuanPipeline(t *testing.T, c *golden.Case) *pipeline.Hunyuan {
	t.Helper()
	tcRaw, tw := hunyuanComponent(t, c, "transformer")
	tcfg, err := hunyuan.ParseConfig(tcRaw)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := hunyuan.New(tcfg)
	if err != nil {
		t.Fatal(err)
	}
	hunyuanLoad(t, tr, tw)
	bRaw, bw := hunyuanComponent(t, c, "text_encoder")
	bcfg, err := bert.ParseConfig(bRaw)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := bert.New(bcfg)
	if err != nil {
		t.Fatal(err)
	}
	hunyuanLoad(t, enc, bw)
	t5Raw, t5w := hunyuanComponent(t, c, "text_encoder_2")
	t5cfg, err := t5.ParseConfig(t5Raw)
	if err != nil {
		t.Fatal(err)
	}
	enc2, err := t5.New(t5cfg)
	if err != nil {
		t.Fatal(err)
	}
	hunyuanLoad(t, enc2, t5w)
	vRaw, vw := hunyuanComponent(t, c, "vae")
	rel, ok := c.UsesWeightsOf["tokenizer_2"]
	if !ok {
		t.Fatal("uses_weights_of names no tokenizer_2 vocabulary")
	}
	tok2, err := t5tok.Load(vocabPath(t, c, rel, "t5"), t5tok.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &pipeline.Hunyuan{Tokenizer: loadBERTTokenizer(t, c), TextEncoder: enc, Tokenizer2: tok2, TextEncoder2: enc2,
		Transformer: tr, VAE: buildVAE(t, vRaw, vw)}
}

// checkHunyuanTokens compares the BERT pieces with the case's "tokens"
// (prompt → pieces), when it records them.
func checkHunyuanTokens(t *testing.T, c *golden.Case, tok *berttok.Tokenizer) {
	t.Helper()
	if _, ok := c.Raw["tokens"]; !ok {
		return
	}
	var want map[string][]string
	if err := c.Field("tokens", &want); err != nil {
		t.Fatal(err)
	}
	for text, pieces := range want {
		if got := tok.Tokenize(text); !slices.Equal(got, pieces) {
			t.Errorf("tokens of %q: %q, want %q", text, got, pieces)
		}
	}
}

func runPipelineHunyuan(t *testing.T, c *golden.Case) {
	var call hunyuanCall
	if err := c.Field("config", &call); err != nil {
		t.Fatal(err)
	}
	var schedCfg json.RawMessage
	if err := c.Field("scheduler_config", &schedCfg); err != nil {
		t.Fatal(err)
	}
	class := call.SchedulerClass
	if class == "" {
		class = "DDPMScheduler" // what HunyuanDiT ships with
	}
	p := buildHunyuanPipeline(t, c)
	checkHunyuanTokens(t, c, p.Tokenizer.(*berttok.Tokenizer))
	req := pipeline.HunyuanRequest{Prompts: hunyuanPrompts(t, call.Prompt), NegativePrompts: hunyuanPrompts(t, call.NegativePrompt),
		ImagesPerPrompt: call.ImagesPerPrompt, Width: call.Width, Height: call.Height, ResolutionBinning: call.ResolutionBinning == nil || *call.ResolutionBinning, Steps: call.Steps, Guidance: call.Guidance, GuidanceRescale: call.GuidanceRescale,
		OriginalSize: hunyuanPair(t, "original_size", call.OriginalSize), TargetSize: hunyuanPair(t, "target_size", call.TargetSize),
		CropsCoordsTopLeft: hunyuanPair(t, "crops_coords_top_left", call.CropsCoordsTopLeft),
		Scheduler:          newScheduler(t, class, schedCfg), Latents: caseTensor(t, c, "latents")}
	// The sampler's draws are replayed from the recording (they are not
	// the case's generator_seed stream).
	var noise *scheduler.RecordedNoise
	if _, ok := c.Outputs["step_noise"]; ok {
		v, _ := c.MustF32(t, "step_noise")
		noise = &scheduler.RecordedNoise{Values: v}
		req.Noise = noise
	}
	var inputs, outs, guided, steps []float32
	req.OnModelInput = func(_ int, x *tensor.Tensor) { inputs = append(inputs, x.Contiguous().Data()...) }
	req.OnModelOutput = func(_ int, out, g *tensor.Tensor) {
		outs = append(outs, out.Contiguous().Data()...)
		guided = append(guided, g.Contiguous().Data()...)
	}
	req.OnStep = func(_ int, _ float64, x *tensor.Tensor) { steps = append(steps, x.Contiguous().Data()...) }
	res, err := p.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if noise != nil && noise.Drawn() != len(noise.Values) {
		t.Errorf("the sampler drew %d of the %d recorded step_noise values", noise.Drawn(), len(noise.Values))
	}
	checkHunyuanResult(t, c, res, map[string][]float32{"model_inputs": inputs, "transformer_out": outs,
		"guided_model_output": guided, "step_latents": steps})
}

// checkHunyuanResult compares every output the case records.
func checkHunyuanResult(t *testing.T, c *golden.Case, res *pipeline.HunyuanResult, perStep map[string][]float32) {
	t.Helper()
	ints := map[string][]int64{
		"prompt_input_ids": res.Text.IDs, "prompt_attention_mask": res.Text.Mask,
		"negative_input_ids": res.Text.NegativeIDs, "negative_attention_mask": res.Text.NegativeMask,
		"prompt_input_ids_t5": res.TextT5.IDs, "prompt_attention_mask_t5": res.TextT5.Mask,
		"negative_input_ids_t5": res.TextT5.NegativeIDs, "negative_attention_mask_t5": res.TextT5.NegativeMask,
		"text_embedding_mask": res.Text.StatesMask, "text_embedding_mask_t5": res.TextT5.StatesMask, "style": res.Style,
	}
	ts := make([]float32, len(res.Timesteps))
	for i, v := range res.Timesteps {
		ts[i] = float32(v)
	}
	floats := map[string]*tensor.Tensor{
		"encoder_hidden_states": res.Text.States, "encoder_hidden_states_t5": res.TextT5.States,
		"image_rotary_emb_cos": res.Rotary.Cos, "image_rotary_emb_sin": res.Rotary.Sin,
		"image_meta_size": tensor.FromSlice(res.ImageMetaSize, len(res.ImageMetaSize)/6, 6),
		"timesteps":       tensor.FromSlice(ts, len(ts)), "image": res.Images,
	}
	for name := range c.Outputs {
		switch {
		case ints[name] != nil:
			c.CheckI64(t, name, ints[name], nil)
		case floats[name] != nil:
			c.Check(t, name, floats[name].Contiguous().Data(), floats[name].Shape())
		case perStep[name] != nil:
			c.Check(t, name, perStep[name], nil)
		case name == "step_noise": // replayed; every value must have been drawn
		default:
			t.Errorf("output %s: not produced by the runner", name)
		}
	}
}
