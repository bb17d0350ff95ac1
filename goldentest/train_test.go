package goldentest

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/controlnet"
	"github.com/diffuse-go/diffuse/model/lora"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
	"github.com/diffuse-go/diffuse/train"
)

// Training-loop goldens: several optimisation steps of diffusers' training
// scripts (train_dreambooth_lora.py, train_controlnet.py) with recorded
// random draws, checked at every step through the latents, losses,
// gradients, gradient norm, learning rate and updated weights.

func init() {
	golden.Register("train_dreambooth_lora.py training loop (UNet2DConditionModel + peft LoRA, AdamW)", runTrainDreamBoothLoRA)
	golden.Register("train_controlnet.py training loop (ControlNetModel + frozen UNet2DConditionModel, AdamW)", runTrainControlNet)
}

// trainHyper are the script arguments a training case records.
type trainHyper struct {
	Steps           int     `json:"steps"`
	LearningRate    float64 `json:"learning_rate"`
	LRScheduler     string  `json:"lr_scheduler"`
	LRWarmupSteps   int     `json:"lr_warmup_steps"`
	LRNumCycles     float64 `json:"lr_num_cycles"`
	LRPower         float64 `json:"lr_power"`
	AdamBeta1       float64 `json:"adam_beta1"`
	AdamBeta2       float64 `json:"adam_beta2"`
	AdamWeightDecay float64 `json:"adam_weight_decay"`
	AdamEpsilon     float64 `json:"adam_epsilon"`
	MaxGradNorm     float64 `json:"max_grad_norm"`
	PriorLossWeight float32 `json:"prior_loss_weight"`
	SNRGamma        float32 `json:"snr_gamma"`
	DrawSeed        *uint64 `json:"draw_seed"`
	LoRASeed        int64   `json:"lora_seed"`
}

func (h trainHyper) adam() train.AdamWConfig {
	return train.AdamWConfig{Beta1: h.AdamBeta1, Beta2: h.AdamBeta2, Eps: h.AdamEpsilon, WeightDecay: h.AdamWeightDecay}
}

func (h trainHyper) schedule() *train.LRScheduler {
	return &train.LRScheduler{Base: h.LearningRate, Schedule: train.Schedule{Name: h.LRScheduler,
		Warmup: h.LRWarmupSteps, Total: h.Steps, Cycles: h.LRNumCycles, Power: h.LRPower}}
}

// trainModels builds the frozen UNet, VAE and text encoder of uses_weights_of
// and the DDPM noise scheduler of noise_scheduler_config.
func trainModels(t *testing.T, c *golden.Case) train.Models {
	t.Helper()
	sib := func(component string) *golden.Case {
		t.Helper()
		s, err := c.Sibling(c.UsesWeightsOf[component])
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	weights := func(component string) *safetensors.File {
		t.Helper()
		w, err := c.Weights(component)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	m := train.Models{
		UNet: buildUNet(t, sib("unet").Config, weights("unet")),
		VAE:  buildVAE(t, sib("vae").Config, weights("vae")),
	}
	cc, err := clip.ParseConfig(sib("text_encoder").Config)
	if err != nil {
		t.Fatal(err)
	}
	if m.TextEncoder, err = clip.New(cc); err != nil {
		t.Fatal(err)
	}
	if err := nn.Load(m.TextEncoder, "", nn.FileSource{F: weights("text_encoder")}, nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	var raw json.RawMessage
	if err := c.Field("noise_scheduler_config", &raw); err != nil {
		t.Fatal(err)
	}
	sc, err := scheduler.ParseConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	if m.Noise, err = scheduler.NewDDPM(sc); err != nil {
		t.Fatal(err)
	}
	m.PredictionType = "epsilon"
	if sc.PredictionType != nil {
		m.PredictionType = *sc.PredictionType
	}
	return m
}

// trainDraws splits the stored vae_noise, noise and timesteps [steps, ...]
// into per-step draws, and checks that a torch generator seeded with
// draw_seed (when the case records one) reproduces them.
func trainDraws(t *testing.T, c *golden.Case, h trainHyper, numTrain int) *train.RecordedDraws {
	t.Helper()
	vn, shape := c.MustF32(t, "vae_noise")
	nz, _ := c.MustF32(t, "noise")
	ts, tshape := c.MustI64(t, "timesteps")
	if len(shape) != 5 || shape[0] != h.Steps || tshape[0] != h.Steps {
		t.Fatalf("vae_noise %v / timesteps %v: want one entry per step (%d)", shape, tshape, h.Steps)
	}
	per, bsz := len(vn)/h.Steps, tshape[1]
	d := &train.RecordedDraws{}
	for i := 0; i < h.Steps; i++ {
		d.Steps = append(d.Steps, train.Draw{VAENoise: vn[i*per : (i+1)*per], Noise: nz[i*per : (i+1)*per], Timesteps: ts[i*bsz : (i+1)*bsz]})
	}
	if h.DrawSeed != nil {
		g := &train.GeneratorDraws{G: rng.New(*h.DrawSeed)}
		for i, want := range d.Steps {
			got, err := g.Next(shape[1:], numTrain)
			if err != nil {
				t.Fatal(err)
			}
			if !trainBitsEqual(got.VAENoise, want.VAENoise) || !trainBitsEqual(got.Noise, want.Noise) || fmt.Sprint(got.Timesteps) != fmt.Sprint(want.Timesteps) {
				t.Errorf("step %d: draws of torch.Generator(%d) differ from the recorded ones", i, *h.DrawSeed)
			}
		}
	}
	return d
}

func trainBitsEqual(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// stepLog gathers per-step values of outputs stacked along a leading step
// axis, to compare once all steps ran.
type stepLog map[string][]float32

func (l stepLog) add(name string, v []float32) { l[name] = append(l[name], v...) }

// check compares every gathered output the case has.
func (l stepLog) check(t *testing.T, c *golden.Case) {
	t.Helper()
	names := make([]string, 0, len(l))
	for n := range l {
		names = append(names, n)
	}
	sort.Strings(names)
	var bad []string
	for _, n := range names {
		spec, ok := c.Outputs[n]
		if !ok {
			continue
		}
		r, err := c.Compare(n, l[n], spec.Shape)
		if err != nil {
			t.Error(err)
			continue
		}
		if !r.OK() {
			bad = append(bad, r.String())
		}
		t.Logf("%s", r)
	}
	if len(bad) > 0 {
		t.Errorf("%s: %d of %d outputs mismatch:\n%s", c.Name, len(bad), len(names), strings.Join(bad, "\n"))
	}
	t.Logf("%s: %d outputs compared", c.Name, len(names))
}

// trainGrad returns a parameter's gradient (zeros when it got none).
func trainGrad(p train.Param) []float32 {
	if g := p.T.Grad(); g != nil {
		return append([]float32(nil), g.Data()...)
	}
	return make([]float32, p.T.Numel())
}

func runTrainDreamBoothLoRA(t *testing.T, c *golden.Case) {
	var h trainHyper
	if err := c.Field("config", &h); err != nil {
		t.Fatal(err)
	}
	var lc struct {
		R             int      `json:"r"`
		Alpha         float64  `json:"lora_alpha"`
		Init          any      `json:"init_lora_weights"`
		TargetModules []string `json:"target_modules"`
	}
	if err := c.Field("lora_config", &lc); err != nil {
		t.Fatal(err)
	}
	var names []string
	if err := c.Field("lora_names", &names); err != nil {
		t.Fatal(err)
	}
	m := trainModels(t, c)
	net, err := train.AddLoRA(m.UNet, lora.UNet, train.LoRAConfig{Rank: lc.R, Alpha: lc.Alpha,
		TargetModules: lc.TargetModules, InitWeights: fmt.Sprint(lc.Init)}, rng.New(uint64(h.LoRASeed)))
	if err != nil {
		t.Fatal(err)
	}
	params := net.Params()
	initDiffers := 0
	got := make([]string, len(params))
	for i, p := range params {
		got[i] = p.Name
		// The recorded initial adapters (lora_init.<name>) replace ours.
		v, _ := c.MustF32(t, "lora_init."+p.Name)
		if len(v) != p.T.Numel() {
			t.Fatalf("lora_init.%s has %d values, adapter has %d", p.Name, len(v), p.T.Numel())
		}
		// peft's init drawn from torch.manual_seed(lora_seed) is
		// reproduced bit for bit.
		if !trainBitsEqual(p.T.Data(), v) {
			initDiffers++
		}
		copy(p.T.Data(), v)
	}
	if len(got) != len(names) {
		t.Fatalf("%d LoRA parameters, lora_names has %d", len(got), len(names))
	}
	for i := range names {
		if got[i] != names[i] {
			t.Fatalf("LoRA parameter %d (optimizer order) is %s, lora_names has %s", i, got[i], names[i])
		}
	}
	if initDiffers > 0 {
		t.Errorf("%d of %d LoRA tensors initialised from seed %d differ from lora_init", initDiffers, len(params), h.LoRASeed)
	}
	opts := train.Options{MaxGradNorm: h.MaxGradNorm, SNRGamma: h.SNRGamma}
	if _, ok := c.Outputs["prior_loss"]; ok {
		opts.PriorPreservation, opts.PriorLossWeight = true, h.PriorLossWeight
	}
	tr, err := train.NewTrainer(m, opts, params, h.adam(), h.schedule(), trainDraws(t, c, h, scheduler.NumTrainTimesteps(m.Noise)))
	if err != nil {
		t.Fatal(err)
	}
	batch := trainBatch(t, c)
	log := stepLog{}
	for i := 0; i < h.Steps; i++ {
		r, err := tr.Backward(batch)
		if err != nil {
			t.Fatal(err)
		}
		logTrainForward(log, r)
		log.add("instance_loss", []float32{r.InstanceLoss})
		log.add("prior_loss", []float32{r.PriorLoss})
		for _, p := range params {
			log.add("grad_before_clip."+p.Name, trainGrad(p))
		}
		tr.Update(r)
		log.add("grad_norm", []float32{r.GradNorm})
		log.add("lr", []float32{float32(r.LR)})
		for _, p := range params {
			log.add("lora_after_step."+p.Name, p.T.Data())
		}
	}
	log.check(t, c)
	checkDiffusersLoRAFile(t, c, net)
}

// logTrainForward records a step's forward outputs.
func logTrainForward(log stepLog, r *train.StepResult) {
	log.add("latents", r.Latents.Data())
	log.add("noisy_latents", r.Noisy.Data())
	log.add("prompt_embeds", r.PromptEmbeds.Data())
	log.add("loss", []float32{r.Loss})
	if r.Residuals != nil {
		log.add("mid_residual", r.Residuals.Mid.Data())
		log.add("down_residual_0", r.Residuals.Down[0].Data())
	}
}

// trainBatch is the case's batch: pixel_values, input_ids and, for
// ControlNet cases, conditioning_pixel_values.
func trainBatch(t *testing.T, c *golden.Case) train.Batch {
	t.Helper()
	ids, shape := c.MustI64(t, "input_ids")
	b := train.Batch{Pixels: caseTensor(t, c, "pixel_values"), InputIDs: ids, IDLength: shape[1]}
	if _, ok := c.Inputs["conditioning_pixel_values"]; ok {
		b.Conditioning = caseTensor(t, c, "conditioning_pixel_values")
	}
	return b
}

// checkDiffusersLoRAFile writes the trained adapters as diffusers'
// save_lora_weights does and compares the file's names and values with the
// case's pytorch_lora_weights.safetensors (values within the tolerance of
// the last step's weights).
func checkDiffusersLoRAFile(t *testing.T, c *golden.Case, net *train.LoRANetwork) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pytorch_lora_weights.safetensors")
	if err := net.SaveDiffusers(path); err != nil {
		t.Fatal(err)
	}
	ours, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ours.Close()
	ref, err := c.Open("pytorch_lora_weights.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	if a, b := strings.Join(ours.Names(), "\n"), strings.Join(ref.Names(), "\n"); a != b {
		t.Fatalf("LoRA file keys differ from diffusers':\n got %v\nwant %v", ours.Names(), ref.Names())
	}
	var keys []string
	if err := c.Field("saved_lora_keys", &keys); err == nil && strings.Join(keys, "\n") != strings.Join(ref.Names(), "\n") {
		t.Errorf("saved_lora_keys differ from the file's keys")
	}
	bad := 0
	for _, k := range ref.Names() {
		a, _, err := ours.Float32(k)
		if err != nil {
			t.Fatal(err)
		}
		b, _, err := ref.Float32(k)
		if err != nil {
			t.Fatal(err)
		}
		atol := c.Atol("lora_after_step." + peftFromDiffusers(k))
		for i := range b {
			if d := float64(a[i] - b[i]); d > atol || d < -atol {
				bad++
				t.Errorf("%s[%d] = %g, want %g (atol %g)", k, i, a[i], b[i], atol)
				break
			}
		}
	}
	if bad == 0 {
		t.Logf("pytorch_lora_weights.safetensors: %d tensors match", len(ref.Names()))
	}
}

// peftFromDiffusers maps "unet.<m>.lora.down.weight" to
// "<m>.lora_A.default.weight" (up: lora_B).
func peftFromDiffusers(k string) string {
	_, k, _ = strings.Cut(k, ".")
	if m, ok := strings.CutSuffix(k, ".lora.down.weight"); ok {
		return m + ".lora_A.default.weight"
	}
	m, _ := strings.CutSuffix(k, ".lora.up.weight")
	return m + ".lora_B.default.weight"
}

func runTrainControlNet(t *testing.T, c *golden.Case) {
	var h trainHyper
	if err := c.Field("train_config", &h); err != nil {
		t.Fatal(err)
	}
	m := trainModels(t, c)
	cfg, err := controlnet.ParseConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	if m.ControlNet, err = train.ControlNetFromUNet(m.UNet, cfg, rng.New(0)); err != nil {
		t.Fatal(err)
	}
	checkControlNetInit(t, c, m.ControlNet, m.UNet)
	params := train.ModuleParams(m.ControlNet)
	var names []string
	if err := c.Field("param_names", &names); err != nil {
		t.Fatal(err)
	}
	params = orderTrainParams(t, params, names)
	tr, err := train.NewTrainer(m, train.Options{MaxGradNorm: h.MaxGradNorm, SNRGamma: h.SNRGamma}, params, h.adam(), h.schedule(),
		trainDraws(t, c, h, scheduler.NumTrainTimesteps(m.Noise)))
	if err != nil {
		t.Fatal(err)
	}
	var tracked []string
	if err := c.Field("tracked_params", &tracked); err != nil {
		t.Fatal(err)
	}
	byName := map[string]*tensor.Tensor{}
	for _, p := range params {
		byName[p.Name] = p.T
	}
	batch := trainBatch(t, c)
	log := stepLog{}
	for i := 0; i < h.Steps; i++ {
		r, err := tr.Backward(batch)
		if err != nil {
			t.Fatal(err)
		}
		logTrainForward(log, r)
		log.add("param_grad_norms", train.GradNorms(params))
		tr.Update(r)
		log.add("grad_norm", []float32{r.GradNorm})
		log.add("lr", []float32{float32(r.LR)})
		for _, n := range tracked {
			log.add("weights_after_step."+n, byName[n].Data())
		}
	}
	log.check(t, c)
	checkFinalControlNet(t, c, params)
}

// orderTrainParams puts params in the order of names (torch's
// named_parameters order, the optimizer's), requiring the same set.
func orderTrainParams(t *testing.T, params []train.Param, names []string) []train.Param {
	t.Helper()
	by := map[string]train.Param{}
	for _, p := range params {
		by[p.Name] = p
	}
	if len(by) != len(names) {
		t.Fatalf("ControlNet has %d parameters, param_names %d", len(by), len(names))
	}
	out := make([]train.Param, len(names))
	for i, n := range names {
		p, ok := by[n]
		if !ok {
			t.Fatalf("ControlNet has no parameter %s", n)
		}
		out[i] = p
	}
	return out
}

// checkControlNetInit checks ControlNetFromUNet against the case's initial
// weights (UNet copies, zero convolutions) and loads the freshly initialised
// rest from controlnet_init.safetensors.
func checkControlNetInit(t *testing.T, c *golden.Case, cn *controlnet.Model, u *unet.Model) {
	t.Helper()
	var zeros []string
	if err := c.Field("zero_initialised_params", &zeros); err != nil {
		t.Fatal(err)
	}
	init, err := c.Open("controlnet_init.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	isZero := map[string]bool{}
	for _, n := range zeros {
		isZero[n] = true
	}
	var ps nn.Params
	cn.Params("", &ps)
	var up nn.Params
	u.Params("", &up)
	fromUNet := map[string]*tensor.Tensor{}
	for _, p := range up.List() {
		fromUNet[p.Name] = *p.Ptr
	}
	for _, p := range ps.List() {
		v := (*p.Ptr).Data()
		switch {
		case init.Has(p.Name):
			w, _, err := init.Float32(p.Name)
			if err != nil {
				t.Fatal(err)
			}
			copy(v, w)
		case isZero[p.Name]:
			for _, x := range v {
				if x != 0 {
					t.Fatalf("zero-initialised %s is not zero", p.Name)
				}
			}
		default:
			ut, ok := fromUNet[p.Name]
			if !ok || !trainBitsEqual(ut.Float32().Data(), v) {
				t.Fatalf("ControlNet %s is neither in controlnet_init nor a copy of the UNet's", p.Name)
			}
		}
	}
}

// checkFinalControlNet compares every trained tensor with
// controlnet_after_last_step.safetensors (per-tensor atol of
// final_weights_tolerance).
func checkFinalControlNet(t *testing.T, c *golden.Case, params []train.Param) {
	t.Helper()
	var tol map[string]struct {
		Atol float64 `json:"atol"`
	}
	if err := c.Field("final_weights_tolerance", &tol); err != nil {
		t.Fatal(err)
	}
	ref, err := c.Open("controlnet_after_last_step.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	for _, p := range params {
		want, _, err := ref.Float32(p.Name)
		if err != nil {
			t.Fatal(err)
		}
		atol, ok := tol[p.Name]
		if !ok {
			t.Fatalf("final_weights_tolerance has no %s", p.Name)
		}
		var maxErr float64
		for i, g := range p.T.Data() {
			d := float64(g - want[i])
			if d < 0 {
				d = -d
			}
			maxErr = max(maxErr, d)
		}
		if maxErr > atol.Atol {
			bad = append(bad, fmt.Sprintf("%s: max err %.3g > atol %.3g", p.Name, maxErr, atol.Atol))
		}
	}
	if len(bad) > 0 {
		t.Errorf("%d of %d final ControlNet tensors mismatch:\n%s", len(bad), len(params), strings.Join(bad, "\n"))
	}
}
