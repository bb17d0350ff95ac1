package goldentest

import (
	"context"
	"encoding/json"
	"math"
	"sort"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
	cliptok "github.com/diffuse-go/diffuse/tokenizer/clip"
)

func init() {
	golden.Register("diffusers.StableDiffusionPipeline / StableDiffusionImg2ImgPipeline", runPipelineSD15)
	golden.Register("diffusers.StableDiffusionInpaintPipeline", runPipelineInpaint)
}

// sdComponents builds the SD pipeline's text encoder, tokenizer and VAE
// from the components the case names, and its UNet from the component
// unetKey. The tokenizer is the real SD 1.x CLIP tokenizer: the ids a case
// records are checked against it (checkPromptIDs), so any prompt works.
func sdComponents(t *testing.T, c *golden.Case, unetKey string) *pipeline.SD {
	t.Helper()
	p := &pipeline.SD{}
	ucfg, uw := component(t, c, unetKey)
	p.UNet = buildUNet(t, ucfg, uw)
	vcfg, vw := component(t, c, "vae")
	p.VAE = buildVAE(t, vcfg, vw)
	p.TextEncoder = loadCLIPComponent(t, c, "text_encoder", false)
	tok, err := cliptok.New(cliptok.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p.Tokenizer = tok
	return p
}

// loadCLIPComponent builds a CLIP text encoder component of the case.
func loadCLIPComponent(t *testing.T, c *golden.Case, name string, proj bool) *clip.Model {
	t.Helper()
	cfgJSON, w := component(t, c, name)
	cfg, err := clip.ParseConfig(cfgJSON)
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

// sdCall is the "config" field of an SD 1.x pipeline case: the arguments
// of the recorded call.
type sdCall struct {
	Prompt          textArg                    `json:"prompt"`
	NegativePrompt  textArg                    `json:"negative_prompt"`
	Height          int                        `json:"height"`
	Width           int                        `json:"width"`
	Steps           int                        `json:"num_inference_steps"`
	Guidance        float64                    `json:"guidance_scale"`
	ImagesPerPrompt int                        `json:"num_images_per_prompt"`
	Strength        float64                    `json:"strength"`
	Schedulers      map[string]json.RawMessage `json:"schedulers"`
	SchedulerCfg    json.RawMessage            `json:"scheduler_config"`
	// raw holds every key, for per-sub-case arguments.
	raw map[string]json.RawMessage
	// prompts and negatives are the call's texts, one per prompt
	// (negatives nil when negative_prompt is None).
	prompts, negatives []string
}

// parseSDCall reads the case's call arguments and broadcasts its texts.
func parseSDCall(t *testing.T, c *golden.Case) *sdCall {
	t.Helper()
	call := &sdCall{}
	if err := json.Unmarshal(c.Config, call); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(c.Config, &call.raw); err != nil {
		t.Fatal(err)
	}
	if len(call.Prompt) == 0 {
		t.Fatalf("case %s: the call has no prompt", c.Name)
	}
	call.prompts = call.Prompt
	call.negatives = mustBroadcast(t, "negative_prompt", call.NegativePrompt, len(call.prompts))
	return call
}

// request is the part of a pipeline request every sub-case shares.
func (s *sdCall) request() pipeline.Request {
	return pipeline.Request{Prompts: s.prompts, NegativePrompts: s.negatives, Width: s.Width, Height: s.Height,
		Steps: s.Steps, Guidance: s.Guidance, ImagesPerPrompt: s.ImagesPerPrompt}
}

// number reads a numeric call argument, the first of keys present.
func (s *sdCall) number(t *testing.T, keys ...string) float64 {
	t.Helper()
	for _, k := range keys {
		if raw, ok := s.raw[k]; ok {
			var v float64
			if err := json.Unmarshal(raw, &v); err != nil {
				t.Fatalf("call argument %s: %v", k, err)
			}
			return v
		}
	}
	t.Fatalf("the call has none of %v", keys)
	return 0
}

// checkPromptIDs compares the ids the case recorded (<prefix>prompt_input_ids,
// <prefix>negative_input_ids, where present) with the tokenizer's. A None
// negative prompt is tokenized as "" per prompt, as diffusers does.
func checkPromptIDs(t *testing.T, c *golden.Case, prefix string, tok *cliptok.Tokenizer, prompts, negatives []string) {
	t.Helper()
	if negatives == nil {
		negatives = make([]string, len(prompts))
	}
	for _, chk := range []struct {
		name  string
		texts []string
	}{{prefix + "prompt_input_ids", prompts}, {prefix + "negative_input_ids", negatives}} {
		if hasOutput(c, chk.name) {
			c.CheckI64(t, chk.name, tok.EncodeBatch(chk.texts), []int{len(chk.texts), tok.MaxLength()})
		}
	}
}

// outputChecker compares outputs and remembers which ones it compared, so
// that a sub-case output no code looked at fails the test.
type outputChecker struct {
	c    *golden.Case
	seen map[string]bool
}

func newOutputChecker(c *golden.Case) *outputChecker {
	return &outputChecker{c: c, seen: map[string]bool{}}
}

// check compares a float output (see golden.Case.Check).
func (k *outputChecker) check(t *testing.T, name string, got []float32, shape []int) {
	t.Helper()
	k.seen[name] = true
	k.c.Check(t, name, got, shape)
}

// use marks an output as consumed (a recorded draw the run replays).
func (k *outputChecker) use(name string) { k.seen[name] = true }

// timesteps compares recorded timesteps (see checkPipeTimesteps).
func (k *outputChecker) timesteps(t *testing.T, name string, got []float64) {
	t.Helper()
	k.seen[name] = true
	checkPipeTimesteps(t, k.c, name, got)
}

// allChecked fails for every output under prefix that was not compared.
func (k *outputChecker) allChecked(t *testing.T, prefix string) {
	t.Helper()
	var missed []string
	for name := range k.c.Outputs {
		if strings.HasPrefix(name, prefix) && !strings.HasSuffix(name, "__f64") && !k.seen[name] {
			missed = append(missed, name)
		}
	}
	sort.Strings(missed)
	if len(missed) > 0 {
		t.Errorf("case %s: outputs the runner does not know: %v", k.c.Name, missed)
	}
}

// replayNoise replays recorded draws in order, then gives zeros: the case
// records only the draws whose values matter (Euler draws step noise that
// s_churn = 0 multiplies by zero).
type replayNoise struct {
	rec *scheduler.RecordedNoise
}

func (r replayNoise) Randn(shape []int) []float32 {
	n := 1
	for _, d := range shape {
		n *= d
	}
	if r.rec.Drawn()+n <= len(r.rec.Values) {
		return r.rec.Randn(shape)
	}
	return make([]float32, n)
}

// recordedDraws concatenates the recorded draws of the names the case has,
// in the order given (the order the pipeline draws them).
func recordedDraws(t *testing.T, c *golden.Case, k *outputChecker, names ...string) *scheduler.RecordedNoise {
	t.Helper()
	var vals []float32
	for _, n := range names {
		if !hasOutput(c, n) && !hasInput(c, n) {
			continue
		}
		v, _ := c.MustF32(t, n)
		vals = append(vals, v...)
		k.use(n)
	}
	return &scheduler.RecordedNoise{Values: vals}
}

// stepRecorder collects per-step latents into one flat slice (the case
// stacks them).
type stepRecorder struct{ data []float32 }

func (r *stepRecorder) record(_ int, _ float64, l *tensor.Tensor) {
	r.data = append(r.data, l.Data()...)
}

// recordedTimesteps reads a timesteps output as float64 (int64 or float).
func recordedTimesteps(t *testing.T, c *golden.Case, name string) []float64 {
	t.Helper()
	io, err := c.IO()
	if err != nil {
		t.Fatal(err)
	}
	if all, _, err := io.Float64(name); err == nil {
		return all
	}
	iv, _, err := io.Int64(name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	all := make([]float64, len(iv))
	for i, v := range iv {
		all[i] = float64(v)
	}
	return all
}

func checkPipeTimesteps(t *testing.T, c *golden.Case, name string, got []float64) {
	t.Helper()
	g := float32sOf(got)
	// The case stores the full schedule; img2img runs only its tail, so
	// only that tail is compared.
	if n := c.Outputs[name].Shape[0]; len(g) < n {
		head := float32sOf(recordedTimesteps(t, c, name)[:n-len(g)])
		g = append(head, g...)
	}
	c.Check(t, name, g, nil)
}

func float32sOf(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// sdScheduler builds the scheduler of a sub-case: the call's
// "<sub>_scheduler_config" (class from the sub-case's sampler name, else
// from the config), else the one scheduler config of the call whose
// schedule for the call's step count is the sub-case's recorded
// timesteps (an img2img run records the full schedule).
func sdScheduler(t *testing.T, c *golden.Case, call *sdCall, sub string) scheduler.Scheduler {
	t.Helper()
	if raw, ok := call.Schedulers[sub+"_scheduler_config"]; ok {
		if _, known := scheduler.Lookup(sub); known {
			cfg, err := scheduler.ParseConfig(raw)
			if err != nil {
				t.Fatal(err)
			}
			s, err := scheduler.New(sub, cfg)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		return schedulerFromConfig(t, raw)
	}
	cands := map[string]json.RawMessage{}
	for k, v := range call.Schedulers {
		cands[k] = v
	}
	if call.SchedulerCfg != nil {
		cands["scheduler_config"] = call.SchedulerCfg
	}
	if len(cands) == 1 {
		for _, v := range cands {
			return schedulerFromConfig(t, v)
		}
	}
	want := recordedTimesteps(t, c, sub+".timesteps")
	var match []string
	for k, v := range cands {
		s := schedulerFromConfig(t, v)
		if err := s.SetTimesteps(call.Steps); err != nil {
			t.Fatal(err)
		}
		if sameSchedule(s.Timesteps(), want) {
			match = append(match, k)
		}
	}
	if len(match) != 1 {
		t.Fatalf("case %s: sub-case %s has no <sub>_scheduler_config and %d scheduler configs (%v) give its timesteps",
			c.Name, sub, len(match), match)
	}
	return schedulerFromConfig(t, cands[match[0]])
}

// sameSchedule compares timesteps to float32 precision.
func sameSchedule(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-3*math.Max(1, math.Abs(b[i])) {
			return false
		}
	}
	return true
}

// perImageRows repeats each row of per-prompt embeddings for the images of
// its prompt ([p0, p0, p1, p1] as diffusers' encode_prompt returns them
// with num_images_per_prompt) when the case recorded n = k·rows rows.
func perImageRows(x *tensor.Tensor, n int) *tensor.Tensor {
	b := x.Dim(0)
	if b == 0 || n == b || n%b != 0 {
		return x
	}
	rows := make([]*tensor.Tensor, 0, n)
	for i := 0; i < b; i++ {
		for j := 0; j < n/b; j++ {
			rows = append(rows, x.Narrow(0, i, 1))
		}
	}
	return tensor.Concat(0, rows...).Contiguous()
}

// firstInput returns the first of names the case has as an input, or "".
func firstInput(c *golden.Case, names ...string) string {
	for _, n := range names {
		if hasInput(c, n) {
			return n
		}
	}
	return ""
}

// inputTensor reads an input when the case has it (nil otherwise).
func inputTensor(t *testing.T, c *golden.Case, name string) *tensor.Tensor {
	t.Helper()
	if !hasInput(c, name) {
		return nil
	}
	return caseTensor(t, c, name)
}

func runPipelineSD15(t *testing.T, c *golden.Case) {
	call := parseSDCall(t, c)
	p := sdComponents(t, c, "unet")
	checkPromptIDs(t, c, "", p.Tokenizer.(*cliptok.Tokenizer), call.prompts, call.negatives)
	subs := subCases(c)
	if len(subs) == 0 {
		t.Fatalf("case %s: no sub-case outputs (<sub>.image, ...)", c.Name)
	}
	for _, sub := range subs {
		t.Run(sub, func(t *testing.T) {
			k := newOutputChecker(c)
			req := call.request()
			req.Scheduler = sdScheduler(t, c, call, sub)
			rec := &stepRecorder{}
			req.OnStep = rec.record
			var noise *scheduler.RecordedNoise
			if init := firstInput(c, sub+"_init_image", "init_image", "image"); init != "" || hasOutput(c, sub+".vae_sample_noise") {
				// Image to image: the VAE posterior draw, then the noise added.
				noise = recordedDraws(t, c, k, sub+".vae_sample_noise", sub+".add_noise_noise")
				if init == "" {
					t.Fatalf("img2img sub-case %s: no input %s_init_image", sub, sub)
				}
				req.InitImage = caseTensor(t, c, init)
				req.Strength = call.number(t, sub+"_strength", "strength")
			} else {
				noise = &scheduler.RecordedNoise{}
				req.Latents = caseTensor(t, c, "latents")
			}
			req.Noise = replayNoise{noise}
			res, err := p.Generate(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if noise.Drawn() != len(noise.Values) {
				t.Errorf("drew %d noise values, the pipeline recorded %d", noise.Drawn(), len(noise.Values))
			}
			checkSDResult(t, k, sub, res, rec)
			k.allChecked(t, sub+".")
		})
	}
}

// checkSDResult compares what an SD run gives with the sub-case's outputs.
func checkSDResult(t *testing.T, k *outputChecker, sub string, res *pipeline.Result, rec *stepRecorder) {
	t.Helper()
	for name, got := range map[string]*tensor.Tensor{"prompt_embeds": res.PromptEmbeds, "negative_prompt_embeds": res.NegativeEmbeds} {
		if hasOutput(k.c, sub+"."+name) {
			if got == nil {
				t.Errorf("%s.%s: the pipeline computed none", sub, name)
				continue
			}
			got = perImageRows(got, k.c.Outputs[sub+"."+name].Shape[0])
			k.check(t, sub+"."+name, got.Data(), got.Shape())
		}
	}
	k.timesteps(t, sub+".timesteps", res.Timesteps)
	k.check(t, sub+".step_latents", rec.data, nil)
	if hasOutput(k.c, sub+".image") {
		k.check(t, sub+".image", res.Images.Data(), res.Images.Shape())
	}
}

func runPipelineInpaint(t *testing.T, c *golden.Case) {
	call := parseSDCall(t, c)
	subs := subCases(c)
	if len(subs) == 0 {
		t.Fatalf("case %s: no sub-case outputs (<sub>.image, ...)", c.Name)
	}
	for _, sub := range subs {
		t.Run(sub, func(t *testing.T) {
			// Each sub-case runs the UNet of the component named like it
			// (the 4-channel and the 9-channel inpainting UNet), else "unet".
			unetKey := "unet"
			if _, ok := c.UsesWeightsOf[sub]; ok {
				unetKey = sub
			}
			p := sdComponents(t, c, unetKey)
			checkPromptIDs(t, c, "", p.Tokenizer.(*cliptok.Tokenizer), call.prompts, call.negatives)
			k := newOutputChecker(c)
			// Legacy (4-channel) inpainting encodes the image first, then
			// the masked image; the 9-channel UNet only the masked image.
			noise := recordedDraws(t, c, k, sub+".image_vae_noise", sub+".masked_image_vae_noise")
			rec := &stepRecorder{}
			var in0 *tensor.Tensor
			req := call.request()
			req.Scheduler = schedulerFromConfig(t, call.SchedulerCfg)
			req.Latents = inputTensor(t, c, "latents")
			req.InitImage, req.Mask = caseTensor(t, c, "image"), caseTensor(t, c, "mask_image")
			req.Strength, req.Noise, req.OnStep = call.Strength, replayNoise{noise}, rec.record
			req.OnUNetInput = func(i int, x *tensor.Tensor) {
				if i == 0 {
					in0 = x
				}
			}
			res, err := p.Generate(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if noise.Drawn() != len(noise.Values) {
				t.Errorf("drew %d noise values, the pipeline recorded %d", noise.Drawn(), len(noise.Values))
			}
			// The case stores the mask and masked latents the UNet got:
			// CFG-doubled when guidance is on.
			ml, mi := res.MaskLatent, res.MaskedImageLatents
			if call.Guidance > 1 {
				ml, mi = tensor.Concat(0, ml, ml), tensor.Concat(0, mi, mi)
			}
			k.check(t, sub+".mask_latent", ml.Data(), ml.Shape())
			k.check(t, sub+".masked_image_latents", mi.Data(), mi.Shape())
			if hasOutput(c, sub+".unet_input_step0") {
				k.check(t, sub+".unet_input_step0", in0.Data(), in0.Shape())
			}
			checkSDResult(t, k, sub, res, rec)
			k.allChecked(t, sub+".")
		})
	}
}
