package goldentest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/controlnet"
	"github.com/diffuse-go/diffuse/model/t2iadapter"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
)

func init() {
	golden.Register("diffusers.StableDiffusionControlNetPipeline", runPipelineControlNet)
	golden.Register("diffusers.StableDiffusionAdapterPipeline", runPipelineT2IAdapter)
}

// sd15Prompts gives the pipeline the recorded token ids of pipeline_sd15,
// whose prompts these cases share.
func sd15Prompts(t *testing.T, c *golden.Case, p *pipeline.SD, cfg sdCaseConfig) {
	t.Helper()
	sd, err := c.Sibling("pipeline_sd15")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sd.Close)
	var sdCfg sdCaseConfig
	if err := json.Unmarshal(sd.Config, &sdCfg); err != nil {
		t.Fatal(err)
	}
	if sdCfg.Prompt[0] != cfg.Prompt[0] || sdCfg.NegativePrompt[0] != cfg.NegativePrompt[0] {
		t.Fatalf("prompts differ from pipeline_sd15's recorded ones")
	}
	pids, _ := sd.MustI64(t, "prompt_input_ids")
	nids, _ := sd.MustI64(t, "negative_input_ids")
	p.Tokenizer = recordedTokenizer{cfg.Prompt[0]: pids, cfg.NegativePrompt[0]: nids}
}

func runPipelineControlNet(t *testing.T, c *golden.Case) {
	var cfg sdCaseConfig
	if err := json.Unmarshal(c.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	var windows map[string]struct {
		Scale json.RawMessage `json:"controlnet_conditioning_scale"`
		Start json.RawMessage `json:"control_guidance_start"`
		End   json.RawMessage `json:"control_guidance_end"`
	}
	json.Unmarshal(c.Config, &windows)
	p := sdComponents(t, c, "unet")
	sd15Prompts(t, c, p, cfg)
	cc, err := c.Sibling(c.UsesWeightsOf["controlnet"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Close)
	cw, err := c.Weights("controlnet")
	if err != nil {
		t.Fatal(err)
	}
	cn1 := buildControlNet(t, cc.Config, cw)
	var cn2cfg json.RawMessage
	if err := c.Field("controlnet_2_config", &cn2cfg); err != nil {
		t.Fatal(err)
	}
	w2, err := c.Open("controlnet_2.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	cn2 := buildControlNet(t, cn2cfg, w2)
	img1, img2 := caseTensor(t, c, "control_image"), caseTensor(t, c, "control_image_2")
	floats := func(raw json.RawMessage) []float64 {
		var one float64
		if json.Unmarshal(raw, &one) == nil {
			return []float64{one}
		}
		var many []float64
		if err := json.Unmarshal(raw, &many); err != nil {
			t.Fatal(err)
		}
		return many
	}
	for _, prefix := range []string{"single", "multi"} {
		t.Run(prefix, func(t *testing.T) {
			w := windows[prefix]
			scales, starts, ends := floats(w.Scale), floats(w.Start), floats(w.End)
			nets := []*controlnet.Model{cn1, cn2}
			imgs := []*tensor.Tensor{img1, img2}
			var units []pipeline.ControlNetUnit
			for k := range scales {
				units = append(units, pipeline.ControlNetUnit{Net: nets[k], Image: imgs[k], Scale: float32(scales[k]), Start: starts[k], End: ends[k]})
			}
			var gotScales []float32
			rec := &stepRecorder{}
			res, err := p.Generate(context.Background(), pipeline.Request{
				Prompts: cfg.Prompt, NegativePrompts: cfg.NegativePrompt, Width: cfg.Width, Height: cfg.Height,
				Steps: cfg.Steps, Guidance: cfg.Guidance, Scheduler: newScheduler(t, "EulerDiscreteScheduler", cfg.SchedulerCfg),
				Latents: caseTensor(t, c, "latents"), Noise: replayNoise{&scheduler.RecordedNoise{}}, OnStep: rec.record,
				Adapter: pipeline.ControlNets(units, true, func(_ int, s []float32) { gotScales = append(gotScales, s...) })})
			if err != nil {
				t.Fatal(err)
			}
			c.Check(t, prefix+".conditioning_scales", gotScales, nil)
			checkPipeTimesteps(t, c, prefix+".timesteps", res.Timesteps)
			c.Check(t, prefix+".step_latents", rec.data, nil)
			c.Check(t, prefix+".image", res.Images.Data(), res.Images.Shape())
		})
	}
}

func runPipelineT2IAdapter(t *testing.T, c *golden.Case) {
	var cfg sdCaseConfig
	if err := json.Unmarshal(c.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	var scales map[string]struct {
		Scale json.RawMessage `json:"adapter_conditioning_scale"`
	}
	json.Unmarshal(c.Config, &scales)
	p := sdComponents(t, c, "unet")
	sd15Prompts(t, c, p, cfg)
	load := func(cfgJSON []byte, w *nn.FileSource) *t2iadapter.Model {
		ac, err := t2iadapter.ParseConfig(cfgJSON)
		if err != nil {
			t.Fatal(err)
		}
		m, err := t2iadapter.New(ac)
		if err != nil {
			t.Fatal(err)
		}
		if err := nn.Load(m, "", *w, nn.LoadOptions{}); err != nil {
			t.Fatal(err)
		}
		return m
	}
	ac, err := c.Sibling(c.UsesWeightsOf["adapter"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ac.Close)
	aw, err := c.Weights("adapter")
	if err != nil {
		t.Fatal(err)
	}
	a1 := load(ac.Config, &nn.FileSource{F: aw})
	var a2cfg json.RawMessage
	if err := c.Field("adapter_2_config", &a2cfg); err != nil {
		t.Fatal(err)
	}
	w2, err := c.Open("adapter_2.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	a2 := load(a2cfg, &nn.FileSource{F: w2})
	img1, img2 := caseTensor(t, c, "adapter_image"), caseTensor(t, c, "adapter_image_2")
	for _, prefix := range []string{"single", "multi"} {
		t.Run(prefix, func(t *testing.T) {
			var feats []*tensor.Tensor
			var err error
			if prefix == "single" {
				var s float32
				if err := json.Unmarshal(scales[prefix].Scale, &s); err != nil {
					t.Fatal(err)
				}
				if feats, err = a1.Forward(img1); err != nil {
					t.Fatal(err)
				}
				feats = t2iadapter.Scale(feats, s)
			} else {
				var ws []float32
				if err := json.Unmarshal(scales[prefix].Scale, &ws); err != nil {
					t.Fatal(err)
				}
				m := t2iadapter.Multi{Adapters: []*t2iadapter.Model{a1, a2}, Weights: ws}
				if feats, err = m.Forward([]*tensor.Tensor{img1, img2}); err != nil {
					t.Fatal(err)
				}
			}
			hook := pipeline.T2IAdapter(feats, 1)
			var states []*tensor.Tensor
			res, err := p.Generate(context.Background(), pipeline.Request{
				Prompts: cfg.Prompt, NegativePrompts: cfg.NegativePrompt, Width: cfg.Width, Height: cfg.Height,
				Steps: cfg.Steps, Guidance: cfg.Guidance, Scheduler: newScheduler(t, "EulerDiscreteScheduler", cfg.SchedulerCfg),
				Latents: caseTensor(t, c, "latents"), Noise: replayNoise{&scheduler.RecordedNoise{}},
				Adapter: func(step, total int, ts float64, x *tensor.Tensor, cond *unet.Cond) error {
					if err := hook(step, total, ts, x, cond); err != nil {
						return err
					}
					if step == 0 {
						states = cond.DownIntrablockAdditionalResidual
					}
					return nil
				}})
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range states {
				c.Check(t, fmt.Sprintf("%s.adapter_state.%d", prefix, i), s.Data(), s.Shape())
			}
			checkPipeTimesteps(t, c, prefix+".timesteps", res.Timesteps)
			c.Check(t, prefix+".image", res.Images.Data(), res.Images.Shape())
		})
	}
}
