package goldentest

import (
	"context"
	"encoding/json"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/t5"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/tensor"
	t5tok "github.com/diffuse-go/diffuse/tokenizer/t5"
)

func init() {
	golden.Register("diffusers.IFPipeline + IFSuperResolutionPipeline", runPipelineIFCascade)
}

// ifStageConfig is one stage's call in the pipeline_if_cascade config.
type ifStageConfig struct {
	Height        int     `json:"height"`
	Width         int     `json:"width"`
	Steps         int     `json:"num_inference_steps"`
	Guidance      float64 `json:"guidance_scale"`
	GeneratorSeed uint64  `json:"generator_seed"`
	NoiseLevel    int     `json:"noise_level"`
}

type ifCascadeConfig struct {
	Prompt         []string      `json:"prompt"`
	NegativePrompt []string      `json:"negative_prompt"`
	Stage1         ifStageConfig `json:"stage1"`
	Stage2         ifStageConfig `json:"stage2"`
}

// ifCascadeSchedulers are the realised scheduler configs of the case.
type ifCascadeSchedulers struct {
	Stage1, Stage2 json.RawMessage
	ImageNoising   json.RawMessage `json:"image_noising"`
}

// ifUNet builds a UNet named in uses_weights_of with its config.
func ifUNet(t *testing.T, c *golden.Case, component string) *unet.Model {
	t.Helper()
	entry := c.UsesWeightsOf[component]
	cname, field := noteConfig(entry)
	src, err := c.Sibling(cname)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)
	var cfg json.RawMessage
	if err := src.Field(field, &cfg); err != nil {
		t.Fatal(err)
	}
	w, _ := componentFiles(t, c, component)
	return buildUNet(t, cfg, w)
}

// ifTokenizer loads the SentencePiece model the case names (a vocab/ file,
// kept in the T5 tokenizer's testdata).
func ifTokenizer(t *testing.T, c *golden.Case) *t5tok.Tokenizer {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	name := filepath.Base(strings.Fields(c.UsesWeightsOf["tokenizer"])[0])
	tok, err := t5tok.Load(filepath.Join(filepath.Dir(file), "..", "tokenizer", "t5", "testdata", name), t5tok.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// ifTextEncoder builds the T5 encoder of the case.
func ifTextEncoder(t *testing.T, c *golden.Case) *t5.Model {
	t.Helper()
	w, cfgJSON := componentFiles(t, c, "text_encoder")
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

// ifRecorder collects per-step tensors of one stage into flat slices.
type ifRecorder struct {
	unetIn0, unetOut, steps []float32
}

func (r *ifRecorder) input(step int, x *tensor.Tensor) {
	if step == 0 {
		r.unetIn0 = x.Data()
	}
}
func (r *ifRecorder) output(_ int, out *tensor.Tensor) { r.unetOut = append(r.unetOut, out.Data()...) }
func (r *ifRecorder) step(_ int, _ float64, x *tensor.Tensor) {
	r.steps = append(r.steps, x.Data()...)
}

// checkDraws compares a stage's generator draws with the ones the case
// lists (case.json "draws", in draw order) under that stage's prefix.
func checkDraws(t *testing.T, c *golden.Case, prefix string, noise *recordingNoise) {
	t.Helper()
	var all, names []string
	if err := c.Field("draws", &all); err != nil {
		t.Fatal(err)
	}
	for _, n := range all {
		if strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	if len(noise.draws) != len(names) {
		t.Errorf("%s: %d noise draws, the case recorded %d", prefix, len(noise.draws), len(names))
	}
	for i, name := range names[:min(len(names), len(noise.draws))] {
		c.Check(t, name, noise.draws[i], nil)
	}
}

// runPipelineIFCascade checks DeepFloyd IF end to end: IFPipeline (stage I,
// prompts through T5) then IFSuperResolutionPipeline (stage II) on its
// image and text states, each stage with its own generator.
func runPipelineIFCascade(t *testing.T, c *golden.Case) {
	var cfg ifCascadeConfig
	if err := json.Unmarshal(c.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	var sc ifCascadeSchedulers
	if err := c.Field("scheduler_configs", &sc); err != nil {
		t.Fatal(err)
	}
	stage1 := &pipeline.IF{Tokenizer: ifTokenizer(t, c), TextEncoder: ifTextEncoder(t, c), UNet: ifUNet(t, c, "unet_stage1")}
	rec1 := &ifRecorder{}
	noise1 := &recordingNoise{g: rng.New(cfg.Stage1.GeneratorSeed)}
	res1, err := stage1.Generate(context.Background(), pipeline.IFRequest{
		Prompts: cfg.Prompt, NegativePrompts: cfg.NegativePrompt, Height: cfg.Stage1.Height, Width: cfg.Stage1.Width,
		Steps: cfg.Stage1.Steps, Guidance: cfg.Stage1.Guidance, Scheduler: newScheduler(t, "DDPMScheduler", sc.Stage1),
		Noise: noise1, OnUNetOutput: rec1.output, OnStep: rec1.step})
	if err != nil {
		t.Fatal(err)
	}
	c.CheckI64(t, "stage1.prompt_input_ids", res1.PromptIDs, nil)
	c.CheckI64(t, "stage1.prompt_attention_mask", res1.PromptMask, nil)
	c.CheckI64(t, "stage1.negative_input_ids", res1.NegativeIDs, nil)
	c.CheckI64(t, "stage1.negative_attention_mask", res1.NegativeMask, nil)
	emb := res1.PromptEmbeds
	if res1.NegativeEmbeds != nil {
		emb = tensor.Concat(0, res1.NegativeEmbeds, emb) // the UNet's batch order
	}
	c.Check(t, "stage1.prompt_embeds", emb.Data(), emb.Shape())
	c.Check(t, "stage1.timesteps", float32sOf(res1.Timesteps), nil)
	checkDraws(t, c, "stage1.", noise1)
	c.Check(t, "stage1.unet_out", rec1.unetOut, nil)
	c.Check(t, "stage1.step_images", rec1.steps, nil)
	c.Check(t, "stage1.image", res1.Images.Data(), res1.Images.Shape())

	stage2 := &pipeline.IFSuperResolution{UNet: ifUNet(t, c, "unet_stage2"),
		NoisingScheduler: newScheduler(t, "DDPMScheduler", sc.ImageNoising)}
	rec2 := &ifRecorder{}
	noise2 := &recordingNoise{g: rng.New(cfg.Stage2.GeneratorSeed)}
	res2, err := stage2.Generate(context.Background(), pipeline.IFSuperResRequest{
		PromptEmbeds: res1.PromptEmbeds, NegativeEmbeds: res1.NegativeEmbeds, Image: res1.Images,
		Height: cfg.Stage2.Height, Width: cfg.Stage2.Width, Steps: cfg.Stage2.Steps, Guidance: cfg.Stage2.Guidance,
		NoiseLevel: cfg.Stage2.NoiseLevel, Scheduler: newScheduler(t, "DDPMScheduler", sc.Stage2), Noise: noise2,
		OnUNetInput: rec2.input, OnUNetOutput: rec2.output, OnStep: rec2.step})
	if err != nil {
		t.Fatal(err)
	}
	c.Check(t, "stage2.timesteps", float32sOf(res2.Timesteps), nil)
	c.CheckI64(t, "stage2.class_labels", res2.ClassLabels, nil)
	checkDraws(t, c, "stage2.", noise2)
	c.Check(t, "stage2.unet_input_step0", rec2.unetIn0, nil)
	c.Check(t, "stage2.unet_out", rec2.unetOut, nil)
	c.Check(t, "stage2.step_images", rec2.steps, nil)
	img := pipeline.IFImages(res2.Images)
	c.Check(t, "stage2.image", img.Data(), img.Shape())
}
