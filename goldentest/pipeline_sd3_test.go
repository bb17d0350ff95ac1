package goldentest

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/t5"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
	cliptok "github.com/diffuse-go/diffuse/tokenizer/clip"
	t5tok "github.com/diffuse-go/diffuse/tokenizer/t5"
)

func init() { golden.Register("diffusers.StableDiffusion3Pipeline", runPipelineSD3) }

// unionSource reads each tensor from the first of several files holding it
// (a component whose weights are split over files).
type unionSource []nn.FileSource

func (u unionSource) Names() []string {
	var out []string
	for _, s := range u {
		out = append(out, s.Names()...)
	}
	return out
}

func (u unionSource) Shape(name string) ([]int, bool) {
	for _, s := range u {
		if sh, ok := s.Shape(name); ok {
			return sh, true
		}
	}
	return nil, false
}

func (u unionSource) Tensor(name string) (*tensor.Tensor, error) {
	for _, s := range u {
		if _, ok := s.Shape(name); ok {
			return s.Tensor(name)
		}
	}
	return nil, fmt.Errorf("no tensor %s in %d files", name, len(u))
}

// componentParts resolves a uses_weights_of entry such as
// "clip_text (text_model.*) + pipeline_sd3/extra.safetensors (this case)":
// each "+"-separated part's first word names either a sibling case (its
// config and weights.safetensors) or a .safetensors file relative to the
// golden folder. It returns the sibling case (nil if none) and the files.
func componentParts(t *testing.T, c *golden.Case, component string) (*golden.Case, []*safetensors.File) {
	t.Helper()
	desc, ok := c.UsesWeightsOf[component]
	if !ok {
		t.Fatalf("uses_weights_of has no %q", component)
	}
	var sib *golden.Case
	var files []*safetensors.File
	for _, part := range strings.Split(desc, " + ") {
		word := strings.Fields(part)[0]
		path := filepath.Join(filepath.Dir(c.Dir), filepath.FromSlash(word))
		if !strings.HasSuffix(word, ".safetensors") {
			s, err := c.Sibling(word)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
			sib, path = s, filepath.Join(s.Dir, "weights.safetensors")
		}
		f, err := safetensors.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		files = append(files, f)
	}
	return sib, files
}

// sd3CLIP loads a CLIPTextModelWithProjection component.
func sd3CLIP(t *testing.T, c *golden.Case, component string) *clip.Model {
	t.Helper()
	sib, files := componentParts(t, c, component)
	if sib == nil {
		t.Fatalf("%s: no case with its config", component)
	}
	cfg, err := clip.ParseConfig(sib.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg.WithProjection = true
	m, err := clip.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var src unionSource
	for _, f := range files {
		src = append(src, nn.FileSource{F: f})
	}
	if err := nn.Load(m, "", src, nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	return m
}

// sd3ClipTokenizer builds a CLIP tokenizer with the padding its
// uses_weights_of description names ('!' or <|endoftext|>).
func sd3ClipTokenizer(t *testing.T, c *golden.Case, component string) *cliptok.Tokenizer {
	t.Helper()
	pad := cliptok.PadEOS
	if strings.Contains(c.UsesWeightsOf[component], "'!'") {
		pad = cliptok.PadExclamation
	}
	tok, err := cliptok.New(cliptok.Options{Pad: pad})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type sd3CaseConfig struct {
	Prompt          []string `json:"prompt"`
	Prompt2         []string `json:"prompt_2"`
	Prompt3         []string `json:"prompt_3"`
	NegativePrompt  []string `json:"negative_prompt"`
	NegativePrompt2 []string `json:"negative_prompt_2"`
	NegativePrompt3 []string `json:"negative_prompt_3"`
	Height          int      `json:"height"`
	Width           int      `json:"width"`
	Steps           int      `json:"num_inference_steps"`
	Guidance        float64  `json:"guidance_scale"`
	MaxSeqLen       int      `json:"max_sequence_length"`
}

// buildSD3Pipeline assembles the pipeline from the case's components.
func buildSD3Pipeline(t *testing.T, c *golden.Case) *pipeline.SD3 {
	t.Helper()
	var t5cfg json.RawMessage
	if err := c.Field("text_encoder_3_config", &t5cfg); err != nil {
		t.Fatal(err)
	}
	_, t5files := componentParts(t, c, "text_encoder_3")
	_, file, _, _ := runtime.Caller(0)
	tok3, err := t5tok.Load(filepath.Join(filepath.Dir(file), "..", "tokenizer", "t5", "testdata", "t5_test_sentencepiece.model"), t5tok.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tc, tw := componentParts(t, c, "transformer")
	vc, vw := componentParts(t, c, "vae")
	return &pipeline.SD3{
		TextEncoder: sd3CLIP(t, c, "text_encoder"), Tokenizer: sd3ClipTokenizer(t, c, "tokenizer"),
		TextEncoder2: sd3CLIP(t, c, "text_encoder_2"), Tokenizer2: sd3ClipTokenizer(t, c, "tokenizer_2"),
		TextEncoder3: sd3T5(t, t5cfg, t5files), Tokenizer3: tok3,
		Transformer: buildSD3(t, tc.Config, tw[0]), VAE: buildVAE(t, vc.Config, vw[0]),
	}
}

func runPipelineSD3(t *testing.T, c *golden.Case) {
	var cfg sd3CaseConfig
	if err := json.Unmarshal(c.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	var schedCfg json.RawMessage
	if err := c.Field("scheduler_config", &schedCfg); err != nil {
		t.Fatal(err)
	}
	p := buildSD3Pipeline(t, c)
	s := newScheduler(t, "FlowMatchEulerDiscreteScheduler", schedCfg)
	var outs []float32
	rec := &stepRecorder{}
	res, err := p.Generate(context.Background(), pipeline.SD3Request{
		Prompts: cfg.Prompt, Prompts2: cfg.Prompt2, Prompts3: cfg.Prompt3,
		NegativePrompts: cfg.NegativePrompt, NegativePrompts2: cfg.NegativePrompt2, NegativePrompts3: cfg.NegativePrompt3,
		MaxSequenceLength: cfg.MaxSeqLen, Width: cfg.Width, Height: cfg.Height, Steps: cfg.Steps, Guidance: cfg.Guidance,
		Scheduler: s, Latents: caseTensor(t, c, "latents"),
		OnModelOutput: func(_ int, o *tensor.Tensor) { outs = append(outs, o.Contiguous().Data()...) },
		OnStep:        rec.record,
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, ids := range map[string][]int64{"clip_l_input_ids": res.CLIPIDs, "clip_g_input_ids": res.CLIP2IDs,
		"t5_input_ids": res.T5IDs, "negative_clip_l_input_ids": res.NegativeCLIPIDs,
		"negative_clip_g_input_ids": res.NegativeCLIP2IDs, "negative_t5_input_ids": res.NegativeT5IDs} {
		if _, ok := c.Outputs[name]; ok {
			c.CheckI64(t, name, ids, nil)
		}
	}
	c.Check(t, "prompt_embeds", res.PromptEmbeds.Contiguous().Data(), res.PromptEmbeds.Shape())
	c.Check(t, "pooled_prompt_embeds", res.PooledEmbeds.Contiguous().Data(), res.PooledEmbeds.Shape())
	c.Check(t, "timesteps", float32sOf(res.Timesteps), nil)
	c.Check(t, "sigmas", s.Sigmas(), nil)
	c.Check(t, "model_outputs", outs, nil)
	c.Check(t, "step_latents", rec.data, nil)
	vin := p.VAE.Denormalize(res.Latents)
	c.Check(t, "vae_input", vin.Data(), vin.Shape())
	c.Check(t, "image", res.Images.Data(), res.Images.Shape())
}

// sd3T5 builds a T5 encoder and loads it from the component's files.
func sd3T5(t *testing.T, cfgJSON []byte, files []*safetensors.File) *t5.Model {
	t.Helper()
	cfg, err := t5.ParseConfig(cfgJSON)
	if err != nil {
		t.Fatal(err)
	}
	m, err := t5.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var src unionSource
	for _, f := range files {
		src = append(src, nn.FileSource{F: f})
	}
	if err := nn.Load(m, "", src, nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	return m
}
