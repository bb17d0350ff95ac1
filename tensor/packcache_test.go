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
		e := packCache.m[packKey{weak.Make(w), w.offset, 40, 24, true, true}]
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
