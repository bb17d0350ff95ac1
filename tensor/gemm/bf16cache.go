package gemm

import "sync/atomic"

// Cached bf16 pair panels. A Packed operand (a model's weight) is the same
// in every call, so converting its float32 (or 16-bit, widened) panels to
// the pair kernels' bfloat16 pairs on every call, as gemmBlockBF16 does for
// the activations, repeats work: per block, per column group of the thread
// grid and per nc block. With the cache on, the first pair-mode product
// that uses a Packed converts all of it once and keeps the pairs beside its
// panels (2 bytes a value more memory); later products read the kernel's
// operand directly. The pairs are those convert would make from the same
// panels, so results are bit for bit the same with the cache on or off.

// cacheBF16Pairs switches the cache on (the default) or off.
var cacheBF16Pairs atomic.Bool

func init() { cacheBF16Pairs.Store(true) }

// SetBF16PairCache turns the cache of bf16 pair panels of Packed operands
// on or off and returns the previous setting. Off saves the memory (2 bytes
// per weight value) at the cost of a conversion per product. Pairs already
// built stay until their Packed is dropped.
func SetBF16PairCache(on bool) bool { return cacheBF16Pairs.Swap(on) }

// cachedPairs returns the pair panels of k block pc (length kc) and the
// slivers from x0 of p, or nil where there is no cache to use: no Packed
// or one whose panels belong to the caller, the cache off, BF16Round (which runs the float32 kernel), or panels of
// another sliver width.
func (e *bf16Engine) cachedPairs(p *Packed, w, pc, kc, x0 int) []uint32 {
	if p == nil || !p.owned || e.mode == BF16Round || p.w != w || !cacheBF16Pairs.Load() {
		return nil
	}
	p.pairsOnce.Do(p.buildPairs)
	return p.pairs[p.pairsOffset(pc)+x0*((kc+1)/2):]
}

// pairsOffset is where k block pc starts in p.pairs: every earlier block
// has the full length kcb, so ceil(kcb/2) rows of xpad pairs.
func (p *Packed) pairsOffset(pc int) int {
	xpad := (p.x + p.w - 1) / p.w * p.w
	return pc / p.kcb * xpad * ((p.kcb + 1) / 2)
}

// buildPairs converts every sliver of every k block of p to pairs.
func (p *Packed) buildPairs() {
	xpad := (p.x + p.w - 1) / p.w * p.w
	pairs := make([]uint32, p.pairsOffset(p.k-1)+xpad*((p.k-(p.k-1)/p.kcb*p.kcb+1)/2))
	buf := make([]float32, p.w*p.kcb)
	for pc := 0; pc < p.k; pc += p.kcb {
		kc := min(p.kcb, p.k-pc)
		kp := (kc + 1) / 2
		off := p.pairsOffset(pc)
		for x0 := 0; x0 < xpad; x0 += p.w {
			src := p.block(p.w, pc, kc, x0, p.w, buf)
			packPairs(pairs[off+x0*kp:off+(x0+p.w)*kp], src[:p.w*kc], p.w, kc)
		}
	}
	p.pairs = pairs
}
