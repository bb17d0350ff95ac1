package tensor

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

// rssBytes is this process's resident set size (0 where /proc is absent).
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkLinearQuant times a Linear with a 4096×4096 weight stored as
// float32, float16 and Q8_0 (and Q4_K) for a few token counts, and reports
// the weight's stored size, the bytes the pack cache holds for it after the
// calls, the growth of the resident set over the calls (rss-MiB: what the
// products keep beside the weight; a rough figure, the heap's slack counts
// in it) and the CPU time per call (cpu-ms/op: on a shared machine the
// wall time says little).
func BenchmarkLinearQuant(b *testing.B) {
	const n = 4096
	vals := wave(n*n, 1)
	for _, rows := range []int{16, 256} {
		x := FromSlice(wave(rows*n, 2), rows, n)
		for _, d := range []DType{F32, F16, Q8_0, Q4_K} {
			b.Run(fmt.Sprintf("%v/rows=%d", d, rows), func(b *testing.B) {
				w := FromSlice(append([]float32(nil), vals...), n, n).ToDType(d)
				runtime.GC()
				debug.FreeOSMemory()
				rss0, cache0 := rssBytes(), PackCacheBytes()
				stored := int64(w.Numel()) * 4
				switch {
				case w.q != nil:
					stored = w.q.bytes()
				case d == F16:
					stored /= 2
				}
				Linear(x, w, nil) // fill the pack cache
				b.ResetTimer()
				cpu0 := cpuTime()
				for i := 0; i < b.N; i++ {
					Linear(x, w, nil)
				}
				cpu := cpuTime() - cpu0
				b.StopTimer()
				b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
				runtime.GC()
				b.ReportMetric(float64(stored)/(1<<20), "weight-MiB")
				b.ReportMetric(float64(PackCacheBytes()-cache0)/(1<<20), "cache-MiB")
				b.ReportMetric(float64(rssBytes()-rss0)/(1<<20), "rss-MiB")
				b.ReportMetric(2*float64(rows)*n*n*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				runtime.KeepAlive(w)
			})
		}
	}
}
