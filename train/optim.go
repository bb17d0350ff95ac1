package train

import (
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/tensor"
)

// Param is one trainable tensor under its state-dict name.
type Param struct {
	Name string
	T    *tensor.Tensor
}

// AdamWConfig holds torch.optim.AdamW's hyperparameters (the learning rate
// comes from the schedule at every step).
type AdamWConfig struct {
	Beta1, Beta2, Eps, WeightDecay float64
}

// AdamW is torch.optim.AdamW (torch 1.13, single-tensor path, no amsgrad):
// every parameter keeps its own step count and float32 moments.
type AdamW struct {
	cfg    AdamWConfig
	params []Param
	m, v   [][]float32
	steps  []int64
}

// NewAdamW makes the optimizer of params (their order is the optimizer's
// parameter order). The tensors must be contiguous float32.
func NewAdamW(params []Param, cfg AdamWConfig) (*AdamW, error) {
	if cfg.Beta1 < 0 || cfg.Beta1 >= 1 || cfg.Beta2 < 0 || cfg.Beta2 >= 1 {
		return nil, fmt.Errorf("train: AdamW betas (%g, %g) must lie in [0, 1)", cfg.Beta1, cfg.Beta2)
	}
	if cfg.Eps < 0 || cfg.WeightDecay < 0 {
		return nil, fmt.Errorf("train: AdamW eps %g and weight decay %g must not be negative", cfg.Eps, cfg.WeightDecay)
	}
	o := &AdamW{cfg: cfg, params: params}
	for _, p := range params {
		if p.T.DType() != tensor.F32 || !p.T.IsContiguous() {
			return nil, fmt.Errorf("train: parameter %s must be a contiguous float32 tensor", p.Name)
		}
		o.m = append(o.m, make([]float32, p.T.Numel()))
		o.v = append(o.v, make([]float32, p.T.Numel()))
	}
	o.steps = make([]int64, len(params))
	return o, nil
}

// Params returns the optimised parameters in order.
func (o *AdamW) Params() []Param { return o.params }

// ParamGroup is one of torch.optim's param groups: the optimizer's
// parameters [From, To) with their own initial learning rate and weight
// decay (the schedule's multiplier scales every group's rate alike).
type ParamGroup struct {
	From, To    int
	LR          float64
	WeightDecay float64
}

// Step updates every parameter that has a gradient (torch skips those whose
// .grad is None, leaving their step count alone) with learning rate lr and
// the configured weight decay.
//
// The arithmetic is torch's, in float32 with the Python scalars rounded to
// float32 where the kernels take them:
//
//	p *= 1 - lr·wd
//	m = fma(g, 1-b1, m·b1)              (add_ with alpha is a fused multiply-add)
//	v = v·b2 + ((1-b2)·g)·g             (addcmul_)
//	p += ((-lr/(1-b1^k))·m) / (sqrt(v)/sqrt(1-b2^k) + eps)   (addcdiv_)
func (o *AdamW) Step(lr float64) {
	for i := range o.params {
		o.step(i, lr, o.cfg.WeightDecay)
	}
}

// StepGroups is Step for param groups: the parameters of groups[j] use
// learning rate lrs[j] and the group's weight decay. Groups (or the part
// of one) outside the optimizer's parameters and groups without a rate are
// skipped.
func (o *AdamW) StepGroups(groups []ParamGroup, lrs []float64) {
	for j, g := range groups {
		if j >= len(lrs) {
			return
		}
		for i := max(g.From, 0); i < min(g.To, len(o.params)); i++ {
			o.step(i, lrs[j], g.WeightDecay)
		}
	}
}

// step updates parameter i (see Step).
func (o *AdamW) step(i int, lr, wd float64) {
	c := o.cfg
	p := o.params[i]
	gt := p.T.Grad()
	if gt == nil {
		return
	}
	decay := float32(1 - lr*wd)
	b1, b2 := float32(c.Beta1), float32(c.Beta2)
	a1, a2 := float32(1-c.Beta1), float32(1-c.Beta2)
	eps := float32(c.Eps)
	g := gt.Data()
	o.steps[i]++
	k := float64(o.steps[i])
	bc1 := 1 - math.Pow(c.Beta1, k)
	bc2 := 1 - math.Pow(c.Beta2, k)
	stepSize := float32(-(lr / bc1))
	bc2Sqrt := float32(math.Sqrt(bc2))
	w, m, v := p.T.Data(), o.m[i], o.v[i]
	for j := range w {
		w[j] *= decay
		m[j] = float32(math.FMA(float64(g[j]), float64(a1), float64(m[j]*b1)))
		v[j] = v[j]*b2 + (a2*g[j])*g[j]
		denom := float32(math.Sqrt(float64(v[j])))/bc2Sqrt + eps
		w[j] += (stepSize * m[j]) / denom
	}
}

// ZeroGrad drops every parameter's gradient.
func (o *AdamW) ZeroGrad() {
	for _, p := range o.params {
		p.T.ZeroGrad()
	}
}

// ClipGradNorm is torch.nn.utils.clip_grad_norm_ (L2, torch 1.13): the
// total norm is the norm of the per-tensor float32 norms, and every gradient
// is multiplied by min(1, maxNorm / (total + 1e-6)). It returns the total
// norm before clipping. Parameters without a gradient are left out. A
// maxNorm <= 0 only measures.
func ClipGradNorm(params []Param, maxNorm float64) float32 {
	norms := make([]float32, 0, len(params))
	for _, p := range params {
		if g := p.T.Grad(); g != nil {
			norms = append(norms, l2(g.Data()))
		}
	}
	total := l2(norms)
	if maxNorm <= 0 || len(norms) == 0 {
		return total
	}
	coef := float32(maxNorm) / (total + 1e-6)
	if coef > 1 {
		coef = 1
	}
	for _, p := range params {
		if g := p.T.Grad(); g != nil {
			d := g.Data()
			for j := range d {
				d[j] *= coef
			}
		}
	}
	return total
}

// l2 is the Euclidean norm, accumulated in float64 and rounded to float32.
func l2(x []float32) float32 {
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return float32(math.Sqrt(s))
}

// GradNorms returns the L2 norm of every parameter's gradient (0 for none).
func GradNorms(params []Param) []float32 {
	out := make([]float32, len(params))
	for i, p := range params {
		if g := p.T.Grad(); g != nil {
			out[i] = l2(g.Data())
		}
	}
	return out
}
