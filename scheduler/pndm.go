package scheduler

import "fmt"

// PNDM is diffusers' PNDMScheduler: pseudo numerical methods (Runge-Kutta
// warm-up steps, then linear multistep; skip_prk_steps gives PLMS). Its
// Timesteps() are longer than the number of inference steps (one extra
// model call with PLMS, three per warm-up step with PRK).
type PNDM struct {
	base
	prkTimesteps []int
	ets          [][]float32
	counter      int
	curModelOut  []float32
	curSample    []float32
}

// NewPNDM builds a PNDMScheduler from a config.
func NewPNDM(cfg Config) (*PNDM, error) {
	p := baseParams()
	cfg.apply(&p)
	b, err := newBase("PNDMScheduler", p)
	if err != nil {
		return nil, err
	}
	if p.predictionType == "sample" {
		return nil, fmt.Errorf("scheduler: PNDMScheduler: prediction_type %q is not supported (epsilon, v_prediction)", p.predictionType)
	}
	return &PNDM{base: b}, nil
}

// SetTimesteps implements Scheduler.
func (s *PNDM) SetTimesteps(n int) error {
	if err := checkSteps(n, s.p.numTrain); err != nil {
		return err
	}
	var asc []int // ascending _timesteps
	switch s.p.timestepSpacing {
	case "linspace":
		for _, v := range npLinspace(0, float64(s.p.numTrain-1), n, true) {
			asc = append(asc, int(roundHalfEven(v)))
		}
	case "leading":
		ratio := s.p.numTrain / n
		for i := 0; i < n; i++ {
			asc = append(asc, i*ratio+s.p.stepsOffset)
		}
	case "trailing":
		r := npArange(float64(s.p.numTrain), 0, -float64(s.p.numTrain)/float64(n))
		for i := len(r) - 1; i >= 0; i-- {
			asc = append(asc, int(roundHalfEven(r[i]))-1)
		}
	default:
		return fmt.Errorf("scheduler: timestep_spacing %q is not supported (linspace, leading, trailing)", s.p.timestepSpacing)
	}
	var ts []int
	s.prkTimesteps = nil
	if s.p.skipPRK {
		// plms = concat(asc[:-1], asc[-2:-1], asc[-1:])[::-1]
		var plms []int
		if len(asc) >= 2 {
			plms = append(plms, asc[:len(asc)-1]...)
			plms = append(plms, asc[len(asc)-2])
			plms = append(plms, asc[len(asc)-1])
		} else {
			plms = append(plms, asc...)
		}
		for i := len(plms) - 1; i >= 0; i-- {
			ts = append(ts, plms[i])
		}
	} else {
		if n < 4 {
			return fmt.Errorf("scheduler: PNDMScheduler with PRK steps needs at least 4 inference steps, got %d", n)
		}
		const order = 4
		half := s.p.numTrain / n / 2
		var prk []int
		for _, v := range asc[len(asc)-order:] {
			prk = append(prk, v, v+half)
		}
		// prk[:-1].repeat(2)[1:-1][::-1]
		var rep []int
		for _, v := range prk[:len(prk)-1] {
			rep = append(rep, v, v)
		}
		rep = rep[1 : len(rep)-1]
		for i := len(rep) - 1; i >= 0; i-- {
			s.prkTimesteps = append(s.prkTimesteps, rep[i])
		}
		ts = append(ts, s.prkTimesteps...)
		plms := asc[:len(asc)-3]
		for i := len(plms) - 1; i >= 0; i-- {
			ts = append(ts, plms[i])
		}
	}
	s.timesteps = make([]float64, len(ts))
	for i, v := range ts {
		s.timesteps[i] = float64(v)
	}
	s.numInference = n
	s.ets, s.counter, s.curModelOut, s.curSample = nil, 0, nil, nil
	return nil
}

// Order implements Scheduler.
func (s *PNDM) Order() int { return 1 }

// Sigmas implements Scheduler (PNDM has none).
func (s *PNDM) Sigmas() []float32 { return nil }

// InitNoiseSigma implements Scheduler.
func (s *PNDM) InitNoiseSigma() float64 { return 1 }

// ScaleModelInput implements Scheduler (identity).
func (s *PNDM) ScaleModelInput(sample []float32, step int) ([]float32, error) {
	if err := s.checkStep(step, len(sample)); err != nil {
		return nil, err
	}
	return append([]float32(nil), sample...), nil
}

// Step implements Scheduler.
func (s *PNDM) Step(modelOutput []float32, step int, sample []float32, shape []int, noise NoiseSource) (StepOutput, error) {
	if err := s.checkStep(step, len(modelOutput), len(sample)); err != nil {
		return StepOutput{}, err
	}
	if _, err := shapeOf(shape, len(sample)); err != nil {
		return StepOutput{}, err
	}
	t := int(s.timesteps[step])
	if s.counter < len(s.prkTimesteps) && !s.p.skipPRK {
		return s.stepPRK(modelOutput, t, sample)
	}
	return s.stepPLMS(modelOutput, t, sample)
}

func axpy(dst []float32, a float32, x []float32) []float32 {
	if dst == nil {
		dst = make([]float32, len(x))
	}
	for i := range dst {
		dst[i] += a * x[i]
	}
	return dst
}

func (s *PNDM) stepPRK(modelOutput []float32, t int, sample []float32) (StepOutput, error) {
	diff := 0
	if s.counter%2 == 0 {
		diff = s.p.numTrain / s.numInference / 2
	}
	prevT := t - diff
	t = s.prkTimesteps[s.counter/4*4]
	out := modelOutput
	switch s.counter % 4 {
	case 0:
		s.curModelOut = axpy(s.curModelOut, float32(1.0/6), modelOutput)
		s.ets = append(s.ets, append([]float32(nil), modelOutput...))
		s.curSample = append([]float32(nil), sample...)
	case 1, 2:
		s.curModelOut = axpy(s.curModelOut, float32(1.0/3), modelOutput)
	case 3:
		out = make([]float32, len(modelOutput))
		for i := range out {
			out[i] = s.curModelOut[i] + float32(1.0/6)*modelOutput[i]
		}
		s.curModelOut = nil
	}
	cur := sample
	if s.curSample != nil {
		cur = s.curSample
	}
	prev := s.prevSample(cur, t, prevT, out)
	s.counter++
	return StepOutput{PrevSample: prev}, nil
}

func (s *PNDM) stepPLMS(modelOutput []float32, t int, sample []float32) (StepOutput, error) {
	if !s.p.skipPRK && len(s.ets) < 3 {
		return StepOutput{}, fmt.Errorf("scheduler: PNDMScheduler: PLMS step needs 3 warm-up steps first")
	}
	stride := s.p.numTrain / s.numInference
	prevT := t - stride
	if s.counter != 1 {
		if len(s.ets) > 3 {
			s.ets = s.ets[len(s.ets)-3:]
		}
		s.ets = append(s.ets, append([]float32(nil), modelOutput...))
	} else {
		prevT = t
		t = t + stride
	}
	n := len(modelOutput)
	e := s.ets
	k := len(e)
	out := make([]float32, n)
	switch {
	case k == 1 && s.counter == 0:
		copy(out, modelOutput)
		s.curSample = append([]float32(nil), sample...)
	case k == 1 && s.counter == 1:
		for i := range out {
			out[i] = (modelOutput[i] + e[0][i]) / 2
		}
		sample = s.curSample
		s.curSample = nil
	case k == 2:
		for i := range out {
			out[i] = (3*e[1][i] - e[0][i]) / 2
		}
	case k == 3:
		for i := range out {
			out[i] = (23*e[2][i] - 16*e[1][i] + 5*e[0][i]) / 12
		}
	default:
		c := float32(1.0 / 24)
		for i := range out {
			out[i] = c * (55*e[k-1][i] - 59*e[k-2][i] + 37*e[k-3][i] - 9*e[k-4][i])
		}
	}
	prev := s.prevSample(sample, t, prevT, out)
	s.counter++
	return StepOutput{PrevSample: prev}, nil
}

// prevSample is PNDM's _get_prev_sample (formula (9) of the paper).
func (s *PNDM) prevSample(sample []float32, t, prevT int, modelOutput []float32) []float32 {
	at := s.alphasCumprod[t]
	aPrev := s.alphaAt(prevT, s.finalAlpha())
	betaT := 1 - at
	betaPrev := 1 - aPrev
	out := modelOutput
	if s.p.predictionType == "v_prediction" {
		sa, sb := sqrt32(at), sqrt32(betaT)
		out = make([]float32, len(modelOutput))
		for i := range out {
			out[i] = sa*modelOutput[i] + sb*sample[i]
		}
	}
	sampleCoeff := sqrt32(aPrev / at)
	denom := at*sqrt32(betaPrev) + sqrt32(at*betaT*aPrev)
	diff := aPrev - at
	prev := make([]float32, len(sample))
	for i := range prev {
		prev[i] = sampleCoeff*sample[i] - diff*out[i]/denom
	}
	return prev
}

// AddNoise implements Scheduler.
func (s *PNDM) AddNoise(original, noise []float32, timesteps []float64) ([]float32, error) {
	return s.alphaAddNoise(original, noise, timesteps)
}
