//go:build openblas && cgo

package gemm

import (
	"fmt"
	"testing"
	"time"

	"github.com/diffuse-go/diffuse/tensor/gemm/internal/openblas"
)

// BenchmarkVsOpenBLAS times Gemm and OpenBLAS's cblas_sgemm on the same
// operands in alternating rounds, so that both see the same machine load,
// and reports the best per-call rate of each and their ratio (ours/OpenBLAS).
// Each round is followed by a pause: OpenBLAS's worker threads spin for a
// while after a call and would otherwise steal the core from the next round.
// Run with
//
//	OPENBLAS_NUM_THREADS=2 go test -tags openblas -run '^$' -bench VsOpenBLAS -benchtime 1x ./tensor/gemm/
func BenchmarkVsOpenBLAS(b *testing.B) {
	defer SetThreads(0)
	const rounds = 4
	pause := [2]time.Duration{30 * time.Millisecond, 250 * time.Millisecond}
	for _, s := range benchShapes {
		m, n, k := s[0], s[1], s[2]
		for _, t := range benchThreads {
			b.Run(fmt.Sprintf("%dx%dx%d/T%d", m, n, k, t), func(b *testing.B) {
				op := newBenchOperands(m, n, k, F32, false)
				ref := make([]float32, m*n)
				ours := func() { Gemm(m, n, k, 1, op.a, op.b, 0, op.c, n) }
				theirs := func() { openblas.Sgemm(false, false, m, n, k, 1, op.a.F32, k, op.b.F32, n, 0, ref, n) }
				SetThreads(t)
				openblas.SetThreads(t)
				best := [2]time.Duration{1 << 62, 1 << 62}
				for b.Loop() {
					for range rounds {
						for i, f := range []func(){ours, theirs} {
							if d := timeCall(f); d < best[i] {
								best[i] = d
							}
							time.Sleep(pause[i])
						}
					}
				}
				flops := 2 * float64(m*n*k)
				b.ReportMetric(flops/best[0].Seconds()/1e9, "GFLOP/s")
				b.ReportMetric(flops/best[1].Seconds()/1e9, "blasGFLOP/s")
				b.ReportMetric(best[1].Seconds()/best[0].Seconds(), "ratio")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// timeCall returns the mean time of f over a block of calls lasting about
// 60 ms, after one warm-up call.
func timeCall(f func()) time.Duration {
	f()
	t0 := time.Now()
	n := 0
	for time.Since(t0) < 60*time.Millisecond {
		f()
		n++
	}
	return time.Since(t0) / time.Duration(n)
}
