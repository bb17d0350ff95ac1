package tensor

import (
	"runtime"
	"sync"
	"sync/atomic"
	"weak"

	"github.com/diffuse-go/diffuse/tensor/gemm"
)

// Weight packing cache.
//
// Conv2d and Linear multiply by weights that are the same on every call, so
// packing them into the GEMM panel layout (and widening float16/bfloat16 to
// float32) once and keeping the panels saves work that otherwise costs about
// as much as the multiplications themselves on small spatial sizes and short
// sequences. The panels of float16/bfloat16 weights stay 16-bit
// (gemm.PackOpts.Keep16: the GEMM widens each block as it uses it), so a
// cached weight takes twice its stored size in all, a float32 one too; the
// cache is bounded by a byte budget, SetPackCacheBudget (default
// DefaultPackCacheMB MiB, 0
// disables it). Weights that
// do not fit are packed once per call instead (shared by the call's threads
// and images), which is slower but needs no lasting memory. Quantised
// weights (Q8_0 …, fp8) are never cached: each product decodes the blocks
// it packs, so they keep their stored size instead of growing to float32.
//
// Entries are keyed by the weight *Tensor (through a weak pointer, so the
// cache does not keep a model alive) and removed when that tensor is
// garbage-collected. This relies on weights not being modified in place:
// model loading, LoRA fusing and Init all install new tensors. A tensor that
// requires gradients (a parameter being trained, which an optimiser may
// update in place) is never cached.

type packKey struct {
	t          weak.Pointer[Tensor]
	off        int // storage offset of the matrix (Conv2d groups)
	rows, cols int // stored shape
	isB, trans bool
	winograd   bool // the 16 transformed matrices of a 3×3 convolution
}

type packEntry struct {
	uses atomic.Int32 // winograd entries: calls so far
	once sync.Once
	p    *gemm.Packed   // nil when the budget was exhausted
	u    []*gemm.Packed // winograd entries: U[ξ], or nil likewise
}

// bytes returns the memory held by the entry's panels.
func (e *packEntry) bytes() int64 {
	var n int64
	if e.p != nil {
		n += e.p.Bytes()
	}
	for _, p := range e.u {
		n += p.Bytes()
	}
	return n
}

// reserve takes need bytes of the cache budget and reports whether they
// were available.
func reserve(need int64) bool {
	packCache.Lock()
	defer packCache.Unlock()
	if packCache.bytes+need > packCache.budget {
		return false
	}
	packCache.bytes += need
	return true
}

// cacheEntry returns the cache entry for key, creating it (and arranging
// its removal when w is collected) if needed.
func cacheEntry(w *Tensor, key packKey) *packEntry {
	packCache.Lock()
	defer packCache.Unlock()
	e := packCache.m[key]
	if e == nil {
		e = new(packEntry)
		packCache.m[key] = e
		runtime.AddCleanup(w, dropPacked, key)
	}
	return e
}

var packCache = struct {
	sync.Mutex
	m      map[packKey]*packEntry
	bytes  int64 // bytes held by cached panels
	budget int64
}{m: map[packKey]*packEntry{}, budget: DefaultPackCacheMB << 20}

// DefaultPackCacheMB is the pack cache's budget in MiB until
// SetPackCacheBudget changes it.
const DefaultPackCacheMB = 4096

// SetPackCacheBudget sets the bytes of packed weight panels that Conv2d and
// Linear may keep (DefaultPackCacheMB MiB until set; 0 turns the cache
// off, and a negative budget counts as 0) and returns the previous budget. Panels already cached stay until their weights are collected.
func SetPackCacheBudget(bytes int64) int64 {
	packCache.Lock()
	defer packCache.Unlock()
	old := packCache.budget
	packCache.budget = max(bytes, 0)
	return old
}

// PackCacheBytes reports the bytes of packed weight panels currently cached.
func PackCacheBytes() int64 {
	packCache.Lock()
	defer packCache.Unlock()
	return packCache.bytes
}

// packedWeight returns the rows×cols matrix of contiguous weight w at storage
// offset off as a gemm operand, packed as A (isB false: op = the matrix, or
// its transpose if trans) or as B. The panels come from the cache when they
// fit in its budget; otherwise they are packed for this call only, which
// still lets every thread and every image of the call share one packing.
func packedWeight(w *Tensor, off, rows, cols int, isB, trans bool) gemm.Mat {
	src := w.mat(off, rows, cols, trans)
	x, k := rows, cols // op(src) is x×k as A, k×x as B
	if trans != isB {
		x, k = cols, rows
	}
	pack := func(o gemm.PackOpts) *gemm.Packed {
		if isB {
			return gemm.PackBWith(o, k, x, src)
		}
		return gemm.PackAWith(o, x, k, src)
	}
	if w.requiresGrad {
		return pack(gemm.PackOpts{}).Mat()
	}
	if w.q != nil {
		// Quantised weights stay as they are: every product decodes the
		// blocks it packs, so the model keeps its file size in memory
		// instead of a float32 copy four to eight times larger.
		return src
	}
	e := cacheEntry(w, packKey{t: weak.Make(w), off: off, rows: rows, cols: cols, isB: isB, trans: trans})
	keep16 := w.dtype == F16 || w.dtype == BF16
	e.once.Do(func() {
		need := gemm.PackedBytes(isB, x, k)
		if keep16 {
			need = gemm.PackedBytes16(isB, x, k)
		}
		if !reserve(need) {
			return
		}
		e.p = pack(gemm.PackOpts{OffHeap: true, Keep16: keep16})
		if got := e.p.Bytes(); got != need {
			// Keep16 does not apply to this layout: float32 panels.
			packCache.Lock()
			packCache.bytes += got - need
			packCache.Unlock()
		}
		w.releaseStorage()
	})
	if e.p == nil {
		return pack(gemm.PackOpts{}).Mat()
	}
	return e.p.Mat()
}

// releaseStorage lets the memory behind a weight's storage go (see
// SetRelease), now that a packed copy is cached. (A weight whose matrices
// are cached one by one, a grouped convolution's, may drop pages that a
// later matrix reads again: they come back from the file.)
func (w *Tensor) releaseStorage() {
	if w.release != nil {
		w.release()
	}
}

// dropPacked forgets the panels of a collected weight.
func dropPacked(key packKey) {
	packCache.Lock()
	defer packCache.Unlock()
	if e := packCache.m[key]; e != nil {
		delete(packCache.m, key)
		// The cleanup runs after every user of the tensor is gone, so
		// the entry's Once has finished.
		packCache.bytes -= e.bytes()
	}
}
