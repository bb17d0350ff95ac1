package gemm

import (
	"testing"
	"time"
)

// BenchmarkKernel times the micro-kernels alone on L1-resident slivers
// (k = 256, the driver's block), separating the kernel's rate from packing
// and conversion: float32 FMA against bf16 VDPBF16PS, where the CPU has
// them, and the kernels that read A in rows (dir) against those reading it
// packed. Rates are per core.
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
	rows := asmRows(a, kc, kc+16, 0)
	c := make([]float32, 6*32)
	time1000 := func(b *testing.B, cols int, call func()) {
		t0 := time.Now()
		for b.Loop() {
			for range 1000 {
				call()
			}
		}
		flops := 2 * 6 * float64(cols) * kc * 1000 * float64(b.N)
		b.ReportMetric(flops/time.Since(t0).Seconds()/1e9, "GFLOP/s")
		b.ReportMetric(0, "ns/op")
	}
	run := func(b *testing.B, k microKernel, kcArg int) {
		time1000(b, 32, func() { k.fn(kcArg, a, bb, c, 32, 1, 0) })
	}
	if hasAVX2FMA {
		b.Run("f32-avx2-6x16", func(b *testing.B) { time1000(b, 16, func() { avx2Kernel.fn(kc, a, bb, c, 32, 1, 0) }) })
		b.Run("f32-avx2-6x16dir", func(b *testing.B) {
			time1000(b, 16, func() { avx2Kernel.direct(kc, rows, kc+16, bb, c, 32, 1, 0) })
		})
		b.Run("f32-avx2-6x8", func(b *testing.B) { time1000(b, 8, func() { avx2Kernel.half(kc, a, bb, c, 32, 1, 0) }) })
		b.Run("f32-avx2-6x8dir", func(b *testing.B) {
			time1000(b, 8, func() { avx2Kernel.directHalf(kc, rows, kc+16, bb, c, 32, 1, 0) })
		})
	}
	if hasAVX512 {
		b.Run("f32-avx512-6x32", func(b *testing.B) { run(b, avx512Kernel, kc) })
		b.Run("f32-avx512-6x32dir", func(b *testing.B) {
			time1000(b, 32, func() { avx512Kernel.direct(kc, rows, kc+16, bb, c, 32, 1, 0) })
		})
		b.Run("f32-avx512-6x16dir", func(b *testing.B) {
			time1000(b, 16, func() { avx512Kernel.directHalf(kc, rows, kc+16, bb, c, 32, 1, 0) })
		})
	}
	if hasBF16 {
		// kc/2 pairs: the same k, so the same flops, in half the steps.
		b.Run("bf16-avx512-6x32", func(b *testing.B) { run(b, bf16AsmKernel, kc/2) })
	}
}
