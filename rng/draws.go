package rng

import (
	"encoding/binary"
	"fmt"
	"math"
)

// RandInt returns n integers in [low, high) as torch.randint(low, high, (n,),
// generator=g) draws them (int64 dtype): one 32-bit engine output per value
// when the range fits 32 bits, else one 64-bit output, taken modulo the range.
func (g *Generator) RandInt(low, high int64, n int) ([]int64, error) {
	if high <= low {
		return nil, fmt.Errorf("rng: randint range [%d, %d) is empty", low, high)
	}
	if n < 0 {
		return nil, fmt.Errorf("rng: randint of %d values", n)
	}
	span := uint64(high - low)
	out := make([]int64, n)
	for i := range out {
		var v uint64
		if span >= 1<<32 {
			v = g.Uint64()
		} else {
			v = uint64(g.Uint32())
		}
		out[i] = int64(v%span) + low
	}
	return out, nil
}

// Uniform fills dst as tensor.uniform_(from, to, generator=g) does for a
// float32 tensor: 24 random bits per value, scaled in double precision and
// rounded to float32 (torch's uniform_real_distribution on the CPU).
func (g *Generator) Uniform(dst []float32, from, to float32) {
	span := float64(to - from)
	for i := range dst {
		x := float64(g.mt.uint32()&(1<<24-1)) * (1.0 / (1 << 24))
		dst[i] = float32(x*span + float64(from))
	}
}

// MarshalBinary returns the generator state in torch's get_state layout,
// plus the cached serial normal value, so that UnmarshalBinary restores the
// generator exactly (torch's own set_state drops that cache; see SetState).
func (g *Generator) MarshalBinary() ([]byte, error) {
	b := g.State()
	var extra [9]byte
	binary.LittleEndian.PutUint64(extra[:8], math.Float64bits(g.cached))
	if g.hasCached {
		extra[8] = 1
	}
	return append(b, extra[:]...), nil
}

// UnmarshalBinary restores a state written by MarshalBinary (or a plain
// torch get_state byte string, which carries no cached value).
func (g *Generator) UnmarshalBinary(b []byte) error {
	switch len(b) {
	case StateSize:
		return g.SetState(b)
	case StateSize + 9:
		if err := g.SetState(b[:StateSize]); err != nil {
			return err
		}
		g.cached = math.Float64frombits(binary.LittleEndian.Uint64(b[StateSize:]))
		g.hasCached = b[StateSize+8] == 1
		return nil
	}
	return fmt.Errorf("rng: state has %d bytes, want %d or %d", len(b), StateSize, StateSize+9)
}
