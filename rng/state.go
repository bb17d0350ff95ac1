package rng

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// StateSize is the length of torch's CPU generator state
// (CPUGeneratorImplState on x86-64: seed, left, seeded, next, 624 state words
// widened to 64 bits, the legacy normal fields, the float normal cache).
const StateSize = 5056

const (
	offSeed      = 0
	offLeft      = 8
	offSeeded    = 12
	offNext      = 16
	offWords     = 24
	offNormalX   = offWords + 8*mtN // 5016
	offNormalY   = offNormalX + 8
	offNormalRho = offNormalY + 8
	offNormalOK  = offNormalRho + 8 // int, then 4 bytes of padding
	offFloatNorm = 5048
	offFloatOK   = 5052
)

// State returns the generator state in the byte layout of
// torch.Generator.get_state(). A cached serial normal value is stored in
// normal_y with normal_is_valid set, as torch does.
func (g *Generator) State() []byte {
	b := make([]byte, StateSize)
	le := binary.LittleEndian
	le.PutUint64(b[offSeed:], g.mt.seed)
	le.PutUint32(b[offLeft:], uint32(int32(g.mt.left)))
	if g.mt.seeded {
		le.PutUint32(b[offSeeded:], 1)
	}
	le.PutUint64(b[offNext:], uint64(g.mt.next))
	for i, w := range g.mt.state {
		le.PutUint64(b[offWords+8*i:], uint64(w))
	}
	if g.hasCached {
		le.PutUint64(b[offNormalY:], math.Float64bits(g.cached))
		le.PutUint32(b[offNormalOK:], 1)
	}
	return b
}

// SetState restores a state in the layout State and torch's get_state write.
// Like torch's set_state, a valid legacy normal cache is restored as
// normal_rho * sin(2 pi normal_x), the fields torch's own get_state leaves at
// zero, so a cached value does not survive a get_state/set_state round trip
// (in torch either). The kernel choice is kept.
func (g *Generator) SetState(b []byte) error {
	if len(b) != StateSize {
		return fmt.Errorf("rng: state has %d bytes, want %d", len(b), StateSize)
	}
	le := binary.LittleEndian
	left := int(int32(le.Uint32(b[offLeft:])))
	next := le.Uint64(b[offNext:])
	if left < 1 || left > mtN {
		return fmt.Errorf("rng: state left=%d out of range [1, %d]", left, mtN)
	}
	if next > mtN || int(next)+left > mtN+1 {
		return fmt.Errorf("rng: state next=%d inconsistent with left=%d", next, left)
	}
	var m mt19937
	m.seed = le.Uint64(b[offSeed:])
	m.seeded = le.Uint32(b[offSeeded:]) != 0
	m.left = left
	m.next = int(next)
	for i := range m.state {
		w := le.Uint64(b[offWords+8*i:])
		if w > math.MaxUint32 {
			return errors.New("rng: state word exceeds 32 bits")
		}
		m.state[i] = uint32(w)
	}
	g.mt = m
	g.hasCached = false
	g.cached = 0
	if le.Uint32(b[offNormalOK:]) != 0 {
		rho := math.Float64frombits(le.Uint64(b[offNormalRho:]))
		x := math.Float64frombits(le.Uint64(b[offNormalX:]))
		g.cached = rho * math.Sin(2*math.Pi*x)
		g.hasCached = true
	}
	return nil
}
