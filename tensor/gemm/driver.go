package gemm

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Blocking limits. A kc×NR sliver of B stays in L1 while the kernel sweeps the
// MR-row slivers of an mc×kc block of A held in L2; an nc-wide block of packed
// B lives in L3. The driver shrinks each bound so that blocks split a
// dimension evenly instead of leaving a thin remainder block.
const (
	kcMax = 256  // 256×16 floats = 16 KiB of B sliver: half of Zen 3's 32 KiB L1d, leaving room for A
	mcMax = 144  // 144×256 floats = 144 KiB of packed A: under half of a 512 KiB L2
	ncMax = 3072 // 256×3072 floats = 3 MiB of packed B: a slice of the shared L3
)

// Variables rather than constants so tests can force tiny products onto
// several goroutines.
var (
	// Problems below this many multiply-adds run on the calling goroutine:
	// below it, waking another goroutine costs more than it saves.
	parallelMinMACs = 64 << 10
	// Each extra thread should get at least this much work.
	perThreadMinMACs = 32 << 10
)

var threadOverride atomic.Int32

// SetThreads sets how many goroutines one Gemm call may use. n <= 0 restores
// the default, runtime.GOMAXPROCS(0). Small products always run on one.
func SetThreads(n int) {
	if n < 0 {
		n = 0
	}
	threadOverride.Store(int32(n))
}

// Threads reports how many goroutines a large Gemm call will use.
func Threads() int {
	if n := int(threadOverride.Load()); n > 0 {
		return n
	}
	return runtime.GOMAXPROCS(0)
}

// workspace holds one goroutine's packing buffers. Workspaces are pooled so
// that steady-state calls allocate nothing large.
type workspace struct {
	a, b, tile, line []float32
}

var workspaces = sync.Pool{New: func() any { return new(workspace) }}

// grow returns s resliced to n, reallocated when too small (its old
// values are not kept).
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// gemmFast checks the operands and runs the blocked algorithm with kernel kern.
func gemmFast(kern microKernel, o Opts, m, n, k int, alpha float32, a, b Mat, beta float32, c []float32, ldc int) {
	if m <= 0 || n <= 0 {
		return
	}
	if ldc < n {
		panic(fmt.Sprintf("gemm: ldc %d < n %d", ldc, n))
	}
	if len(c) < (m-1)*ldc+n {
		panic(fmt.Sprintf("gemm: len(C) = %d, need %d", len(c), (m-1)*ldc+n))
	}
	if o.RowBias != nil && len(o.RowBias) < m || o.ColBias != nil && len(o.ColBias) < n {
		panic(fmt.Sprintf("gemm: %d row and %d column biases for a %d×%d product", len(o.RowBias), len(o.ColBias), m, n))
	}
	ep := epilogue{row: o.RowBias, col: o.ColBias}
	if k <= 0 {
		scaleC(m, n, beta, c, ldc)
		ep.addTo(m, n, c, ldc)
		return
	}
	checkOperand("A", a, m, k)
	checkOperand("B", b, k, n)
	if e := bf16State.Load(); e != nil { // opt-in bfloat16 compute (bf16.go)
		gemmBF16(e, kern, o, m, n, k, alpha, a, b, beta, c, ldc, ep)
		return
	}

	// Decide the thread grid: tm row groups × tn column groups of C. Each
	// group runs the whole blocked algorithm on its own part of C with its
	// own packed copies, so threads never wait on each other; the price is
	// that A is packed tn times and B tm times, which the grid minimises.
	// A pre-packed operand costs nothing to share.
	t := productThreads(o, m, n, k)
	if useDirectA(kern, a, m, n, k) {
		gemmDirectA(kern, t, m, n, k, alpha, a, b, beta, c, ldc, ep)
		return
	}
	stream := useStream(kern, m, n, k, beta, ep, c, ldc)
	tm, tn := 1, 1
	if t > 1 {
		tm, tn = gridCost(t, m, n, kern.mr, kern.nr, packCost(a, kern.mr, false), packCost(b, kern.nr, true))
	}
	if tm*tn == 1 {
		gemmBlock(kern, 0, m, 0, n, k, alpha, a, b, beta, c, ldc, ep, stream)
		return
	}
	var wg sync.WaitGroup
	for g := tm*tn - 1; g >= 0; g-- {
		i0, i1 := split(m, kern.mr, tm, g/tn)
		j0, j1 := split(n, kern.nr, tn, g%tn)
		if g == 0 {
			gemmBlock(kern, i0, i1, j0, j1, k, alpha, a, b, beta, c, ldc, ep, stream)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			gemmBlock(kern, i0, i1, j0, j1, k, alpha, a, b, beta, c, ldc, ep, stream)
		}()
	}
	wg.Wait()
}

// productThreads is how many goroutines a product of m·n·k multiply-adds
// uses: o.Threads (Threads() when 0), but one below parallelMinMACs and at
// most one per perThreadMinMACs.
func productThreads(o Opts, m, n, k int) int {
	t := o.Threads
	if t <= 0 {
		t = Threads()
	}
	if macs := m * n * k; macs < parallelMinMACs {
		t = 1
	} else if lim := macs / perThreadMinMACs; t > lim {
		t = max(lim, 1)
	}
	return t
}

// packCost weighs the memory traffic of one value of an operand for a
// thread group: 1 where the kernel streams it as it is (panels ready for
// sliver width w, or a B read in place), 3 where the group packs it itself
// (read the source, write the panel, read that back).
func packCost(x Mat, w int, isB bool) int {
	if x.Packed != nil && x.Packed.w == w || isB && x.InPlace != nil {
		return 1
	}
	return 3
}

// grid factors t threads into tm×tn, minimising the packing traffic
// tm·n + tn·m while giving every group at least one full tile.
func grid(t, m, n, mr, nr int) (tm, tn int) { return gridCost(t, m, n, mr, nr, 1, 1) }

// gridCost is grid with the traffic weighted (see packCost): each of the tn
// column groups moves all m rows of A at ca per value, each of the tm row
// groups all n columns of B at cb. On a tie the first factorisation, all
// groups along n, wins.
func gridCost(t, m, n, mr, nr, ca, cb int) (tm, tn int) {
	best := -1
	for d := 1; d <= t; d++ {
		if t%d != 0 || (d > 1 && m < d*mr) || (t/d > 1 && n < (t/d)*nr) {
			continue
		}
		if cost := cb*d*n + ca*(t/d)*m; best < 0 || cost < best {
			best, tm, tn = cost, d, t/d
		}
	}
	if best < 0 {
		// No exact factorisation gives every group a tile: use one
		// dimension only, with as many groups as it has tiles.
		if m/mr >= n/nr {
			return max(1, min(t, m/mr)), 1
		}
		return 1, max(1, min(t, n/nr))
	}
	return tm, tn
}

// split returns part g of [0, n) cut into parts pieces on tile boundaries.
func split(n, tile, parts, g int) (lo, hi int) {
	tiles := (n + tile - 1) / tile
	lo = min(n, (tiles*g/parts)*tile)
	hi = min(n, (tiles*(g+1)/parts)*tile)
	return lo, hi
}

// blockLen returns the largest block no bigger than limit (and a multiple of
// unit where possible) that cuts n into equal-sized blocks.
func blockLen(n, limit, unit int) int {
	if n <= limit {
		return n
	}
	blocks := (n + limit - 1) / limit
	l := (n + blocks - 1) / blocks
	l = (l + unit - 1) / unit * unit
	return min(l, limit)
}

// gemmBlock computes rows [i0, i1) × columns [j0, j1) of C on the calling
// goroutine, with streaming stores if stream (see useStream).
func gemmBlock(kern microKernel, i0, i1, j0, j1, k int, alpha float32, a, b Mat, beta float32, c []float32, ldc int, ep epilogue, stream bool) {
	mr, nr := kern.mr, kern.nr
	kcb := blockLen(k, kcMax, 8)
	mcb := blockLen(i1-i0, mcMax, mr)
	ncb := blockLen(j1-j0, ncMax, nr)

	// Operands packed for another kernel geometry (tests swap kernels) are
	// packed afresh from their source, as are those whose blocks would not
	// start on a sliver boundary (block limits that the sliver width does
	// not divide; only odd test geometries have them).
	pa, pb := a.Packed, b.Packed
	if pa != nil && (pa.w != mr || mcb%mr != 0 && mcb < i1-i0) {
		a, pa = pa.src, nil
	}
	if pb != nil && (pb.w != nr || ncb%nr != 0 && ncb < j1-j0) {
		b, pb = pb.src, nil
	}

	// A B operand that the kernel can read in place is not packed at all,
	// when every sliver of this part of C starts a run of nr consecutive
	// columns.
	ip := b.InPlace
	if ip == nil || kern.indirect == nil || pb != nil || ip.Run <= 0 || ip.Run%nr != 0 || j0%nr != 0 || j1%nr != 0 || ncb%nr != 0 {
		ip = nil
	}

	ws := workspaces.Get().(*workspace)
	defer workspaces.Put(ws)
	if pa == nil || pa.half != nil {
		ws.a = grow(ws.a, (mcb+mr-1)/mr*mr*kcb)
	}
	if pb == nil && ip == nil || pb != nil && pb.half != nil {
		ws.b = grow(ws.b, (ncb+nr-1)/nr*nr*kcb)
	}
	ws.tile = grow(ws.tile, mr*nr)
	ws.line = grow(ws.line, max(max(mr, nr)*kcb, lineGroup*max(mcb, ncb)))

	for jc := j0; jc < j1; jc += ncb {
		nc := min(ncb, j1-jc)
		for pc := 0; pc < k; pc += kcb {
			kc := min(kcb, k-pc)
			bp := ws.b
			var ib *inPlaceBlock
			switch {
			case ip != nil:
				ib = newInPlaceBlock(ip, pc, kc, jc, nr)
			case pb != nil:
				bp = pb.block(nr, pc, kc, jc, nc, ws.b)
			default:
				packPanels(bp, b, b.Trans, jc, nc, pc, kc, nr, ws.line)
			}
			// Later k blocks accumulate onto what the first one wrote,
			// which includes the biases.
			bet, e := beta, ep.at(0, jc)
			if pc > 0 {
				bet, e = 1, epilogue{}
			}
			for ic := i0; ic < i1; ic += mcb {
				mc := min(mcb, i1-ic)
				ap := ws.a
				if pa != nil {
					ap = pa.block(mr, pc, kc, ic, mc, ws.a)
				} else {
					packPanels(ap, a, !a.Trans, ic, mc, pc, kc, mr, ws.line)
				}
				macroKernel(kern, mc, nc, kc, alpha, aBlock{packed: ap}, bp, ib, bet, c[ic*ldc+jc:], ldc, ws.tile, e.at(ic, 0), stream)
			}
		}
	}
	if stream {
		fence()
	}
	// Off-heap panels are unmapped when their Packed is collected; keep
	// both alive until the last kernel has read them.
	runtime.KeepAlive(pa)
	runtime.KeepAlive(pb)
}

// Products with at most directMaxCols columns and an inner dimension of at
// least directMinK read A where it lies instead of packing it (see
// gemmDirectA), in row blocks of directRows rows. BenchmarkGemmDirectA,
// one thread, against the packed path: on Zen 3 1.3× at (4096, 40, 4096),
// 1.0–1.15× at n = 128 or k = 1024, 0.83–1.0× at k = 320 (where A stays in
// cache and packing it is cheap) and 0.7× at n = 640; on an AVX-512 Xeon
// 1.24–1.61×, 1.04–1.40×, 1.26× and (n = 320) 0.93×. Variables so that
// tests can drive small products through this path.
var (
	directMaxCols = 128
	directMinK    = 1024
	directRows    = 48
)

// useDirectA reports whether an m×n×k product runs gemmDirectA: A must be a
// plain row-major float32 matrix, and C narrow enough that packing A (one
// pass over m·k values) would be a large share of the work (m·n·k).
func useDirectA(kern microKernel, a Mat, m, n, k int) bool {
	return kern.direct != nil && (kern.half == nil || kern.directHalf != nil) &&
		a.Packed == nil && a.Lines == nil && !a.Trans && a.Kind == F32 &&
		n <= directMaxCols && k >= directMinK && m >= kern.mr
}

// gemmDirectA computes a narrow product (see useDirectA) on t goroutines
// without packing A: B, small, is packed once and shared; each goroutine
// takes a range of rows and walks them in blocks of directRows, each block
// along all of k, so that the micro-kernels stream every row of A from
// memory exactly once and in order, which the prefetchers follow. (The
// blocked algorithm of gemmBlock instead visits each row of A in k-block
// pieces far apart in time, and packs it on the way: for the 40 columns of
// an attention product that took as long as the multiplication.)
func gemmDirectA(kern microKernel, t, m, n, k int, alpha float32, a, b Mat, beta float32, c []float32, ldc int, ep epilogue) {
	mr, nr := kern.mr, kern.nr
	kcb := blockLen(k, kcMax, 8)
	npad := (n + nr - 1) / nr * nr
	pb := b.Packed
	if pb != nil && pb.w != nr {
		b, pb = pb.src, nil
	}
	ws := workspaces.Get().(*workspace)
	defer workspaces.Put(ws)
	ws.b = grow(ws.b, npad*k)
	ws.line = grow(ws.line, max(nr*kcb, lineGroup*n))
	blocks := make([][]float32, 0, (k+kcb-1)/kcb)
	for pc := 0; pc < k; pc += kcb {
		kc := min(kcb, k-pc)
		buf := ws.b[pc*npad : pc*npad+npad*kc]
		if pb != nil {
			buf = pb.block(nr, pc, kc, 0, n, buf)
		} else {
			packPanels(buf, b, b.Trans, 0, n, pc, kc, nr, ws.line)
		}
		blocks = append(blocks, buf)
	}
	tm := min(t, m/mr)
	if tm <= 1 {
		directRowRange(kern, 0, m, n, k, kcb, alpha, a, blocks, beta, c, ldc, ep)
	} else {
		var wg sync.WaitGroup
		for g := 1; g < tm; g++ {
			i0, i1 := split(m, mr, tm, g)
			wg.Add(1)
			go func() {
				defer wg.Done()
				directRowRange(kern, i0, i1, n, k, kcb, alpha, a, blocks, beta, c, ldc, ep)
			}()
		}
		i0, i1 := split(m, mr, tm, 0)
		directRowRange(kern, i0, i1, n, k, kcb, alpha, a, blocks, beta, c, ldc, ep)
		wg.Wait()
	}
	runtime.KeepAlive(pb)
}

// directRowRange computes rows [i0, i1) of C for gemmDirectA from the
// packed k blocks of B. Rows after the last full sliver of mr are packed as
// usual.
func directRowRange(kern microKernel, i0, i1, n, k, kcb int, alpha float32, a Mat, blocks [][]float32, beta float32, c []float32, ldc int, ep epilogue) {
	mr, nr := kern.mr, kern.nr
	ws := workspaces.Get().(*workspace)
	defer workspaces.Put(ws)
	ws.tile = grow(ws.tile, mr*nr)
	mcb := max(mr, directRows/mr*mr)
	full := i0 + (i1-i0)/mr*mr
	s := a.Stride
	for ic := i0; ic < i1; ic += mcb {
		mc := min(mcb, i1-ic)
		mf := min(mc, max(0, full-ic)) // rows of whole slivers
		for q, bp := range blocks {
			pc := q * kcb
			kc := min(kcb, k-pc)
			bet, e := beta, ep
			if q > 0 {
				bet, e = 1, epilogue{}
			}
			if mf > 0 {
				macroKernel(kern, mf, n, kc, alpha, aBlock{rows: a.F32[ic*s+pc:], lda: s}, bp, nil, bet, c[ic*ldc:], ldc, ws.tile, e.at(ic, 0), false)
			}
			if mf < mc {
				ws.a = grow(ws.a, mr*kc)
				ws.line = grow(ws.line, max(mr*kc, lineGroup*mr))
				packPanels(ws.a, a, true, ic+mf, mc-mf, pc, kc, mr, ws.line)
				macroKernel(kern, mc-mf, n, kc, alpha, aBlock{packed: ws.a}, bp, nil, bet, c[(ic+mf)*ldc:], ldc, ws.tile, e.at(ic+mf, 0), false)
			}
		}
	}
}

// Outputs of at least streamMinBytes, written in one k pass, are written
// with non-temporal stores where streamStores says so (see useStream and
// SetStreamMode). A variable for tests.
var streamMinBytes = 32 << 20

// useStream reports whether an m×n product writes C with the kernel's
// streaming stores: C is larger than the caches (streamMinBytes), each
// tile is written once (one k block, beta == 0, no biases, which are
// seeded into the tile first) and every whole tile is vector-aligned. Such
// an output, an attention product's scores with k = 40 for instance, would
// otherwise cost a read of every cache line of C before it is overwritten.
func useStream(kern microKernel, m, n, k int, beta float32, ep epilogue, c []float32, ldc int) bool {
	if !streamStores() || kern.stream == nil || beta != 0 || ep.set() || k > kcMax || m*n*4 < streamMinBytes {
		return false
	}
	v := kern.vecBytes
	return uintptr(unsafe.Pointer(&c[0]))%uintptr(v) == 0 && ldc*4%v == 0
}

// aBlock is the A side of a macro-kernel call: an mc×kc block either packed
// (packed, one mr×kc sliver after another) or, when rows is set, read where
// it lies (row i of the block at rows[i*lda:]; then mc is a multiple of mr).
type aBlock struct {
	packed []float32
	rows   []float32
	lda    int
}

// macroKernel multiplies an mc×kc block of A by a kc×nc block of B, packed
// in pb or read in place through ib, into C (whose top-left element is
// c[0]), adding the biases of ep (whose first row and column are C's).
// Tiles that stick out of C are computed into tile and then copied in. With
// stream (see useStream) whole tiles are written by kern.stream.
func macroKernel(kern microKernel, mc, nc, kc int, alpha float32, a aBlock, pb []float32, ib *inPlaceBlock, beta float32, c []float32, ldc int, tile []float32, ep epilogue, stream bool) {
	mr, nr := kern.mr, kern.nr
	for jr := 0; jr < nc; jr += nr {
		var bp []float32
		if ib != nil {
			bp = ib.sliver(jr)
		} else {
			bp = pb[jr*kc : jr*kc+nr*kc]
		}
		cols := min(nr, nc-jr)
		half := kern.half != nil && cols <= nr/2 && ib == nil
		fn, dfn, w := kern.fn, kern.direct, nr
		if half {
			fn, dfn, w = kern.half, kern.directHalf, nr/2
		}
		for ir := 0; ir < mc; ir += mr {
			rows := min(mr, mc-ir)
			var ap []float32
			if a.rows == nil {
				ap = a.packed[ir*kc : ir*kc+mr*kc]
			}
			call := func(c []float32, ldc int, alpha, beta float32) {
				switch {
				case ib != nil:
					kern.indirect(kc, ap, bp, ib.off, c, ldc, alpha, beta)
				case a.rows != nil:
					dfn(kc, a.rows[ir*a.lda:], a.lda, bp, c, ldc, alpha, beta)
				default:
					fn(kc, ap, bp, c, ldc, alpha, beta)
				}
			}
			ct := c[ir*ldc+jr:]
			if rows == mr && cols == w {
				bet := beta
				if ep.set() {
					// Seed the tile with beta·C + biases; the kernel adds
					// the product to it while it is still in L1.
					ep.at(ir, jr).seed(rows, cols, beta, ct, ldc)
					bet = 1
				}
				if stream && w == nr && ib == nil && a.rows == nil {
					kern.stream(kc, ap, bp, ct, ldc, alpha, bet)
					continue
				}
				call(ct, ldc, alpha, bet)
				continue
			}
			call(tile, nr, 1, 0)
			e := ep.at(ir, jr)
			for i := 0; i < rows; i++ {
				cr := ct[i*ldc : i*ldc+cols]
				tr := tile[i*nr : i*nr+cols]
				if beta == 0 {
					for j, v := range tr {
						cr[j] = alpha * v
					}
				} else {
					for j, v := range tr {
						cr[j] = alpha*v + beta*cr[j]
					}
				}
				e.addRow(i, cr)
			}
		}
	}
}

// inPlaceBlock is one k block of an InPlace B operand, for the columns of C
// from j0 on.
type inPlaceBlock struct {
	ip     *InPlace
	off    []int // the block's row offsets
	maxOff int
	j0, nr int
}

func newInPlaceBlock(ip *InPlace, pc, kc, j0, nr int) *inPlaceBlock {
	if len(ip.Off) < pc+kc {
		panic(fmt.Sprintf("gemm: in-place B has %d row offsets, need %d", len(ip.Off), pc+kc))
	}
	ib := &inPlaceBlock{ip: ip, off: ip.Off[pc : pc+kc], j0: j0, nr: nr}
	for p, o := range ib.off {
		if o < 0 {
			panic(fmt.Sprintf("gemm: in-place B row %d has offset %d", pc+p, o))
		}
		ib.maxOff = max(ib.maxOff, o)
	}
	return ib
}

// sliver returns the data from which the kernel reads the B sliver of
// columns j0+jr … j0+jr+nr-1, having checked that all its rows lie inside.
func (ib *inPlaceBlock) sliver(jr int) []float32 {
	j := ib.j0 + jr
	base := ib.ip.Col(j)
	if base < 0 || base+ib.maxOff+ib.nr > len(ib.ip.Data) {
		panic(fmt.Sprintf("gemm: in-place B columns %d..%d read [%d, %d) of %d values", j, j+ib.nr-1, base, base+ib.maxOff+ib.nr, len(ib.ip.Data)))
	}
	return ib.ip.Data[base:]
}

// epilogue holds the row and column biases of a product, each either nil or
// starting at the first row or column of the part of C at hand.
type epilogue struct{ row, col []float32 }

func (e epilogue) set() bool { return e.row != nil || e.col != nil }

// at returns the biases of the part of C starting at row i, column j.
func (e epilogue) at(i, j int) epilogue {
	if e.row != nil {
		e.row = e.row[i:]
	}
	if e.col != nil {
		e.col = e.col[j:]
	}
	return e
}

// addRow adds the biases to cr, row i of C.
func (e epilogue) addRow(i int, cr []float32) {
	if e.row != nil {
		b := e.row[i]
		for j := range cr {
			cr[j] += b
		}
	}
	if e.col != nil {
		for j, b := range e.col[:len(cr)] {
			cr[j] += b
		}
	}
}

// seed sets a rows×cols tile of C to beta·C + biases (C unread when beta == 0).
func (e epilogue) seed(rows, cols int, beta float32, c []float32, ldc int) {
	// The common cases, one kind of bias and no C to keep, are vector
	// stores: this runs once per tile, in every convolution and linear.
	if beta == 0 && (e.row == nil) != (e.col == nil) && seedAsm(rows, cols, e.row, e.col, c, ldc) {
		return
	}
	for i := 0; i < rows; i++ {
		cr := c[i*ldc : i*ldc+cols]
		var rb float32
		if e.row != nil {
			rb = e.row[i]
		}
		switch {
		case e.col == nil && beta == 0:
			for j := range cr {
				cr[j] = rb
			}
		case e.col == nil:
			for j := range cr {
				cr[j] = beta*cr[j] + rb
			}
		case beta == 0:
			for j, cb := range e.col[:len(cr)] {
				cr[j] = rb + cb
			}
		default:
			for j, cb := range e.col[:len(cr)] {
				cr[j] = beta*cr[j] + rb + cb
			}
		}
	}
}

// addTo adds the biases to an m×n matrix C.
func (e epilogue) addTo(m, n int, c []float32, ldc int) {
	if !e.set() {
		return
	}
	for i := 0; i < m; i++ {
		e.addRow(i, c[i*ldc:i*ldc+n])
	}
}

// scaleC sets C = beta·C, without reading C when beta == 0.
func scaleC(m, n int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		cr := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(cr)
			continue
		}
		for j := range cr {
			cr[j] *= beta
		}
	}
}

// checkOperand is checkMat for any operand: a packed one must have been
// packed for the same side and shape; a Lines operand is trusted.
func checkOperand(name string, x Mat, rows, cols int) {
	switch {
	case x.Packed != nil:
		p := x.Packed
		isB := name == "B"
		pr, pcols := p.x, p.k
		if isB {
			pr, pcols = p.k, p.x
		}
		if p.isB != isB || pr != rows || pcols != cols {
			side := map[bool]string{false: "A", true: "B"}[p.isB]
			panic(fmt.Sprintf("gemm: %s is a packed %d×%d %s operand, need %d×%d", name, pr, pcols, side, rows, cols))
		}
	case x.Lines != nil:
	default:
		checkMat(name, x, rows, cols)
	}
}

// checkMat panics unless x holds a rows×cols logical matrix, so that the
// assembly kernels, which do not bounds-check, never read outside it.
func checkMat(name string, x Mat, rows, cols int) {
	if x.Kind == Blocks {
		// Read only through Decode, in Go, which checks its own bounds.
		if x.Decode == nil {
			panic(fmt.Sprintf("gemm: %s has kind Blocks and no Decode", name))
		}
		return
	}
	r, cl := rows, cols
	if x.Trans {
		r, cl = cols, rows
	}
	if x.Stride < cl {
		panic(fmt.Sprintf("gemm: %s stride %d < %d", name, x.Stride, cl))
	}
	need := (r-1)*x.Stride + cl
	have := len(x.F32)
	switch x.Kind {
	case F32:
	case F16, BF16:
		have = len(x.U16)
	default:
		panic(fmt.Sprintf("gemm: %s has unknown kind %d", name, x.Kind))
	}
	if have < need {
		panic(fmt.Sprintf("gemm: %s holds %d values, need %d", name, have, need))
	}
}
