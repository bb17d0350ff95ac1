package tensor

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"weak"

	"github.com/diffuse-go/diffuse/tensor/gemm"
	"github.com/diffuse-go/diffuse/tensor/vec"
)

// Winograd convolution F(2×2, 3×3) (Lavin and Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2015) for stride-1 3×3 convolutions.
//
// Each 2×2 block of output (a tile) is computed from the 4×4 input patch
// under it: with d the patch and g a 3×3 filter,
//
//	Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A
//
// so per tile and channel pair it takes 16 multiplications where the direct
// convolution takes 36. Summed over input channels, the elementwise
// products become 16 independent GEMMs, one per position ξ of the 4×4
// transformed tile:
//
//	M[ξ] (cout × tiles) = U[ξ] (cout × cin) · V[ξ] (cin × tiles)
//
// with U = G g Gᵀ the transformed weights and V = Bᵀ d B the transformed
// input. That is 2.25 times fewer multiply-adds than the im2col GEMM, for
// the price of the two transforms, which are additions only, and of the
// transformed weights, 16/9 times the weight.
//
// The transforms' coefficients are 0, ±1 and ±½, exact in binary, so they
// add rounding comparable to a different summation order. F(4×4, 3×3)
// would save more (36 multiplications per 16 outputs) but its coefficients
// include fractions such as 1/6 that add rounding of their own; it is not
// used.
//
// Tiles are processed in blocks of up to winogradTiles, each block by one
// goroutine from start to end (input transform, 16 GEMMs, output
// transform), so that its transformed input and products stay in the
// core's caches. The input transform writes V directly in the GEMM's packed
// B layout (gemm.PanelsB); the 16 weight matrices are transformed and
// packed once per call, or kept in the pack cache, and shared by all
// goroutines.

// WinogradMode selects when Conv2d uses the Winograd algorithm.
type WinogradMode int32

const (
	// WinogradAuto uses it for stride-1 3×3 convolutions large enough to
	// gain: at least winogradMinPositions output positions per image and
	// winogradMinChannels input and output channels (the default).
	WinogradAuto WinogradMode = iota
	// WinogradOff never uses it: every convolution
	// is one im2col GEMM.
	WinogradOff
	// WinogradAll uses it for every convolution it supports, whatever its
	// size: for testing whole models through it.
	WinogradAll
)

var winogradMode atomic.Int32

func (m WinogradMode) String() string {
	switch m {
	case WinogradAuto:
		return "auto"
	case WinogradOff:
		return "off"
	case WinogradAll:
		return "all"
	}
	return fmt.Sprintf("WinogradMode(%d)", int32(m))
}

// ParseWinogradMode reads a mode as the CLI's DIFFUSE_WINOGRAD writes it:
// "", "1" or "auto" (WinogradAuto), "0" or "off" (WinogradOff), "all"
// (WinogradAll).
func ParseWinogradMode(s string) (WinogradMode, error) {
	switch s {
	case "", "1", "on", "auto":
		return WinogradAuto, nil
	case "0", "off":
		return WinogradOff, nil
	case "all":
		return WinogradAll, nil
	}
	return WinogradAuto, fmt.Errorf("winograd mode %q: want auto, 0, off or all", s)
}

// SetWinograd sets when Conv2d uses the Winograd algorithm and returns the
// previous mode; a value other than the three modes acts as WinogradAuto.
// Calls already running finish as they started.
func SetWinograd(m WinogradMode) WinogradMode {
	return WinogradMode(winogradMode.Swap(int32(m)))
}

// Below these sizes WinogradAuto uses the im2col GEMM: with few output
// positions per call the per-call weight transform and packing (16
// matrices of cout×cin) is not repaid, and with few channels the
// transforms outweigh the GEMMs.
const (
	winogradMinPositions = 4096
	winogradMinChannels  = 32
)

// winogradCacheBelow is the number of output positions per image from
// which the transformed weights are computed per call instead of cached.
const winogradCacheBelow = 16384

// winogradTiles is the largest number of tiles in a block; blocks shrink
// (to 32 at least, a multiple of every kernel's sliver width) until every
// thread has two of them.
const winogradTiles = 128

// winograd reports whether Conv2d computes g with the Winograd algorithm.
func (g convGeom) winograd() bool {
	mode := WinogradMode(winogradMode.Load())
	if mode == WinogradOff || g.kh != 3 || g.kw != 3 || g.groups != 1 ||
		g.o.Stride != [2]int{1, 1} || g.o.Dilation != [2]int{1, 1} ||
		g.o.Padding[0] > 2 || g.o.Padding[1] > 2 {
		return false
	}
	return mode == WinogradAll ||
		g.oh*g.ow >= winogradMinPositions && g.cin >= winogradMinChannels && g.cout >= winogradMinChannels
}

// winogradWeights returns the transformed weights of the contiguous 3×3
// convolution weight w (cout × cin × 3 × 3, any float dtype) as 16 packed
// cout×cin A operands. With cache, a weight used a second time keeps them
// in the pack cache, within its budget: they are float32, 64 bytes per
// channel pair against the 18 of the cached float16 im2col panels, so a
// weight used once (a VAE decoder's, per image) does not keep them.
func winogradWeights(w *Tensor, cout, cin int, cache bool) (u []gemm.Mat, release func()) {
	mats := func(ps []*gemm.Packed) []gemm.Mat {
		ms := make([]gemm.Mat, len(ps))
		for i, p := range ps {
			ms[i] = p.Mat()
		}
		return ms
	}
	// perCall packs into a recycled buffer, returned by release once the
	// convolution is done with it.
	perCall := func() ([]gemm.Mat, func()) {
		n := int(gemm.PackedBytes(false, cout, cin) / 4)
		buf := winogradScratch.Get().(*[]float32)
		*buf = grown(*buf, 16*n)
		ps := winogradTransformPanels(w, cout, cin, *buf, n)
		return mats(ps), func() { winogradScratch.Put(buf) }
	}
	if w.requiresGrad || !cache {
		return perCall()
	}
	e := cacheEntry(w, packKey{t: weak.Make(w), off: w.offset, rows: cout, cols: cin, winograd: true})
	if e.uses.Add(1) < 2 {
		return perCall()
	}
	e.once.Do(func() {
		if reserve(16 * gemm.PackedBytes(false, cout, cin)) {
			e.u = winogradTransform(w, cout, cin, func(int) gemm.PackOpts { return gemm.PackOpts{Threads: 1, OffHeap: true} })
			w.releaseStorage()
		}
	})
	if e.u == nil {
		return perCall()
	}
	return mats(e.u), func() {}
}

// winogradScratch recycles the float32 buffers of the weight transform (16
// matrices of cout×cin, staged and then packed) between calls.
var winogradScratch = sync.Pool{New: func() any { return new([]float32) }}

// winogradTransform returns U[ξ] = G g Gᵀ for every filter g of the
// contiguous weight w (cout × cin × 3 × 3), packed as 16 cout×cin A
// operands, U[ξ] with options o(ξ).
func winogradTransform(w *Tensor, cout, cin int, o func(xi int) gemm.PackOpts) []*gemm.Packed {
	plane := cout * cin
	buf := winogradScratch.Get().(*[]float32)
	defer winogradScratch.Put(buf)
	*buf = grown(*buf, 16*plane)
	u := *buf
	parallelFor(plane, 4096, func(lo, hi int) {
		var g [9]float32
		for f := lo; f < hi; f++ {
			w.valuesAt(w.offset+f*9, g[:])
			for xi, v := range winogradFilter(&g) {
				u[xi*plane+f] = v
			}
		}
	})
	ps := make([]*gemm.Packed, 16)
	parallelFor(16, 1, func(lo, hi int) {
		for xi := lo; xi < hi; xi++ {
			ps[xi] = gemm.PackAWith(o(xi), cout, cin, gemm.F32Mat(u[xi*plane:(xi+1)*plane], cin, false))
		}
	})
	return ps
}

// winogradFilter returns U = G g Gᵀ for one 3×3 filter g (row-major), its
// 16 values in ξ order: t = G g (4×3), then U = t Gᵀ (4×4).
func winogradFilter(g *[9]float32) (u [16]float32) {
	var t [4][3]float32
	for j := 0; j < 3; j++ {
		g0, g1, g2 := g[j], g[3+j], g[6+j]
		t[0][j] = g0
		t[1][j] = 0.5 * (g0 + g1 + g2)
		t[2][j] = 0.5 * (g0 - g1 + g2)
		t[3][j] = g2
	}
	for i := 0; i < 4; i++ {
		r0, r1, r2 := t[i][0], t[i][1], t[i][2]
		u[4*i+0] = r0
		u[4*i+1] = 0.5 * (r0 + r1 + r2)
		u[4*i+2] = 0.5 * (r0 - r1 + r2)
		u[4*i+3] = r2
	}
	return u
}

// winogradTransformPanels is winogradTransform writing U[ξ] straight into
// the GEMM's packed A layout (gemm.PanelsA) in buf[ξ·n:(ξ+1)·n], n the
// packed size of a cout×cin operand: no staging copy, so a per-call
// transform needs half the memory.
func winogradTransformPanels(w *Tensor, cout, cin int, buf []float32, n int) []*gemm.Packed {
	plane := cout * cin
	mr := gemm.MR()
	// Rows cout..mpad-1 of the last sliver only feed discarded results;
	// they are zeroed all the same, as packing would, since buf is
	// recycled.
	if pad := cout % mr; pad != 0 {
		for xi := 0; xi < 16; xi++ {
			u := buf[xi*n : (xi+1)*n]
			for p := 0; p < cin; p++ {
				i := gemm.PanelIndex(false, cout, cin, cout-pad, p)
				clear(u[i+pad : i+mr])
			}
		}
	}
	parallelFor(plane, 4096, func(lo, hi int) {
		var g [9]float32
		for f := lo; f < hi; f++ {
			w.valuesAt(w.offset+f*9, g[:])
			at := gemm.PanelIndex(false, cout, cin, f/cin, f%cin)
			for xi, v := range winogradFilter(&g) {
				buf[xi*n+at] = v
			}
		}
	})
	ps := make([]*gemm.Packed, 16)
	for xi := range ps {
		ps[xi] = gemm.PanelsA(cout, cin, buf[xi*n:(xi+1)*n])
	}
	return ps
}

// winogradWork is one goroutine's buffers: the transformed input V and the
// products M of a block, 16 matrices each.
type winogradWork struct {
	v, m []float32
	out  []int // per tile of the block: its output offset, or -1 past the last tile
	odd  []uint8
	// run: at a tile whose index in the block is a multiple of 8, how many
	// tiles from it on lie in the same row of tiles (else 0); full: whether
	// the 8 tiles from it on are all whole (no output row or column cut
	// off at the bottom or right edge).
	run  []int
	full []bool
	// segs: the block's runs of tiles in one row of tiles; strip: a
	// zero-padded copy of the four input rows under one of them.
	segs  []winogradSeg
	strip []float32
}

// winogradSeg is a run of a block's tiles in one row of tiles: block tiles
// j0..j1-1, in image img, tile row ty, from tile column tx0 on.
type winogradSeg struct{ j0, j1, img, ty, tx0 int }

var winogradPool = sync.Pool{New: func() any { return new(winogradWork) }}

// conv2dWinograd computes the convolution g of xs (contiguous [n, cin, h,
// w]) with the contiguous weight w into out ([n, cout, oh, ow]), adding
// bias bd when not nil.
func conv2dWinograd(g convGeom, xs []float32, w *Tensor, bd, out []float32) {
	th, tw := (g.oh+1)/2, (g.ow+1)/2
	// Transforming and packing the weights costs about as much as a
	// hundred tiles' GEMMs: worth keeping for the sizes of a UNet's 64×64 latents,
	// not for a VAE decoder's larger images, each decoded once.
	// A quantised weight is transformed on every call instead: kept, its
	// transform would be a float32 copy many times the weight's size.
	u, release := winogradWeights(w, g.cout, g.cin, g.oh*g.ow < winogradCacheBelow && w.q == nil)
	defer release()

	tiles := g.n * th * tw
	threads := runtime.GOMAXPROCS(0)
	nt := winogradTiles
	for nt > 32 && (tiles+nt-1)/nt < 2*threads {
		nt /= 2
	}
	blocks := (tiles + nt - 1) / nt
	var next atomic.Int64
	workers := min(threads, blocks)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws := winogradPool.Get().(*winogradWork)
			defer winogradPool.Put(ws)
			for {
				b := int(next.Add(1)) - 1
				if b >= blocks {
					return
				}
				winogradBlock(g, ws, xs, th, tw, nt, b*nt, min(tiles, (b+1)*nt), u, bd, out)
			}
		}()
	}
	wg.Wait()
}

// winogradBlock computes the tiles [t0, t1) (counted across images, row by
// row; t1-t0 <= nt, the block size) on the calling goroutine.
func winogradBlock(g convGeom, ws *winogradWork, xs []float32, th, tw, nt, t0, t1 int, u []gemm.Mat, bd, out []float32) {
	cin, cout := g.cin, g.cout
	P := g.oh * g.ow
	ws.v = grown(ws.v, 16*cin*nt)
	ws.m = grown(ws.m, 16*cout*nt)
	ws.out = grown(ws.out, nt)
	ws.segs = ws.segs[:0]
	ws.run = grown(ws.run, nt)
	ws.odd = grown(ws.odd, nt)
	ws.full = grown(ws.full, nt)
	odd := ws.odd
	for j := 0; j < nt; j++ {
		t := t0 + j
		if t >= t1 {
			ws.out[j] = -1
			continue
		}
		img, r := t/(th*tw), t%(th*tw)
		ty, tx := r/tw, r%tw
		if n := len(ws.segs); n == 0 || tx == 0 {
			ws.segs = append(ws.segs, winogradSeg{j0: j, j1: j + 1, img: img, ty: ty, tx0: tx})
		} else {
			ws.segs[n-1].j1 = j + 1
		}
		ws.out[j] = img*cout*P + 2*ty*g.ow + 2*tx
		// Bit 0: the tile's second row is inside the output; bit 1: its
		// second column.
		odd[j] = 0
		if 2*ty+1 < g.oh {
			odd[j] |= 1
		}
		if 2*tx+1 < g.ow {
			odd[j] |= 2
		}
	}
	for j := 0; j < nt; j += 8 {
		ws.run[j], ws.full[j] = 0, false
		t := t0 + j
		if t+8 > t1 {
			continue
		}
		if r := t % (th * tw); r%tw+8 <= tw {
			ws.run[j] = 8
			ws.full[j] = odd[j+7] == 3 && odd[j] == 3
		}
	}

	// Input transform: V[ξ] = (Bᵀ d B)[ξ] for every channel and tile,
	// written in the packed B layout (see gemm.PanelsB). Each run of tiles
	// in one tile row reads a zero-padded copy of the four input rows under
	// it, so that border tiles need no special case.
	w := gemm.NR()
	kcb := gemm.KBlock(cin)
	ph, pw := g.o.Padding[0], g.o.Padding[1]
	plane := g.h * g.w
	v := ws.v
	// Tiles past t1 (only in the last block) multiply zeros.
	for j := t1 - t0; j < nt; j++ {
		for ci := 0; ci < cin; ci++ {
			pc := ci / kcb * kcb
			o := pc*nt + (ci-pc)*w + j/w*w*min(kcb, cin-pc) + j%w
			for xi := 0; xi < 16; xi++ {
				v[xi*cin*nt+o] = 0
			}
		}
	}
	for _, sg := range ws.segs {
		// The strip holds input columns x0, x0+1, … of rows y0..y0+3.
		n := sg.j1 - sg.j0
		y0, x0 := 2*sg.ty-ph, 2*sg.tx0-pw
		ld := max(2*n+2, 18)
		ws.strip = grown(ws.strip, 4*ld)
		strip := ws.strip
		xa, xb := max(x0, 0), min(x0+2*n+2, g.w) // input columns inside the strip
		for ci := 0; ci < cin; ci++ {
			src := xs[(sg.img*cin+ci)*plane:]
			for r := 0; r < 4; r++ {
				row := strip[r*ld : r*ld+ld]
				y := y0 + r
				if y < 0 || y >= g.h || xa >= xb {
					clear(row)
					continue
				}
				clear(row[:xa-x0])
				copy(row[xa-x0:xb-x0], src[y*g.w+xa:y*g.w+xb])
				clear(row[xb-x0:])
			}
			pc := ci / kcb * kcb
			kc := min(kcb, cin-pc)
			rowOff := pc*nt + (ci-pc)*w
			for j := sg.j0; j < sg.j1; {
				o := rowOff + j/w*w*kc + j%w
				if ws.run[j] >= 8 {
					// j is a multiple of 8, and 8 divides the sliver
					// width, so tiles j..j+7 are consecutive in V.
					vec.WinogradIn8(strip[2*(j-sg.j0):], ld, v[o:], cin*nt)
					j += 8
					continue
				}
				vec.WinogradIn1(strip[2*(j-sg.j0):], ld, v[o:], cin*nt)
				j++
			}
		}
	}

	for xi := 0; xi < 16; xi++ {
		gemm.GemmThreads(1, cout, nt, cin, 1, u[xi], gemm.PanelsB(cin, nt, v[xi*cin*nt:(xi+1)*cin*nt]).Mat(), 0, ws.m[xi*cout*nt:], nt)
	}

	// Output transform: Y = Aᵀ M A, plus the bias.
	m := ws.m
	for co := 0; co < cout; co++ {
		var bias float32
		if bd != nil {
			bias = bd[co]
		}
		for j := 0; j < nt; {
			o := ws.out[j]
			if o < 0 {
				break
			}
			o += co * P
			if ws.run[j] >= 8 && ws.full[j] {
				vec.WinogradOut8(m[co*nt+j:], cout*nt, out[o:], g.ow, bias)
				j += 8
				continue
			}
			y00, y01, y10, y11 := vec.WinogradOut1(m[co*nt+j:], cout*nt)
			out[o] = y00 + bias
			if odd[j]&2 != 0 {
				out[o+1] = y01 + bias
			}
			if odd[j]&1 != 0 {
				out[o+g.ow] = y10 + bias
				if odd[j]&2 != 0 {
					out[o+g.ow+1] = y11 + bias
				}
			}
			j++
		}
	}
}

// grown returns s with length n, reallocated (contents lost) when its
// capacity is short: for reusable work buffers.
func grown[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
