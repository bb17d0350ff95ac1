package scheduler

import (
	"fmt"
	"math"
)

// FlowMatchHeun is diffusers' FlowMatchHeunDiscreteScheduler (v0.30.3):
// Heun's method on the flow-matching ODE, two model evaluations per step.
// Its schedule is FlowMatchEuler's (without dynamic shifting) with every
// timestep after the first repeated, so Timesteps() holds 2n-1 entries and
// Sigmas() 2n; the last evaluation is a plain Euler step to sigma 0.
//
// As upstream, every Step draws noise of the sample's shape (used only
// when s_churn makes gamma positive), so that a seeded generator advances
// as diffusers' does; with a nil NoiseSource the draw is skipped, which is
// an error only when gamma is positive.
type FlowMatchHeun struct {
	fm        *FlowMatchEuler
	sigmas    []float32
	timesteps []float64

	sChurn, sTmin, sTmax, sNoise float64

	// Second-order state: set after a first-order (predictor) step.
	firstOrder     bool
	prevDerivative []float32
	dt             float32
	saved          []float32
	stepIndex      int
}

// NewFlowMatchHeun builds a FlowMatchHeunDiscreteScheduler from a config
// (keys num_train_timesteps and shift; s_churn, s_tmin, s_tmax and s_noise
// are its step options).
func NewFlowMatchHeun(cfg Config) (*FlowMatchHeun, error) {
	cfg.UseDynamicShifting = nil // not a FlowMatchHeunDiscreteScheduler option
	fm, err := NewFlowMatchEuler(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w (FlowMatchHeunDiscreteScheduler)", err)
	}
	p := baseParams()
	cfg.apply(&p)
	return &FlowMatchHeun{fm: fm, sChurn: p.sChurn, sTmin: p.sTmin, sTmax: p.sTmax, sNoise: p.sNoise,
		firstOrder: true, stepIndex: -1}, nil
}

// Class implements Scheduler.
func (s *FlowMatchHeun) Class() string { return "FlowMatchHeunDiscreteScheduler" }

// Order implements Scheduler.
func (s *FlowMatchHeun) Order() int { return 2 }

// InitNoiseSigma implements Scheduler (flow matching starts at sigma 1).
func (s *FlowMatchHeun) InitNoiseSigma() float64 { return 1 }

func (s *FlowMatchHeun) numTrainTimesteps() int { return s.fm.numTrain }

// Timesteps implements Scheduler.
func (s *FlowMatchHeun) Timesteps() []float64 { return append([]float64(nil), s.timesteps...) }

// Sigmas implements Scheduler.
func (s *FlowMatchHeun) Sigmas() []float32 { return append([]float32(nil), s.sigmas...) }

// SetTimesteps implements Scheduler: FlowMatchEuler's n-step schedule with
// the timesteps after the first, and the sigmas between the first and the
// final 0, repeated.
func (s *FlowMatchHeun) SetTimesteps(n int) error {
	if err := s.fm.SetSchedule(n, nil, nil); err != nil {
		return err
	}
	sg, ts := s.fm.sigmas, s.fm.timesteps
	s.sigmas = []float32{sg[0]}
	for _, v := range sg[1 : len(sg)-1] {
		s.sigmas = append(s.sigmas, v, v)
	}
	s.sigmas = append(s.sigmas, sg[len(sg)-1])
	s.timesteps = []float64{ts[0]}
	for _, v := range ts[1:] {
		s.timesteps = append(s.timesteps, v, v)
	}
	s.firstOrder, s.prevDerivative, s.saved, s.stepIndex = true, nil, nil, -1
	s.fm.beginIndex = -1
	return nil
}

// SetBeginIndex is set_begin_index (see [FlowMatchEuler.SetBeginIndex]).
func (s *FlowMatchHeun) SetBeginIndex(i int) error {
	if s.timesteps == nil {
		return ErrNoTimesteps
	}
	if i < 0 || i > len(s.timesteps) {
		return fmt.Errorf("scheduler: begin index %d out of range [0, %d]", i, len(s.timesteps))
	}
	s.fm.beginIndex = i
	return nil
}

// ScaleModelInput implements Scheduler: the sample is fed unscaled.
func (s *FlowMatchHeun) ScaleModelInput(sample []float32, step int) ([]float32, error) {
	if err := s.checkStep(step, len(sample)); err != nil {
		return nil, err
	}
	return append([]float32(nil), sample...), nil
}

func (s *FlowMatchHeun) checkStep(step int, lens ...int) error {
	if s.timesteps == nil {
		return ErrNoTimesteps
	}
	return (&base{timesteps: s.timesteps}).checkStep(step, lens...)
}

// Step implements Scheduler. Steps alternate between a predictor (Euler)
// step, whose derivative, dt and sample are kept, and a corrector step
// that averages the two derivatives and restarts from the kept sample.
func (s *FlowMatchHeun) Step(modelOutput []float32, step int, sample []float32, shape []int, noise NoiseSource) (StepOutput, error) {
	if err := s.checkStep(step, len(modelOutput), len(sample)); err != nil {
		return StepOutput{}, err
	}
	shape, err := shapeOf(shape, len(sample))
	if err != nil {
		return StepOutput{}, err
	}
	if !s.firstOrder && step == 0 {
		return StepOutput{}, fmt.Errorf("scheduler: FlowMatchHeunDiscreteScheduler: corrector step at index 0")
	}
	sigma, next := s.sigmas[step], s.sigmas[step+1]
	if !s.firstOrder {
		sigma, next = s.sigmas[step-1], s.sigmas[step]
	}
	gamma := 0.0
	if s.sTmin <= float64(sigma) && float64(sigma) <= s.sTmax {
		gamma = math.Min(s.sChurn/float64(len(s.sigmas)-1), math.Sqrt2-1)
	}
	var z []float32
	if noise != nil || gamma > 0 {
		if z, err = draw(noise, shape); err != nil {
			return StepOutput{}, err
		}
	}
	sigmaHat := sigma * float32(gamma+1)
	x := sample
	if gamma > 0 {
		x = churn(sample, z, float32(s.sNoise), sigma, sigmaHat)
	}
	prev := s.heunUpdate(modelOutput, x, sigma, next, sigmaHat)
	s.stepIndex = step + 1
	return StepOutput{PrevSample: prev}, nil
}

// churn adds the stochastic noise: x + (z·s_noise)·sqrt(sigma_hat² - sigma²).
func churn(x, z []float32, sNoise, sigma, sigmaHat float32) []float32 {
	c := float32(math.Sqrt(float64(float32(sigmaHat*sigmaHat) - float32(sigma*sigma))))
	out := make([]float32, len(x))
	for i := range x {
		out[i] = x[i] + float32(float32(z[i]*sNoise)*c)
	}
	return out
}

// heunUpdate is the body of step in float32 tensor arithmetic: a predictor
// step stores its state, a corrector step consumes it.
func (s *FlowMatchHeun) heunUpdate(out, x []float32, sigma, next, sigmaHat float32) []float32 {
	deriv := make([]float32, len(x))
	prev := make([]float32, len(x))
	if s.firstOrder {
		for i := range x {
			denoised := x[i] - float32(out[i]*sigma)
			deriv[i] = (x[i] - denoised) / sigmaHat
		}
		dt := next - sigmaHat
		for i := range x {
			prev[i] = x[i] + float32(deriv[i]*dt)
		}
		s.prevDerivative, s.dt, s.saved, s.firstOrder = deriv, dt, x, false
		return prev
	}
	for i := range x {
		denoised := x[i] - float32(out[i]*next)
		d := (x[i] - denoised) / next
		deriv[i] = 0.5 * (s.prevDerivative[i] + d)
		prev[i] = s.saved[i] + float32(deriv[i]*s.dt)
	}
	s.prevDerivative, s.saved, s.firstOrder = nil, nil, true
	return prev
}

// AddNoise implements Scheduler with FlowMatchHeunDiscreteScheduler's
// scale_noise: one sigma for the whole batch, that of the current step
// index, which (before any step) is the begin index if set, else the index
// of timesteps[0] in the schedule.
func (s *FlowMatchHeun) AddNoise(original, noise []float32, timesteps []float64) ([]float32, error) {
	if s.timesteps == nil {
		return nil, ErrNoTimesteps
	}
	if len(original) != len(noise) {
		return nil, fmt.Errorf("scheduler: original and noise lengths differ (%d, %d)", len(original), len(noise))
	}
	if len(timesteps) == 0 {
		return nil, fmt.Errorf("scheduler: no timesteps given")
	}
	if s.stepIndex < 0 {
		idx := s.fm.beginIndex
		if idx < 0 {
			h := &FlowMatchEuler{timesteps: s.timesteps}
			var err error
			if idx, err = h.indexForTimestep(timesteps[0]); err != nil {
				return nil, err
			}
		}
		s.stepIndex = idx
	}
	sg := s.sigmas[s.stepIndex]
	om := 1 - sg
	out := make([]float32, len(original))
	for i := range original {
		out[i] = float32(sg*noise[i]) + float32(om*original[i])
	}
	return out, nil
}
