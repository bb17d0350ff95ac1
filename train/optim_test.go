package train

import (
	"math"
	"testing"

	"github.com/diffuse-go/diffuse/model/lora"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/tensor"
)

// withGrad makes a parameter holding values v and gradient g.
func withGrad(name string, v, g []float32) Param {
	p := tensor.FromSlice(append([]float32(nil), v...), len(v)).SetRequiresGrad(true)
	if g != nil {
		loss := tensor.Sum(tensor.Mul(p, tensor.FromSlice(g, len(g))))
		loss.Backward()
	}
	return Param{name, p}
}

// TestAdamWSteps follows torch.optim.AdamW by hand (in float64) for two
// steps, and skips a parameter without gradient entirely (no decay, no
// step count), as torch does.
func TestAdamWSteps(t *testing.T) {
	p := withGrad("p", []float32{1, -2}, []float32{0.5, 0.25})
	q := withGrad("q", []float32{3}, nil)
	cfg := AdamWConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}
	o, err := NewAdamW([]Param{p, q}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{1, -2}
	m, v := []float64{0, 0}, []float64{0, 0}
	g := []float64{0.5, 0.25}
	for k := 1; k <= 2; k++ {
		lr := 0.1 * float64(k)
		o.Step(lr)
		for i := range want {
			want[i] *= 1 - lr*cfg.WeightDecay
			m[i] = cfg.Beta1*m[i] + (1-cfg.Beta1)*g[i]
			v[i] = cfg.Beta2*v[i] + (1-cfg.Beta2)*g[i]*g[i]
			bc1, bc2 := 1-math.Pow(cfg.Beta1, float64(k)), 1-math.Pow(cfg.Beta2, float64(k))
			want[i] -= lr / bc1 * m[i] / (math.Sqrt(v[i])/math.Sqrt(bc2) + cfg.Eps)
		}
		for i, w := range want {
			if d := math.Abs(float64(p.T.Data()[i]) - w); d > 1e-6 {
				t.Errorf("step %d: p[%d] = %g, want %g", k, i, p.T.Data()[i], w)
			}
		}
	}
	if q.T.Data()[0] != 3 || o.steps[1] != 0 {
		t.Errorf("a parameter without gradient changed: %g, step %d", q.T.Data()[0], o.steps[1])
	}
}

// TestClipGradNorm checks clip_grad_norm_'s total norm, its 1e-6 and the
// clamp at 1.
func TestClipGradNorm(t *testing.T) {
	a := withGrad("a", []float32{0, 0}, []float32{3, 4})
	b := withGrad("b", []float32{0}, []float32{12})
	if n := ClipGradNorm([]Param{a, b}, 100); n != 13 || a.T.Grad().Data()[0] != 3 {
		t.Fatalf("norm %g, grad %v: want 13 and no clipping", n, a.T.Grad().Data())
	}
	if n := ClipGradNorm([]Param{a, b}, 6.5); n != 13 {
		t.Fatalf("norm %g, want 13", n)
	}
	coef := float32(6.5) / (13 + 1e-6)
	if got := b.T.Grad().Data()[0]; got != 12*coef {
		t.Errorf("clipped gradient %g, want %g", got, 12*coef)
	}
}

// TestSchedules checks get_scheduler's lambdas at a few steps.
func TestSchedules(t *testing.T) {
	cases := []struct {
		s    Schedule
		step int
		want float64
	}{
		{Schedule{Name: "constant", Warmup: 5}, 0, 1},
		{Schedule{Name: "constant_with_warmup", Warmup: 2}, 0, 0},
		{Schedule{Name: "constant_with_warmup", Warmup: 2}, 1, 0.5},
		{Schedule{Name: "constant_with_warmup", Warmup: 2}, 7, 1},
		{Schedule{Name: "linear", Warmup: 2, Total: 10}, 6, 0.5},
		{Schedule{Name: "linear", Warmup: 2, Total: 10}, 12, 0},
		{Schedule{Name: "cosine", Total: 10, Cycles: 3}, 5, 0.5}, // get_scheduler ignores num_cycles for cosine
		{Schedule{Name: "cosine", Warmup: 4, Total: 10}, 2, 0.5},
		{Schedule{Name: "cosine_with_restarts", Total: 10, Cycles: 2}, 5, 1},
		{Schedule{Name: "cosine_with_restarts", Total: 10, Cycles: 2}, 10, 0},
		{Schedule{Name: "polynomial", Total: 10, Power: 2}, 5, ((1e-3-1e-7)*0.25 + 1e-7) / 1e-3},
	}
	for _, c := range cases {
		if got := c.s.LR(1e-3, c.step); math.Abs(got-1e-3*c.want) > 1e-15 {
			t.Errorf("%+v at step %d: lr %g, want %g", c.s, c.step, got, 1e-3*c.want)
		}
	}
	if err := (Schedule{Name: "exponential"}).Validate(); err == nil {
		t.Error("an unknown schedule validated")
	}
}

// TestSNRWeights checks compute_snr and the Min-SNR weights.
func TestSNRWeights(t *testing.T) {
	ac := []float32{0.9, 0.5, 0.01}
	snr, err := SNR(ac, []int64{0, 1, 2})
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range ac {
		if want := float64(a) / (1 - float64(a)); math.Abs(float64(snr[i])-want) > 1e-5*want {
			t.Errorf("snr[%d] = %g, want %g", i, snr[i], want)
		}
	}
	eps := SNRWeights(snr, 5, "epsilon")
	vp := SNRWeights(snr, 5, "v_prediction")
	if math.Abs(float64(eps[0])-5/float64(snr[0])) > 1e-6 || eps[1] != 1 || eps[2] != 1 {
		t.Errorf("epsilon weights %v", eps)
	}
	if math.Abs(float64(vp[2])-float64(snr[2]/(snr[2]+1))) > 1e-7 {
		t.Errorf("v_prediction weights %v", vp)
	}
	if _, err := SNR(ac, []int64{3}); err == nil {
		t.Error("an out-of-range timestep gave no error")
	}
}

// TestGradientAccumulation: two batches of one accumulated with
// gradient_accumulation_steps 2 give the gradients of one batch of two (the
// loss is divided by 2 per batch), and the optimizer steps only after the
// second.
func TestGradientAccumulation(t *testing.T) {
	b := tinyBatch(1, 2, 64, false)
	rows := func(i int) Batch {
		L := b.IDLength
		return Batch{Pixels: b.Pixels.Narrow(0, i, 1).Contiguous(), InputIDs: b.InputIDs[i*L : (i+1)*L], IDLength: L}
	}
	g := rng.New(9)
	shape := []int{1, 4, 8, 8}
	var d [2]Draw
	for i := range d {
		d[i] = Draw{VAENoise: g.Randn(shape), Noise: g.Randn(shape)}
		d[i].Timesteps, _ = g.RandInt(0, 1000, 1)
	}
	joined := Draw{VAENoise: append(append([]float32{}, d[0].VAENoise...), d[1].VAENoise...),
		Noise:     append(append([]float32{}, d[0].Noise...), d[1].Noise...),
		Timesteps: []int64{d[0].Timesteps[0], d[1].Timesteps[0]}}
	newTrainer := func(accum int, draws ...Draw) *Trainer {
		m := tinyModels(t)
		net, err := AddLoRA(m.UNet, lora.UNet, LoRAConfig{Rank: 2, Alpha: 2, TargetModules: DreamBoothTargets}, rng.New(3))
		if err != nil {
			t.Fatal(err)
		}
		// Non-zero B so that every adapter gets gradients.
		for _, p := range net.Params() {
			for i, v := range rng.New(4).Randn(p.T.Shape()) {
				p.T.Data()[i] = 0.1 * v
			}
		}
		tr, err := NewTrainer(m, Options{GradientAccumulation: accum}, net.Params(), AdamWConfig{Beta1: 0.9, Beta2: 0.999},
			&LRScheduler{Base: 1e-3, Schedule: Schedule{Name: "constant"}}, &RecordedDraws{Steps: draws})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	acc, one := newTrainer(2, d[0], d[1]), newTrainer(1, joined)
	if _, err := one.Backward(b); err != nil {
		t.Fatal(err)
	}
	r, err := acc.Step(rows(0))
	if err != nil || r.Synced {
		t.Fatalf("first of two accumulated batches: synced %v, %v", r != nil && r.Synced, err)
	}
	if _, err := acc.Backward(rows(1)); err != nil {
		t.Fatal(err)
	}
	var maxAbs, maxErr float64
	for i, p := range one.Params {
		ga, gb := acc.Params[i].T.Grad().Data(), p.T.Grad().Data()
		for j := range gb {
			maxAbs = max(maxAbs, math.Abs(float64(gb[j])))
			maxErr = max(maxErr, math.Abs(float64(ga[j]-gb[j])))
		}
	}
	if maxErr > 1e-4*maxAbs || maxAbs == 0 {
		t.Errorf("accumulated gradients differ from the joint batch's by %g (largest %g)", maxErr, maxAbs)
	}
	acc.Update(r)
	if acc.GlobalStep != 1 || acc.Optimizer.steps[0] != 1 {
		t.Errorf("after the accumulated step: global step %d, optimizer step %d", acc.GlobalStep, acc.Optimizer.steps[0])
	}
}

// TestTargets: epsilon predicts the noise, v_prediction the velocity
// sqrt(ᾱ)·noise − sqrt(1−ᾱ)·latents, sample the latents.
func TestTargets(t *testing.T) {
	s := tinyModels(t).Noise
	ac := s.AlphasCumprod()[700]
	lat, noise := []float32{1, -2}, []float32{0.5, 3}
	for _, c := range []struct {
		pred string
		want func(i int) float64
	}{
		{"epsilon", func(i int) float64 { return float64(noise[i]) }},
		{"sample", func(i int) float64 { return float64(lat[i]) }},
		{"v_prediction", func(i int) float64 {
			return math.Sqrt(float64(ac))*float64(noise[i]) - math.Sqrt(1-float64(ac))*float64(lat[i])
		}},
	} {
		got, err := Target(s, c.pred, lat, noise, []int64{700})
		if err != nil {
			t.Fatal(err)
		}
		for i := range got {
			if math.Abs(float64(got[i])-c.want(i)) > 1e-6 {
				t.Errorf("%s target[%d] = %g, want %g", c.pred, i, got[i], c.want(i))
			}
		}
	}
	if _, err := Target(s, "x0", lat, noise, []int64{700}); err == nil {
		t.Error("an unknown prediction type gave no error")
	}
}

// TestParamGroups: AdamW over two param groups updates each group as an
// optimizer of its own learning rate and weight decay would, and a
// group's rate follows the schedule's multiplier (the polynomial decay's
// taken with the optimizer's default rate).
func TestParamGroups(t *testing.T) {
	v, g := []float32{1, -2, 0.5}, []float32{0.5, 0.25, -1}
	cfg := AdamWConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}
	p, q := withGrad("p", v[:2], g[:2]), withGrad("q", v[2:], g[2:])
	both, err := NewAdamW([]Param{p, q}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	both.StepGroups([]ParamGroup{{0, 1, 0.1, 0.01}, {1, 2, 0.02, 0.001}}, []float64{0.1, 0.02})
	p1, q1 := withGrad("p", v[:2], g[:2]), withGrad("q", v[2:], g[2:])
	a, _ := NewAdamW([]Param{p1}, cfg)
	a.Step(0.1)
	cfg.WeightDecay = 0.001
	b, _ := NewAdamW([]Param{q1}, cfg)
	b.Step(0.02)
	if !sameBits(p.T.Data(), p1.T.Data()) || !sameBits(q.T.Data(), q1.T.Data()) {
		t.Errorf("grouped step %v %v, separate optimizers %v %v", p.T.Data(), q.T.Data(), p1.T.Data(), q1.T.Data())
	}
	s := Schedule{Name: "polynomial", Warmup: 0, Total: 10}
	if got, want := 0.5*s.Lambda(1e-3, 4), 0.5*((1e-3-1e-7)*0.6+1e-7)/1e-3; math.Abs(got-want) > 1e-15 {
		t.Errorf("polynomial group rate %g, want %g", got, want)
	}
	if s.LR(1e-3, 4) != 1e-3*s.Lambda(1e-3, 4) {
		t.Error("LR is not base · Lambda")
	}
}
