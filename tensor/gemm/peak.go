package gemm

import (
	"os"
	"strconv"
	"sync"
	"time"
)

var peakOnce = sync.OnceValue(func() float64 {
	if s := os.Getenv("DIFFUSE_PEAK_GFLOPS"); s != "" {
		if v, err := strconv.ParseFloat(s, 64); err == nil && v > 0 {
			return v
		}
	}
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

// PeakGFLOPS is the fp32 peak of one core in GFLOP/s, for benchmarks that
// report a fraction of it: DIFFUSE_PEAK_GFLOPS if set, otherwise measured
// once with a loop of independent vector FMAs; 0 when unknown (no SIMD
// kernel).
func PeakGFLOPS() float64 { return peakOnce() }
