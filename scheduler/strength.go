package scheduler

import (
	"fmt"
	"math"
)

// StrengthStart returns the first step index (into s.Timesteps()) that an
// img2img/inpaint run with this strength executes, after
// s.SetTimesteps(numSteps): diffusers' get_timesteps,
// init = min(int(numSteps*strength), numSteps), t_start = numSteps - init,
// start = t_start * order. The initial latents are s.AddNoise(image latents,
// noise, Timesteps()[start]). strength 1 starts at 0 (pure noise).
func StrengthStart(s Scheduler, numSteps int, strength float64) (int, error) {
	if strength < 0 || strength > 1 || math.IsNaN(strength) {
		return 0, fmt.Errorf("scheduler: strength must be in [0, 1], got %v", strength)
	}
	if numSteps <= 0 {
		return 0, fmt.Errorf("scheduler: number of steps must be positive, got %d", numSteps)
	}
	init := min(int(float64(numSteps)*strength), numSteps)
	tStart := max(numSteps-init, 0)
	start := tStart * s.Order()
	if n := len(s.Timesteps()); start > n {
		start = n
	}
	return start, nil
}

// cutoff is int(round(numTrain - fraction*numTrain)) (Python round: half to
// even).
func cutoff(numTrain int, fraction float64) int {
	return int(math.RoundToEven(float64(numTrain) - fraction*float64(numTrain)))
}

// DenoisingEnd returns the number of step indices a run that stops at
// denoising_end = fraction executes (SDXL base with a refiner): the
// timesteps >= int(round(numTrain*(1-fraction))). A fraction outside (0, 1)
// means the whole schedule.
func DenoisingEnd(s Scheduler, fraction float64) (int, error) {
	numTrain := NumTrainTimesteps(s)
	if !(fraction > 0 && fraction < 1) {
		return len(s.Timesteps()), nil
	}
	c := cutoff(numTrain, fraction)
	n := 0
	for _, t := range s.Timesteps() {
		if t >= float64(c) {
			n++
		}
	}
	return n, nil
}

// DenoisingStart returns the first step index of a run that starts at
// denoising_start = fraction (SDXL refiner img2img): the last k timesteps
// are run, k = count of timesteps < int(round(numTrain*(1-fraction))),
// made odd for second-order samplers as diffusers does (strength is then
// ignored, as in diffusers).
func DenoisingStart(s Scheduler, fraction float64) (int, error) {
	numTrain := NumTrainTimesteps(s)
	if !(fraction > 0 && fraction < 1) {
		return 0, fmt.Errorf("scheduler: denoising_start must be in (0, 1), got %v", fraction)
	}
	ts := s.Timesteps()
	c := cutoff(numTrain, fraction)
	k := 0
	for _, t := range ts {
		if t < float64(c) {
			k++
		}
	}
	if s.Order() == 2 && k%2 == 0 {
		k++
	}
	if k > len(ts) {
		k = len(ts)
	}
	return len(ts) - k, nil
}

// NumTrainTimesteps returns the training schedule length of a scheduler
// built by this package (1000 for every shipped config).
func NumTrainTimesteps(s Scheduler) int {
	type trainer interface{ numTrainTimesteps() int }
	if t, ok := s.(trainer); ok {
		return t.numTrainTimesteps()
	}
	return 1000
}
