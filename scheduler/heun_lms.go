package scheduler

import "fmt"

// Heun is diffusers' HeunDiscreteScheduler (Karras et al. algorithm 1,
// deterministic): two model evaluations per step, so Timesteps() holds
// 2n-1 entries (every timestep after the first appears twice).
type Heun struct {
	sigmaBase
	prevDerivative []float32
	dt             float32
	first          bool
	saved          []float32
}

// NewHeun builds a HeunDiscreteScheduler from a config.
func NewHeun(cfg Config) (*Heun, error) {
	p := baseParams()
	p.betaStart, p.betaEnd = 0.00085, 0.012
	p.timestepSpacing = "linspace"
	cfg.apply(&p)
	p.rescaleZeroSNR = false // not a HeunDiscreteScheduler option
	b, err := newSigmaBase("HeunDiscreteScheduler", p)
	if err != nil {
		return nil, err
	}
	return &Heun{sigmaBase: b, first: true}, nil
}

// Order implements Scheduler.
func (s *Heun) Order() int { return 2 }

// SetTimesteps implements Scheduler.
func (s *Heun) SetTimesteps(n int) error {
	if err := s.schedule(n, s.p.karras, false); err != nil {
		return err
	}
	sg, ts := s.sigmas, s.timesteps
	s.sigmas = []float32{sg[0]}
	for _, v := range sg[1 : len(sg)-1] {
		s.sigmas = append(s.sigmas, v, v)
	}
	s.sigmas = append(s.sigmas, sg[len(sg)-1])
	s.timesteps = []float64{ts[0]}
	for _, v := range ts[1:] {
		s.timesteps = append(s.timesteps, v, v)
	}
	s.prevDerivative, s.saved, s.first = nil, nil, true
	return nil
}

// Step implements Scheduler.
func (s *Heun) Step(modelOutput []float32, step int, sample []float32, shape []int, noise NoiseSource) (StepOutput, error) {
	if err := s.checkStep(step, len(modelOutput), len(sample)); err != nil {
		return StepOutput{}, err
	}
	if _, err := shapeOf(shape, len(sample)); err != nil {
		return StepOutput{}, err
	}
	var sigma, next float32
	if s.first {
		sigma, next = s.sigmas[step], s.sigmas[step+1]
	} else {
		if step == 0 {
			return StepOutput{}, fmt.Errorf("scheduler: HeunDiscreteScheduler: second-order step at index 0")
		}
		sigma, next = s.sigmas[step-1], s.sigmas[step]
	}
	sigmaHat := sigma
	in := sigmaHat
	if !s.first {
		in = next
	}
	x0 := sigmaX0(s.p.predictionType, in, modelOutput, sample)
	if s.p.clipSample {
		r := float32(s.p.clipSampleRange)
		for i, v := range x0 {
			x0[i] = clamp32(v, -r, r)
		}
	}
	prev := make([]float32, len(sample))
	if s.first {
		d := make([]float32, len(sample))
		for i := range d {
			d[i] = (sample[i] - x0[i]) / sigmaHat
		}
		dt := next - sigmaHat
		s.prevDerivative, s.dt, s.saved = d, dt, append([]float32(nil), sample...)
		s.first = false
		for i := range prev {
			prev[i] = sample[i] + d[i]*dt
		}
	} else {
		for i := range prev {
			d := (sample[i] - x0[i]) / next
			d = (s.prevDerivative[i] + d) / 2
			prev[i] = s.saved[i] + d*s.dt
		}
		s.prevDerivative, s.saved, s.first = nil, nil, true
	}
	return StepOutput{PrevSample: prev, Denoised: x0}, nil
}

// LMS is diffusers' LMSDiscreteScheduler (linear multistep, order 4).
type LMS struct {
	sigmaBase
	derivatives [][]float32
	lmsOrder    int
}

// NewLMS builds an LMSDiscreteScheduler from a config.
func NewLMS(cfg Config) (*LMS, error) {
	p := baseParams()
	p.timestepSpacing = "linspace"
	cfg.apply(&p)
	p.rescaleZeroSNR = false // not an LMSDiscreteScheduler option
	b, err := newSigmaBase("LMSDiscreteScheduler", p)
	if err != nil {
		return nil, err
	}
	return &LMS{sigmaBase: b, lmsOrder: 4}, nil
}

// SetTimesteps implements Scheduler.
func (s *LMS) SetTimesteps(n int) error {
	s.derivatives = nil
	return s.schedule(n, s.p.karras, false)
}

// lmsCoefficient integrates the Lagrange basis polynomial of the
// currentOrder-th previous sigma from sigmas[t] to sigmas[t+1] (Gauss-
// Legendre, exact for these polynomials).
func (s *LMS) lmsCoefficient(order, t, current int) float64 {
	sig := func(i int) float64 { return float64(s.sigmas[i]) }
	f := func(tau float64) float64 {
		prod := 1.0
		for k := 0; k < order; k++ {
			if k == current {
				continue
			}
			prod *= (tau - sig(t-k)) / (sig(t-current) - sig(t-k))
		}
		return prod
	}
	a, b := sig(t), sig(t+1)
	// 4-point Gauss-Legendre: exact up to degree 7.
	nodes := [4]float64{-0.8611363115940526, -0.3399810435848563, 0.3399810435848563, 0.8611363115940526}
	weights := [4]float64{0.3478548451374538, 0.6521451548625461, 0.6521451548625461, 0.3478548451374538}
	mid, half := (a+b)/2, (b-a)/2
	var sum float64
	for i, x := range nodes {
		sum += weights[i] * f(mid+half*x)
	}
	return sum * half
}

// Step implements Scheduler.
func (s *LMS) Step(modelOutput []float32, step int, sample []float32, shape []int, noise NoiseSource) (StepOutput, error) {
	if err := s.checkStep(step, len(modelOutput), len(sample)); err != nil {
		return StepOutput{}, err
	}
	if _, err := shapeOf(shape, len(sample)); err != nil {
		return StepOutput{}, err
	}
	sigma := s.sigmas[step]
	x0 := sigmaX0(s.p.predictionType, sigma, modelOutput, sample)
	d := make([]float32, len(sample))
	for i := range d {
		d[i] = (sample[i] - x0[i]) / sigma
	}
	s.derivatives = append(s.derivatives, d)
	if len(s.derivatives) > s.lmsOrder {
		s.derivatives = s.derivatives[1:]
	}
	order := min(step+1, s.lmsOrder)
	order = min(order, len(s.derivatives))
	sum := make([]float32, len(sample))
	for k := 0; k < order; k++ {
		c := float32(s.lmsCoefficient(order, step, k))
		dk := s.derivatives[len(s.derivatives)-1-k]
		for i := range sum {
			sum[i] += c * dk[i]
		}
	}
	prev := make([]float32, len(sample))
	for i := range prev {
		prev[i] = sample[i] + sum[i]
	}
	return StepOutput{PrevSample: prev, Denoised: x0}, nil
}
