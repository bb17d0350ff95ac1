package scheduler

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// FlowMatchEuler is diffusers' FlowMatchEulerDiscreteScheduler (v0.30.3),
// the sampler of Stable Diffusion 3 and Flux. The model predicts a velocity
// v and a step is x + (sigma_next - sigma) * v. Flow matching starts from
// pure noise at sigma 1 (InitNoiseSigma is 1) and the model input is not
// scaled.
//
// Timesteps are sigma * num_train_timesteps (float32 values). Pipelines
// that pass explicit sigmas or a dynamic shift (Flux) use
// [FlowMatchEuler.SetSchedule]; SetTimesteps(n) is SD3's set_timesteps(n).
type FlowMatchEuler struct {
	numTrain  int
	shift     float64
	dynamic   bool
	baseShift float64
	maxShift  float64
	baseSeq   int
	maxSeq    int

	trainSigmas    []float32
	trainTimesteps []float32
	sigmaMin       float64
	sigmaMax       float64

	mu         *float64
	sigmas     []float32
	timesteps  []float64
	beginIndex int
	stepIndex  int
}

// NewFlowMatchEuler builds a FlowMatchEulerDiscreteScheduler from a config
// (keys num_train_timesteps, shift, use_dynamic_shifting, base_shift,
// max_shift, base_image_seq_len, max_image_seq_len; the others are
// ignored, as diffusers ignores keys a class does not know).
func NewFlowMatchEuler(cfg Config) (*FlowMatchEuler, error) {
	s := &FlowMatchEuler{
		numTrain: 1000, shift: 1, baseShift: 0.5, maxShift: 1.15, baseSeq: 256, maxSeq: 4096,
		beginIndex: -1, stepIndex: -1,
	}
	setI := func(dst *int, v *int) {
		if v != nil {
			*dst = *v
		}
	}
	setF := func(dst *float64, v *float64) {
		if v != nil {
			*dst = *v
		}
	}
	setI(&s.numTrain, cfg.NumTrainTimesteps)
	setF(&s.shift, cfg.Shift)
	setF(&s.baseShift, cfg.BaseShift)
	setF(&s.maxShift, cfg.MaxShift)
	setI(&s.baseSeq, cfg.BaseImageSeqLen)
	setI(&s.maxSeq, cfg.MaxImageSeqLen)
	if cfg.UseDynamicShifting != nil {
		s.dynamic = *cfg.UseDynamicShifting
	}
	if s.numTrain < 1 {
		return nil, fmt.Errorf("scheduler: FlowMatchEulerDiscreteScheduler: num_train_timesteps must be positive, got %d", s.numTrain)
	}
	if !(s.shift > 0) || math.IsInf(s.shift, 0) {
		return nil, fmt.Errorf("scheduler: FlowMatchEulerDiscreteScheduler: shift must be positive and finite, got %v", s.shift)
	}
	if s.dynamic && s.maxSeq == s.baseSeq {
		return nil, fmt.Errorf("scheduler: FlowMatchEulerDiscreteScheduler: max_image_seq_len equals base_image_seq_len (%d): the dynamic shift is undefined", s.maxSeq)
	}
	s.trainTables()
	return s, nil
}

// trainTables computes the constructor's training sigmas and timesteps in
// float32 tensor arithmetic: sigmas = t/N for t = N..1, shifted unless the
// shift is dynamic. sigma_min is read back from this (already shifted)
// table, which is why SetTimesteps shifts the low end twice, as upstream.
func (s *FlowMatchEuler) trainTables() {
	n := s.numTrain
	s.trainSigmas = make([]float32, n)
	s.trainTimesteps = make([]float32, n)
	shift, shiftM1 := float32(s.shift), float32(s.shift-1)
	for i := range n {
		sg := float32(n-i) / float32(n)
		if !s.dynamic {
			sg = float32(shift*sg) / (1 + float32(shiftM1*sg))
		}
		s.trainSigmas[i] = sg
		s.trainTimesteps[i] = float32(sg * float32(n))
	}
	s.sigmaMax = float64(s.trainSigmas[0])
	s.sigmaMin = float64(s.trainSigmas[n-1])
}

// Class implements Scheduler.
func (s *FlowMatchEuler) Class() string { return "FlowMatchEulerDiscreteScheduler" }

// Order implements Scheduler.
func (s *FlowMatchEuler) Order() int { return 1 }

// InitNoiseSigma implements Scheduler: flow matching starts at sigma 1 and
// the pipelines use the noise as it is.
func (s *FlowMatchEuler) InitNoiseSigma() float64 { return 1 }

func (s *FlowMatchEuler) numTrainTimesteps() int { return s.numTrain }

// TrainSigmas returns the constructor's float32 sigma table (N values,
// from sigma_max down to sigma_min).
func (s *FlowMatchEuler) TrainSigmas() []float32 { return append([]float32(nil), s.trainSigmas...) }

// TrainTimesteps returns the constructor's float32 timestep table
// (sigmas * N).
func (s *FlowMatchEuler) TrainTimesteps() []float32 {
	return append([]float32(nil), s.trainTimesteps...)
}

// DynamicShifting reports whether the config asks for a resolution
// dependent shift (use_dynamic_shifting): the schedule then needs mu (see
// [FlowMatchEuler.Mu] and [FlowMatchEuler.SetMu]).
func (s *FlowMatchEuler) DynamicShifting() bool { return s.dynamic }

// CalculateShift is the Flux pipelines' calculate_shift: mu interpolated
// linearly in the image sequence length between (baseSeq, baseShift) and
// (maxSeq, maxShift), in float64.
func CalculateShift(imageSeqLen, baseSeq, maxSeq int, baseShift, maxShift float64) float64 {
	m := (maxShift - baseShift) / float64(maxSeq-baseSeq)
	b := baseShift - float64(m*float64(baseSeq))
	return float64(float64(imageSeqLen)*m) + b
}

// Mu returns calculate_shift for imageSeqLen tokens with this scheduler's
// config (base/max_image_seq_len, base/max_shift), as the Flux pipeline
// computes it.
func (s *FlowMatchEuler) Mu(imageSeqLen int) float64 {
	return CalculateShift(imageSeqLen, s.baseSeq, s.maxSeq, s.baseShift, s.maxShift)
}

// SetMu fixes the mu that later SetTimesteps calls use when the shift is
// dynamic (a pipeline sets it from the image size).
func (s *FlowMatchEuler) SetMu(mu float64) { s.mu = &mu }

// LinspaceSigmas returns numpy.linspace(1, 1/n, n): the explicit sigmas
// the Flux pipelines pass to set_timesteps.
func LinspaceSigmas(n int) []float64 {
	if n <= 0 {
		return nil
	}
	return npLinspace(1, 1/float64(n), n, true)
}

// SetTimesteps implements Scheduler: set_timesteps(n) (the SD3 pipelines'
// call), with the mu of [FlowMatchEuler.SetMu] when the shift is dynamic.
func (s *FlowMatchEuler) SetTimesteps(n int) error { return s.SetSchedule(n, nil, s.mu) }

// SetSchedule is set_timesteps(n, sigmas=sigmas, mu=mu). With sigmas nil
// the sigmas are n values from sigma_max to sigma_min (n is then the step
// count); else they are the given float64 sigmas and n is ignored. The
// sigmas are then shifted in float64, by time_shift(mu) when the shift is
// dynamic (mu required) or by the config's shift otherwise, rounded to
// float32, and a final 0 is appended. It resets the begin index.
func (s *FlowMatchEuler) SetSchedule(n int, sigmas []float64, mu *float64) error {
	if s.dynamic && mu == nil {
		return errors.New("scheduler: FlowMatchEulerDiscreteScheduler: use_dynamic_shifting needs mu (see Mu and SetMu)")
	}
	var sig []float64
	if sigmas == nil {
		if n <= 0 {
			return fmt.Errorf("scheduler: number of inference steps must be positive, got %d", n)
		}
		N := float64(s.numTrain)
		ts := npLinspace(s.sigmaMax*N, s.sigmaMin*N, n, true)
		sig = make([]float64, n)
		for i, t := range ts {
			sig[i] = t / N
		}
	} else {
		if len(sigmas) == 0 {
			return errors.New("scheduler: FlowMatchEulerDiscreteScheduler: empty sigmas")
		}
		sig = append([]float64(nil), sigmas...)
	}
	if s.dynamic {
		em := math.Exp(*mu)
		for i, v := range sig {
			sig[i] = em / (em + (1/v - 1))
		}
	} else {
		for i, v := range sig {
			sig[i] = float64(s.shift*v) / (1 + float64((s.shift-1)*v))
		}
	}
	N := float32(s.numTrain)
	s.sigmas = make([]float32, len(sig)+1)
	s.timesteps = make([]float64, len(sig))
	for i, v := range sig {
		s.sigmas[i] = float32(v)
		s.timesteps[i] = float64(float32(s.sigmas[i] * N))
	}
	s.beginIndex, s.stepIndex = -1, -1
	return nil
}

// Timesteps implements Scheduler.
func (s *FlowMatchEuler) Timesteps() []float64 { return append([]float64(nil), s.timesteps...) }

// Sigmas implements Scheduler (n+1 values, the last 0).
func (s *FlowMatchEuler) Sigmas() []float32 { return append([]float32(nil), s.sigmas...) }

// SetBeginIndex is set_begin_index: the step index an img2img run starts
// at (see [StrengthStart]). AddNoise then uses this index's sigma for every
// sample until a step has been taken.
func (s *FlowMatchEuler) SetBeginIndex(i int) error {
	if s.timesteps == nil {
		return ErrNoTimesteps
	}
	if i < 0 || i > len(s.timesteps) {
		return fmt.Errorf("scheduler: begin index %d out of range [0, %d]", i, len(s.timesteps))
	}
	s.beginIndex = i
	return nil
}

// checkStep validates a step call.
func (s *FlowMatchEuler) checkStep(step int, lens ...int) error {
	if s.timesteps == nil {
		return ErrNoTimesteps
	}
	if step < 0 || step >= len(s.timesteps) {
		return fmt.Errorf("scheduler: step index %d out of range [0, %d)", step, len(s.timesteps))
	}
	for _, l := range lens[1:] {
		if l != lens[0] {
			return fmt.Errorf("scheduler: model output and sample lengths differ (%d, %d)", lens[0], l)
		}
	}
	if lens[0] == 0 {
		return errors.New("scheduler: empty sample")
	}
	return nil
}

// ScaleModelInput implements Scheduler: flow matching feeds the sample
// unscaled (a copy is returned).
func (s *FlowMatchEuler) ScaleModelInput(sample []float32, step int) ([]float32, error) {
	if err := s.checkStep(step, len(sample)); err != nil {
		return nil, err
	}
	return append([]float32(nil), sample...), nil
}

// Step implements Scheduler: prev = sample + (sigma[i+1] - sigma[i]) *
// velocity in float32 (the sigma difference rounded first). No noise is
// drawn.
func (s *FlowMatchEuler) Step(modelOutput []float32, step int, sample []float32, shape []int, _ NoiseSource) (StepOutput, error) {
	if err := s.checkStep(step, len(modelOutput), len(sample)); err != nil {
		return StepOutput{}, err
	}
	if _, err := shapeOf(shape, len(sample)); err != nil {
		return StepOutput{}, err
	}
	dt := s.sigmas[step+1] - s.sigmas[step]
	prev := make([]float32, len(sample))
	for i, x := range sample {
		prev[i] = x + float32(dt*modelOutput[i])
	}
	s.stepIndex = step + 1
	return StepOutput{PrevSample: prev}, nil
}

// indexForTimestep is index_for_timestep: the position of t in the
// schedule, the second one when it occurs more than once.
func (s *FlowMatchEuler) indexForTimestep(t float64) (int, error) {
	first := -1
	for i, v := range s.timesteps {
		if v != t {
			continue
		}
		if first >= 0 {
			return i, nil
		}
		first = i
	}
	if first < 0 {
		return 0, fmt.Errorf("scheduler: FlowMatchEulerDiscreteScheduler: timestep %v is not in the schedule", t)
	}
	return first, nil
}

// AddNoise implements Scheduler with scale_noise, the flow-matching
// forward process: sigma*noise + (1-sigma)*original per sample. As
// upstream, sigma is the begin index's (SetBeginIndex, img2img) or, once a
// step has been taken, the current step's; without a begin index each
// sample's timestep is looked up in the schedule.
func (s *FlowMatchEuler) AddNoise(original, noise []float32, timesteps []float64) ([]float32, error) {
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
		idx, err := s.noiseIndex(t)
		if err != nil {
			return nil, err
		}
		sg := s.sigmas[idx]
		om := 1 - sg
		for i := b * per; i < (b+1)*per; i++ {
			out[i] = float32(sg*noise[i]) + float32(om*original[i])
		}
	}
	return out, nil
}

// noiseIndex picks scale_noise's sigma index for one sample.
func (s *FlowMatchEuler) noiseIndex(t float64) (int, error) {
	switch {
	case s.beginIndex < 0:
		return s.indexForTimestep(t)
	case s.stepIndex >= 0:
		return s.stepIndex, nil
	}
	return s.beginIndex, nil
}

// FlowStrengthStart is the first step index an img2img run with this
// strength executes in the SD3 and Flux img2img pipelines, whose
// get_timesteps differs from [StrengthStart]: init = min(n*strength, n) is
// kept as a float, t_start = int(max(n - init, 0)), so n*strength is
// effectively rounded up (4 steps at strength 0.6 start at 1, not 2).
// Call SetBeginIndex(start) before noising the image with AddNoise.
func FlowStrengthStart(numSteps int, strength float64) (int, error) {
	if strength < 0 || strength > 1 || math.IsNaN(strength) {
		return 0, fmt.Errorf("scheduler: strength must be in [0, 1], got %v", strength)
	}
	if numSteps <= 0 {
		return 0, fmt.Errorf("scheduler: number of steps must be positive, got %d", numSteps)
	}
	n := float64(numSteps)
	init := math.Min(n*strength, n)
	return int(math.Max(n-init, 0)), nil
}

// IsFlowMatching reports whether s is one of the flow-matching samplers
// (SD3, Flux), whose model predicts a velocity and whose timesteps are
// sigma × num_train_timesteps.
func IsFlowMatching(s Scheduler) bool {
	switch s.(type) {
	case *FlowMatchEuler, *FlowMatchHeun:
		return true
	}
	return false
}

// NewFlowMatch builds the flow-matching sampler a user-facing name asks
// for, from a flow-matching model's scheduler_config: "" or "euler" (and
// the class name FlowMatchEulerDiscreteScheduler) give FlowMatchEuler,
// "heun" (FlowMatchHeunDiscreteScheduler) FlowMatchHeun. Other names are
// refused: the noise-prediction samplers do not apply to these models.
func NewFlowMatch(name string, cfg Config) (Scheduler, error) {
	switch normName(strings.TrimPrefix(name, "diffusers.")) {
	case "", "euler", "flowmatcheuler", "flowmatcheulerdiscretescheduler", "keuler":
		return NewFlowMatchEuler(cfg)
	case "heun", "flowmatchheun", "flowmatchheundiscretescheduler", "kheun":
		return NewFlowMatchHeun(cfg)
	}
	return nil, fmt.Errorf("scheduler: sampler %q is not available for flow-matching models (euler, heun)", name)
}
