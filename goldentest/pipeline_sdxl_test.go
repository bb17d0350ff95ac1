package goldentest

import (
	"context"
	"encoding/json"
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
	golden.Register("diffusers.StableDiffusionXLPipeline / StableDiffusionXLImg2ImgPipeline", runPipelineSDXL)
}

type sdxlCaseConfig struct {
	Prompt                     []string        `json:"prompt"`
	Prompt2                    []string        `json:"prompt_2"`
	NegativePrompt             []string        `json:"negative_prompt"`
	NegativePrompt2            []string        `json:"negative_prompt_2"`
	Height                     int             `json:"height"`
	Width                      int             `json:"width"`
	Steps                      int             `json:"num_inference_steps"`
	Guidance                   float64         `json:"guidance_scale"`
	OriginalSize               pipeline.Size   `json:"original_size"`
	CropsCoordsTopLeft         pipeline.Size   `json:"crops_coords_top_left"`
	TargetSize                 pipeline.Size   `json:"target_size"`
	NegativeOriginalSize       *pipeline.Size  `json:"negative_original_size"`
	NegativeCropsCoordsTopLeft *pipeline.Size  `json:"negative_crops_coords_top_left"`
	NegativeTargetSize         *pipeline.Size  `json:"negative_target_size"`
	DenoisingEnd               float64         `json:"denoising_end"`
	DenoisingStart             float64         `json:"denoising_start"`
	AestheticScore             float64         `json:"aesthetic_score"`
	NegativeAestheticScore     float64         `json:"negative_aesthetic_score"`
	SchedulerConfig            json.RawMessage `json:"scheduler_config"`
}

func loadCLIPFrom(t *testing.T, c *golden.Case, component string, proj bool) *clip.Model {
	t.Helper()
	sib, err := c.Sibling(c.UsesWeightsOf[component])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sib.Close)
	w, err := c.Weights(component)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clip.ParseConfig(sib.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg.WithProjection = proj
	m, err := clip.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := nn.Load(m, "", nn.FileSource{F: w}, nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	return m
}

func runPipelineSDXL(t *testing.T, c *golden.Case) {
	var cfg sdxlCaseConfig
	if err := json.Unmarshal(c.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	tok1, err := cliptok.New(cliptok.Options{Pad: cliptok.PadEOS})
	if err != nil {
		t.Fatal(err)
	}
	tok2, err := cliptok.New(cliptok.Options{Pad: cliptok.PadExclamation})
	if err != nil {
		t.Fatal(err)
	}
	// The real tokenizers must give the ids the pipeline recorded.
	for _, chk := range []struct {
		name    string
		tok     *cliptok.Tokenizer
		prompts []string
	}{{"base.prompt_input_ids", tok1, cfg.Prompt}, {"base.prompt_2_input_ids", tok2, cfg.Prompt2},
		{"base.negative_input_ids", tok1, cfg.NegativePrompt}, {"base.negative_2_input_ids", tok2, cfg.NegativePrompt}} {
		c.CheckI64(t, chk.name, chk.tok.EncodeBatch(chk.prompts), nil)
	}
	uc, err := c.Sibling(c.UsesWeightsOf["unet"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(uc.Close)
	uw, err := c.Weights("unet")
	if err != nil {
		t.Fatal(err)
	}
	vc, err := c.Sibling(c.UsesWeightsOf["vae"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vc.Close)
	vw, err := c.Weights("vae")
	if err != nil {
		t.Fatal(err)
	}
	base := &pipeline.SDXL{
		TextEncoder: loadCLIPFrom(t, c, "text_encoder", false), TextEncoder2: loadCLIPFrom(t, c, "text_encoder_2", true),
		Tokenizer: tok1, Tokenizer2: tok2, UNet: buildUNet(t, uc.Config, uw), VAE: buildVAE(t, vc.Config, vw),
		ForceZerosForEmptyPrompt: true}
	req := pipeline.XLRequest{
		Request: pipeline.Request{Prompts: cfg.Prompt, NegativePrompts: cfg.NegativePrompt, Width: cfg.Width, Height: cfg.Height,
			Steps: cfg.Steps, Guidance: cfg.Guidance, Latents: caseTensor(t, c, "latents"), Noise: replayNoise{&scheduler.RecordedNoise{}}},
		Prompts2: cfg.Prompt2, NegativePrompts2: cfg.NegativePrompt2,
		OriginalSize: cfg.OriginalSize, CropsTopLeft: cfg.CropsCoordsTopLeft, TargetSize: cfg.TargetSize,
		NegativeOriginalSize: cfg.NegativeOriginalSize, NegativeCropsTopLeft: cfg.NegativeCropsCoordsTopLeft, NegativeTargetSize: cfg.NegativeTargetSize,
		AestheticScore: cfg.AestheticScore, NegativeAestheticScore: cfg.NegativeAestheticScore,
	}
	run := func(t *testing.T, p *pipeline.SDXL, r pipeline.XLRequest, prefix string) *pipeline.XLResult {
		t.Helper()
		r.Scheduler = newScheduler(t, "EulerDiscreteScheduler", cfg.SchedulerConfig)
		rec := &stepRecorder{}
		var ehs *tensor.Tensor
		r.OnStep = rec.record
		r.Adapter = func(step, _ int, _ float64, _ *tensor.Tensor, cond *unet.Cond) error {
			if step == 0 {
				ehs = cond.EncoderHiddenStates
			}
			return nil
		}
		res, err := p.Generate(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := c.Outputs[prefix+".prompt_embeds"]; ok {
			c.Check(t, prefix+".prompt_embeds", ehs.Data(), ehs.Shape())
			c.Check(t, prefix+".add_text_embeds", res.AddTextEmbeds.Data(), res.AddTextEmbeds.Shape())
			c.Check(t, prefix+".add_time_ids", res.AddTimeIDs.Data(), res.AddTimeIDs.Shape())
		}
		c.Check(t, prefix+".timesteps", float32sOf(res.Timesteps), nil)
		c.Check(t, prefix+".step_latents", rec.data, nil)
		if _, ok := c.Outputs[prefix+".image"]; ok {
			c.Check(t, prefix+".image", res.Images.Data(), res.Images.Shape())
		}
		return res
	}
	t.Run("base", func(t *testing.T) { run(t, base, req, "base") })
	var split *pipeline.XLResult
	t.Run("split", func(t *testing.T) {
		r := req
		r.DenoisingEnd, r.SkipDecode = cfg.DenoisingEnd, true
		split = run(t, base, r, "split")
		c.Check(t, "split.latents", split.Latents.Data(), split.Latents.Shape())
	})
	t.Run("refiner", func(t *testing.T) {
		if split == nil {
			t.Skip("split run failed")
		}
		var rcfg json.RawMessage
		if err := c.Field("refiner_unet_config", &rcfg); err != nil {
			t.Fatal(err)
		}
		rw, err := c.Open("refiner_unet.safetensors")
		if err != nil {
			t.Fatal(err)
		}
		refiner := &pipeline.SDXL{TextEncoder2: base.TextEncoder2, Tokenizer2: tok2, UNet: buildUNet(t, rcfg, rw), VAE: base.VAE,
			RequiresAestheticsScore: true}
		r := req
		r.Latents = nil
		r.InitLatents, r.DenoisingStart = split.Latents, cfg.DenoisingStart
		run(t, refiner, r, "refiner")
	})
}
