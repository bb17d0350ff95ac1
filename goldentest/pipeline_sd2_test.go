package goldentest

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
	cliptok "github.com/diffuse-go/diffuse/tokenizer/clip"
)

func init() {
	golden.Register("diffusers.StableDiffusionPipeline", runPipelineSDVariants)
}

// sdVariantsConfig is the config of a StableDiffusionPipeline case run once
// per scheduler variant (pipeline_sd2_vpred).
type sdVariantsConfig struct {
	Prompt         []string `json:"prompt"`
	NegativePrompt []string `json:"negative_prompt"`
	Height         int      `json:"height"`
	Width          int      `json:"width"`
	Variants       map[string]struct {
		SchedulerClass  string          `json:"scheduler_class"`
		SchedulerConfig json.RawMessage `json:"scheduler_config"`
		Steps           int             `json:"num_inference_steps"`
		Guidance        float64         `json:"guidance_scale"`
		GuidanceRescale float64         `json:"guidance_rescale"`
	} `json:"variants"`
}

// padStyleOf tells which padding the recorded ids use: the id after the
// first EOS of a row that has room for one (EOS: SD 1.x; 0: the '!' pad of
// SD 2.x and SDXL's tokenizer_2).
func padStyleOf(ids []int64, length int) cliptok.PadStyle {
	for row := 0; row+length <= len(ids); row += length {
		r := ids[row : row+length]
		if i := slices.Index(r, cliptok.EOS); i >= 0 && i+1 < length {
			if r[i+1] == 0 {
				return cliptok.PadExclamation
			}
			return cliptok.PadEOS
		}
	}
	return cliptok.PadEOS
}

// recordingScheduler keeps the model output each Step receives: what the
// pipeline made of the UNet output (guidance, rescale).
type recordingScheduler struct {
	scheduler.Scheduler
	outputs []float32
}

func (r *recordingScheduler) Step(out []float32, i int, sample []float32, shape []int, noise scheduler.NoiseSource) (scheduler.StepOutput, error) {
	r.outputs = append(r.outputs, out...)
	return r.Scheduler.Step(out, i, sample, shape, noise)
}

// runPipelineSDVariants checks StableDiffusionPipeline (SD 2.x style: gelu
// CLIP, linear-projection UNet, v-prediction) once per scheduler variant
// of the case.
func runPipelineSDVariants(t *testing.T, c *golden.Case) {
	var cfg sdVariantsConfig
	if err := json.Unmarshal(c.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Variants) == 0 {
		t.Skipf("case %s: no variants in config", c.Name)
	}
	negs := cfg.NegativePrompt
	if len(negs) == 0 {
		negs = make([]string, len(cfg.Prompt))
	}
	pids, pshape := c.MustI64(t, "prompt_input_ids")
	tok, err := cliptok.New(cliptok.Options{Pad: padStyleOf(pids, pshape[1])})
	if err != nil {
		t.Fatal(err)
	}
	c.CheckI64(t, "prompt_input_ids", tok.EncodeBatch(cfg.Prompt), pshape)
	if _, ok := c.Outputs["negative_input_ids"]; ok {
		c.CheckI64(t, "negative_input_ids", tok.EncodeBatch(negs), nil)
	}

	p := &pipeline.SD{Tokenizer: tok}
	uw, ucfg := componentFiles(t, c, "unet")
	p.UNet = buildUNet(t, ucfg, uw)
	vw, vcfg := componentFiles(t, c, "vae")
	p.VAE = buildVAE(t, vcfg, vw)
	tw, tcfg := componentFiles(t, c, "text_encoder")
	ccfg, err := clip.ParseConfig(tcfg)
	if err != nil {
		t.Fatal(err)
	}
	if p.TextEncoder, err = clip.New(ccfg); err != nil {
		t.Fatal(err)
	}
	// A CLIPTextModel built from a CLIPTextModelWithProjection checkpoint
	// leaves its text_projection unused, as transformers does.
	if err := nn.Load(p.TextEncoder, "", nn.FileSource{F: tw}, nn.LoadOptions{AllowUnused: true}); err != nil {
		t.Fatal(err)
	}
	latents := caseTensor(t, c, "latents")
	names := make([]string, 0, len(cfg.Variants))
	for name := range cfg.Variants {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		v := cfg.Variants[name]
		t.Run(name, func(t *testing.T) {
			sched := &recordingScheduler{Scheduler: newScheduler(t, v.SchedulerClass, v.SchedulerConfig)}
			steps, unetOut := &stepRecorder{}, []float32{}
			res, err := p.Generate(context.Background(), pipeline.Request{
				Prompts: cfg.Prompt, NegativePrompts: negs, Width: cfg.Width, Height: cfg.Height,
				Steps: v.Steps, Guidance: v.Guidance, GuidanceRescale: v.GuidanceRescale, Scheduler: sched,
				Latents: latents, Noise: replayNoise{&scheduler.RecordedNoise{}}, OnStep: steps.record,
				// The UNet output is not exposed by the pipeline: evaluate
				// the UNet again on the input and conditioning it got.
				Adapter: func(_, _ int, ts float64, x *tensor.Tensor, cond *unet.Cond) error {
					out, err := p.UNet.Forward(x, []float32{float32(ts)}, *cond)
					if err == nil {
						unetOut = append(unetOut, out.Data()...)
					}
					return err
				}})
			if err != nil {
				t.Fatal(err)
			}
			if name == names[0] {
				emb := res.PromptEmbeds
				if res.NegativeEmbeds != nil && v.Guidance > 1 {
					emb = tensor.Concat(0, res.NegativeEmbeds, res.PromptEmbeds) // the UNet's batch order
				}
				c.Check(t, "prompt_embeds", emb.Data(), emb.Shape())
			}
			checkPipeTimesteps(t, c, name+".timesteps", res.Timesteps)
			c.Check(t, name+".init_noise_sigma", []float32{float32(sched.InitNoiseSigma())}, nil)
			c.Check(t, name+".unet_out", unetOut, nil)
			c.Check(t, name+".guided_model_output", sched.outputs, nil)
			c.Check(t, name+".step_latents", steps.data, nil)
			c.Check(t, name+".image", res.Images.Data(), res.Images.Shape())
		})
	}
}
