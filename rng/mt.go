package rng

// The engine is the 32-bit Mersenne twister MT19937 (Matsumoto and Nishimura)
// with the "init_genrand" seeding, in the form torch keeps it: the state words,
// the index of the next word to temper and a countdown to the next twist.

const (
	mtN       = 624
	mtM       = 397
	mtMatrixA = 0x9908b0df
	mtUpper   = 0x80000000
	mtLower   = 0x7fffffff
)

type mt19937 struct {
	seed   uint64 // the seed as given (torch keeps all 64 bits)
	left   int    // outputs left before the next twist, plus one
	next   int    // index of the next state word
	seeded bool
	state  [mtN]uint32
}

// reseed fills the state from the low 32 bits of seed.
func (m *mt19937) reseed(seed uint64) {
	m.seed = seed
	m.seeded = true
	m.state[0] = uint32(seed)
	for i := 1; i < mtN; i++ {
		prev := m.state[i-1]
		m.state[i] = 1812433253*(prev^(prev>>30)) + uint32(i)
	}
	m.left = 1
	m.next = 0
}

// twist regenerates all 624 state words.
func (m *mt19937) twist() {
	s := &m.state
	mix := func(a, b uint32) uint32 {
		y := a&mtUpper | b&mtLower
		v := y >> 1
		if b&1 != 0 {
			v ^= mtMatrixA
		}
		return v
	}
	for i := 0; i < mtN-mtM; i++ {
		s[i] = s[i+mtM] ^ mix(s[i], s[i+1])
	}
	for i := mtN - mtM; i < mtN-1; i++ {
		s[i] = s[i+mtM-mtN] ^ mix(s[i], s[i+1])
	}
	s[mtN-1] = s[mtM-1] ^ mix(s[mtN-1], s[0])
	m.left = mtN
	m.next = 0
}

// uint32 returns the next tempered output.
func (m *mt19937) uint32() uint32 {
	m.left--
	if m.left == 0 {
		m.twist()
	}
	y := m.state[m.next]
	m.next++
	y ^= y >> 11
	y ^= (y << 7) & 0x9d2c5680
	y ^= (y << 15) & 0xefc60000
	y ^= y >> 18
	return y
}
