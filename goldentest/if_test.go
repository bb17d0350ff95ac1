package goldentest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
)

// ifCaseConfig is the part of the if_superres_unet case beyond the stage-II
// UNet config.
type ifCaseConfig struct {
	Stage1Config          json.RawMessage `json:"stage1_config"`
	NoisingSchedulerCfg   json.RawMessage `json:"image_noising_scheduler_config"`
	SchedulerConfig       json.RawMessage `json:"scheduler_config"`
	NoiseLevel            int             `json:"noise_level"`
	PipelineGeneratorSeed uint64          `json:"pipeline_generator_seed"`
}

// recordingNoise draws from a generator and keeps every draw.
type recordingNoise struct {
	g     *rng.Generator
	draws [][]float32
}

func (r *recordingNoise) Randn(shape []int) []float32 {
	v := r.g.Randn(shape)
	r.draws = append(r.draws, v)
	return v
}

// runIFUNet checks DeepFloyd IF: the stage-II UNet on a noise-augmented
// upscaled image, the stage-I UNet, and a short IFSuperResolutionPipeline run.
func runIFUNet(t *testing.T, c *golden.Case) {
	var cfg ifCaseConfig
	for _, f := range []struct {
		key string
		dst any
	}{{"stage1_config", &cfg.Stage1Config}, {"image_noising_scheduler_config", &cfg.NoisingSchedulerCfg},
		{"scheduler_config", &cfg.SchedulerConfig}, {"noise_level", &cfg.NoiseLevel}, {"pipeline_generator_seed", &cfg.PipelineGeneratorSeed}} {
		if err := c.Field(f.key, f.dst); err != nil {
			t.Fatal(err)
		}
	}
	w2, err := c.Weights("")
	if err != nil {
		t.Fatal(err)
	}
	unet2 := buildUNet(t, c.Config, w2)
	noising := schedulerFromConfig(t, cfg.NoisingSchedulerCfg)
	ehs := caseTensor(t, c, "encoder_hidden_states")
	tsInt, _ := c.MustI64(t, "timestep")
	ts := make([]float32, len(tsInt))
	for i, v := range tsInt {
		ts[i] = float32(v)
	}
	k := newOutputChecker(c)
	defer k.allChecked(t, "")
	if hasOutput(c, "superres_out") {
		t.Run("superres", func(t *testing.T) { runIFSuperRes(t, c, k, cfg.NoiseLevel, unet2, noising, ehs, ts) })
	}
	if hasOutput(c, "stage1_out") {
		t.Run("stage1", func(t *testing.T) {
			w1, err := c.Open("stage1_weights.safetensors")
			if err != nil {
				t.Fatal(err)
			}
			unet1 := buildUNet(t, cfg.Stage1Config, w1)
			out, err := unet1.Forward(caseTensor(t, c, "stage1_sample"), ts, unet.Cond{EncoderHiddenStates: ehs})
			if err != nil {
				t.Fatal(err)
			}
			k.check(t, "stage1_out", out.Data(), out.Shape())
		})
	}
	if hasOutput(c, "pipeline.image") {
		t.Run("pipeline", func(t *testing.T) { runIFPipeline(t, c, k, cfg, unet2, noising) })
	}
}

// runIFSuperRes checks the noise augmentation of the upscaled low-res image
// and the stage-II UNet on it.
func runIFSuperRes(t *testing.T, c *golden.Case, k *outputChecker, noiseLevel int, unet2 *unet.Model, noising scheduler.Scheduler,
	ehs *tensor.Tensor, ts []float32) {
	low := caseTensor(t, c, "low_res_image")
	noisy := caseTensor(t, c, "noisy_image")
	b, h, w := noisy.Dim(0), noisy.Dim(2), noisy.Dim(3)
	up := tensor.ResizeBilinear(low, h, w, true)
	k.check(t, "upscaled", up.Data(), up.Shape())
	levels := make([]float64, b)
	labels := make([]float32, b)
	for i := range levels {
		levels[i] = float64(noiseLevel)
		labels[i] = float32(noiseLevel)
	}
	aug, _ := c.MustF32(t, "aug_noise")
	noised, err := noising.AddNoise(up.Data(), aug, levels)
	if err != nil {
		t.Fatal(err)
	}
	k.check(t, "upscaled_noised", noised, up.Shape())
	sample := tensor.Concat(1, noisy, tensor.FromSlice(noised, up.Shape()...))
	k.check(t, "superres_sample", sample.Data(), sample.Shape())
	out, err := unet2.Forward(sample, ts, unet.Cond{EncoderHiddenStates: ehs, ClassLabels: tensor.FromSlice(labels, b)})
	if err != nil {
		t.Fatal(err)
	}
	k.check(t, "superres_out", out.Data(), out.Shape())
}

// runIFPipeline runs IFSuperResolutionPipeline with the recorded prompt
// embeddings on the first rows of the low-res image (one per prompt,
// low_res_image[:B]) from the recorded generator seed, and compares every
// draw, the UNet input of the first step and the image.
func runIFPipeline(t *testing.T, c *golden.Case, k *outputChecker, cfg ifCaseConfig, unet2 *unet.Model, noising scheduler.Scheduler) {
	low := caseTensor(t, c, "low_res_image")
	embeds := caseTensor(t, c, "pipeline.prompt_embeds")
	out := c.Outputs["pipeline.image"].Shape
	noise := &recordingNoise{g: rng.New(cfg.PipelineGeneratorSeed)}
	p := &pipeline.IFSuperResolution{UNet: unet2, NoisingScheduler: noising}
	// The case records the pipeline call's arguments only in its "call" text.
	guidance := callArg(t, c, "guidance_scale")
	steps := int(callArg(t, c, "num_inference_steps"))
	var input0 *tensor.Tensor
	res, err := p.Generate(context.Background(), pipeline.IFSuperResRequest{
		PromptEmbeds: embeds, NegativeEmbeds: caseTensor(t, c, "pipeline.negative_prompt_embeds"),
		Image: low.Narrow(0, 0, embeds.Dim(0)).Contiguous(), Height: out[2], Width: out[3], Steps: steps, Guidance: guidance,
		NoiseLevel: cfg.NoiseLevel, Scheduler: schedulerFromConfig(t, cfg.SchedulerConfig), Noise: noise,
		OnUNetInput: func(step int, x *tensor.Tensor) {
			if step == 0 {
				input0 = x
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	k.check(t, "pipeline.timesteps", float32sOf(res.Timesteps), nil)
	k.use("pipeline.class_labels")
	c.CheckI64(t, "pipeline.class_labels", res.ClassLabels, nil)
	k.check(t, "pipeline.unet_input_step0", input0.Data(), input0.Shape())
	names := []string{"pipeline.initial_noise", "pipeline.aug_noise"}
	for i := 0; ; i++ {
		name := fmt.Sprintf("pipeline.step_noise.%d", i)
		if _, ok := c.Outputs[name]; !ok {
			break
		}
		names = append(names, name)
	}
	if len(noise.draws) != len(names) {
		t.Errorf("%d noise draws, the case recorded %d", len(noise.draws), len(names))
	}
	for _, name := range names {
		k.use(name)
	}
	for i, name := range names[:min(len(names), len(noise.draws))] {
		k.check(t, name, noise.draws[i], nil)
	}
	k.check(t, "pipeline.image", res.Images.Data(), res.Images.Shape())
}
