package gemm

// bfloat16 compute: an opt-in path that multiplies with AVX512_BF16's
// VDPBF16PS, which takes two bfloat16 products per float32 lane and
// instruction, so twice the multiply-adds of the float32 FMA kernel.
//
// Design:
//   - Operands are packed exactly as for the float32 kernels (packPanels,
//     or the panels of a Packed operand), then each block is converted to
//     bfloat16 pairs (packPairs) just before the macro-kernel runs on it.
//     A Packed operand therefore stays a float32 operand: when its panels
//     have the bf16 kernel's sliver width (on a CPU with AVX512_BF16 the
//     AVX-512 kernel's 6×32, the same geometry) its blocks are converted
//     from the panels; otherwise it is repacked from its source, as the
//     float32 driver does for a foreign geometry. The pack cache and
//     PanelsB thus need nothing new, and turning the mode off needs no
//     repacking. The price is a conversion pass per block (AVX2:
//     packPairsAVX2, about 0.2 ns a value for B slivers and 0.6 for A's
//     6-wide ones), repeated in every column group of the thread grid and
//     every nc block. For the Packed operands a model owns (its weights)
//     the pairs are converted once and cached beside the float32 panels
//     (bf16cache.go); activations are still converted per block.
//   - Rounding is to nearest even (half.F32ToBF16): float32 operands are
//     rounded, bfloat16 ones come out bit for bit as stored (widening is
//     exact), float16 ones are widened and then rounded.
//   - The k axis is cut into the float32 driver's k blocks; only the last
//     can have an odd length, and its last pair is padded with zero.
//   - Products that the caller runs with an InPlace B fall back to its
//     Lines: the bf16 kernel has no in-place variant.
//
// Besides the hardware kernel (BF16Native) there are two software modes:
// BF16Exact runs a pure-Go model of the kernel that gives the same bits
// (slow; it is what the interpreter test compares the assembly with), and
// BF16Round rounds the operands to bfloat16 but multiplies them with the
// float32 kernel. Products of two bfloat16 values are exact in float32, so
// BF16Round differs from the kernel only in how the products are summed
// (one rounding per product in k order, against VDPBF16PS's odd-then-even
// pair and flushing of denormal sums); it measures the image error at
// float32-kernel speed on any CPU.

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/diffuse-go/diffuse/half"
)

// BF16Mode selects whether and how Gemm computes in bfloat16.
type BF16Mode uint8

const (
	// BF16Off computes in float32 (the default).
	BF16Off BF16Mode = iota
	// BF16Native rounds both operands to bfloat16 and multiplies them with
	// the AVX512_BF16 kernel, accumulating in float32. It exists only on
	// CPUs with AVX512_BF16 (HasBF16); elsewhere it is refused and the mode
	// stays BF16Off.
	BF16Native
	// BF16Exact computes what BF16Native computes, bit for bit, with a
	// pure-Go model of the kernel. It is several hundred times slower than
	// float32: for tests, and for measuring small models on any CPU.
	BF16Exact
	// BF16Round rounds both operands to bfloat16 (denormals to zero, as
	// VDPBF16PS reads them) and multiplies them with the float32 kernel:
	// a fast stand-in for BF16Native when measuring its error on any CPU.
	BF16Round
)

func (m BF16Mode) String() string {
	switch m {
	case BF16Off:
		return "off"
	case BF16Native:
		return "native"
	case BF16Exact:
		return "exact"
	case BF16Round:
		return "round"
	}
	return fmt.Sprintf("BF16Mode(%d)", uint8(m))
}

// ParseBF16Mode reads a mode as written in DIFFUSE_BF16: "" or "0" (off),
// "1" (native), or a mode's name.
func ParseBF16Mode(s string) (BF16Mode, error) {
	switch s {
	case "", "0", "off", "false":
		return BF16Off, nil
	case "1", "on", "true", "native":
		return BF16Native, nil
	case "exact":
		return BF16Exact, nil
	case "round":
		return BF16Round, nil
	}
	return BF16Off, fmt.Errorf("bf16 mode %q: want 0, 1, off, native, exact or round", s)
}

// HasBF16 reports whether this CPU can run the bf16 kernel (AVX512_BF16).
func HasBF16() bool { return hasBF16 }

// SetBF16 turns bfloat16 compute (BF16Native) on or off for all later Gemm
// calls and reports whether it is on: without AVX512_BF16 it stays off and
// products keep computing in float32.
func SetBF16(on bool) bool {
	m := BF16Off
	if on {
		m = BF16Native
	}
	return SetBF16Mode(m) == BF16Native
}

// SetBF16Mode sets the compute mode for all later Gemm calls and returns
// the mode in effect, which is BF16Off when BF16Native is asked for on a CPU
// without AVX512_BF16. Calls already running finish in their old mode.
func SetBF16Mode(m BF16Mode) BF16Mode {
	var e *bf16Engine
	switch m {
	case BF16Off:
	case BF16Native:
		if hasBF16 {
			e = &bf16Engine{mode: m, kern: bf16AsmKernel}
		}
	case BF16Exact:
		e = &bf16Engine{mode: m, kern: bf16GoKernel}
	case BF16Round:
		e = &bf16Engine{mode: m}
	default:
		panic(fmt.Sprintf("gemm: SetBF16Mode(%d)", uint8(m)))
	}
	bf16State.Store(e)
	return CurrentBF16Mode()
}

// CurrentBF16Mode returns the compute mode in effect.
func CurrentBF16Mode() BF16Mode {
	if e := bf16State.Load(); e != nil {
		return e.mode
	}
	return BF16Off
}

// bf16State is the engine Gemm diverts to, nil while computing in float32.
var bf16State atomic.Pointer[bf16Engine]

type bf16Engine struct {
	mode BF16Mode
	kern microKernel // the pair kernel; unset for BF16Round, which runs the caller's kernel
}

// gemmBF16 is gemmFast's product in the current bf16 mode, with the
// operands already checked. kern is the float32 kernel gemmFast was given:
// BF16Round multiplies with it, the pair modes with their own kernel.
func gemmBF16(e *bf16Engine, kern microKernel, o Opts, m, n, k int, alpha float32, a, b Mat, beta float32, c []float32, ldc int, ep epilogue) {
	if e.mode != BF16Round {
		kern = e.kern
	}
	// The thread grid of gemmFast, except that every group converts both
	// operands itself, so none is cheaper to share than the other.
	t := productThreads(o, m, n, k)
	tm, tn := 1, 1
	if t > 1 {
		tm, tn = gridCost(t, m, n, kern.mr, kern.nr, 1, 1)
	}
	var wg sync.WaitGroup
	for g := tm*tn - 1; g >= 0; g-- {
		i0, i1 := split(m, kern.mr, tm, g/tn)
		j0, j1 := split(n, kern.nr, tn, g%tn)
		if g == 0 {
			gemmBlockBF16(e, kern, i0, i1, j0, j1, k, alpha, a, b, beta, c, ldc, ep)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			gemmBlockBF16(e, kern, i0, i1, j0, j1, k, alpha, a, b, beta, c, ldc, ep)
		}()
	}
	wg.Wait()
}

// bf16Workspace holds one goroutine's buffers: float32 panels (a32, b32)
// as packPanels writes them, and the converted panels (a, b) the kernel
// reads: bf16 pairs, or for BF16Round the bits of the rounded float32s.
type bf16Workspace struct {
	a32, b32, tile, line []float32
	a, b                 []uint32
}

var bf16Workspaces = sync.Pool{New: func() any { return new(bf16Workspace) }}

func growU32(s []uint32, n int) []uint32 {
	if cap(s) < n {
		return make([]uint32, n)
	}
	return s[:n]
}

// gemmBlockBF16 is gemmBlock for the bf16 modes: rows [i0, i1) × columns
// [j0, j1) of C on the calling goroutine, blocked as gemmBlock blocks them.
func gemmBlockBF16(e *bf16Engine, kern microKernel, i0, i1, j0, j1, k int, alpha float32, a, b Mat, beta float32, c []float32, ldc int, ep epilogue) {
	mr, nr := kern.mr, kern.nr
	kcb := blockLen(k, kcMax, 8)
	mcb := blockLen(i1-i0, mcMax, mr)
	ncb := blockLen(j1-j0, ncMax, nr)

	// Packed operands are used as gemmBlock uses them: their float32
	// blocks are converted where the sliver width fits, otherwise the
	// operand is packed afresh from its source.
	pa, pb := a.Packed, b.Packed
	if pa != nil && (pa.w != mr || mcb%mr != 0 && mcb < i1-i0) {
		a, pa = pa.src, nil
	}
	if pb != nil && (pb.w != nr || ncb%nr != 0 && ncb < j1-j0) {
		b, pb = pb.src, nil
	}

	ws := bf16Workspaces.Get().(*bf16Workspace)
	defer bf16Workspaces.Put(ws)
	na, nb := (mcb+mr-1)/mr*mr, (ncb+nr-1)/nr*nr // padded block sizes
	if pa == nil || pa.half != nil {
		ws.a32 = grow(ws.a32, na*kcb)
	}
	if pb == nil || pb.half != nil {
		ws.b32 = grow(ws.b32, nb*kcb)
	}
	ws.a = growU32(ws.a, na*kcb)
	ws.b = growU32(ws.b, nb*kcb)
	ws.tile = grow(ws.tile, mr*nr)
	ws.line = grow(ws.line, max(max(mr, nr)*kcb, lineGroup*max(mcb, ncb)))
	ap, bp := f32View(ws.a), f32View(ws.b)

	for jc := j0; jc < j1; jc += ncb {
		nc := min(ncb, j1-jc)
		for pc := 0; pc < k; pc += kcb {
			kc := min(kcb, k-pc)
			bops, kk := bp, (kc+1)/2
			if cached := e.cachedPairs(pb, nr, pc, kc, jc); cached != nil {
				bops = f32View(cached)
			} else {
				b32 := ws.b32
				if pb != nil {
					b32 = pb.block(nr, pc, kc, jc, nc, ws.b32)
				} else {
					packPanels(b32, b, b.Trans, jc, nc, pc, kc, nr, ws.line)
				}
				kk = e.convert(ws.b, b32, (nc+nr-1)/nr, nr, kc)
			}
			bet, epk := beta, ep.at(0, jc)
			if pc > 0 {
				bet, epk = 1, epilogue{}
			}
			for ic := i0; ic < i1; ic += mcb {
				mc := min(mcb, i1-ic)
				aops := ap
				if cached := e.cachedPairs(pa, mr, pc, kc, ic); cached != nil {
					aops = f32View(cached)
				} else {
					a32 := ws.a32
					if pa != nil {
						a32 = pa.block(mr, pc, kc, ic, mc, ws.a32)
					} else {
						packPanels(a32, a, !a.Trans, ic, mc, pc, kc, mr, ws.line)
					}
					e.convert(ws.a, a32, (mc+mr-1)/mr, mr, kc)
				}
				macroKernel(kern, mc, nc, kk, alpha, aBlock{packed: aops}, bops, nil, bet, c[ic*ldc+jc:], ldc, ws.tile, epk.at(ic, 0), false)
			}
		}
	}
	runtime.KeepAlive(pa)
	runtime.KeepAlive(pb)
}

// convert turns n float32 slivers of w×kc values (src, in packPanels'
// layout) into the kernel's operand in dst and returns the k length to
// call the kernel with: ceil(kc/2) rows of pairs, or for BF16Round kc rows
// of rounded values.
func (e *bf16Engine) convert(dst []uint32, src []float32, n, w, kc int) int {
	if e.mode == BF16Round {
		roundPanels(dst[:n*w*kc], src[:n*w*kc])
		return kc
	}
	kp := (kc + 1) / 2
	for s := 0; s < n; s++ {
		packPairs(dst[s*w*kp:(s+1)*w*kp], src[s*w*kc:(s+1)*w*kc], w, kc)
	}
	return kp
}

// packPairs converts one sliver of w×kc float32 values (row p at
// src[p·w:]) into ceil(kc/2) rows of w bfloat16 pairs: dst[q·w+x] holds
// rows 2q (low half) and 2q+1 (high half) of column x, each rounded to
// nearest even. For odd kc the last pair's high half is zero in both
// operands, so it adds 0·0.
func packPairs(dst []uint32, src []float32, w, kc int) {
	// The assembly converts several times faster: this runs once per
	// block and the kernel reuses a converted B sliver only mc/6 times.
	q := packPairsAsm(dst, src, w, kc)
	for ; 2*q+1 < kc; q++ {
		lo := src[2*q*w : 2*q*w+w]
		hi := src[(2*q+1)*w : (2*q+1)*w+w]
		d := dst[q*w : q*w+w]
		for x := range d {
			d[x] = uint32(half.F32ToBF16(lo[x])) | uint32(half.F32ToBF16(hi[x]))<<16
		}
	}
	if 2*q < kc {
		lo := src[2*q*w : 2*q*w+w]
		d := dst[q*w : q*w+w]
		for x := range d {
			d[x] = uint32(half.F32ToBF16(lo[x]))
		}
	}
}

// roundPanels stores in dst the bits of src rounded to bfloat16 (nearest
// even), with denormals flushed to zero as VDPBF16PS reads its inputs.
func roundPanels(dst []uint32, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = math.Float32bits(bf16In(uint32(half.F32ToBF16(v))))
	}
}

// f32View shows pair (or bit) panels as the float32 slices that
// macroKernel slices and hands to the kernel. No float32 operation ever
// touches them: the pair kernels view them back with u32View.
func f32View(u []uint32) []float32 {
	if len(u) == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&u[0])), len(u))
}

// u32View is the inverse of f32View.
func u32View(f []float32) []uint32 {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*uint32)(unsafe.Pointer(&f[0])), len(f))
}

// ---- The kernel's numerics ----

// bf16GoKernel is the pure-Go model of kern6x32BF16AVX512 (BF16Exact): the
// same geometry and operand layout (a: kc groups of 6 pairs, b: kc groups of
// 32, viewed as float32 slots), and the same bits.
var bf16GoKernel = microKernel{name: "go-bf16-6x32", mr: 6, nr: 32, fn: kern6x32BF16Go}

// kern6x32BF16Go computes, per element, what the assembly does: a chain of
// VDPBF16PS steps (dpbf16) over the kc pairs from +0, then VMULPS by alpha
// and, unless beta == 0 (of either sign; C is then not read), VFMADD231PS
// of beta·C. The last two round under Go's MXCSR: to nearest even, without
// flushing denormals.
func kern6x32BF16Go(kc int, a, b, c []float32, ldc int, alpha, beta float32) {
	ap, bp := u32View(a[:6*kc]), u32View(b[:32*kc])
	var acc [6][32]float32
	for p := 0; p < kc; p++ {
		bv := bp[32*p : 32*p+32]
		for i, x := range ap[6*p : 6*p+6] {
			row := &acc[i]
			for j, y := range bv {
				row[j] = dpbf16(row[j], x, y)
			}
		}
	}
	betaZero := math.Float32bits(beta)&0x7fffffff == 0
	for i := range acc {
		cr := c[i*ldc : i*ldc+32]
		for j, v := range acc[i] {
			v = float32(v * alpha) // the conversion forbids fusing with the FMA below
			if !betaZero {
				v = addRNE(float64(beta)*float64(cr[j]), v)
			}
			cr[j] = v
		}
	}
}

// dpbf16 is one 32-bit lane of VDPBF16PS: acc plus the products of the
// bfloat16 pairs a and b (low halves: even k; high halves: odd k). As the
// Intel SDM specifies it, the high (odd) product is added first and then
// the low one, each as a float32 fused multiply-add rounded to nearest even
// with denormal inputs read as zero and a denormal result flushed to zero;
// MXCSR plays no part. NaN payloads are not modelled.
func dpbf16(acc float32, a, b uint32) float32 {
	acc = fmaBF16(bf16In(a>>16), bf16In(b>>16), acc)
	return fmaBF16(bf16In(a&0xffff), bf16In(b&0xffff), acc)
}

// fmaBF16 is one step of dpbf16: x·y + z rounded once, with denormals in
// and out as zero (of their sign).
func fmaBF16(x, y, z float32) float32 {
	// x and y are bfloat16 values: 8-bit significands, so x·y is exact in
	// float64 (even exact in float32 but for the exponent range).
	return daz(addRNE(float64(x)*float64(y), daz(z)))
}

// bf16In widens bfloat16 bits h (in the low 16 bits) to float32, reading a
// denormal as zero.
func bf16In(h uint32) float32 { return daz(math.Float32frombits(h << 16)) }

// daz replaces a denormal by a zero of the same sign.
func daz(f float32) float32 {
	if b := math.Float32bits(f); b&0x7f800000 == 0 {
		return math.Float32frombits(b & 0x80000000)
	}
	return f
}

// addRNE returns p + z rounded once to float32 (to nearest even, with
// gradual underflow), for p exact in float64, as any product of two
// float32 values is. So addRNE(float64(x)*float64(y), z) is the float32
// fused multiply-add.
//
// The float64 sum s is within half a float64 ulp of the exact sum, and every
// float32 midpoint (and the overflow threshold) is a float64, so rounding s
// to float32 rounds the exact sum, except where s lands exactly on a
// midpoint that the exact sum is not on. Then the exact sum lies on the side
// of s where its rounding error e (recovered exactly by TwoSum) points.
func addRNE(p float64, z float32) float32 {
	zf := float64(z)
	s := p + zf
	f := float32(s)
	if float64(f) == s || s-s != 0 { // exact; or Inf or NaN
		return f
	}
	bv := s - p
	e := (p - (s - bv)) + (zf - bv) // p + zf == s + e exactly
	if e == 0 {
		return f
	}
	// g is the float32 on the other side of s from f.
	up := float32(math.Inf(1))
	if s < float64(f) {
		up = -up
	}
	g := math.Nextafter32(f, up)
	var mid float64
	switch {
	case math.IsInf(float64(g), 0): // f = ±MaxFloat32, s short of the overflow threshold
		return f
	case math.IsInf(float64(f), 0): // s at or past the overflow threshold
		mid = float64(g) + math.Copysign(0x1p103, float64(g))
	default:
		mid = (float64(f) + float64(g)) / 2
	}
	if s != mid {
		return f
	}
	// One float64 ulp off the midpoint, toward the exact sum, is still
	// nearer the midpoint than any other float32 value.
	return float32(math.Nextafter(s, math.Copysign(math.Inf(1), e)))
}
