package train

import (
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
)

// Target returns what the model learns to predict, by the noise
// scheduler's prediction_type: the noise (epsilon), the velocity
// sqrt(ᾱ)·noise − sqrt(1−ᾱ)·latents (v_prediction), or the latents
// themselves (sample).
func Target(s *scheduler.DDPM, predictionType string, latents, noise []float32, ts []int64) ([]float32, error) {
	switch predictionType {
	case "", "epsilon":
		return noise, nil
	case "v_prediction":
		return s.GetVelocity(latents, noise, floats(ts))
	case "sample":
		return latents, nil
	}
	return nil, fmt.Errorf("train: unknown prediction_type %q (want epsilon, v_prediction or sample)", predictionType)
}

func floats(ts []int64) []float64 {
	out := make([]float64, len(ts))
	for i, t := range ts {
		out[i] = float64(t)
	}
	return out
}

// MSE is F.mse_loss(a, b) with mean reduction.
func MSE(a, b *tensor.Tensor) *tensor.Tensor { return tensor.Mean(tensor.Square(tensor.Sub(a, b))) }

// SNR is diffusers.training_utils.compute_snr: (sqrt(ᾱ_t)/sqrt(1−ᾱ_t))² per
// timestep, in float32.
func SNR(alphasCumprod []float32, ts []int64) ([]float32, error) {
	out := make([]float32, len(ts))
	for i, t := range ts {
		if t < 0 || int(t) >= len(alphasCumprod) {
			return nil, fmt.Errorf("train: timestep %d outside [0, %d)", t, len(alphasCumprod))
		}
		a := alphasCumprod[t]
		alpha := float32(math.Sqrt(float64(a)))
		sigma := float32(math.Sqrt(float64(1 - a)))
		r := alpha / sigma
		out[i] = r * r
	}
	return out, nil
}

// SNRWeights are the Min-SNR loss weights min(snr, γ)/snr for epsilon
// prediction and min(snr, γ)/(snr+1) for v_prediction (as the diffusers
// scripts compute them for --snr_gamma).
func SNRWeights(snr []float32, gamma float32, predictionType string) []float32 {
	out := make([]float32, len(snr))
	for i, s := range snr {
		w := min(s, gamma)
		if predictionType == "v_prediction" {
			w /= s + 1
		} else {
			w /= s
		}
		out[i] = w
	}
	return out
}

// WeightedMSE is the Min-SNR loss: the per-sample mean squared error times
// its weight, averaged over the batch.
func WeightedMSE(pred, target *tensor.Tensor, weights []float32) *tensor.Tensor {
	b := pred.Dim(0)
	sq := tensor.Square(tensor.Sub(pred, target)).Reshape(b, -1)
	per := tensor.MeanDim(sq, 1, false)
	return tensor.Mean(tensor.Mul(per, tensor.FromSlice(weights, b)))
}
