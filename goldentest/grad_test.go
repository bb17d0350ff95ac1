package goldentest

import (
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/lora"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
)

// Gradient goldens: one training step each, checked through the loss down
// to d loss / d parameter for every trainable parameter.

func init() {
	golden.Register("diffusers.ControlNetModel + UNet2DConditionModel (training step)", runGradControlNet)
	golden.Register("diffusers.UNet2DConditionModel + peft LoRA (train mode; no dropout)", runGradLoRA)
}

// trainingDDPM is the DDPMScheduler the training scripts build from the
// pipeline's scheduler config: the case's scheduler_config when it has
// one, else Stable Diffusion 1.5's (which the cases' description names).
func trainingDDPM(t *testing.T, c *golden.Case) *scheduler.DDPM {
	t.Helper()
	raw := []byte(pipeline.SD15SchedulerConfig)
	if r, ok := c.Raw["scheduler_config"]; ok {
		raw = r
	}
	parsed, err := scheduler.ParseConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	s, err := scheduler.NewDDPM(parsed)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// trainingInputs returns noisy_latents (checked against the case), the
// noise and the timesteps of a training step.
func trainingInputs(t *testing.T, c *golden.Case) (noisy, noise *tensor.Tensor, ts []float32) {
	t.Helper()
	latents, shape := c.MustF32(t, "latents")
	nv, _ := c.MustF32(t, "noise")
	steps, _ := c.MustI64(t, "timesteps")
	tf := make([]float64, len(steps))
	ts = make([]float32, len(steps))
	for i, v := range steps {
		tf[i], ts[i] = float64(v), float32(v)
	}
	nl, err := trainingDDPM(t, c).AddNoise(latents, nv, tf)
	if err != nil {
		t.Fatal(err)
	}
	c.Check(t, "noisy_latents", nl, shape)
	return tensor.FromSlice(nl, shape...), tensor.FromSlice(nv, shape...), ts
}

// mse is F.mse_loss(a, b) with mean reduction, from differentiable ops.
func mse(a, b *tensor.Tensor) *tensor.Tensor { return tensor.Mean(tensor.Square(tensor.Sub(a, b))) }

// checkScalar compares a one-element output.
func checkScalar(t *testing.T, c *golden.Case, name string, v *tensor.Tensor) {
	t.Helper()
	c.Check(t, name, []float32{v.Item()}, []int{1})
}

// checkGrads compares grad.<name> for every name of the case's
// gradient_names with the gradient of the tensor params[name]; names in
// zero may have no gradient at all (it counts as zeros).
func checkGrads(t *testing.T, c *golden.Case, params map[string]*tensor.Tensor, zero map[string]bool) {
	t.Helper()
	var names []string
	if err := c.Field("gradient_names", &names); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	var bad []string
	for _, gn := range names {
		name := strings.TrimPrefix(gn, "grad.")
		want[name] = true
		p, ok := params[name]
		if !ok {
			t.Errorf("%s: no trainable parameter %s", c.Name, name)
			continue
		}
		g := p.Grad()
		if g == nil {
			if !zero[name] {
				t.Errorf("%s: parameter %s got no gradient", c.Name, name)
				continue
			}
			g = tensor.Zeros(p.Shape()...)
		}
		r, err := c.Compare(gn, g.Data(), g.Shape())
		if err != nil {
			t.Error(err)
			continue
		}
		if !r.OK() {
			bad = append(bad, r.String())
		}
		t.Logf("%s", r)
	}
	for name := range params {
		if !want[name] {
			t.Errorf("%s: trainable parameter %s has no reference gradient", c.Name, name)
		}
	}
	if len(bad) > 0 {
		t.Errorf("%s: %d of %d gradients mismatch:\n%s", c.Name, len(bad), len(names), strings.Join(bad, "\n"))
	}
}

// checkFrozen fails the test when a parameter of m received a gradient.
func checkFrozen(t *testing.T, what string, m nn.Module) {
	t.Helper()
	var ps nn.Params
	m.Params("", &ps)
	for _, p := range ps.List() {
		if *p.Ptr != nil && (*p.Ptr).Grad() != nil {
			t.Errorf("frozen %s parameter %s got a gradient", what, p.Name)
		}
	}
}

func runGradControlNet(t *testing.T, c *golden.Case) {
	noisy, noise, ts := trainingInputs(t, c)
	uc, err := c.Sibling(c.UsesWeightsOf["unet"])
	if err != nil {
		t.Fatal(err)
	}
	cc, err := c.Sibling(c.UsesWeightsOf["controlnet"])
	if err != nil {
		t.Fatal(err)
	}
	uw, err := c.Weights("unet")
	if err != nil {
		t.Fatal(err)
	}
	cw, err := c.Weights("controlnet")
	if err != nil {
		t.Fatal(err)
	}
	u := buildUNet(t, uc.Config, uw)
	cn := buildControlNet(t, cc.Config, cw)
	// Every ControlNet parameter trains; the UNet stays frozen.
	var ps nn.Params
	cn.Params("", &ps)
	params := map[string]*tensor.Tensor{}
	for _, p := range ps.List() {
		if *p.Ptr == nil {
			continue
		}
		params[p.Name] = (*p.Ptr).SetRequiresGrad(true)
	}
	cond := unet.Cond{EncoderHiddenStates: caseTensor(t, c, "encoder_hidden_states")}
	res, err := cn.Forward(noisy, ts, cond, caseTensor(t, c, "controlnet_cond"), 1, false)
	if err != nil {
		t.Fatal(err)
	}
	cond.DownBlockAdditionalResiduals = res.Down
	cond.MidBlockAdditionalResidual = res.Mid
	pred, err := u.Forward(noisy, ts, cond)
	if err != nil {
		t.Fatal(err)
	}
	loss := mse(pred, noise)
	checkScalar(t, c, "loss", loss)
	loss.Backward()
	var zeroNames []string
	if err := c.Field("zero_gradients", &zeroNames); err != nil {
		t.Fatal(err)
	}
	zero := map[string]bool{}
	for _, n := range zeroNames {
		zero[strings.TrimPrefix(n, "grad.")] = true
	}
	checkGrads(t, c, params, zero)
	checkFrozen(t, "UNet", u)
}

func runGradLoRA(t *testing.T, c *golden.Case) {
	noisy, noise, ts := trainingInputs(t, c)
	uw, err := c.Weights("unet")
	if err != nil {
		t.Fatal(err)
	}
	u := buildUNet(t, c.Config, uw)
	// uses_weights_of.lora names a LoRA file of a case folder.
	path, _ := thisCaseFile(c, c.UsesWeightsOf["lora"])
	f, err := lora.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := lora.Apply(u, f, lora.UNet, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Remove()
	if a.Warning() != "" {
		t.Fatalf("LoRA applied partially: %s", a.Warning())
	}
	// Only the adapters train: PEFT names <module>.lora_A.default.weight
	// (Down) and <module>.lora_B.default.weight (Up). Apply attaches the
	// file's tensors themselves to linear layers, so marking them marks the
	// adapters (a copy would show up as a missing gradient).
	params := map[string]*tensor.Tensor{}
	for _, e := range f.Entries {
		params[e.Module+".lora_A.default.weight"] = e.Down.SetRequiresGrad(true)
		params[e.Module+".lora_B.default.weight"] = e.Up.SetRequiresGrad(true)
	}
	var priorWeight float32
	if err := c.Field("prior_loss_weight", &priorWeight); err != nil {
		t.Fatal(err)
	}
	cond := unet.Cond{EncoderHiddenStates: caseTensor(t, c, "encoder_hidden_states")}
	pred, err := u.Forward(noisy, ts, cond)
	if err != nil {
		t.Fatal(err)
	}
	// Instance half, then class (prior) half of the batch.
	p, tg := pred.Chunk(2, 0), noise.Chunk(2, 0)
	inst, prior := mse(p[0], tg[0]), mse(p[1], tg[1])
	loss := tensor.Add(inst, tensor.Scale(prior, priorWeight))
	checkScalar(t, c, "instance_loss", inst)
	checkScalar(t, c, "prior_loss", prior)
	checkScalar(t, c, "loss", loss)
	loss.Backward()
	checkGrads(t, c, params, nil)
	checkFrozen(t, "UNet", u)
}
