package rng

import (
	"errors"
	"fmt"
)

// RandnTensor draws float32 standard normal noise of shape as diffusers'
// randn_tensor does on the CPU. With one generator (or a list of one) it is
// torch.randn(shape, generator=g). With several, shape[0] must equal their
// number, and row i is drawn by gens[i] as torch.randn(shape[1:] with a
// leading 1); the rows are concatenated.
func RandnTensor(shape []int, gens ...*Generator) ([]float32, error) {
	n, err := Numel(shape)
	if err != nil {
		return nil, err
	}
	if len(gens) == 0 {
		return nil, errors.New("rng: RandnTensor needs at least one generator")
	}
	for i, g := range gens {
		if g == nil {
			return nil, fmt.Errorf("rng: generator %d is nil", i)
		}
	}
	if len(gens) == 1 {
		return gens[0].RandnN(n), nil
	}
	if len(shape) == 0 || shape[0] != len(gens) {
		return nil, fmt.Errorf("rng: %d generators for shape %v (the batch size must equal the number of generators)", len(gens), shape)
	}
	out := make([]float32, 0, n)
	row := 0
	if shape[0] > 0 {
		row = n / shape[0]
	}
	for _, g := range gens {
		out = append(out, g.RandnN(row)...)
	}
	return out, nil
}

// Generators is a list of generators, one per batch row, used as diffusers
// uses a list passed as generator=[...]. It implements the scheduler
// package's NoiseSource.
type Generators []*Generator

// Randn draws noise of shape as RandnTensor(shape, gs...) does; it returns nil
// when the shape does not fit the list (see RandnTensor for an error).
func (gs Generators) Randn(shape []int) []float32 {
	v, err := RandnTensor(shape, gs...)
	if err != nil {
		return nil
	}
	return v
}
