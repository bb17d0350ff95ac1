package goldentest

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/dit"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

func init() {
	golden.Register("diffusers.DiTTransformer2DModel", runDiT)
	golden.Register("diffusers.DiTPipeline", runPipelineDiT)
}

// buildDiT builds a DiT transformer from a config and loads its weights.
func buildDiT(t *testing.T, cfgJSON []byte, w *safetensors.File) *dit.Model {
	t.Helper()
	cfg, err := dit.ParseConfig(cfgJSON)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := nn.Load(m, "", nn.FileSource{F: w}, nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	return m
}

// i64ToF32 converts integer timesteps to the float32 values the embedders
// compute with.
func i64ToF32(v []int64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

func runDiT(t *testing.T, c *golden.Case) {
	w, err := c.Weights("")
	if err != nil {
		t.Fatal(err)
	}
	m := buildDiT(t, c.Config, w)
	ts, _ := c.MustI64(t, "timestep")
	labels, _ := c.MustI64(t, "class_labels")
	out, err := m.Forward(caseTensor(t, c, "hidden_states"), i64ToF32(ts), labels)
	if err != nil {
		t.Fatal(err)
	}
	c.Check(t, "out_sample", out.Contiguous().Data(), out.Shape())
	if _, ok := c.Outputs["pipeline.image"]; ok {
		runDiTCasePipeline(t, c, m)
	}
}

// ditPipelineRun runs the DiT pipeline and checks the outputs named with
// prefix (model_inputs, class_labels_input, timesteps, image where the
// case has them).
func ditPipelineRun(t *testing.T, c *golden.Case, p *pipeline.DiT, prefix string, schedCfg []byte,
	labels []int64, guidance float64, steps int, latents *tensor.Tensor) {
	t.Helper()
	var inputs []float32
	res, err := p.Generate(context.Background(), pipeline.DiTRequest{ClassLabels: labels, Steps: steps, Guidance: guidance,
		Scheduler: schedulerFromConfig(t, schedCfg), Latents: latents,
		OnModelInput: func(step int, x *tensor.Tensor) { inputs = append(inputs, x.Contiguous().Data()...) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Outputs[prefix+"class_labels_input"]; ok {
		c.CheckI64(t, prefix+"class_labels_input", res.ClassLabels, nil)
	}
	if _, ok := c.Outputs[prefix+"timesteps"]; ok {
		ts := make([]int64, len(res.Timesteps))
		for i, v := range res.Timesteps {
			ts[i] = int64(v)
		}
		c.CheckI64(t, prefix+"timesteps", ts, nil)
	}
	if _, ok := c.Outputs[prefix+"model_inputs"]; ok {
		c.Check(t, prefix+"model_inputs", inputs, nil)
	}
	c.Check(t, prefix+"image", res.Images.Data(), res.Images.Shape())
}

// ditVAE loads the VAE a DiT pipeline case names.
func ditVAE(t *testing.T, c *golden.Case) *pipeline.DiT {
	t.Helper()
	vc, err := c.Sibling(c.UsesWeightsOf["vae"])
	if err != nil {
		t.Fatal(err)
	}
	vw, err := c.Weights("vae")
	if err != nil {
		t.Fatal(err)
	}
	return &pipeline.DiT{VAE: buildVAE(t, vc.Config, vw)}
}

// runDiTCasePipeline checks the dit case's pipeline.* outputs: DiTPipeline
// with the case's DDIM scheduler, from the recorded initial latents.
func runDiTCasePipeline(t *testing.T, c *golden.Case, m *dit.Model) {
	var labels []int64
	if err := c.Field("pipeline_class_labels", &labels); err != nil {
		t.Fatal(err)
	}
	var sched json.RawMessage
	if err := c.Field("scheduler_config", &sched); err != nil {
		t.Fatal(err)
	}
	p := ditVAE(t, c)
	p.Transformer = m
	lat := caseTensor(t, c, "pipeline.initial_latents")
	c.Check(t, "pipeline.initial_latents", lat.Data(), lat.Shape())
	ditPipelineRun(t, c, p, "pipeline.", []byte(sched), labels,
		callArg(t, c, "guidance_scale"), int(callArg(t, c, "num_inference_steps")), lat)
}

func runPipelineDiT(t *testing.T, c *golden.Case) {
	var cfg struct {
		ClassLabels []int64 `json:"class_labels"`
		Guidance    float64 `json:"guidance_scale"`
		Steps       int     `json:"num_inference_steps"`
		Seed        uint64  `json:"generator_seed"`
	}
	if err := c.Field("config", &cfg); err != nil {
		t.Fatal(err)
	}
	var sched json.RawMessage
	if err := c.Field("scheduler_config", &sched); err != nil {
		t.Fatal(err)
	}
	dc, err := c.Sibling(c.UsesWeightsOf["transformer"])
	if err != nil {
		t.Fatal(err)
	}
	tw, err := c.Weights("transformer")
	if err != nil {
		t.Fatal(err)
	}
	p := ditVAE(t, c)
	p.Transformer = buildDiT(t, dc.Config, tw)
	// The recorded initial latents are the seeded generator's draw.
	tc := p.Transformer.Cfg
	shape := []int{len(cfg.ClassLabels), tc.InChannels, tc.SampleSize, tc.SampleSize}
	lat := tensor.FromSlice(rng.New(cfg.Seed).Randn(shape), shape...)
	c.Check(t, "initial_latents", lat.Data(), lat.Shape())
	ditPipelineRun(t, c, p, "", []byte(sched), cfg.ClassLabels, cfg.Guidance, cfg.Steps,
		caseTensor(t, c, "initial_latents"))
}
