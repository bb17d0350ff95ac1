package scheduler

import (
	"fmt"
	"math"
)

// sigmaBase is shared by the k-diffusion style samplers (Euler, Euler
// ancestral, Heun, LMS): a float32 sigma schedule and float32 timesteps.
type sigmaBase struct {
	base
	sigmas []float32
}

func newSigmaBase(class string, p params) (sigmaBase, error) {
	b, err := newBase(class, p)
	if err != nil {
		return sigmaBase{}, err
	}
	if p.rescaleZeroSNR {
		// diffusers keeps the terminal alpha_cumprod slightly above zero so
		// that sigma stays finite.
		b.alphasCumprod[len(b.alphasCumprod)-1] = float32(math.Ldexp(1, -24))
	}
	return sigmaBase{base: b}, nil
}

// schedule computes diffusers' set_timesteps for the Euler family: timesteps
// (float32 values) and sigmas (n+1 float32 values, last = final sigma).
func (s *sigmaBase) schedule(n int, karras bool, finalSigmaMin bool) error {
	if err := checkSteps(n, s.p.numTrain); err != nil {
		return err
	}
	ts, err := spacedTimesteps(s.p.timestepSpacing, s.p.numTrain, n, s.p.stepsOffset)
	if err != nil {
		return err
	}
	for i, v := range ts {
		ts[i] = float64(float32(v))
	}
	train := trainSigmas(s.alphasCumprod)
	train64 := make([]float64, len(train))
	logSigmas := make([]float32, len(train))
	for i, v := range train {
		train64[i] = float64(v)
		logSigmas[i] = npLog32(v)
	}
	sig := make([]float64, n)
	switch s.p.interpolationType {
	case "linear", "":
		for i, t := range ts {
			sig[i] = npInterp(t, train64)
		}
	case "log_linear":
		l := torchLinspace32(math.Log(train64[len(train64)-1]), math.Log(train64[0]), n+1)
		sig = make([]float64, n+1)
		for i, v := range l {
			sig[i] = float64(exp32(v))
		}
	default:
		return fmt.Errorf("scheduler: %s: interpolation_type %q is not supported (linear, log_linear)", s.class, s.p.interpolationType)
	}
	if karras {
		lo, hi := sig[len(sig)-1], sig[0]
		if s.p.sigmaMin != nil {
			lo = *s.p.sigmaMin
		}
		if s.p.sigmaMax != nil {
			hi = *s.p.sigmaMax
		}
		sig = karrasSigmas(lo, hi, n)
		ts = make([]float64, n)
		for i, v := range sig {
			ts[i] = float64(float32(sigmaToT(v, logSigmas)))
		}
	}
	last := 0.0
	if finalSigmaMin {
		a := s.alphasCumprod[0]
		last = float64(sqrt32((1 - a) / a))
	}
	s.sigmas = make([]float32, 0, len(sig)+1)
	for _, v := range sig {
		s.sigmas = append(s.sigmas, float32(v))
	}
	s.sigmas = append(s.sigmas, float32(last))
	s.timesteps = ts
	s.numInference = n
	return nil
}

// Sigmas implements Scheduler.
func (s *sigmaBase) Sigmas() []float32 { return append([]float32(nil), s.sigmas...) }

// InitNoiseSigma implements Scheduler: max sigma (linspace/trailing) or
// sqrt(max^2+1) (leading), in float32.
func (s *sigmaBase) InitNoiseSigma() float64 {
	var m float32
	for _, v := range s.sigmas {
		if v > m {
			m = v
		}
	}
	if s.sigmas == nil {
		// Before SetTimesteps diffusers uses the training sigmas.
		for _, v := range trainSigmas(s.alphasCumprod) {
			if v > m {
				m = v
			}
		}
	}
	if s.p.timestepSpacing == "linspace" || s.p.timestepSpacing == "trailing" {
		return float64(m)
	}
	return float64(sqrt32(m*m + 1))
}

// scaleBySigma returns sample / sqrt(sigma^2+1) in float32.
func scaleBySigma(sample []float32, sigma float32) []float32 {
	d := sqrt32(sigma*sigma + 1)
	out := make([]float32, len(sample))
	for i, v := range sample {
		out[i] = v / d
	}
	return out
}

// ScaleModelInput implements Scheduler.
func (s *sigmaBase) ScaleModelInput(sample []float32, step int) ([]float32, error) {
	if err := s.checkStep(step, len(sample)); err != nil {
		return nil, err
	}
	return scaleBySigma(sample, s.sigmas[step]), nil
}

// indexForTimestep is index_for_timestep: the position of t in the schedule,
// the second one when it occurs twice.
func (s *sigmaBase) indexForTimestep(t float64) (int, error) {
	var hits []int
	for i, v := range s.timesteps {
		if v == t {
			hits = append(hits, i)
		}
	}
	switch len(hits) {
	case 0:
		return 0, fmt.Errorf("scheduler: %s: timestep %v is not in the schedule", s.class, t)
	case 1:
		return hits[0], nil
	}
	return hits[1], nil
}

// AddNoise implements Scheduler: original + noise*sigma(t).
func (s *sigmaBase) AddNoise(original, noise []float32, timesteps []float64) ([]float32, error) {
	if s.timesteps == nil {
		return nil, ErrNoTimesteps
	}
	if len(original) != len(noise) {
		return nil, fmt.Errorf("scheduler: original and noise lengths differ (%d, %d)", len(original), len(noise))
	}
	per, err := batchSplit(len(original), len(timesteps))
	if err != nil {
		return nil, err
	}
	out := make([]float32, len(original))
	for b, t := range timesteps {
		idx, err := s.indexForTimestep(t)
		if err != nil {
			return nil, err
		}
		sg := s.sigmas[idx]
		for i := b * per; i < (b+1)*per; i++ {
			out[i] = original[i] + noise[i]*sg
		}
	}
	return out, nil
}

// GetVelocity implements VelocityScheduler (timesteps are looked up in the
// schedule, as EulerDiscreteScheduler does).
func (s *sigmaBase) GetVelocity(sample, noise []float32, timesteps []float64) ([]float32, error) {
	if s.timesteps == nil {
		return nil, ErrNoTimesteps
	}
	idx := make([]int, len(timesteps))
	for i, t := range timesteps {
		v, err := s.indexForTimestep(t)
		if err != nil {
			return nil, err
		}
		idx[i] = v
	}
	return s.alphaVelocity(sample, noise, idx)
}

// sigmaX0 forms the denoised prediction of the sigma samplers in float32.
func sigmaX0(kind string, sigma float32, out, x []float32) []float32 {
	x0 := make([]float32, len(x))
	switch kind {
	case "epsilon":
		for i := range x {
			x0[i] = x[i] - sigma*out[i]
		}
	case "v_prediction":
		c := -sigma / sqrt32(sigma*sigma+1)
		d := sigma*sigma + 1
		for i := range x {
			x0[i] = out[i]*c + x[i]/d
		}
	default:
		copy(x0, out)
	}
	return x0
}

// Euler is diffusers' EulerDiscreteScheduler (Karras et al. algorithm 2).
// It draws noise at every step, as diffusers does, even when s_churn is 0
// and the draw is unused, so that a seeded generator stays in step.
type Euler struct {
	sigmaBase
}

// NewEuler builds an EulerDiscreteScheduler from a config.
func NewEuler(cfg Config) (*Euler, error) {
	p := baseParams()
	p.timestepSpacing = "linspace"
	cfg.apply(&p)
	b, err := newSigmaBase("EulerDiscreteScheduler", p)
	if err != nil {
		return nil, err
	}
	if p.timestepType != "discrete" {
		return nil, fmt.Errorf("scheduler: EulerDiscreteScheduler: timestep_type %q is not supported (discrete)", p.timestepType)
	}
	switch p.finalSigmasType {
	case "zero", "sigma_min":
	default:
		return nil, fmt.Errorf("scheduler: EulerDiscreteScheduler: final_sigmas_type %q is not supported", p.finalSigmasType)
	}
	return &Euler{sigmaBase: b}, nil
}

// SetTimesteps implements Scheduler.
func (s *Euler) SetTimesteps(n int) error {
	return s.schedule(n, s.p.karras, s.p.finalSigmasType == "sigma_min")
}

// Step implements Scheduler.
func (s *Euler) Step(modelOutput []float32, step int, sample []float32, shape []int, noise NoiseSource) (StepOutput, error) {
	if err := s.checkStep(step, len(modelOutput), len(sample)); err != nil {
		return StepOutput{}, err
	}
	shape, err := shapeOf(shape, len(sample))
	if err != nil {
		return StepOutput{}, err
	}
	sigma := s.sigmas[step]
	var gamma float32
	if s.p.sTmin <= float64(sigma) && float64(sigma) <= s.p.sTmax {
		gamma = float32(math.Min(s.p.sChurn/float64(len(s.sigmas)-1), math.Sqrt2-1))
	}
	z, err := draw(noise, shape)
	if err != nil {
		return StepOutput{}, err
	}
	sigmaHat := sigma * (gamma + 1)
	x := sample
	if gamma > 0 {
		sn := float32(s.p.sNoise)
		c := sqrt32(sigmaHat*sigmaHat - sigma*sigma)
		x = make([]float32, len(sample))
		for i := range x {
			x[i] = sample[i] + (z[i]*sn)*c
		}
	}
	var x0 []float32
	if s.p.predictionType == "epsilon" {
		x0 = sigmaX0("epsilon", sigmaHat, modelOutput, x)
	} else {
		x0 = sigmaX0(s.p.predictionType, sigma, modelOutput, x)
	}
	dt := s.sigmas[step+1] - sigmaHat
	prev := make([]float32, len(x))
	for i := range prev {
		d := (x[i] - x0[i]) / sigmaHat
		prev[i] = x[i] + d*dt
	}
	return StepOutput{PrevSample: prev, Denoised: x0}, nil
}

// EulerAncestral is diffusers' EulerAncestralDiscreteScheduler.
type EulerAncestral struct {
	sigmaBase
}

// NewEulerAncestral builds an EulerAncestralDiscreteScheduler from a config.
func NewEulerAncestral(cfg Config) (*EulerAncestral, error) {
	p := baseParams()
	p.timestepSpacing = "linspace"
	cfg.apply(&p)
	if p.predictionType == "sample" {
		return nil, fmt.Errorf("scheduler: EulerAncestralDiscreteScheduler: prediction_type %q is not supported (epsilon, v_prediction)", p.predictionType)
	}
	b, err := newSigmaBase("EulerAncestralDiscreteScheduler", p)
	if err != nil {
		return nil, err
	}
	return &EulerAncestral{sigmaBase: b}, nil
}

// SetTimesteps implements Scheduler.
func (s *EulerAncestral) SetTimesteps(n int) error { return s.schedule(n, false, false) }

// Step implements Scheduler.
func (s *EulerAncestral) Step(modelOutput []float32, step int, sample []float32, shape []int, noise NoiseSource) (StepOutput, error) {
	if err := s.checkStep(step, len(modelOutput), len(sample)); err != nil {
		return StepOutput{}, err
	}
	shape, err := shapeOf(shape, len(sample))
	if err != nil {
		return StepOutput{}, err
	}
	sigma := s.sigmas[step]
	x0 := sigmaX0(s.p.predictionType, sigma, modelOutput, sample)
	from, to := sigma, s.sigmas[step+1]
	up := sqrt32(to * to * (from*from - to*to) / (from * from))
	down := sqrt32(to*to - up*up)
	dt := down - sigma
	prev := make([]float32, len(sample))
	for i := range prev {
		d := (sample[i] - x0[i]) / sigma
		prev[i] = sample[i] + d*dt
	}
	z, err := draw(noise, shape)
	if err != nil {
		return StepOutput{}, err
	}
	for i := range prev {
		prev[i] = prev[i] + z[i]*up
	}
	return StepOutput{PrevSample: prev, Denoised: x0}, nil
}
