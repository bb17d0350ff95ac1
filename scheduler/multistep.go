package scheduler

import (
	"fmt"
	"math"
	"slices"
)

// multiBase is shared by the exponential-integrator multistep solvers
// (DPM-Solver, UniPC): integer timesteps and a float32 sigma table.
type multiBase struct {
	base
	sigmas    []float32
	outputs   [][]float32 // converted model outputs, oldest first
	lowerNums int
}

func newMultiBase(class string, p params) (multiBase, error) {
	b, err := newBase(class, p)
	if err != nil {
		return multiBase{}, err
	}
	if p.rescaleZeroSNR {
		b.alphasCumprod[len(b.alphasCumprod)-1] = float32(math.Ldexp(1, -24))
	}
	if p.solverOrder < 1 || p.solverOrder > 3 {
		return multiBase{}, fmt.Errorf("scheduler: %s: solver_order must be 1, 2 or 3, got %d", class, p.solverOrder)
	}
	return multiBase{base: b}, nil
}

// schedule computes the timesteps and sigmas of DPMSolverMultistep /
// UniPCMultistep. last is the timestep the linspace/leading/trailing rules
// count from (DPM: after lambda_min_clipped; UniPC: num_train_timesteps).
// unipcKarrasLast selects UniPC's final sigma rule with Karras sigmas.
func (s *multiBase) schedule(n, last int, unipc bool) error {
	if err := checkSteps(n, s.p.numTrain); err != nil {
		return err
	}
	var ts []float64
	switch s.p.timestepSpacing {
	case "linspace":
		ls := npLinspace(0, float64(last-1), n+1, true)
		for i := n; i >= 1; i-- {
			ts = append(ts, roundHalfEven(ls[i]))
		}
	case "leading":
		ratio := last / (n + 1)
		for i := n; i >= 1; i-- {
			ts = append(ts, float64(i*ratio+s.p.stepsOffset))
		}
	case "trailing":
		ratio := float64(s.p.numTrain) / float64(n)
		for _, v := range npArange(float64(last), 0, -ratio) {
			ts = append(ts, roundHalfEven(v)-1)
		}
	default:
		return fmt.Errorf("scheduler: timestep_spacing %q is not supported (linspace, leading, trailing)", s.p.timestepSpacing)
	}
	train := trainSigmas(s.alphasCumprod)
	train64 := make([]float64, len(train))
	logSigmas := make([]float32, len(train))
	for i, v := range train {
		train64[i] = float64(v)
		logSigmas[i] = npLog32(v)
	}
	var sig []float64
	karras := s.p.karras
	switch {
	case karras:
		lo, hi := train64[0], train64[len(train64)-1]
		if s.p.sigmaMin != nil {
			lo = *s.p.sigmaMin
		}
		if s.p.sigmaMax != nil {
			hi = *s.p.sigmaMax
		}
		sig = karrasSigmas(lo, hi, n)
		ts = make([]float64, len(sig))
		for i, v := range sig {
			ts[i] = roundHalfEven(sigmaToT(v, logSigmas))
		}
	case s.p.luLambdas && !unipc:
		lmin, lmax := float64(logSigmas[0]), float64(logSigmas[len(logSigmas)-1])
		ramp := npLinspace(0, 1, n, true)
		sig = make([]float64, n)
		ts = make([]float64, n)
		for i, r := range ramp {
			sig[i] = math.Exp(lmax + r*(lmin-lmax))
			ts[i] = roundHalfEven(sigmaToT(sig[i], logSigmas))
		}
	default:
		sig = make([]float64, len(ts))
		for i, t := range ts {
			sig[i] = npInterp(t, train64)
		}
	}
	var lastSigma float32
	switch s.p.finalSigmasType {
	case "zero":
	case "sigma_min":
		if unipc && karras {
			lastSigma = float32(sig[len(sig)-1])
		} else {
			a := s.alphasCumprod[0]
			lastSigma = sqrt32((1 - a) / a)
		}
	default:
		return fmt.Errorf("scheduler: %s: final_sigmas_type %q is not supported (zero, sigma_min)", s.class, s.p.finalSigmasType)
	}
	s.sigmas = make([]float32, 0, len(sig)+1)
	for _, v := range sig {
		s.sigmas = append(s.sigmas, float32(v))
	}
	s.sigmas = append(s.sigmas, lastSigma)
	s.timesteps = ts
	s.numInference = len(ts)
	s.outputs = make([][]float32, s.p.solverOrder)
	s.lowerNums = 0
	return nil
}

// Sigmas implements Scheduler.
func (s *multiBase) Sigmas() []float32 { return append([]float32(nil), s.sigmas...) }

// InitNoiseSigma implements Scheduler.
func (s *multiBase) InitNoiseSigma() float64 { return 1 }

// ScaleModelInput implements Scheduler (identity).
func (s *multiBase) ScaleModelInput(sample []float32, step int) ([]float32, error) {
	if err := s.checkStep(step, len(sample)); err != nil {
		return nil, err
	}
	return append([]float32(nil), sample...), nil
}

// alphaSigma is _sigma_to_alpha_sigma_t in float32.
func alphaSigma(sigma float32) (alpha, sig float32) {
	alpha = 1 / sqrt32(sigma*sigma+1)
	return alpha, sigma * alpha
}

// lambdaOf returns log(alpha) - log(sigma) in float32.
func lambdaOf(alpha, sigma float32) float32 { return log32(alpha) - log32(sigma) }

// indexFor is the multistep index_for_timestep (last index when absent).
func (s *multiBase) indexFor(t float64) int {
	var hits []int
	for i, v := range s.timesteps {
		if v == t {
			hits = append(hits, i)
		}
	}
	switch len(hits) {
	case 0:
		return len(s.timesteps) - 1
	case 1:
		return hits[0]
	}
	return hits[1]
}

// AddNoise implements Scheduler: alpha_t*x + sigma_t*noise with sigma(t).
func (s *multiBase) AddNoise(original, noise []float32, timesteps []float64) ([]float32, error) {
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
		a, sg := alphaSigma(s.sigmas[s.indexFor(t)])
		for i := b * per; i < (b+1)*per; i++ {
			out[i] = a*original[i] + sg*noise[i]
		}
	}
	return out, nil
}

// pushOutput shifts the model output history.
func (s *multiBase) pushOutput(m []float32) {
	copy(s.outputs, s.outputs[1:])
	s.outputs[len(s.outputs)-1] = m
}

// term is one coefficient*vector of a linear combination.
type term struct {
	c float32
	v []float32
}

// combine evaluates t0.c*t0.v ± t1.c*t1.v ± ... left to right in float32;
// signs[i] applies to term i+1.
func combine(n int, first term, rest ...term) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = first.c * first.v[i]
	}
	for _, t := range rest {
		for i := range out {
			out[i] = out[i] + t.c*t.v[i]
		}
	}
	return out
}

// sub evaluates first.c*first.v - t1.c*t1.v - ..., left to right.
func sub(n int, first term, rest ...term) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = first.c * first.v[i]
	}
	for _, t := range rest {
		for i := range out {
			out[i] = out[i] - t.c*t.v[i]
		}
	}
	return out
}

// DPMSolver is diffusers' DPMSolverMultistepScheduler: DPM-Solver++ 2M (the
// default), 3M (solver_order 3), DPM-Solver, and the SDE variants
// (algorithm_type sde-dpmsolver++ = DPM++ 2M SDE), which draw noise.
type DPMSolver struct {
	multiBase
	lambdaT []float32
}

// NewDPMSolver builds a DPMSolverMultistepScheduler from a config.
func NewDPMSolver(cfg Config) (*DPMSolver, error) {
	p := baseParams()
	p.timestepSpacing = "linspace"
	p.varianceType = ""
	cfg.apply(&p)
	if cfg.VarianceType == nil {
		p.varianceType = ""
	}
	switch p.algorithmType {
	case "dpmsolver", "dpmsolver++", "sde-dpmsolver", "sde-dpmsolver++":
	case "deis":
		p.algorithmType = "dpmsolver++"
	default:
		return nil, fmt.Errorf("scheduler: DPMSolverMultistepScheduler: algorithm_type %q is not supported", p.algorithmType)
	}
	switch p.solverType {
	case "midpoint", "heun":
	case "logrho", "bh1", "bh2":
		p.solverType = "midpoint"
	default:
		return nil, fmt.Errorf("scheduler: DPMSolverMultistepScheduler: solver_type %q is not supported", p.solverType)
	}
	if (p.algorithmType == "dpmsolver" || p.algorithmType == "sde-dpmsolver") && p.finalSigmasType == "zero" {
		return nil, fmt.Errorf("scheduler: DPMSolverMultistepScheduler: final_sigmas_type \"zero\" is not supported for algorithm_type %q; use \"sigma_min\"", p.algorithmType)
	}
	if p.solverOrder == 3 && (p.algorithmType == "sde-dpmsolver" || p.algorithmType == "sde-dpmsolver++") {
		return nil, fmt.Errorf("scheduler: DPMSolverMultistepScheduler: third-order solver is not available for %s", p.algorithmType)
	}
	b, err := newMultiBase("DPMSolverMultistepScheduler", p)
	if err != nil {
		return nil, err
	}
	s := &DPMSolver{multiBase: b}
	s.lambdaT = make([]float32, len(b.alphasCumprod))
	for i, a := range b.alphasCumprod {
		s.lambdaT[i] = log32(sqrt32(a)) - log32(sqrt32(1-a))
	}
	return s, nil
}

// SetTimesteps implements Scheduler.
func (s *DPMSolver) SetTimesteps(n int) error {
	// searchsorted(flip(lambda_t), lambda_min_clipped): count of values <
	// the bound.
	clipped := 0
	for _, l := range s.lambdaT {
		if float64(l) < s.p.lambdaMinClipped {
			clipped++
		}
	}
	return s.schedule(n, s.p.numTrain-clipped, false)
}

// convert is convert_model_output: x0 (dpmsolver++) or epsilon (dpmsolver).
func (s *DPMSolver) convert(out []float32, step int, sample []float32, shape []int) ([]float32, error) {
	if s.p.varianceType == "learned" || s.p.varianceType == "learned_range" {
		var err error
		if out, err = firstChannels(out, shape, len(sample)); err != nil {
			return nil, err
		}
	}
	if len(out) != len(sample) {
		return nil, fmt.Errorf("scheduler: model output and sample lengths differ (%d, %d)", len(out), len(sample))
	}
	alpha, sigma := alphaSigma(s.sigmas[step])
	n := len(sample)
	if s.p.algorithmType == "dpmsolver++" || s.p.algorithmType == "sde-dpmsolver++" {
		x0 := make([]float32, n)
		switch s.p.predictionType {
		case "epsilon":
			for i := range x0 {
				x0[i] = (sample[i] - sigma*out[i]) / alpha
			}
		case "sample":
			copy(x0, out)
		case "v_prediction":
			for i := range x0 {
				x0[i] = alpha*sample[i] - sigma*out[i]
			}
		}
		if s.p.thresholding {
			DynamicThreshold(x0, shape[0], s.p.dynRatio, s.p.sampleMaxValue)
		}
		return x0, nil
	}
	eps := make([]float32, n)
	switch s.p.predictionType {
	case "epsilon":
		copy(eps, out)
	case "sample":
		for i := range eps {
			eps[i] = (sample[i] - alpha*out[i]) / sigma
		}
	case "v_prediction":
		for i := range eps {
			eps[i] = alpha*out[i] + sigma*sample[i]
		}
	}
	if s.p.thresholding {
		x0 := make([]float32, n)
		for i := range x0 {
			x0[i] = (sample[i] - sigma*eps[i]) / alpha
		}
		DynamicThreshold(x0, shape[0], s.p.dynRatio, s.p.sampleMaxValue)
		for i := range eps {
			eps[i] = (sample[i] - alpha*x0[i]) / sigma
		}
	}
	return eps, nil
}

// firstChannels keeps the first half of the channels of a learned-variance
// output [B, 2C, ...] for a sample of n values.
func firstChannels(out []float32, shape []int, n int) ([]float32, error) {
	if len(out) == n {
		return out, nil
	}
	if len(out) != 2*n || len(shape) < 2 {
		return nil, fmt.Errorf("scheduler: learned-variance output has %d values for a sample of %d", len(out), n)
	}
	b := shape[0]
	per := n / b
	res := make([]float32, 0, n)
	for i := 0; i < b; i++ {
		res = append(res, out[i*2*per:i*2*per+per]...)
	}
	return res, nil
}

// Step implements Scheduler.
func (s *DPMSolver) Step(modelOutput []float32, step int, sample []float32, shape []int, noise NoiseSource) (StepOutput, error) {
	if err := s.checkStep(step, len(sample)); err != nil {
		return StepOutput{}, err
	}
	shape, err := shapeOf(shape, len(sample))
	if err != nil {
		return StepOutput{}, err
	}
	nts := len(s.timesteps)
	lowerFinal := step == nts-1 && (s.p.eulerAtFinal || (s.p.lowerOrderFinal && nts < 15) || s.p.finalSigmasType == "zero")
	lowerSecond := step == nts-2 && s.p.lowerOrderFinal && nts < 15

	m, err := s.convert(modelOutput, step, sample, shape)
	if err != nil {
		return StepOutput{}, err
	}
	s.pushOutput(m)
	sde := s.p.algorithmType == "sde-dpmsolver" || s.p.algorithmType == "sde-dpmsolver++"
	var z []float32
	if sde {
		if z, err = draw(noise, shape); err != nil {
			return StepOutput{}, err
		}
	}
	var prev []float32
	switch {
	case s.p.solverOrder == 1 || s.lowerNums < 1 || lowerFinal:
		prev = s.firstOrder(m, step, sample, z)
	case s.p.solverOrder == 2 || s.lowerNums < 2 || lowerSecond:
		prev = s.secondOrder(step, sample, z)
	default:
		prev = s.thirdOrder(step, sample)
	}
	if s.lowerNums < s.p.solverOrder {
		s.lowerNums++
	}
	out := StepOutput{PrevSample: prev}
	if s.p.algorithmType == "dpmsolver++" || s.p.algorithmType == "sde-dpmsolver++" {
		out.Denoised = m
	}
	return out, nil
}

func (s *DPMSolver) firstOrder(m []float32, step int, x, z []float32) []float32 {
	at, st := alphaSigma(s.sigmas[step+1])
	as, ss := alphaSigma(s.sigmas[step])
	h := lambdaOf(at, st) - lambdaOf(as, ss)
	n := len(x)
	switch s.p.algorithmType {
	case "dpmsolver++":
		return sub(n, term{st / ss, x}, term{at * (exp32(-h) - 1), m})
	case "dpmsolver":
		return sub(n, term{at / as, x}, term{st * (exp32(h) - 1), m})
	case "sde-dpmsolver++":
		e2 := exp32(-2 * h)
		return combine(n, term{st / ss * exp32(-h), x}, term{at * (1 - e2), m}, term{st * sqrt32(1-e2), z})
	default: // sde-dpmsolver
		r := sub(n, term{at / as, x}, term{2 * (st * (exp32(h) - 1)), m})
		c := st * sqrt32(exp32(2*h)-1)
		for i := range r {
			r[i] = r[i] + c*z[i]
		}
		return r
	}
}

func (s *DPMSolver) secondOrder(step int, x, z []float32) []float32 {
	at, st := alphaSigma(s.sigmas[step+1])
	a0, s0 := alphaSigma(s.sigmas[step])
	a1, s1 := alphaSigma(s.sigmas[step-1])
	lt, l0, l1 := lambdaOf(at, st), lambdaOf(a0, s0), lambdaOf(a1, s1)
	k := len(s.outputs)
	m0, m1 := s.outputs[k-1], s.outputs[k-2]
	h, h0 := lt-l0, l0-l1
	r0 := h0 / h
	n := len(x)
	inv := 1 / r0
	d1 := make([]float32, n)
	for i := range d1 {
		d1[i] = inv * (m0[i] - m1[i])
	}
	heun := s.p.solverType == "heun"
	switch s.p.algorithmType {
	case "dpmsolver++":
		c := at * (exp32(-h) - 1)
		if heun {
			r := sub(n, term{st / s0, x}, term{c, m0})
			return combine(n, term{1, r}, term{at * ((exp32(-h)-1)/h + 1), d1})
		}
		return sub(n, term{st / s0, x}, term{c, m0}, term{0.5 * c, d1})
	case "dpmsolver":
		c := st * (exp32(h) - 1)
		if heun {
			return sub(n, term{at / a0, x}, term{c, m0}, term{st * ((exp32(h)-1)/h - 1), d1})
		}
		return sub(n, term{at / a0, x}, term{c, m0}, term{0.5 * c, d1})
	case "sde-dpmsolver++":
		e2 := exp32(-2 * h)
		c := at * (1 - e2)
		var c1 float32
		if heun {
			c1 = at * ((1-e2)/(-2*h) + 1)
		} else {
			c1 = 0.5 * c
		}
		return combine(n, term{st / s0 * exp32(-h), x}, term{c, m0}, term{c1, d1}, term{st * sqrt32(1-e2), z})
	default: // sde-dpmsolver
		c := st * (exp32(h) - 1)
		var c1 float32
		if heun {
			c1 = 2 * (st * ((exp32(h)-1)/h - 1))
		} else {
			c1 = c
		}
		r := sub(n, term{at / a0, x}, term{2 * c, m0}, term{c1, d1})
		cz := st * sqrt32(exp32(2*h)-1)
		for i := range r {
			r[i] = r[i] + cz*z[i]
		}
		return r
	}
}

func (s *DPMSolver) thirdOrder(step int, x []float32) []float32 {
	at, st := alphaSigma(s.sigmas[step+1])
	a0, s0 := alphaSigma(s.sigmas[step])
	a1, s1 := alphaSigma(s.sigmas[step-1])
	a2, s2 := alphaSigma(s.sigmas[step-2])
	lt, l0, l1, l2 := lambdaOf(at, st), lambdaOf(a0, s0), lambdaOf(a1, s1), lambdaOf(a2, s2)
	k := len(s.outputs)
	m0, m1, m2 := s.outputs[k-1], s.outputs[k-2], s.outputs[k-3]
	h, h0, h1 := lt-l0, l0-l1, l1-l2
	r0, r1 := h0/h, h1/h
	n := len(x)
	d10 := make([]float32, n)
	d11 := make([]float32, n)
	d1 := make([]float32, n)
	d2 := make([]float32, n)
	i0, i1 := 1/r0, 1/r1
	c1 := r0 / (r0 + r1)
	c2 := 1 / (r0 + r1)
	for i := range d1 {
		d10[i] = i0 * (m0[i] - m1[i])
		d11[i] = i1 * (m1[i] - m2[i])
		d1[i] = d10[i] + c1*(d10[i]-d11[i])
		d2[i] = c2 * (d10[i] - d11[i])
	}
	if s.p.algorithmType == "dpmsolver++" {
		e := exp32(-h)
		out := make([]float32, n)
		ca, cb := st/s0, at*(e-1)
		cc := at * ((e-1)/h + 1)
		cd := at * ((e-1+h)/(h*h) - 0.5)
		for i := range out {
			out[i] = ca*x[i] - cb*m0[i] + cc*d1[i] - cd*d2[i]
		}
		return out
	}
	e := exp32(h)
	return sub(n, term{at / a0, x}, term{st * (e - 1), m0}, term{st * ((e-1)/h - 1), d1}, term{st * ((e-1-h)/(h*h) - 0.5), d2})
}

// UniPC is diffusers' UniPCMultistepScheduler (bh1/bh2 predictor with the
// UniC corrector).
type UniPC struct {
	multiBase
	lastSample []float32
	thisOrder  int
}

// NewUniPC builds a UniPCMultistepScheduler from a config.
func NewUniPC(cfg Config) (*UniPC, error) {
	p := baseParams()
	p.timestepSpacing = "linspace"
	p.solverType = "bh2"
	cfg.apply(&p)
	switch p.solverType {
	case "bh1", "bh2":
	case "midpoint", "heun", "logrho":
		p.solverType = "bh2"
	default:
		return nil, fmt.Errorf("scheduler: UniPCMultistepScheduler: solver_type %q is not supported (bh1, bh2)", p.solverType)
	}
	b, err := newMultiBase("UniPCMultistepScheduler", p)
	if err != nil {
		return nil, err
	}
	return &UniPC{multiBase: b}, nil
}

// SetTimesteps implements Scheduler.
func (s *UniPC) SetTimesteps(n int) error {
	s.lastSample, s.thisOrder = nil, 0
	return s.schedule(n, s.p.numTrain, true)
}

func (s *UniPC) convert(out []float32, step int, sample []float32, shape []int) []float32 {
	alpha, sigma := alphaSigma(s.sigmas[step])
	n := len(sample)
	res := make([]float32, n)
	if s.p.predictX0 {
		switch s.p.predictionType {
		case "epsilon":
			for i := range res {
				res[i] = (sample[i] - sigma*out[i]) / alpha
			}
		case "sample":
			copy(res, out)
		case "v_prediction":
			for i := range res {
				res[i] = alpha*sample[i] - sigma*out[i]
			}
		}
		if s.p.thresholding {
			DynamicThreshold(res, shape[0], s.p.dynRatio, s.p.sampleMaxValue)
		}
		return res
	}
	switch s.p.predictionType {
	case "epsilon":
		copy(res, out)
	case "sample":
		for i := range res {
			res[i] = (sample[i] - alpha*out[i]) / sigma
		}
	case "v_prediction":
		for i := range res {
			res[i] = alpha*out[i] + sigma*sample[i]
		}
	}
	return res
}

// Step implements Scheduler.
func (s *UniPC) Step(modelOutput []float32, step int, sample []float32, shape []int, noise NoiseSource) (StepOutput, error) {
	if err := s.checkStep(step, len(modelOutput), len(sample)); err != nil {
		return StepOutput{}, err
	}
	shape, err := shapeOf(shape, len(sample))
	if err != nil {
		return StepOutput{}, err
	}
	useCorrector := step > 0 && !slices.Contains(s.p.disableCorrector, step-1) && s.lastSample != nil
	m := s.convert(modelOutput, step, sample, shape)
	if useCorrector {
		sample = s.corrector(m, step, s.lastSample, sample, s.thisOrder)
	}
	s.pushOutput(m)
	order := s.p.solverOrder
	if s.p.lowerOrderFinal {
		order = min(order, len(s.timesteps)-step)
	}
	s.thisOrder = min(order, s.lowerNums+1)
	s.lastSample = sample
	prev := s.predictor(step, sample, s.thisOrder)
	if s.lowerNums < s.p.solverOrder {
		s.lowerNums++
	}
	out := StepOutput{PrevSample: prev}
	if s.p.predictX0 {
		out.Denoised = m
	}
	return out, nil
}

// uniCoeffs builds rks, the B(h) factor and the b vector of UniP/UniC.
func (s *UniPC) uniCoeffs(h float32, rks []float32, order int) (hh, hPhi1, bh float32, R [][]float32, b []float32) {
	hh = h
	if s.p.predictX0 {
		hh = -h
	}
	hPhi1 = float32(math.Expm1(float64(hh)))
	hPhiK := hPhi1/hh - 1
	fact := float32(1)
	if s.p.solverType == "bh1" {
		bh = hh
	} else {
		bh = float32(math.Expm1(float64(hh)))
	}
	for i := 1; i <= order; i++ {
		row := make([]float32, len(rks))
		for j, r := range rks {
			row[j] = pow32(r, i-1)
		}
		R = append(R, row)
		b = append(b, hPhiK*fact/bh)
		fact *= float32(i + 1)
		hPhiK = hPhiK/hh - 1/fact
	}
	return
}

// pow32 is torch.pow(float32 tensor, integer exponent).
func pow32(x float32, k int) float32 {
	switch k {
	case 0:
		return 1
	case 1:
		return x
	case 2:
		return x * x
	case 3:
		return x * x * x
	}
	return float32(math.Pow(float64(x), float64(k)))
}

func (s *UniPC) predictor(step int, x []float32, order int) []float32 {
	k := len(s.outputs)
	m0 := s.outputs[k-1]
	at, st := alphaSigma(s.sigmas[step+1])
	a0, s0 := alphaSigma(s.sigmas[step])
	lt, l0 := lambdaOf(at, st), lambdaOf(a0, s0)
	h := lt - l0
	n := len(x)
	var rks []float32
	var d1s [][]float32
	for i := 1; i < order; i++ {
		mi := s.outputs[k-1-i]
		ai, si := alphaSigma(s.sigmas[step-i])
		rk := (lambdaOf(ai, si) - l0) / h
		rks = append(rks, rk)
		d := make([]float32, n)
		for j := range d {
			d[j] = (mi[j] - m0[j]) / rk
		}
		d1s = append(d1s, d)
	}
	rks = append(rks, 1)
	_, hPhi1, bh, R, b := s.uniCoeffs(h, rks, order)
	var rhos []float32
	if len(d1s) > 0 {
		if order == 2 {
			rhos = []float32{0.5}
		} else {
			rhos = solve32(subMatrix(R, order-1), b[:order-1])
		}
	}
	var res []float32
	if len(d1s) > 0 {
		res = einsum(rhos, d1s, n)
	}
	var xt []float32
	if s.p.predictX0 {
		xt = sub(n, term{st / s0, x}, term{at * hPhi1, m0})
		if res != nil {
			xt = sub(n, term{1, xt}, term{at * bh, res})
		}
	} else {
		xt = sub(n, term{at / a0, x}, term{st * hPhi1, m0})
		if res != nil {
			xt = sub(n, term{1, xt}, term{st * bh, res})
		}
	}
	return xt
}

func (s *UniPC) corrector(mt []float32, step int, last, this []float32, order int) []float32 {
	k := len(s.outputs)
	m0 := s.outputs[k-1]
	at, st := alphaSigma(s.sigmas[step])
	a0, s0 := alphaSigma(s.sigmas[step-1])
	lt, l0 := lambdaOf(at, st), lambdaOf(a0, s0)
	h := lt - l0
	n := len(this)
	var rks []float32
	var d1s [][]float32
	for i := 1; i < order; i++ {
		mi := s.outputs[k-1-i]
		ai, si := alphaSigma(s.sigmas[step-(i+1)])
		rk := (lambdaOf(ai, si) - l0) / h
		rks = append(rks, rk)
		d := make([]float32, n)
		for j := range d {
			d[j] = (mi[j] - m0[j]) / rk
		}
		d1s = append(d1s, d)
	}
	rks = append(rks, 1)
	_, hPhi1, bh, R, b := s.uniCoeffs(h, rks, order)
	var rhos []float32
	if order == 1 {
		rhos = []float32{0.5}
	} else {
		rhos = solve32(R, b)
	}
	var corr []float32
	if len(d1s) > 0 {
		corr = einsum(rhos[:len(rhos)-1], d1s, n)
	}
	rl := rhos[len(rhos)-1]
	inner := make([]float32, n)
	for i := range inner {
		d1t := mt[i] - m0[i]
		if corr != nil {
			inner[i] = corr[i] + rl*d1t
		} else {
			inner[i] = 0 + rl*d1t
		}
	}
	var xt []float32
	if s.p.predictX0 {
		xt = sub(n, term{st / s0, last}, term{at * hPhi1, m0}, term{at * bh, inner})
	} else {
		xt = sub(n, term{at / a0, last}, term{st * hPhi1, m0}, term{st * bh, inner})
	}
	return xt
}

// einsum is torch.einsum("k,bkc...->bc...", rhos, stack(d1s, dim=1)).
func einsum(rhos []float32, d1s [][]float32, n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		var acc float32
		for k, r := range rhos {
			acc += r * d1s[k][i]
		}
		out[i] = acc
	}
	return out
}

func subMatrix(R [][]float32, k int) [][]float32 {
	out := make([][]float32, k)
	for i := range out {
		out[i] = R[i][:k]
	}
	return out
}

// solve32 solves A x = b in float32 by LU with partial pivoting (LAPACK
// sgesv order of operations for these tiny systems).
func solve32(A [][]float32, b []float32) []float32 {
	n := len(b)
	m := make([][]float32, n)
	for i := range m {
		m[i] = append([]float32(nil), A[i]...)
	}
	x := append([]float32(nil), b...)
	for c := 0; c < n; c++ {
		p := c
		for r := c + 1; r < n; r++ {
			if abs32(m[r][c]) > abs32(m[p][c]) {
				p = r
			}
		}
		m[c], m[p] = m[p], m[c]
		x[c], x[p] = x[p], x[c]
		inv := 1 / m[c][c]
		for r := c + 1; r < n; r++ {
			f := m[r][c] * inv
			for k := c; k < n; k++ {
				m[r][k] -= f * m[c][k]
			}
			x[r] -= f * x[c]
		}
	}
	for c := n - 1; c >= 0; c-- {
		v := x[c]
		for k := c + 1; k < n; k++ {
			v -= m[c][k] * x[k]
		}
		x[c] = v / m[c][c]
	}
	return x
}

func abs32(v float32) float32 {
	if v < 0 {
		return -v
	}
	return v
}
