package scheduler

import (
	"fmt"
	"math"
)

// intTimesteps computes the integer timesteps of DDPM/DDIM (and the
// leading/linspace/trailing rules they share).
func intTimesteps(spacing string, numTrain, n, offset int) ([]float64, error) {
	ts, err := spacedTimesteps(spacing, numTrain, n, offset)
	if err != nil {
		return nil, err
	}
	if spacing == "linspace" {
		for i, v := range ts {
			ts[i] = roundHalfEven(v)
		}
	}
	return ts, nil
}

// DDPM is diffusers' DDPMScheduler (ancestral sampling of Ho et al.).
type DDPM struct {
	base
}

// NewDDPM builds a DDPMScheduler from a config.
func NewDDPM(cfg Config) (*DDPM, error) {
	p := baseParams()
	p.clipSample = true
	cfg.apply(&p)
	b, err := newBase("DDPMScheduler", p)
	if err != nil {
		return nil, err
	}
	switch p.varianceType {
	case "fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log", "learned", "learned_range":
	default:
		return nil, fmt.Errorf("scheduler: DDPMScheduler: variance_type %q is not supported", p.varianceType)
	}
	return &DDPM{base: b}, nil
}

// VarianceType is the config's variance_type; pipelines pass the model's
// variance channels on to Step when it is "learned" or "learned_range".
func (s *DDPM) VarianceType() string { return s.p.varianceType }

// SetTimesteps implements Scheduler.
func (s *DDPM) SetTimesteps(n int) error {
	if err := checkSteps(n, s.p.numTrain); err != nil {
		return err
	}
	ts, err := intTimesteps(s.p.timestepSpacing, s.p.numTrain, n, s.p.stepsOffset)
	if err != nil {
		return err
	}
	s.timesteps, s.numInference = ts, n
	return nil
}

// Sigmas implements Scheduler (DDPM has none).
func (s *DDPM) Sigmas() []float32 { return nil }

// InitNoiseSigma implements Scheduler.
func (s *DDPM) InitNoiseSigma() float64 { return 1 }

// ScaleModelInput implements Scheduler (identity).
func (s *DDPM) ScaleModelInput(sample []float32, step int) ([]float32, error) {
	if err := s.checkStep(step, len(sample)); err != nil {
		return nil, err
	}
	return append([]float32(nil), sample...), nil
}

// Step implements Scheduler. It draws noise at every step but the last
// (t > 0). With variance_type "learned" or "learned_range" the model output
// may carry the predicted variance: [B, 2C, ...] for a sample [B, C, ...],
// the second half of the channels being the variance values (as DeepFloyd
// IF predicts them); the noise added is then sqrt(v) (learned) or
// exp(0.5·(f·log β_t + (1-f)·log β̃_t)) with f = (v+1)/2 (learned_range).
func (s *DDPM) Step(modelOutput []float32, step int, sample []float32, shape []int, noise NoiseSource) (StepOutput, error) {
	if err := s.checkStep(step, len(sample)); err != nil {
		return StepOutput{}, err
	}
	shape, err := shapeOf(shape, len(sample))
	if err != nil {
		return StepOutput{}, err
	}
	learned := s.p.varianceType == "learned" || s.p.varianceType == "learned_range"
	var predVar []float32
	if learned && len(modelOutput) == 2*len(sample) {
		if modelOutput, predVar, err = splitLearned(modelOutput, shape); err != nil {
			return StepOutput{}, err
		}
	}
	if len(modelOutput) != len(sample) {
		return StepOutput{}, fmt.Errorf("scheduler: model output and sample lengths differ (%d, %d)", len(modelOutput), len(sample))
	}
	t := int(s.timesteps[step])
	prevT := t - s.p.numTrain/s.numInference
	at := s.alphasCumprod[t]
	aPrev := s.alphaAt(prevT, 1)
	betaT := 1 - at
	betaPrev := 1 - aPrev
	curAlpha := at / aPrev
	curBeta := 1 - curAlpha

	x0 := predictX0(s.p.predictionType, at, modelOutput, sample)
	s.clipOrThreshold(x0, shape)

	x0Coeff := sqrt32(aPrev) * curBeta / betaT
	curCoeff := sqrt32(curAlpha) * betaPrev / betaT
	prev := make([]float32, len(sample))
	for i := range prev {
		prev[i] = x0Coeff*x0[i] + curCoeff*sample[i]
	}
	if t > 0 {
		z, err := draw(noise, shape)
		if err != nil {
			return StepOutput{}, err
		}
		variance := betaPrev / betaT * curBeta
		if variance < 1e-20 {
			variance = 1e-20
		}
		if learned {
			if predVar == nil {
				return StepOutput{}, fmt.Errorf("scheduler: DDPMScheduler: variance_type %q needs the model's variance channels", s.p.varianceType)
			}
			minLog, maxLog := log32(variance), log32(curBeta)
			for i, v := range predVar {
				var sd float32
				if s.p.varianceType == "learned" {
					sd = sqrt32(v)
				} else {
					frac := (v + 1) / 2
					sd = exp32(0.5 * (frac*maxLog + (1-frac)*minLog))
				}
				prev[i] = prev[i] + sd*z[i]
			}
			return StepOutput{PrevSample: prev, Denoised: x0}, nil
		}
		var sd float32
		switch s.p.varianceType {
		case "fixed_small":
			sd = sqrt32(variance)
		case "fixed_small_log":
			sd = exp32(0.5 * log32(variance))
		case "fixed_large":
			sd = sqrt32(curBeta)
		case "fixed_large_log":
			sd = float32(math.Sqrt(float64(log32(curBeta))))
		}
		for i := range prev {
			prev[i] = prev[i] + sd*z[i]
		}
	}
	return StepOutput{PrevSample: prev, Denoised: x0}, nil
}

// AddNoise implements Scheduler.
func (s *DDPM) AddNoise(original, noise []float32, timesteps []float64) ([]float32, error) {
	return s.alphaAddNoise(original, noise, timesteps)
}

// GetVelocity implements VelocityScheduler.
func (s *DDPM) GetVelocity(sample, noise []float32, timesteps []float64) ([]float32, error) {
	return s.velocityAt(sample, noise, timesteps)
}

// DDIM is diffusers' DDIMScheduler; Config.Eta > 0 adds noise (drawn from the
// NoiseSource) at each step.
type DDIM struct {
	base
}

// NewDDIM builds a DDIMScheduler from a config.
func NewDDIM(cfg Config) (*DDIM, error) {
	p := baseParams()
	p.clipSample = true
	p.setAlphaToOne = true
	cfg.apply(&p)
	b, err := newBase("DDIMScheduler", p)
	if err != nil {
		return nil, err
	}
	if p.eta < 0 {
		return nil, fmt.Errorf("scheduler: DDIMScheduler: eta must be >= 0, got %v", p.eta)
	}
	return &DDIM{base: b}, nil
}

// SetTimesteps implements Scheduler.
func (s *DDIM) SetTimesteps(n int) error {
	if err := checkSteps(n, s.p.numTrain); err != nil {
		return err
	}
	ts, err := intTimesteps(s.p.timestepSpacing, s.p.numTrain, n, s.p.stepsOffset)
	if err != nil {
		return err
	}
	s.timesteps, s.numInference = ts, n
	return nil
}

// Sigmas implements Scheduler (DDIM has none).
func (s *DDIM) Sigmas() []float32 { return nil }

// InitNoiseSigma implements Scheduler.
func (s *DDIM) InitNoiseSigma() float64 { return 1 }

// ScaleModelInput implements Scheduler (identity).
func (s *DDIM) ScaleModelInput(sample []float32, step int) ([]float32, error) {
	if err := s.checkStep(step, len(sample)); err != nil {
		return nil, err
	}
	return append([]float32(nil), sample...), nil
}

// Step implements Scheduler.
func (s *DDIM) Step(modelOutput []float32, step int, sample []float32, shape []int, noise NoiseSource) (StepOutput, error) {
	if err := s.checkStep(step, len(modelOutput), len(sample)); err != nil {
		return StepOutput{}, err
	}
	shape, err := shapeOf(shape, len(sample))
	if err != nil {
		return StepOutput{}, err
	}
	t := int(s.timesteps[step])
	prevT := t - s.p.numTrain/s.numInference
	at := s.alphasCumprod[t]
	aPrev := s.alphaAt(prevT, s.finalAlpha())
	betaT := 1 - at
	sa, sb := sqrt32(at), sqrt32(betaT)

	n := len(sample)
	x0 := make([]float32, n)
	eps := make([]float32, n)
	switch s.p.predictionType {
	case "epsilon":
		for i := range x0 {
			x0[i] = (sample[i] - sb*modelOutput[i]) / sa
		}
		copy(eps, modelOutput)
	case "sample":
		copy(x0, modelOutput)
		for i := range eps {
			eps[i] = (sample[i] - sa*x0[i]) / sb
		}
	case "v_prediction":
		for i := range x0 {
			x0[i] = sa*sample[i] - sb*modelOutput[i]
			eps[i] = sa*modelOutput[i] + sb*sample[i]
		}
	}
	s.clipOrThreshold(x0, shape)

	variance := ((1 - aPrev) / betaT) * (1 - at/aPrev)
	eta := float32(s.p.eta)
	std := eta * sqrt32(variance)
	dirCoeff := sqrt32(1 - aPrev - std*std)
	xCoeff := sqrt32(aPrev)
	prev := make([]float32, n)
	for i := range prev {
		prev[i] = xCoeff*x0[i] + dirCoeff*eps[i]
	}
	if s.p.eta > 0 {
		z, err := draw(noise, shape)
		if err != nil {
			return StepOutput{}, err
		}
		for i := range prev {
			prev[i] = prev[i] + std*z[i]
		}
	}
	return StepOutput{PrevSample: prev, Denoised: x0}, nil
}

// AddNoise implements Scheduler.
func (s *DDIM) AddNoise(original, noise []float32, timesteps []float64) ([]float32, error) {
	return s.alphaAddNoise(original, noise, timesteps)
}

// GetVelocity implements VelocityScheduler.
func (s *DDIM) GetVelocity(sample, noise []float32, timesteps []float64) ([]float32, error) {
	return s.velocityAt(sample, noise, timesteps)
}

// splitLearned splits a learned-variance output [B, 2C, ...] for a sample of
// shape [B, C, ...] into the model output proper and the variance values.
func splitLearned(out []float32, shape []int) (model, variance []float32, err error) {
	n := numel(shape)
	if len(out) != 2*n || len(shape) < 2 {
		return nil, nil, fmt.Errorf("scheduler: learned-variance output has %d values for a sample of shape %v", len(out), shape)
	}
	b := shape[0]
	per := n / b
	model = make([]float32, 0, n)
	variance = make([]float32, 0, n)
	for i := 0; i < b; i++ {
		model = append(model, out[2*i*per:(2*i+1)*per]...)
		variance = append(variance, out[(2*i+1)*per:(2*i+2)*per]...)
	}
	return model, variance, nil
}
