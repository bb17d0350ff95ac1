package tensor

import (
	"math/rand"
	"runtime"
	"testing"
	"weak"

	"github.com/diffuse-go/diffuse/tensor/gemm"
)

// TestPackCacheBytes checks what a cached weight costs: 16-bit panels for
// float16/bfloat16 weights (half of float32 panels), float32 panels for
// float32 weights, and that cached panels give the uncached products.
func TestPackCacheBytes(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	defer SetPackCacheBudget(SetPackCacheBudget(1 << 30))
	for _, dt := range []DType{F16, BF16, F32} {
		base := randT(r, 40, 24)
		// Two tensors with the same values: the cache is keyed by tensor.
		w, wref := Mul(base, Scalar(1)).ToDType(dt), Mul(base, Scalar(1)).ToDType(dt)
		x := randT(r, 5, 24)
		old := SetPackCacheBudget(0)
		want := Linear(x, wref, nil).Data() // packed for the call only
		SetPackCacheBudget(old)
		got := Linear(x, w, nil).Data()
		// The entry itself, not the cache total: other tests' weights may
		// be collected (and their panels dropped) meanwhile.
		packCache.Lock()
		e := packCache.m[packKey{t: weak.Make(w), off: w.offset, rows: 40, cols: 24, isB: true, trans: true}]
		packCache.Unlock()
		need := gemm.PackedBytes(true, 40, 24)
		if dt != F32 {
			need = gemm.PackedBytes16(true, 40, 24)
		}
		if e == nil || e.p == nil {
			t.Fatalf("%v weight: not cached", dt)
		}
		if e.p.Bytes() != need {
			t.Errorf("%v weight: cached panels take %d bytes, want %d", dt, e.p.Bytes(), need)
		}
		runtime.KeepAlive(w)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%v weight: cached product [%d] = %v, uncached %v", dt, i, got[i], want[i])
			}
		}
	}
}

// TestPackCacheWinograd checks that a convolution computed with the
// Winograd algorithm caches its 16 transformed weight matrices (float32 at
// any weight dtype) from the weight's second use on, and gives the result
// it gives uncached.
func TestPackCacheWinograd(t *testing.T) {
	r := rand.New(rand.NewSource(4))
	defer SetPackCacheBudget(SetPackCacheBudget(1 << 30))
	defer SetWinograd(SetWinograd(WinogradAll))
	const cout, cin = 12, 7
	base := randT(r, cout, cin, 3, 3)
	w, wref := Mul(base, Scalar(1)).ToDType(F16), Mul(base, Scalar(1)).ToDType(F16)
	x := randT(r, 2, cin, 9, 10)
	o := Conv2dOpts{Padding: [2]int{1, 1}}
	old := SetPackCacheBudget(0)
	want := Conv2d(x, wref, nil, o).Data()
	SetPackCacheBudget(old)
	key := packKey{t: weak.Make(w), off: w.offset, rows: cout, cols: cin, winograd: true}
	entry := func() *packEntry {
		packCache.Lock()
		defer packCache.Unlock()
		return packCache.m[key]
	}
	first := Conv2d(x, w, nil, o).Data()
	if e := entry(); e == nil || e.u != nil {
		t.Fatal("transformed weights cached at their first use")
	}
	got := Conv2d(x, w, nil, o).Data()
	e := entry()
	if e == nil || len(e.u) != 16 {
		t.Fatal("transformed weights not cached at their second use")
	}
	if got, want := e.bytes(), 16*gemm.PackedBytes(false, cout, cin); got != want {
		t.Errorf("cached transformed weights take %d bytes, want %d", got, want)
	}
	runtime.KeepAlive(w)
	for i := range want {
		if got[i] != want[i] || first[i] != want[i] {
			t.Fatalf("[%d]: cached %v, first use %v, uncached %v", i, got[i], first[i], want[i])
		}
	}
}

// TestPackCacheRelease checks that a weight's release function (see
// SetRelease) runs once its packed copy is cached, by Linear, by an im2col
// convolution through a reshaped view, and by a Winograd convolution at
// its caching second use, and never when nothing was cached.
func TestPackCacheRelease(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	defer SetPackCacheBudget(SetPackCacheBudget(1 << 30))
	counted := func(w *Tensor) *int {
		n := new(int)
		w.SetRelease(func() { *n++ })
		return n
	}

	x := randT(r, 5, 24)
	w0 := randT(r, 40, 24).ToDType(F16)
	n := counted(w0)
	old := SetPackCacheBudget(0)
	Linear(x, w0, nil)
	Linear(x, w0, nil)
	if *n != 0 {
		t.Errorf("Linear, nothing cached: released %d times", *n)
	}
	SetPackCacheBudget(old)
	w := randT(r, 40, 24).ToDType(F16)
	n = counted(w)
	for range 3 {
		Linear(x, w, nil)
	}
	if *n != 1 {
		t.Errorf("Linear, cached: released %d times, want 1", *n)
	}

	// A 1×1 convolution weight loaded as a matrix and reshaped to 4-D.
	m := randT(r, 8, 6)
	n = counted(m)
	cw := m.Reshape(8, 6, 1, 1)
	for range 2 {
		Conv2d(randT(r, 1, 6, 5, 5), cw, nil, Conv2dOpts{})
	}
	if *n != 1 {
		t.Errorf("Conv2d through a reshaped weight: released %d times, want 1", *n)
	}

	defer SetWinograd(SetWinograd(WinogradAll))
	ww := randT(r, 12, 7, 3, 3).ToDType(F16)
	n = counted(ww)
	xw := randT(r, 1, 7, 9, 10)
	o := Conv2dOpts{Padding: [2]int{1, 1}}
	Conv2d(xw, ww, nil, o)
	if *n != 0 {
		t.Errorf("Winograd, first use (not cached): released %d times", *n)
	}
	Conv2d(xw, ww, nil, o)
	Conv2d(xw, ww, nil, o)
	if *n != 1 {
		t.Errorf("Winograd, cached: released %d times, want 1", *n)
	}
	runtime.KeepAlive(w0)
	runtime.KeepAlive(w)
	runtime.KeepAlive(cw)
	runtime.KeepAlive(ww)
}
