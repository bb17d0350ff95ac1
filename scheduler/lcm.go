package scheduler

import (
	"fmt"
	"math"
)

// LCM is diffusers' LCMScheduler (latent consistency models): each step
// forms the consistency-model estimate (Denoised) and re-noises it to the
// next timestep with fresh noise (none after the last step).
type LCM struct {
	base
	// Strength, when in (0, 1), restricts the origin schedule as
	// LCMScheduler.set_timesteps(strength=...) does for img2img; 0 means 1.
	Strength float64
}

// NewLCM builds an LCMScheduler from a config.
func NewLCM(cfg Config) (*LCM, error) {
	p := baseParams()
	p.betaStart, p.betaEnd, p.betaSchedule = 0.00085, 0.012, "scaled_linear"
	p.setAlphaToOne = true
	cfg.apply(&p)
	b, err := newBase("LCMScheduler", p)
	if err != nil {
		return nil, err
	}
	if p.originalInferenceSteps <= 0 || p.originalInferenceSteps > p.numTrain {
		return nil, fmt.Errorf("scheduler: LCMScheduler: original_inference_steps %d must be in [1, %d]", p.originalInferenceSteps, p.numTrain)
	}
	return &LCM{base: b}, nil
}

// SetTimesteps implements Scheduler.
func (s *LCM) SetTimesteps(n int) error {
	if err := checkSteps(n, s.p.numTrain); err != nil {
		return err
	}
	strength := s.Strength
	if strength <= 0 {
		strength = 1
	}
	orig := s.p.originalInferenceSteps
	k := s.p.numTrain / orig
	count := int(float64(orig) * strength)
	origin := make([]int, 0, count)
	for i := count; i >= 1; i-- { // reversed
		origin = append(origin, i*k-1)
	}
	if len(origin)/n < 1 {
		return fmt.Errorf("scheduler: LCMScheduler: %d inference steps exceed the %d available origin timesteps", n, len(origin))
	}
	if n > orig {
		return fmt.Errorf("scheduler: LCMScheduler: %d inference steps exceed original_inference_steps %d", n, orig)
	}
	idx := npLinspace(0, float64(len(origin)), n, false)
	s.timesteps = make([]float64, n)
	for i, v := range idx {
		s.timesteps[i] = float64(origin[int(math.Floor(v))])
	}
	s.numInference = n
	return nil
}

// Sigmas implements Scheduler (LCM has none).
func (s *LCM) Sigmas() []float32 { return nil }

// InitNoiseSigma implements Scheduler.
func (s *LCM) InitNoiseSigma() float64 { return 1 }

// ScaleModelInput implements Scheduler (identity).
func (s *LCM) ScaleModelInput(sample []float32, step int) ([]float32, error) {
	if err := s.checkStep(step, len(sample)); err != nil {
		return nil, err
	}
	return append([]float32(nil), sample...), nil
}

// Step implements Scheduler.
func (s *LCM) Step(modelOutput []float32, step int, sample []float32, shape []int, noise NoiseSource) (StepOutput, error) {
	if err := s.checkStep(step, len(modelOutput), len(sample)); err != nil {
		return StepOutput{}, err
	}
	shape, err := shapeOf(shape, len(sample))
	if err != nil {
		return StepOutput{}, err
	}
	t := int(s.timesteps[step])
	prevT := t
	if step+1 < len(s.timesteps) {
		prevT = int(s.timesteps[step+1])
	}
	at := s.alphasCumprod[t]
	aPrev := s.alphaAt(prevT, s.finalAlpha())

	const sigmaData = float32(0.5)
	st := float32(t) * float32(s.p.timestepScaling)
	cSkip := sigmaData * sigmaData / (st*st + sigmaData*sigmaData)
	cOut := st / sqrt32(st*st+sigmaData*sigmaData)

	x0 := predictX0(s.p.predictionType, at, modelOutput, sample)
	s.clipOrThreshold(x0, shape)
	den := make([]float32, len(sample))
	for i := range den {
		den[i] = cOut*x0[i] + cSkip*sample[i]
	}
	if step == s.numInference-1 || step == len(s.timesteps)-1 {
		return StepOutput{PrevSample: append([]float32(nil), den...), Denoised: den}, nil
	}
	z, err := draw(noise, shape)
	if err != nil {
		return StepOutput{}, err
	}
	sa, sb := sqrt32(aPrev), sqrt32(1-aPrev)
	prev := make([]float32, len(sample))
	for i := range prev {
		prev[i] = sa*den[i] + sb*z[i]
	}
	return StepOutput{PrevSample: prev, Denoised: den}, nil
}

// AddNoise implements Scheduler.
func (s *LCM) AddNoise(original, noise []float32, timesteps []float64) ([]float32, error) {
	return s.alphaAddNoise(original, noise, timesteps)
}

// GetVelocity implements VelocityScheduler.
func (s *LCM) GetVelocity(sample, noise []float32, timesteps []float64) ([]float32, error) {
	return s.velocityAt(sample, noise, timesteps)
}
