package goldentest

import (
	"context"
	"encoding/json"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/flux"
	"github.com/diffuse-go/diffuse/model/t5"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
	cliptok "github.com/diffuse-go/diffuse/tokenizer/clip"
	t5tok "github.com/diffuse-go/diffuse/tokenizer/t5"
)

func init() {
	golden.Register("diffusers.FluxPipeline", runPipelineFlux)
}

// fluxRunConfig is one configuration of the pipeline_flux case.
type fluxRunConfig struct {
	Prompt          []string        `json:"prompt"`
	Prompt2         []string        `json:"prompt_2"`
	Height          int             `json:"height"`
	Width           int             `json:"width"`
	Steps           int             `json:"num_inference_steps"`
	Guidance        float64         `json:"guidance_scale"`
	MaxSeqLen       int             `json:"max_sequence_length"`
	GuidanceEmbeds  bool            `json:"transformer_guidance_embeds"`
	SchedulerConfig json.RawMessage `json:"scheduler_config"`
	Mu              *float64        `json:"mu"` // recorded calculate_shift, when present
}

// fluxComponents builds the pipeline parts that both configurations share
// (everything but the transformer).
func fluxComponents(t *testing.T, c *golden.Case) *pipeline.Flux {
	t.Helper()
	tok, err := cliptok.New(cliptok.Options{Pad: cliptok.PadEOS})
	if err != nil {
		t.Fatal(err)
	}
	_, file, _, _ := runtime.Caller(0)
	tok2, err := t5tok.Load(filepath.Join(filepath.Dir(file), "..", "tokenizer", "t5", "testdata", "t5_test_sentencepiece.model"), t5tok.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := &pipeline.Flux{Tokenizer: tok, Tokenizer2: tok2}
	cw, ccfg := componentFiles(t, c, "text_encoder")
	p.TextEncoder = buildCLIP(t, ccfg, cw)
	tw, tcfg := componentFiles(t, c, "text_encoder_2")
	p.TextEncoder2 = buildT5(t, tcfg, tw)
	vw, vcfg := componentFiles(t, c, "vae")
	var override json.RawMessage
	if _, ok := c.Raw["vae_config_override"]; ok {
		override = c.Raw["vae_config_override"]
	}
	p.VAE = buildVAE(t, mergeJSON(t, vcfg, override), vw)
	return p
}

// fluxTransformerFor builds the transformer with guidance_embeds set as
// the run asks; without guidance the stored guidance embedder is unused.
func fluxTransformerFor(t *testing.T, c *golden.Case, guidance bool) *flux.Model {
	t.Helper()
	w, cfg := componentFiles(t, c, "transformer")
	var unused []string
	if !guidance {
		for _, n := range w.Names() {
			if strings.HasPrefix(n, "time_text_embed.guidance_embedder.") {
				unused = append(unused, n)
			}
		}
	}
	override, err := json.Marshal(map[string]bool{"guidance_embeds": guidance})
	if err != nil {
		t.Fatal(err)
	}
	return buildFlux(t, mergeJSON(t, cfg, override), w, unused)
}

func runPipelineFlux(t *testing.T, c *golden.Case) {
	var runs map[string]fluxRunConfig
	if err := json.Unmarshal(c.Config, &runs); err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(runs))
	for n := range runs {
		names = append(names, n)
	}
	sort.Strings(names)
	p := fluxComponents(t, c)
	for _, name := range names {
		t.Run(name, func(t *testing.T) { runFluxConfig(t, c, p, name, runs[name]) })
	}
}

func runFluxConfig(t *testing.T, c *golden.Case, base *pipeline.Flux, name string, rc fluxRunConfig) {
	p := *base
	p.Transformer = fluxTransformerFor(t, c, rc.GuidanceEmbeds)
	scfg, err := scheduler.ParseConfig(rc.SchedulerConfig)
	if err != nil {
		t.Fatal(err)
	}
	s, err := scheduler.NewFlowMatchEuler(scfg)
	if err != nil {
		t.Fatal(err)
	}
	var timesteps, guidance, outputs, steps []float32
	res, err := p.Generate(context.Background(), pipeline.FluxRequest{Prompts: rc.Prompt, Prompts2: rc.Prompt2,
		MaxSequenceLength: rc.MaxSeqLen, Width: rc.Width, Height: rc.Height, Steps: rc.Steps, Guidance: rc.Guidance,
		Scheduler: s, Latents: caseTensor(t, c, name+".latents_drawn"),
		OnStep: func(_ int, st pipeline.FluxStep) {
			timesteps = append(timesteps, st.Timesteps...)
			guidance = append(guidance, st.Guidance...)
			outputs = append(outputs, st.ModelOutput.Contiguous().Data()...)
			steps = append(steps, st.Latents.Contiguous().Data()...)
		}})
	if err != nil {
		t.Fatal(err)
	}
	if rc.Mu != nil && res.Mu != *rc.Mu {
		t.Errorf("mu %v, case has %v", res.Mu, *rc.Mu)
	}
	out := func(s string) string { return name + "." + s }
	c.CheckI64(t, out("clip_input_ids"), res.CLIPIDs, nil)
	c.CheckI64(t, out("t5_input_ids"), res.T5IDs, nil)
	for _, o := range []struct {
		name string
		t    *tensor.Tensor
	}{{"prompt_embeds", res.PromptEmbeds}, {"pooled_prompt_embeds", res.PooledPromptEmbeds}, {"txt_ids", res.TxtIDs},
		{"img_ids", res.ImgIDs}, {"packed_latents", res.PackedLatents}, {"vae_input", res.VAEInput}, {"image", res.Images}} {
		c.Check(t, out(o.name), o.t.Contiguous().Data(), o.t.Shape())
	}
	ts := make([]float32, len(res.Timesteps))
	for i, v := range res.Timesteps {
		ts[i] = float32(v)
	}
	c.Check(t, out("timesteps"), ts, nil)
	c.Check(t, out("sigmas"), res.Sigmas, nil)
	c.Check(t, out("model_timesteps"), timesteps, nil)
	if _, ok := c.Outputs[out("model_guidance")]; ok || len(guidance) > 0 {
		c.Check(t, out("model_guidance"), guidance, nil)
	}
	c.Check(t, out("model_outputs"), outputs, nil)
	c.Check(t, out("step_latents"), steps, nil)
}

// buildCLIP builds a CLIP text model (no projection) from a config and
// loads it from w.
func buildCLIP(t *testing.T, cfgJSON []byte, w *safetensors.File) *clip.Model {
	t.Helper()
	cfg, err := clip.ParseConfig(cfgJSON)
	if err != nil {
		t.Fatal(err)
	}
	m, err := clip.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := nn.Load(m, "", nn.FileSource{F: w}, nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	return m
}

// buildT5 builds a T5 encoder from a config and loads it from w.
func buildT5(t *testing.T, cfgJSON []byte, w *safetensors.File) *t5.Model {
	t.Helper()
	cfg, err := t5.ParseConfig(cfgJSON)
	if err != nil {
		t.Fatal(err)
	}
	m, err := t5.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := nn.Load(m, "", nn.FileSource{F: w}, nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	return m
}
