package train

import (
	"fmt"
	"math"
	"sort"
)

// TimestepBias is the timestep bias of diffusers' SDXL text-to-image
// script (--timestep_bias_strategy, _multiplier, _portion, _begin, _end):
// training timesteps drawn with more weight on one part of the schedule.
type TimestepBias struct {
	// Strategy is "later" (the noisiest Portion of the timesteps),
	// "earlier" (the least noisy Portion), "range" ([Begin, End)) or
	// "none" / "" (uniform).
	Strategy   string
	Multiplier float64
	Portion    float64
	Begin, End int
}

// Weights is generate_timestep_weights: one weight per timestep, those in
// the biased part multiplied by Multiplier, normalised to sum to one (nil
// for no bias).
func (b TimestepBias) Weights(numTrain int) ([]float64, error) {
	lo, hi := 0, 0
	switch b.Strategy {
	case "", "none":
		return nil, nil
	case "later", "earlier":
		if !(b.Portion > 0 && b.Portion <= 1) { // NaN too
			return nil, fmt.Errorf("train: timestep bias portion %g outside (0, 1]", b.Portion)
		}
		n := int(b.Portion * float64(numTrain))
		lo, hi = numTrain-n, numTrain
		if b.Strategy == "earlier" {
			lo, hi = 0, n
		}
	case "range":
		if b.Begin < 0 || b.End > numTrain || b.Begin >= b.End {
			return nil, fmt.Errorf("train: timestep bias range [%d, %d) outside [0, %d)", b.Begin, b.End, numTrain)
		}
		lo, hi = b.Begin, b.End
	default:
		return nil, fmt.Errorf("train: unknown timestep bias strategy %q (none, later, earlier or range)", b.Strategy)
	}
	if !(b.Multiplier > 0) || math.IsInf(b.Multiplier, 1) {
		return nil, fmt.Errorf("train: timestep bias multiplier %g must be positive and finite", b.Multiplier)
	}
	w := make([]float64, numTrain)
	sum := 0.0
	for i := range w {
		w[i] = 1
		if i >= lo && i < hi {
			w[i] = b.Multiplier
		}
		sum += w[i]
	}
	for i := range w {
		w[i] /= sum
	}
	return w, nil
}

// sampleWeighted draws len(u) indices with probabilities weights, one per
// uniform draw in [0, 1), by inverse CDF (the scripts use
// torch.multinomial, whose draws this does not reproduce).
func sampleWeighted(weights []float64, u []float32) []int64 {
	cdf := make([]float64, len(weights))
	acc := 0.0
	for i, w := range weights {
		acc += w
		cdf[i] = acc
	}
	out := make([]int64, len(u))
	for i, x := range u {
		t := sort.SearchFloat64s(cdf, float64(x)*acc)
		// SearchFloat64s finds the first cdf >= x; a draw equal to a bound
		// belongs to the next bucket.
		for t < len(cdf)-1 && cdf[t] <= float64(x)*acc {
			t++
		}
		out[i] = int64(t)
	}
	return out
}
