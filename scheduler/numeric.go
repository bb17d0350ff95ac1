package scheduler

import (
	"fmt"
	"math"
)

// This file reproduces, operation by operation, the numeric routines of
// torch (CPU, float32) and numpy (float64) that diffusers uses to build its
// tables, so that timesteps come out identical and sigmas bit-close.

// torchLinspace32 is torch.linspace(start, end, steps, dtype=float32) on the
// CPU: the step is computed in float32, the first half counts from start and
// the second half back from end, and the vectorised AVX2 kernel (8 floats
// per vector, two vectors per iteration) builds each vector as base +
// k*step, with base = start + step*idx contracted into one FMA by the
// compiler (this reproduces diffusers' beta tables bit for bit).
func torchLinspace32(start, end float64, steps int) []float32 {
	out := make([]float32, steps)
	if steps == 0 {
		return out
	}
	if steps == 1 {
		out[0] = float32(start)
		return out
	}
	s, e := float32(start), float32(end)
	step := (e - s) / float32(steps-1)
	halfway := steps / 2
	scalar := func(idx int) float32 {
		if idx < halfway {
			return fma32(step, float32(idx), s)
		}
		return fma32(-step, float32(steps-idx-1), e)
	}
	const vec = 8
	i := 0
	for ; i+2*vec <= steps; i += 2 * vec {
		for v := 0; v < 2; v++ {
			idx := i + v*vec
			base := scalar(idx)
			for k := 0; k < vec; k++ {
				out[idx+k] = base + float32(k)*step
			}
		}
	}
	for ; i < steps; i++ {
		out[i] = scalar(i)
	}
	return out
}

// npLinspace is numpy.linspace(start, stop, num, endpoint) in float64.
func npLinspace(start, stop float64, num int, endpoint bool) []float64 {
	if num <= 0 {
		return nil
	}
	div := num
	if endpoint {
		div = num - 1
	}
	delta := stop - start
	y := make([]float64, num)
	if div > 0 {
		step := delta / float64(div)
		for i := range y {
			if step == 0 {
				y[i] = float64(i) / float64(div) * delta
			} else {
				y[i] = float64(i) * step
			}
		}
	} else {
		for i := range y {
			y[i] = float64(i) * delta
		}
	}
	for i := range y {
		y[i] += start
	}
	if endpoint && num > 1 {
		y[num-1] = stop
	}
	return y
}

// npArange is numpy.arange(start, stop, step) for floats: the length is
// ceil((stop-start)/step) and element i is start + i*(start+step-start).
func npArange(start, stop, step float64) []float64 {
	n := int(math.Ceil((stop - start) / step))
	if n <= 0 {
		return nil
	}
	out := make([]float64, n)
	out[0] = start
	if n > 1 {
		d := (start + step) - start
		for i := 1; i < n; i++ {
			out[i] = start + float64(i)*d
		}
	}
	return out
}

// npInterp is numpy.interp(x, arange(len(fp)), fp) (xp = 0, 1, 2, ...).
func npInterp(x float64, fp []float64) float64 {
	n := len(fp)
	if math.IsNaN(x) {
		return x
	}
	if x <= 0 {
		return fp[0]
	}
	if x >= float64(n-1) {
		return fp[n-1]
	}
	j := int(math.Floor(x))
	if float64(j) == x {
		return fp[j]
	}
	slope := (fp[j+1] - fp[j]) / (float64(j+1) - float64(j))
	r := slope*(x-float64(j)) + fp[j]
	if math.IsNaN(r) {
		r = slope*(x-float64(j+1)) + fp[j+1]
		if math.IsNaN(r) && fp[j] == fp[j+1] {
			r = fp[j]
		}
	}
	return r
}

// betasFor builds the float32 beta table of a config.
func betasFor(p *params) ([]float32, error) {
	n := p.numTrain
	if n <= 0 {
		return nil, fmt.Errorf("scheduler: num_train_timesteps must be positive, got %d", n)
	}
	var betas []float32
	switch {
	case p.trainedBetas != nil:
		if len(p.trainedBetas) != n {
			return nil, fmt.Errorf("scheduler: trained_betas has %d values, num_train_timesteps is %d", len(p.trainedBetas), n)
		}
		betas = make([]float32, n)
		for i, b := range p.trainedBetas {
			betas[i] = float32(b)
		}
	case p.betaSchedule == "linear":
		betas = torchLinspace32(p.betaStart, p.betaEnd, n)
	case p.betaSchedule == "scaled_linear":
		betas = torchLinspace32(math.Sqrt(p.betaStart), math.Sqrt(p.betaEnd), n)
		for i, b := range betas {
			betas[i] = b * b
		}
	case p.betaSchedule == "squaredcos_cap_v2":
		alphaBar := func(t float64) float64 {
			c := math.Cos((t + 0.008) / 1.008 * math.Pi / 2)
			return c * c
		}
		betas = make([]float32, n)
		for i := range betas {
			t1 := float64(i) / float64(n)
			t2 := float64(i+1) / float64(n)
			betas[i] = float32(math.Min(1-alphaBar(t2)/alphaBar(t1), 0.999))
		}
	default:
		return nil, fmt.Errorf("scheduler: beta_schedule %q is not supported (linear, scaled_linear, squaredcos_cap_v2)", p.betaSchedule)
	}
	if p.rescaleZeroSNR {
		betas = rescaleZeroTerminalSNR(betas)
	}
	return betas, nil
}

// cumprod is torch.cumprod over float32 on the CPU: the running product is
// kept in float64 and each output rounded to float32.
func cumprod(x []float32) []float32 {
	out := make([]float32, len(x))
	acc := 1.0
	for i, v := range x {
		acc *= float64(v)
		out[i] = float32(acc)
	}
	return out
}

func sqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }
func log32(x float32) float32  { return float32(math.Log(float64(x))) }
func exp32(x float32) float32  { return float32(math.Exp(float64(x))) }

// rescaleZeroTerminalSNR is diffusers' rescale_zero_terminal_snr in float32.
func rescaleZeroTerminalSNR(betas []float32) []float32 {
	n := len(betas)
	alphas := make([]float32, n)
	for i, b := range betas {
		alphas[i] = 1 - b
	}
	ac := cumprod(alphas)
	s := make([]float32, n)
	for i, a := range ac {
		s[i] = sqrt32(a)
	}
	s0, sT := s[0], s[n-1]
	scale := s0 / (s0 - sT)
	for i := range s {
		s[i] -= sT
		s[i] *= scale
	}
	bar := make([]float32, n)
	for i, v := range s {
		bar[i] = v * v
	}
	out := make([]float32, n)
	out[0] = 1 - bar[0]
	for i := 1; i < n; i++ {
		out[i] = 1 - bar[i]/bar[i-1]
	}
	return out
}

// trainSigmas returns ((1-ac)/ac)^0.5 in float32 (ascending in t).
func trainSigmas(ac []float32) []float32 {
	out := make([]float32, len(ac))
	for i, a := range ac {
		out[i] = sqrt32((1 - a) / a)
	}
	return out
}

// karrasSigmas is diffusers' _convert_to_karras (rho 7) in float64.
func karrasSigmas(sigmaMin, sigmaMax float64, n int) []float64 {
	const rho = 7.0
	ramp := npLinspace(0, 1, n, true)
	minInv := math.Pow(sigmaMin, 1/rho)
	maxInv := math.Pow(sigmaMax, 1/rho)
	out := make([]float64, n)
	for i, r := range ramp {
		out[i] = math.Pow(maxInv+r*(minInv-maxInv), rho)
	}
	return out
}

// sigmaToT is diffusers' _sigma_to_t: the fractional training timestep whose
// log-sigma (a float32 table) brackets log(sigma), linearly interpolated.
func sigmaToT(sigma float64, logSigmas []float32) float64 {
	ls := math.Log(math.Max(sigma, 1e-10))
	low := 0
	found := false
	for i, l := range logSigmas {
		if ls-float64(l) >= 0 {
			low = i
			found = true
		}
	}
	if !found {
		low = 0
	}
	if low > len(logSigmas)-2 {
		low = len(logSigmas) - 2
	}
	high := low + 1
	// low - high is a float32 (numpy scalar) difference; low - log(sigma)
	// is float64.
	lo, hi := logSigmas[low], logSigmas[high]
	w := (float64(lo) - ls) / float64(lo-hi)
	w = math.Max(0, math.Min(1, w))
	return (1-w)*float64(low) + w*float64(high)
}

// spacedTimesteps returns the n inference timesteps (descending, as float64
// before any cast) for leading/linspace/trailing spacing, the way the
// Euler-family classes compute them.
func spacedTimesteps(spacing string, numTrain, n, offset int) ([]float64, error) {
	out := make([]float64, 0, n)
	switch spacing {
	case "linspace":
		ls := npLinspace(0, float64(numTrain-1), n, true)
		for i := n - 1; i >= 0; i-- {
			out = append(out, ls[i])
		}
	case "leading":
		ratio := numTrain / n
		for i := n - 1; i >= 0; i-- {
			out = append(out, float64(i*ratio+offset))
		}
	case "trailing":
		ratio := float64(numTrain) / float64(n)
		for _, v := range npArange(float64(numTrain), 0, -ratio) {
			out = append(out, math.RoundToEven(v)-1)
		}
	default:
		return nil, fmt.Errorf("scheduler: timestep_spacing %q is not supported (linspace, leading, trailing)", spacing)
	}
	return out, nil
}

// checkSteps validates a number of inference steps against the training
// schedule.
func checkSteps(n, numTrain int) error {
	if n <= 0 {
		return fmt.Errorf("scheduler: number of inference steps must be positive, got %d", n)
	}
	if n > numTrain {
		return fmt.Errorf("scheduler: %d inference steps exceed num_train_timesteps %d", n, numTrain)
	}
	return nil
}

// Coefficients of numpy's SIMD float32 log (npy_simd_data.h), as float32
// bit patterns.
var (
	npLogP = [6]uint32{0x00000000, 0x3F800000, 0x4007361C, 0x3FBD70A9, 0x3EC30333, 0x3CD42BCD}
	npLogQ = [6]uint32{0x3F800000, 0x4027361C, 0x401CFE0D, 0x3F7C8AE4, 0x3E1E5BF3, 0x3BC083DF}
)

const (
	npLogE2  = 0x3F317218 // ln 2
	npSqrt12 = 0x3F3504F3 // sqrt(1/2)
)

func fma32(a, b, c float32) float32 {
	return float32(math.FMA(float64(a), float64(b), float64(c)))
}

// npLog32 is numpy's float32 np.log as its AVX2/AVX-512F kernels compute it
// (a P5/Q5 rational approximation, up to ~4 ulp from the correctly rounded
// value), which diffusers' log_sigmas tables go through. Only positive
// finite inputs take the polynomial path.
func npLog32(x float32) float32 {
	switch {
	case x != x:
		return x
	case x < 0:
		return float32(math.NaN())
	case x == 0:
		return float32(math.Inf(-1))
	case math.IsInf(float64(x), 1):
		return x
	}
	bits := math.Float32bits(x)
	var e float32
	if bits < 0x00800000 { // subnormal: scale by 2^100 first
		x *= float32(math.Ldexp(1, 100))
		bits = math.Float32bits(x)
		e = -100
	}
	e += float32(int32(bits>>23) - 126)
	m := math.Float32frombits(bits&0x007FFFFF | 0x3F000000)
	if m <= math.Float32frombits(npSqrt12) {
		m += m
		e--
	}
	y := m - 1
	f := math.Float32frombits
	num := fma32(f(npLogP[5]), y, f(npLogP[4]))
	den := fma32(f(npLogQ[5]), y, f(npLogQ[4]))
	for k := 3; k >= 0; k-- {
		num = fma32(num, y, f(npLogP[k]))
		den = fma32(den, y, f(npLogQ[k]))
	}
	return fma32(e, f(npLogE2), num/den)
}
