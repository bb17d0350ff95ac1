// Package scheduler implements the denoising-loop samplers of diffusers
// v0.30.3 (DDPM, DDIM, PNDM/PLMS, Euler, Euler ancestral, Heun, DPM-Solver++
// 2M/3M and its SDE variant, LMS, UniPC, LCM) behind one small interface, so
// that pipelines never special-case a sampler. Every table and coefficient is
// computed with the dtype flow diffusers uses (float32 torch tensors,
// float64 numpy arrays), so timesteps match exactly and samples to float32
// rounding.
//
// Samples are flat []float32 slices in batch-major (NCHW) order; the shape is
// passed to Step where per-sample statistics (thresholding) or noise draws
// need it. A typical loop:
//
//	s, _ := scheduler.New("DPM++ 2M Karras", cfg)
//	s.SetTimesteps(20)
//	latents = scheduler.Scale(noise, s.InitNoiseSigma())
//	for i, t := range s.Timesteps() {
//		in, _ := s.ScaleModelInput(latents, i)
//		eps := unet(in, t)
//		out, _ := s.Step(eps, i, latents, shape, rng)
//		latents = out.PrevSample
//	}
package scheduler

import (
	"errors"
	"fmt"
	"math"
)

// NoiseSource draws standard normal noise of a shape, in the order diffusers'
// randn_tensor would draw it (e.g. a torch-compatible generator).
type NoiseSource interface {
	Randn(shape []int) []float32
}

// NoiseFunc adapts a function to a NoiseSource.
type NoiseFunc func(shape []int) []float32

// Randn implements NoiseSource.
func (f NoiseFunc) Randn(shape []int) []float32 { return f(shape) }

// RecordedNoise replays recorded draws (e.g. a golden case's noise_drawn):
// each Randn call returns the next numel(shape) values.
type RecordedNoise struct {
	Values []float32
	pos    int
}

// Randn implements NoiseSource. It panics when the recording is exhausted,
// which means the sampler drew more noise than upstream did.
func (r *RecordedNoise) Randn(shape []int) []float32 {
	n := numel(shape)
	if r.pos+n > len(r.Values) {
		panic(fmt.Sprintf("scheduler: recorded noise exhausted (%d drawn, %d more wanted, %d recorded)", r.pos, n, len(r.Values)))
	}
	out := r.Values[r.pos : r.pos+n : r.pos+n]
	r.pos += n
	return out
}

// Drawn reports how many values have been consumed.
func (r *RecordedNoise) Drawn() int { return r.pos }

// StepOutput is the result of one Step.
type StepOutput struct {
	// PrevSample is the sample at the next (less noisy) timestep.
	PrevSample []float32
	// Denoised is the predicted clean sample x0 (diffusers'
	// pred_original_sample, or LCM's denoised); nil where the sampler does
	// not form one.
	Denoised []float32
}

// Scheduler is a diffusion sampler. Call SetTimesteps first; then for each
// step index i of Timesteps(), feed ScaleModelInput(sample, i) to the model
// at timestep Timesteps()[i] and pass its output to Step. Step indices must
// be visited in order (a later start, for img2img, is fine: see
// [StrengthStart]).
type Scheduler interface {
	// Class returns the diffusers class name ("EulerDiscreteScheduler", ...).
	Class() string
	// SetTimesteps prepares the schedule for n inference steps and resets
	// the sampler's multistep state.
	SetTimesteps(n int) error
	// Timesteps returns the timesteps as the model receives them (integer
	// valued for DDPM/DDIM/PNDM/DPM/UniPC/LCM, float32 values for the
	// sigma-based samplers). Some samplers evaluate the model more than
	// once per inference step, so its length may exceed n.
	Timesteps() []float64
	// Sigmas returns the noise levels of the schedule (len(Timesteps())+1
	// values, last 0 or sigma_min), or nil for samplers without one.
	Sigmas() []float32
	// InitNoiseSigma is the standard deviation of the initial noise.
	InitNoiseSigma() float64
	// Order is diffusers' scheduler.order (model evaluations per step).
	Order() int
	// ScaleModelInput returns the model input for step index i (a new
	// slice; sample is not modified).
	ScaleModelInput(sample []float32, step int) ([]float32, error)
	// Step advances sample from step index i given the model's output.
	// shape is the sample's shape (batch first; nil means one sample);
	// noise is used by the samplers that draw noise and may be nil for the
	// others.
	Step(modelOutput []float32, step int, sample []float32, shape []int, noise NoiseSource) (StepOutput, error)
	// AddNoise noises original (batch of len(timesteps) samples) to the
	// given timesteps, as img2img and training do.
	AddNoise(original, noise []float32, timesteps []float64) ([]float32, error)
}

// VelocityScheduler is implemented by the schedulers that have diffusers'
// get_velocity (the v-prediction training target).
type VelocityScheduler interface {
	Scheduler
	GetVelocity(sample, noise []float32, timesteps []float64) ([]float32, error)
}

// ErrNoTimesteps is returned by Step and ScaleModelInput before SetTimesteps.
var ErrNoTimesteps = errors.New("scheduler: SetTimesteps has not been called")

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// Scale returns x * s computed in float32 (e.g. noise * InitNoiseSigma()).
func Scale(x []float32, s float64) []float32 {
	out := make([]float32, len(x))
	f := float32(s)
	for i, v := range x {
		out[i] = v * f
	}
	return out
}

// base holds what every scheduler shares: the resolved config, the training
// tables and the inference schedule.
type base struct {
	class         string
	p             params
	betas         []float32
	alphasCumprod []float32
	timesteps     []float64
	numInference  int
	nextStep      int
}

func newBase(class string, p params) (base, error) {
	b := base{class: class, p: p}
	betas, err := betasFor(&b.p)
	if err != nil {
		return b, err
	}
	alphas := make([]float32, len(betas))
	for i, v := range betas {
		alphas[i] = 1 - v
	}
	b.betas = betas
	b.alphasCumprod = cumprod(alphas)
	switch p.predictionType {
	case "epsilon", "v_prediction", "sample":
	default:
		return b, fmt.Errorf("scheduler: %s: prediction_type %q is not supported (epsilon, v_prediction, sample)", class, p.predictionType)
	}
	return b, nil
}

func (b *base) Class() string        { return b.class }
func (b *base) Timesteps() []float64 { return append([]float64(nil), b.timesteps...) }
func (b *base) Order() int           { return 1 }

func (b *base) numTrainTimesteps() int { return b.p.numTrain }

// Betas returns the float32 training betas.
func (b *base) Betas() []float32 { return append([]float32(nil), b.betas...) }

// PredictionType is the config's prediction_type: what the model
// predicts (epsilon, v_prediction or sample), which a trainer's target
// must match.
func (b *base) PredictionType() string { return b.p.predictionType }

// AlphasCumprod returns the float32 cumulative products of 1-beta.
func (b *base) AlphasCumprod() []float32 { return append([]float32(nil), b.alphasCumprod...) }

// checkStep validates a step call.
func (b *base) checkStep(step int, lens ...int) error {
	if b.timesteps == nil {
		return ErrNoTimesteps
	}
	if step < 0 || step >= len(b.timesteps) {
		return fmt.Errorf("scheduler: step index %d out of range [0, %d)", step, len(b.timesteps))
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

// shapeOf returns shape, or [n] when shape is nil; it checks that shape
// matches n values.
func shapeOf(shape []int, n int) ([]int, error) {
	if shape == nil {
		return []int{n}, nil
	}
	if numel(shape) != n {
		return nil, fmt.Errorf("scheduler: shape %v has %d elements, sample has %d", shape, numel(shape), n)
	}
	return shape, nil
}

// draw draws noise of a shape, checking the source.
func draw(noise NoiseSource, shape []int) ([]float32, error) {
	if noise == nil {
		return nil, errors.New("scheduler: this sampler draws noise but no NoiseSource was given")
	}
	v := noise.Randn(shape)
	if len(v) != numel(shape) {
		return nil, fmt.Errorf("scheduler: noise source returned %d values for shape %v", len(v), shape)
	}
	return v, nil
}

// alphaAt returns alphas_cumprod[t] (t >= 0) or the final value.
func (b *base) alphaAt(t int, final float32) float32 {
	if t >= 0 {
		return b.alphasCumprod[t]
	}
	return final
}

// finalAlpha is final_alpha_cumprod (set_alpha_to_one).
func (b *base) finalAlpha() float32 {
	if b.p.setAlphaToOne {
		return 1
	}
	return b.alphasCumprod[0]
}

// batchIndex checks a per-sample timestep list against a flat batch.
func batchSplit(n, batch int) (int, error) {
	if batch <= 0 {
		return 0, errors.New("scheduler: no timesteps given")
	}
	if n == 0 || n%batch != 0 {
		return 0, fmt.Errorf("scheduler: %d values do not split into %d samples", n, batch)
	}
	return n / batch, nil
}

// alphaAddNoise is add_noise of the alphas_cumprod schedulers:
// sqrt(ac[t])*x + sqrt(1-ac[t])*noise, in float32.
func (b *base) alphaAddNoise(original, noise []float32, timesteps []float64) ([]float32, error) {
	if len(original) != len(noise) {
		return nil, fmt.Errorf("scheduler: original and noise lengths differ (%d, %d)", len(original), len(noise))
	}
	per, err := batchSplit(len(original), len(timesteps))
	if err != nil {
		return nil, err
	}
	out := make([]float32, len(original))
	for bi, tf := range timesteps {
		t, err := b.trainIndex(tf)
		if err != nil {
			return nil, err
		}
		a := b.alphasCumprod[t]
		sa, sb := sqrt32(a), sqrt32(1-a)
		for i := bi * per; i < (bi+1)*per; i++ {
			out[i] = sa*original[i] + sb*noise[i]
		}
	}
	return out, nil
}

// alphaVelocity is get_velocity: sqrt(ac[t])*noise - sqrt(1-ac[t])*sample.
func (b *base) alphaVelocity(sample, noise []float32, idx []int) ([]float32, error) {
	if len(sample) != len(noise) {
		return nil, fmt.Errorf("scheduler: sample and noise lengths differ (%d, %d)", len(sample), len(noise))
	}
	per, err := batchSplit(len(sample), len(idx))
	if err != nil {
		return nil, err
	}
	out := make([]float32, len(sample))
	for bi, t := range idx {
		a := b.alphasCumprod[t]
		sa, sb := sqrt32(a), sqrt32(1-a)
		for i := bi * per; i < (bi+1)*per; i++ {
			out[i] = sa*noise[i] - sb*sample[i]
		}
	}
	return out, nil
}

// trainIndex converts a timestep to an index of the training tables.
func (b *base) trainIndex(t float64) (int, error) {
	i := int(t)
	if float64(i) != t || i < 0 || i >= len(b.alphasCumprod) {
		return 0, fmt.Errorf("scheduler: timestep %v is not an integer in [0, %d)", t, len(b.alphasCumprod))
	}
	return i, nil
}

// velocityAt implements GetVelocity for integer-timestep schedulers.
func (b *base) velocityAt(sample, noise []float32, timesteps []float64) ([]float32, error) {
	idx := make([]int, len(timesteps))
	for i, t := range timesteps {
		v, err := b.trainIndex(t)
		if err != nil {
			return nil, err
		}
		idx[i] = v
	}
	return b.alphaVelocity(sample, noise, idx)
}

// predictX0 forms x0 from the model output for the alphas_cumprod samplers
// (DDPM/DDIM/LCM) in float32: epsilon: (x - sqrt(1-a)*e)/sqrt(a); v:
// sqrt(a)*x - sqrt(1-a)*v; sample: the output itself.
func predictX0(kind string, a float32, out, x []float32) []float32 {
	x0 := make([]float32, len(x))
	sa, sb := sqrt32(a), sqrt32(1-a)
	switch kind {
	case "epsilon":
		for i := range x {
			x0[i] = (x[i] - sb*out[i]) / sa
		}
	case "v_prediction":
		for i := range x {
			x0[i] = sa*x[i] - sb*out[i]
		}
	default:
		copy(x0, out)
	}
	return x0
}

// clipOrThreshold applies dynamic thresholding or clipping to x0 in place.
func (b *base) clipOrThreshold(x0 []float32, shape []int) {
	if b.p.thresholding {
		batch := 1
		if len(shape) > 0 {
			batch = shape[0]
		}
		DynamicThreshold(x0, batch, b.p.dynRatio, b.p.sampleMaxValue)
	} else if b.p.clipSample {
		r := float32(b.p.clipSampleRange)
		for i, v := range x0 {
			x0[i] = clamp32(v, -r, r)
		}
	}
}

func clamp32(v, lo, hi float32) float32 {
	if v < lo {
		return lo
	}
	if v > hi {
		return hi
	}
	return v
}

// roundHalfEven is numpy's round.
func roundHalfEven(x float64) float64 { return math.RoundToEven(x) }
