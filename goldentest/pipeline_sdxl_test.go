package goldentest

import (
	"context"
	"encoding/json"
	"sort"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
	cliptok "github.com/diffuse-go/diffuse/tokenizer/clip"
)

func init() {
	golden.Register("diffusers.StableDiffusionXLPipeline / StableDiffusionXLImg2ImgPipeline", runPipelineSDXL)
}

// sdxlCall is the "config" field of the SDXL pipeline case.
type sdxlCall struct {
	Prompt                     textArg         `json:"prompt"`
	Prompt2                    textArg         `json:"prompt_2"`
	NegativePrompt             textArg         `json:"negative_prompt"`
	NegativePrompt2            textArg         `json:"negative_prompt_2"`
	Height                     int             `json:"height"`
	Width                      int             `json:"width"`
	Steps                      int             `json:"num_inference_steps"`
	Guidance                   float64         `json:"guidance_scale"`
	ImagesPerPrompt            int             `json:"num_images_per_prompt"`
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

// sdxlTexts are a call's texts broadcast to its batch, with diffusers'
// defaults: prompt_2 = prompt; negative_prompt None = "" (or zeros, with
// force_zeros_for_empty_prompt); negative_prompt_2 = negative_prompt.
type sdxlTexts struct {
	prompts, prompts2, negatives, negatives2 []string
}

func (s *sdxlCall) texts(t *testing.T) sdxlTexts {
	t.Helper()
	if len(s.Prompt) == 0 {
		t.Fatal("the call has no prompt")
	}
	n := len(s.Prompt)
	return sdxlTexts{prompts: s.Prompt, prompts2: mustBroadcast(t, "prompt_2", s.Prompt2, n),
		negatives: mustBroadcast(t, "negative_prompt", s.NegativePrompt, n), negatives2: mustBroadcast(t, "negative_prompt_2", s.NegativePrompt2, n)}
}

// checkXLPromptIDs compares the ids recorded under a sub-case with the
// tokenizers', each encoder's texts with its tokenizer.
func checkXLPromptIDs(t *testing.T, k *outputChecker, sub string, tx sdxlTexts, tok1, tok2 *cliptok.Tokenizer) {
	t.Helper()
	or := func(a, b []string) []string {
		if a == nil {
			return b
		}
		return a
	}
	neg := or(tx.negatives, make([]string, len(tx.prompts)))
	for _, chk := range []struct {
		name  string
		tok   *cliptok.Tokenizer
		texts []string
	}{{"prompt_input_ids", tok1, tx.prompts}, {"prompt_2_input_ids", tok2, or(tx.prompts2, tx.prompts)},
		{"negative_input_ids", tok1, neg}, {"negative_2_input_ids", tok2, or(tx.negatives2, neg)}} {
		name := chk.name
		if sub != "" {
			name = sub + "." + name
		}
		if hasOutput(k.c, name) {
			k.use(name)
			k.c.CheckI64(t, name, chk.tok.EncodeBatch(chk.texts), []int{len(chk.texts), chk.tok.MaxLength()})
		}
	}
}

// xlRun is what one SDXL sub-case runs.
type xlRun struct {
	unetKey string
	// from is the sub-case whose final latents this one starts from
	// (denoising_start); "" starts from the case's latents.
	from string
	// stopEarly runs up to denoising_end and returns latents.
	stopEarly bool
}

// xlRuns classifies the sub-cases: a sub-case with its own UNet component
// ("<sub>_unet" or "<sub>" in uses_weights_of) is an img2img run from the
// latents of the sub-case that returns latents (<sub>.latents) at
// denoising_start; a sub-case that records its latents stops at
// denoising_end; any other runs the whole schedule. Runs that others start
// from come first.
func xlRuns(t *testing.T, c *golden.Case) ([]string, map[string]xlRun) {
	t.Helper()
	subs := subCases(c)
	var sources []string
	for _, sub := range subs {
		if hasOutput(c, sub+".latents") {
			sources = append(sources, sub)
		}
	}
	runs := map[string]xlRun{}
	for _, sub := range subs {
		r := xlRun{unetKey: "unet", stopEarly: hasOutput(c, sub+".latents")}
		for _, key := range []string{sub + "_unet", sub} {
			if _, ok := c.UsesWeightsOf[key]; ok {
				r.unetKey = key
				break
			}
		}
		if r.unetKey != "unet" {
			if len(sources) != 1 {
				t.Fatalf("case %s: sub-case %s starts from latents, and %d sub-cases (%v) record latents", c.Name, sub, len(sources), sources)
			}
			r.from = sources[0]
		}
		runs[sub] = r
	}
	sort.SliceStable(subs, func(i, j int) bool { return runs[subs[i]].from == "" && runs[subs[j]].from != "" })
	return subs, runs
}

// xlPipeline builds the pipeline of a UNet component: the text encoders its
// cross-attention width takes (the refiner's takes the second only), the
// refiner's aesthetic-score time ids when its addition embedding expects 5.
func xlPipeline(t *testing.T, c *golden.Case, unetKey string, enc1, enc2 *clip.Model, tok1, tok2 *cliptok.Tokenizer, vaeKey string) *pipeline.SDXL {
	t.Helper()
	ucfg, uw := component(t, c, unetKey)
	u := buildUNet(t, ucfg, uw)
	vcfg, vw := component(t, c, vaeKey)
	p := &pipeline.SDXL{TextEncoder2: enc2, Tokenizer2: tok2, UNet: u, VAE: buildVAE(t, vcfg, vw), ForceZerosForEmptyPrompt: true}
	cross := u.Cfg.CrossAttentionDim[0]
	switch cross {
	case enc1.Cfg.HiddenSize + enc2.Cfg.HiddenSize:
		p.TextEncoder, p.Tokenizer = enc1, tok1
	case enc2.Cfg.HiddenSize:
	default:
		t.Fatalf("UNet %s: cross_attention_dim %d fits neither both encoders (%d + %d) nor the second", unetKey, cross, enc1.Cfg.HiddenSize, enc2.Cfg.HiddenSize)
	}
	if td := u.Cfg.AdditionTimeEmbedDim; td > 0 {
		ids := (u.Cfg.ProjectionClassEmbeddingsDim - enc2.Cfg.ProjectionDim) / td
		p.RequiresAestheticsScore = ids == 5
	}
	return p
}

func runPipelineSDXL(t *testing.T, c *golden.Case) {
	var call sdxlCall
	if err := json.Unmarshal(c.Config, &call); err != nil {
		t.Fatal(err)
	}
	tx := call.texts(t)
	tok1, err := cliptok.New(cliptok.Options{Pad: cliptok.PadEOS})
	if err != nil {
		t.Fatal(err)
	}
	tok2, err := cliptok.New(cliptok.Options{Pad: cliptok.PadExclamation})
	if err != nil {
		t.Fatal(err)
	}
	enc1 := loadCLIPComponent(t, c, "text_encoder", false)
	enc2 := loadCLIPComponent(t, c, "text_encoder_2", true)
	req := pipeline.XLRequest{
		Request: pipeline.Request{Prompts: tx.prompts, NegativePrompts: tx.negatives, Width: call.Width, Height: call.Height,
			Steps: call.Steps, Guidance: call.Guidance, ImagesPerPrompt: call.ImagesPerPrompt},
		Prompts2: tx.prompts2, NegativePrompts2: tx.negatives2,
		OriginalSize: call.OriginalSize, CropsTopLeft: call.CropsCoordsTopLeft, TargetSize: call.TargetSize,
		NegativeOriginalSize: call.NegativeOriginalSize, NegativeCropsTopLeft: call.NegativeCropsCoordsTopLeft, NegativeTargetSize: call.NegativeTargetSize,
		AestheticScore: call.AestheticScore, NegativeAestheticScore: call.NegativeAestheticScore,
	}
	checkXLPromptIDs(t, newOutputChecker(c), "", tx, tok1, tok2)
	subs, runs := xlRuns(t, c)
	final := map[string]*tensor.Tensor{}
	for _, sub := range subs {
		t.Run(sub, func(t *testing.T) {
			run := runs[sub]
			k := newOutputChecker(c)
			checkXLPromptIDs(t, k, sub, tx, tok1, tok2)
			p := xlPipeline(t, c, run.unetKey, enc1, enc2, tok1, tok2, "vae")
			r := req
			r.Scheduler, r.Noise = schedulerFromConfig(t, call.SchedulerConfig), replayNoise{&scheduler.RecordedNoise{}}
			if run.from != "" {
				if final[run.from] == nil {
					t.Fatalf("sub-case %s failed: nothing to start from", run.from)
				}
				r.InitLatents, r.DenoisingStart = final[run.from], call.DenoisingStart
			} else {
				r.Latents = caseTensor(t, c, "latents")
			}
			if run.stopEarly {
				r.DenoisingEnd = call.DenoisingEnd
				r.SkipDecode = !hasOutput(c, sub+".image")
			}
			res := runXL(t, k, p, r, sub)
			if run.stopEarly {
				k.check(t, sub+".latents", res.Latents.Data(), res.Latents.Shape())
				final[sub] = res.Latents
			}
			k.allChecked(t, sub+".")
		})
	}
}

// runXL runs one SDXL sub-case and compares what the UNet got at the first
// step, the timesteps, the step latents and the image.
func runXL(t *testing.T, k *outputChecker, p *pipeline.SDXL, r pipeline.XLRequest, sub string) *pipeline.XLResult {
	t.Helper()
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
	for name, got := range map[string]*tensor.Tensor{"prompt_embeds": ehs, "add_text_embeds": res.AddTextEmbeds, "add_time_ids": res.AddTimeIDs} {
		if hasOutput(k.c, sub+"."+name) {
			k.check(t, sub+"."+name, got.Data(), got.Shape())
		}
	}
	k.check(t, sub+".timesteps", float32sOf(res.Timesteps), nil)
	k.check(t, sub+".step_latents", rec.data, nil)
	if hasOutput(k.c, sub+".image") {
		k.check(t, sub+".image", res.Images.Data(), res.Images.Shape())
	}
	return res
}
