package gemm

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

var peakOnce = sync.OnceValue(func() float64 {
	// Time the FMA loop: a measured peak is more honest than a nominal
	// clock times a flops-per-cycle figure. Take the best of a few runs so
	// that a preempted run does not lower the peak.
	best := 0.0
	for range 5 {
		t0 := time.Now()
		flops := fmaLoop(1 << 20)
		if r := flops / time.Since(t0).Seconds() / 1e9; r > best {
			best = r
		}
	}
	return best
})

// peakPinned holds the float64 bits of the peak set by SetPeakGFLOPS, 0
// while unset.
var peakPinned atomic.Uint64

// SetPeakGFLOPS pins the value PeakGFLOPS reports (for benchmarks run on a
// machine whose peak is known, or whose measurement is disturbed) and
// returns the previous pin; v <= 0 (or NaN) removes the pin.
func SetPeakGFLOPS(v float64) float64 {
	if !(v > 0) {
		v = 0
	}
	return math.Float64frombits(peakPinned.Swap(math.Float64bits(v)))
}

// PeakGFLOPS is the fp32 peak of one core in GFLOP/s, for benchmarks that
// report a fraction of it: the value pinned by SetPeakGFLOPS if any,
// otherwise measured once with a loop of independent vector FMAs; 0 when
// unknown (no SIMD kernel).
func PeakGFLOPS() float64 {
	if v := math.Float64frombits(peakPinned.Load()); v > 0 {
		return v
	}
	return peakOnce()
}
