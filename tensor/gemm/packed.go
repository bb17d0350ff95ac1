package gemm

import (
	"fmt"
	"sync"
	"unsafe"
)

// Packed is one operand of a product stored in the micro-kernel's panel
// layout, for an operand (a weight) that takes part in many products: Gemm
// then reads its panels directly instead of packing and widening the same
// values on every call and in every thread.
//
// The layout is the driver's: k is cut into the blocks blockLen(k, kcMax, 8)
// gives, and the k block starting at pc holds ceil(x/w) slivers of w×kc
// values at data[pc·xpad:], xpad = ceil(x/w)·w, where x is the operand's
// non-k dimension and w the kernel's MR (for A) or NR (for B). Every row
// range the driver asks for starts on a sliver boundary, so a block of the
// operand is a contiguous subslice.
type Packed struct {
	isB  bool
	x, k int // op(A) is x×k, op(B) is k×x
	w    int // sliver width the panels were packed for
	kcb  int
	data []float32
	// half holds the panels instead of data for an operand kept in its
	// 16-bit format (PackOpts.Keep16); each block is widened as it is used.
	half  []uint16
	hkind Kind
	src   Mat // the unpacked operand, used when a kernel of another geometry runs
	// pairs caches the panels as the bf16 pair kernels read them, built on
	// their first use (bf16cache.go); only for panels Packed owns (owned),
	// as a caller may refill the buffer it passed to PanelsB or PackOpts.Buf.
	owned     bool
	pairsOnce sync.Once
	pairs     []uint32
}

// PackA packs op(A), an m×k matrix, for use as the A operand of Gemm.
// a must not be Packed; Lines operands are allowed.
func PackA(m, k int, a Mat) *Packed { return PackAWith(PackOpts{}, m, k, a) }

// PackB packs op(B), a k×n matrix, for use as the B operand of Gemm.
func PackB(k, n int, b Mat) *Packed { return PackBWith(PackOpts{}, k, n, b) }

// PackOpts tune PackAWith and PackBWith.
type PackOpts struct {
	// Threads bounds the goroutines that pack; <= 0 means Threads().
	Threads int
	// OffHeap puts the panels in memory mapped outside the Go heap (where
	// the OS allows), released when the Packed is garbage-collected. Use it
	// for long-lived panels: gigabytes of cached weights on the heap would
	// raise the garbage collector's heap goal just as much, so the
	// activations' memory would be recycled far less often and every op
	// would fault in fresh pages.
	OffHeap bool
	// Keep16 keeps the panels of a float16 or bfloat16 operand in that
	// format, halving their memory; Gemm widens each block of them as it
	// uses it, which costs little beside the block's arithmetic. It applies
	// to operands packed along k (an untransposed A, a transposed B: weight
	// matrices in their usual layouts); others, and Blocks operands, are
	// packed as float32.
	Keep16 bool
	// Buf, when it holds at least PackedBytes/4 values, receives float32
	// panels (OffHeap and Keep16 then do not apply): for operands packed
	// afresh on every call, so that their panels are not garbage. The
	// caller must not reuse it while the Packed is in use.
	Buf []float32
}

// PackAWith is PackA with options.
func PackAWith(o PackOpts, m, k int, a Mat) *Packed {
	return packOperand(activeKernel, o, false, m, k, a)
}

// PackBWith is PackB with options.
func PackBWith(o PackOpts, k, n int, b Mat) *Packed {
	return packOperand(activeKernel, o, true, n, k, b)
}

// Mat returns the packed operand as a Gemm argument.
func (p *Packed) Mat() Mat { return Mat{Packed: p} }

// Bytes is the memory the packed panels take.
func (p *Packed) Bytes() int64 { return int64(len(p.data))*4 + int64(len(p.half))*2 }

// PackedBytes is the memory PackA (isB false, an x×k operand) or PackB
// (isB true, a k×x operand) will allocate, for budgeting before packing.
func PackedBytes(isB bool, x, k int) int64 {
	w := activeKernel.mr
	if isB {
		w = activeKernel.nr
	}
	return int64(packedLen(x, k, w)) * 4
}

// PackedBytes16 is PackedBytes for panels kept in a 16-bit format
// (PackOpts.Keep16).
func PackedBytes16(isB bool, x, k int) int64 { return PackedBytes(isB, x, k) / 2 }

// packedLen is the number of floats an operand with non-k size x packs into.
func packedLen(x, k, w int) int { return (x + w - 1) / w * w * k }

func packOperand(kern microKernel, o PackOpts, isB bool, x, k int, src Mat) *Packed {
	threads := o.Threads
	if threads <= 0 {
		threads = Threads()
	}
	if src.Packed != nil {
		panic("gemm: packing an already packed operand")
	}
	if x <= 0 || k <= 0 {
		panic(fmt.Sprintf("gemm: packing a %d×%d operand", x, k))
	}
	w := kern.mr
	if isB {
		w = kern.nr
	}
	if src.Lines == nil {
		if isB {
			checkMat("B", src, k, x)
		} else {
			checkMat("A", src, x, k)
		}
	}
	p := &Packed{isB: isB, x: x, k: k, w: w, kcb: blockLen(k, kcMax, 8), src: src}
	// An operand is packed along k exactly when the driver would: A
	// untransposed, B transposed.
	alongK := src.Trans == isB
	n := packedLen(x, k, w)
	p.owned = len(o.Buf) < n
	if !p.owned {
		p.data = o.Buf[:n]
	} else if o.Keep16 && alongK && src.Lines == nil && (src.Kind == F16 || src.Kind == BF16) {
		p.hkind = src.Kind
		if o.OffHeap {
			if f := allocOffHeap(p, (n+1)/2); f != nil {
				p.half = unsafe.Slice((*uint16)(unsafe.Pointer(&f[0])), n)
			}
		}
		if p.half == nil {
			p.half = make([]uint16, n)
		}
	} else {
		if o.OffHeap {
			p.data = allocOffHeap(p, n)
		}
		if p.data == nil {
			p.data = make([]float32, n)
		}
	}
	xpad := (x + w - 1) / w * w
	slivers := xpad / w
	// Work items are (k block, run of slivers); runs of about 64 slivers
	// keep the items large enough to be worth a goroutine.
	const run = 64
	type item struct{ pc, kc, q0, q1 int }
	var items []item
	for pc := 0; pc < k; pc += p.kcb {
		kc := min(p.kcb, k-pc)
		for q := 0; q < slivers; q += run {
			items = append(items, item{pc, kc, q, min(q+run, slivers)})
		}
	}
	work := func(lo, hi int) {
		line := make([]float32, max(w*p.kcb, lineGroup*run*w))
		for _, it := range items[lo:hi] {
			x0 := it.q0 * w
			nx := min(x, it.q1*w) - x0
			if p.half != nil {
				packPanels16(p.half[it.pc*xpad+x0*it.kc:], src, x0, nx, it.pc, it.kc, w)
				continue
			}
			dst := p.data[it.pc*xpad+x0*it.kc:]
			packPanels(dst, src, alongK, x0, nx, it.pc, it.kc, w, line)
		}
	}
	threads = min(threads, len(items))
	if threads <= 1 || x*k < parallelMinMACs {
		work(0, len(items))
		return p
	}
	var wg sync.WaitGroup
	for t := 0; t < threads; t++ {
		lo, hi := len(items)*t/threads, len(items)*(t+1)/threads
		wg.Add(1)
		go func() {
			defer wg.Done()
			work(lo, hi)
		}()
	}
	wg.Wait()
	return p
}

// block returns the packed slivers for k block pc and the nx non-k indices
// from x0 (a multiple of the sliver width) for the kernel geometry w, or nil
// when the operand was packed for another geometry and must be packed
// afresh. Panels kept in 16 bits are widened into buf, which must hold
// ceil(nx/w)·w·kc floats.
func (p *Packed) block(w, pc, kc, x0, nx int, buf []float32) []float32 {
	if p.w != w {
		return nil
	}
	xpad := (p.x + p.w - 1) / p.w * p.w
	off := pc*xpad + x0*kc
	if p.half != nil {
		n := (nx + w - 1) / w * w * kc
		widen(buf[:n], p.half[off:off+n], p.hkind)
		return buf
	}
	return p.data[off:]
}

// packPanels16 is packPanels for 16-bit panels of an operand packed along k:
// the stored values are rearranged as they are, without widening.
func packPanels16(dst []uint16, X Mat, x0, nx, p0, kc, w int) {
	np := (nx + w - 1) / w
	dst = dst[:np*w*kc]
	for q := 0; q < np; q++ {
		panel := dst[q*w*kc : (q+1)*w*kc]
		rows := min(w, nx-q*w)
		for xi := 0; xi < rows; xi++ {
			o := (x0+q*w+xi)*X.Stride + p0
			for p, v := range X.U16[o : o+kc] {
				panel[p*w+xi] = v
			}
		}
		for xi := rows; xi < w; xi++ {
			for p := 0; p < kc; p++ {
				panel[p*w+xi] = 0
			}
		}
	}
}

// NR is the width of the B slivers of the micro-kernel Gemm runs: the number
// of columns of C that one kernel call computes.
func NR() int { return activeKernel.nr }

// KBlock is the length of the k blocks that packed operands with inner
// dimension k are cut into (the last may be shorter).
func KBlock(k int) int { return blockLen(k, kcMax, 8) }

// PanelsB wraps as a packed B operand a k×n matrix that its producer wrote
// directly in the packed layout: for each k block [pc, pc+kc) (KBlock(k)
// long), ceil(n/NR()) slivers of kc rows of NR() values, so that element
// (p, j) is data[pc·npad + (j/NR)·NR·kc + (p-pc)·NR + j%NR], npad =
// ceil(n/NR)·NR. Columns n..npad-1 are padding that only affects discarded
// results. With n <= NR() this is simply a row-major k×NR() matrix. A
// producer that writes its output that way (the attention probabilities, one
// query per column) saves Gemm the packing pass.
func PanelsB(k, n int, data []float32) *Packed { return panels(true, n, k, data) }

// PanelsA is PanelsB for an m×k A operand, in slivers of MR() rows:
// element (i, p) is data[pc·mpad + (i/MR)·MR·kc + (p-pc)·MR + i%MR], mpad =
// ceil(m/MR)·MR (see PanelIndex).
func PanelsA(m, k int, data []float32) *Packed { return panels(false, m, k, data) }

// PanelIndex returns the index in the data of PanelsA (isB false) or
// PanelsB of element (x, p), x being the row of A or the column of B.
func PanelIndex(isB bool, x, k, xi, p int) int {
	w := MR()
	if isB {
		w = NR()
	}
	xpad := (x + w - 1) / w * w
	kcb := KBlock(k)
	pc := p / kcb * kcb
	kc := min(kcb, k-pc)
	return pc*xpad + xi/w*w*kc + (p-pc)*w + xi%w
}

// MR is the height of the A slivers of the micro-kernel Gemm runs.
func MR() int { return activeKernel.mr }

func panels(isB bool, x, k int, data []float32) *Packed {
	w := MR()
	if isB {
		w = NR()
	}
	xpad := (x + w - 1) / w * w
	if x <= 0 || k <= 0 || len(data) < k*xpad {
		panic(fmt.Sprintf("gemm: panels of a %d×%d operand from %d values (sliver width %d)", x, k, len(data), w))
	}
	data = data[:k*xpad]
	kcb := KBlock(k)
	src := LinesMat(isB, func(p, x0 int, dst []float32) {
		pc := p / kcb * kcb
		kc := min(kcb, k-pc)
		for i := range dst {
			j := x0 + i
			dst[i] = data[pc*xpad+j/w*w*kc+(p-pc)*w+j%w]
		}
	})
	return &Packed{isB: isB, x: x, k: k, w: w, kcb: kcb, data: data, src: src}
}
