package scheduler

import (
	"fmt"
	"math"
	"sort"
)

// Guide applies classifier-free guidance to a model output computed on the
// doubled batch [uncond; cond] (unconditional first, as diffusers orders
// it): out = uncond + scale*(cond - uncond), in float32. modelOutput holds
// 2*n values; the result holds n.
func Guide(modelOutput []float32, scale float64) ([]float32, error) {
	if len(modelOutput) == 0 || len(modelOutput)%2 != 0 {
		return nil, fmt.Errorf("scheduler: guidance needs an even, non-empty batch, got %d values", len(modelOutput))
	}
	n := len(modelOutput) / 2
	return GuidePair(modelOutput[:n], modelOutput[n:], scale)
}

// GuidePair is [Guide] with the unconditional and conditional outputs given
// separately.
func GuidePair(uncond, cond []float32, scale float64) ([]float32, error) {
	if len(uncond) != len(cond) {
		return nil, fmt.Errorf("scheduler: guidance: uncond and cond lengths differ (%d, %d)", len(uncond), len(cond))
	}
	s := float32(scale)
	out := make([]float32, len(uncond))
	for i := range out {
		out[i] = uncond[i] + s*(cond[i]-uncond[i])
	}
	return out, nil
}

// RescaleNoiseCFG is diffusers' rescale_noise_cfg (Lin et al. 2023, section
// 3.4): per sample, guided is rescaled by std(cond)/std(guided) (Bessel-
// corrected standard deviations over all non-batch values) and mixed back:
// rescale*rescaled + (1-rescale)*guided. batch is the number of samples in
// guided and cond. The result is a new slice.
func RescaleNoiseCFG(guided, cond []float32, batch int, rescale float64) ([]float32, error) {
	if len(guided) != len(cond) {
		return nil, fmt.Errorf("scheduler: rescale_noise_cfg: lengths differ (%d, %d)", len(guided), len(cond))
	}
	per, err := batchSplit(len(guided), batch)
	if err != nil {
		return nil, err
	}
	out := make([]float32, len(guided))
	r := float32(rescale)
	r1 := float32(1 - rescale)
	for b := 0; b < batch; b++ {
		g := guided[b*per : (b+1)*per]
		c := cond[b*per : (b+1)*per]
		ratio := stdDev32(c) / stdDev32(g)
		o := out[b*per : (b+1)*per]
		for i := range g {
			o[i] = r*(g[i]*ratio) + r1*g[i]
		}
	}
	return out, nil
}

// stdDev32 is torch.std (Bessel-corrected) of float32 values: accumulated in
// float64, rounded to float32.
func stdDev32(x []float32) float32 {
	if len(x) < 2 {
		return float32(math.NaN())
	}
	var mean float64
	for _, v := range x {
		mean += float64(v)
	}
	mean /= float64(len(x))
	var ss float64
	for _, v := range x {
		d := float64(v) - mean
		ss += d * d
	}
	return float32(math.Sqrt(ss / float64(len(x)-1)))
}

// DynamicThreshold applies Imagen's dynamic thresholding (diffusers'
// _threshold_sample) to x in place: per sample, s = quantile(|x|, ratio)
// (linear interpolation, as torch.quantile), s = clamp(s, 1, maxValue), then
// x = clamp(x, -s, s) / s. batch is the number of samples in x.
func DynamicThreshold(x []float32, batch int, ratio, maxValue float64) {
	if batch <= 0 || len(x)%batch != 0 {
		batch = 1
	}
	per := len(x) / batch
	if per == 0 {
		return
	}
	abs := make([]float32, per)
	for b := 0; b < batch; b++ {
		row := x[b*per : (b+1)*per]
		for i, v := range row {
			abs[i] = float32(math.Abs(float64(v)))
		}
		s := quantile32(abs, float32(ratio))
		s = clamp32(s, 1, float32(maxValue))
		if s > float32(maxValue) {
			s = float32(maxValue)
		}
		for i, v := range row {
			row[i] = clamp32(v, -s, s) / s
		}
	}
}

// quantile32 is torch.quantile(x, q, interpolation="linear") in float32 (x
// is sorted in place).
func quantile32(x []float32, q float32) float32 {
	sort.Slice(x, func(i, j int) bool { return x[i] < x[j] })
	rank := q * float32(len(x)-1)
	below := int(rank)
	above := int(math.Ceil(float64(rank)))
	if above >= len(x) {
		above = len(x) - 1
	}
	w := rank - float32(below)
	return lerp32(x[below], x[above], w)
}

// lerp32 is torch's lerp formula.
func lerp32(a, b, w float32) float32 {
	if float32(math.Abs(float64(w))) < 0.5 {
		return a + w*(b-a)
	}
	return b - (b-a)*(1-w)
}
