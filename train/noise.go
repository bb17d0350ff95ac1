package train

import (
	"fmt"

	"github.com/diffuse-go/diffuse/rng"
)

// Draw is the randomness of one training step, in the order the diffusers
// scripts take it from the global torch generator: the VAE posterior
// sample's noise (latent_dist.sample()), the diffusion noise
// (torch.randn_like(latents)) and the timesteps (torch.randint(0,
// num_train_timesteps, (bsz,))).
type Draw struct {
	VAENoise, Noise []float32
	Timesteps       []int64
}

// Draws supplies the random draws of each step.
type Draws interface {
	// Next returns the draws of the next step for latents of the given
	// shape [B, C, h, w], with timesteps in [0, numTrain).
	Next(latentShape []int, numTrain int) (Draw, error)
}

// GeneratorDraws takes the draws from a torch-compatible generator, as the
// scripts do from the global RNG (seeded by --seed through set_seed).
type GeneratorDraws struct {
	G *rng.Generator
	// NoiseOffset is --noise_offset: when non-zero, noise gains
	// NoiseOffset · randn(B, C, 1, 1) drawn right after it (as
	// train_text_to_image.py does).
	NoiseOffset float32
	// TimestepWeights, when set (TimestepBias.Weights), draws each
	// timestep with these probabilities from one uniform number instead
	// of uniformly with torch.randint.
	TimestepWeights []float64
}

// Next implements Draws.
func (d *GeneratorDraws) Next(shape []int, numTrain int) (Draw, error) {
	if len(shape) != 4 {
		return Draw{}, fmt.Errorf("train: latent shape %v, want [B, C, h, w]", shape)
	}
	out := Draw{VAENoise: d.G.Randn(shape), Noise: d.G.Randn(shape)}
	if d.NoiseOffset != 0 {
		off := d.G.Randn([]int{shape[0], shape[1], 1, 1})
		per := shape[2] * shape[3]
		for i := range out.Noise {
			out.Noise[i] += d.NoiseOffset * off[i/per]
		}
	}
	if d.TimestepWeights != nil {
		if len(d.TimestepWeights) != numTrain {
			return Draw{}, fmt.Errorf("train: %d timestep weights for %d timesteps", len(d.TimestepWeights), numTrain)
		}
		u := make([]float32, shape[0])
		d.G.Uniform(u, 0, 1)
		out.Timesteps = sampleWeighted(d.TimestepWeights, u)
		return out, nil
	}
	ts, err := d.G.RandInt(0, int64(numTrain), shape[0])
	if err != nil {
		return Draw{}, fmt.Errorf("train: %w", err)
	}
	out.Timesteps = ts
	return out, nil
}

// RecordedDraws replays stored draws, one entry per step (for reference
// runs whose random numbers were recorded).
type RecordedDraws struct {
	Steps []Draw
	next  int
}

// Next implements Draws.
func (d *RecordedDraws) Next(shape []int, numTrain int) (Draw, error) {
	if d.next >= len(d.Steps) {
		return Draw{}, fmt.Errorf("train: only %d recorded steps of draws", len(d.Steps))
	}
	s := d.Steps[d.next]
	n := 1
	for _, v := range shape {
		n *= v
	}
	if len(s.VAENoise) != n || len(s.Noise) != n || len(s.Timesteps) != shape[0] {
		return Draw{}, fmt.Errorf("train: recorded draws of step %d do not fit latents %v", d.next, shape)
	}
	for _, t := range s.Timesteps {
		if t < 0 || t >= int64(numTrain) {
			return Draw{}, fmt.Errorf("train: recorded timestep %d outside [0, %d)", t, numTrain)
		}
	}
	d.next++
	return s, nil
}
