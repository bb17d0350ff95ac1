package gemm

import (
	"testing"
	"time"
)

// BenchmarkKernel times the 6×32 micro-kernels alone on L1-resident
// slivers (k = 256, the driver's block), separating the kernel's rate from
// packing and conversion: float32 FMA against bf16 VDPBF16PS, where the
// CPU has them. Rates are per core.
func BenchmarkKernel(b *testing.B) {
	const kc = 256
	a := make([]float32, 6*kc)
	bb := make([]float32, 32*kc)
	for i := range a {
		a[i] = float32(i%7) * 0.25
	}
	for i := range bb {
		bb[i] = float32(i%5) * 0.5
	}
	c := make([]float32, 6*32)
	run := func(b *testing.B, k microKernel, kcArg int) {
		t0 := time.Now()
		for b.Loop() {
			for range 1000 {
				k.fn(kcArg, a, bb, c, 32, 1, 0)
			}
		}
		flops := 2 * 6 * 32 * kc * 1000 * float64(b.N)
		b.ReportMetric(flops/time.Since(t0).Seconds()/1e9, "GFLOP/s")
		b.ReportMetric(0, "ns/op")
	}
	if hasAVX2FMA {
		b.Run("f32-avx2-6x16", func(b *testing.B) {
			t0 := time.Now()
			for b.Loop() {
				for range 1000 {
					avx2Kernel.fn(kc, a, bb, c, 32, 1, 0)
				}
			}
			flops := 2 * 6 * 16 * kc * 1000 * float64(b.N)
			b.ReportMetric(flops/time.Since(t0).Seconds()/1e9, "GFLOP/s")
			b.ReportMetric(0, "ns/op")
		})
	}
	if hasAVX512 {
		b.Run("f32-avx512-6x32", func(b *testing.B) { run(b, avx512Kernel, kc) })
	}
	if hasBF16 {
		// kc/2 pairs: the same k, so the same flops, in half the steps.
		b.Run("bf16-avx512-6x32", func(b *testing.B) { run(b, bf16AsmKernel, kc/2) })
	}
}
