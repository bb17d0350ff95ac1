package train

import (
	"fmt"
	"math"
)

// EMAConfig are the settings of diffusers' EMAModel (--use_ema in
// train_text_to_image.py), whose defaults DefaultEMA returns.
type EMAConfig struct {
	// Decay caps the decay; MinDecay floors it.
	Decay, MinDecay float64
	// UpdateAfterStep delays averaging: until that many updates have
	// passed the average just follows the weights.
	UpdateAfterStep int
	// UseWarmup selects the warm-up 1 − (1 + step/InvGamma)^−Power instead
	// of the default (1 + step)/(10 + step).
	UseWarmup       bool
	InvGamma, Power float64
}

// DefaultEMA is EMAModel's default configuration.
func DefaultEMA() EMAConfig {
	return EMAConfig{Decay: 0.9999, InvGamma: 1, Power: 2.0 / 3}
}

// EMA keeps an exponential moving average of the trained parameters
// (diffusers' EMAModel): after every optimizer step each shadow value s
// becomes s − (1 − decay)·(s − p), in float32 as torch computes it. The
// short warm-up of the decay makes the average of a short run cover its
// last few hundred steps rather than its random start.
type EMA struct {
	Config EMAConfig
	// Steps counts updates (EMAModel.optimization_step).
	Steps  int
	params []Param
	shadow [][]float32
}

// NewEMA starts an average of params at their current values.
func NewEMA(params []Param, c EMAConfig) (*EMA, error) {
	if !(c.Decay >= 0 && c.Decay <= 1) || !(c.MinDecay >= 0 && c.MinDecay <= c.Decay) || c.UpdateAfterStep < 0 {
		return nil, fmt.Errorf("train: EMA decay %g and min decay %g must satisfy 0 ≤ min ≤ decay ≤ 1, update-after step %d ≥ 0", c.Decay, c.MinDecay, c.UpdateAfterStep)
	}
	if c.UseWarmup && !(c.InvGamma > 0 && c.Power > 0) {
		return nil, fmt.Errorf("train: EMA warm-up needs a positive inv_gamma and power (have %g, %g)", c.InvGamma, c.Power)
	}
	e := &EMA{Config: c, params: params, shadow: make([][]float32, len(params))}
	for i, p := range params {
		e.shadow[i] = append([]float32(nil), p.T.Data()...)
	}
	return e, nil
}

// DecayAt is the decay of update number step (EMAModel.get_decay).
func (e *EMA) DecayAt(step int) float64 {
	c := e.Config
	s := max(0, step-c.UpdateAfterStep-1)
	if s <= 0 {
		return 0
	}
	var d float64
	if c.UseWarmup {
		d = 1 - math.Pow(1+float64(s)/c.InvGamma, -c.Power)
	} else {
		d = (1 + float64(s)) / (10 + float64(s))
	}
	return max(min(d, c.Decay), c.MinDecay)
}

// Update folds the parameters' current values into the average.
func (e *EMA) Update() {
	e.Steps++
	omd := float32(1 - e.DecayAt(e.Steps))
	for i, p := range e.params {
		s := e.shadow[i]
		for j, v := range p.T.Data() {
			// The conversion rounds the product, as torch does, rather
			// than letting the compiler fuse it into the subtraction.
			s[j] -= float32(omd * (s[j] - v))
		}
	}
}

// Swap exchanges the parameters' values with the average's: call it
// before saving or sampling with the averaged weights and again after, to
// go on training the raw ones.
func (e *EMA) Swap() {
	for i, p := range e.params {
		s, w := e.shadow[i], p.T.Data()
		for j := range s {
			s[j], w[j] = w[j], s[j]
		}
	}
}

// Shadow is the average of parameter i (in the order NewEMA was given).
func (e *EMA) Shadow(i int) []float32 { return e.shadow[i] }

// EnableEMA starts averaging the trainer's parameters (before LoadState,
// so that a resumed run restores the average too).
func (t *Trainer) EnableEMA(c EMAConfig) error {
	e, err := NewEMA(t.Params, c)
	if err != nil {
		return err
	}
	t.EMA = e
	return nil
}

// WithEMAWeights runs f with the averaged weights in the parameters (the
// raw ones when there is no EMA), for saving or sampling, and puts the raw
// weights back afterwards.
func (t *Trainer) WithEMAWeights(f func() error) error {
	if t.EMA == nil {
		return f()
	}
	t.EMA.Swap()
	defer t.EMA.Swap()
	return f()
}
