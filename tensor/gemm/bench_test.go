package gemm

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// benchShapes are (M, N, K) products from the UNet and text encoder: linear
// and convolution layers, then the two attention products (scores QKᵀ with a
// 40-wide head, and scores·V).
var benchShapes = [][3]int{
	{4096, 320, 320},
	{4096, 320, 2880},
	{1024, 640, 5760},
	{256, 1280, 11520},
	{4096, 4096, 40},
	{4096, 40, 4096},
	{77, 768, 768},
}

var benchThreads = []int{1, 2}

// peakGFLOPS is the fp32 peak of one core (see PeakGFLOPS).
func peakGFLOPS() float64 { return PeakGFLOPS() }

type benchOperands struct {
	a, b Mat
	c    []float32
}

// newBenchOperands builds the operands; benchmarks call it inside b.Run so
// that filtered-out shapes cost nothing.
func newBenchOperands(m, n, k int, kindB Kind, transB bool) benchOperands {
	rng := rand.New(rand.NewPCG(5, 6))
	return benchOperands{
		a: randMat(rng, F32, m, k, false, 0),
		b: randMat(rng, kindB, k, n, transB, 0),
		c: make([]float32, m*n),
	}
}

func reportFlops(b *testing.B, flops float64, elapsed time.Duration, threads int) {
	g := flops / elapsed.Seconds() / 1e9
	b.ReportMetric(g, "GFLOP/s")
	if p := peakGFLOPS(); p > 0 {
		b.ReportMetric(100*g/(p*float64(threads)), "%peak")
	}
	b.ReportMetric(0, "ns/op")
}

// BenchmarkGemm times Gemm on the model's shapes, all operands float32.
func BenchmarkGemm(b *testing.B) {
	defer SetThreads(0)
	for _, s := range benchShapes {
		m, n, k := s[0], s[1], s[2]
		for _, t := range benchThreads {
			b.Run(fmt.Sprintf("%dx%dx%d/T%d", m, n, k, t), func(b *testing.B) {
				op := newBenchOperands(m, n, k, F32, false)
				SetThreads(t)
				t0 := time.Now()
				for b.Loop() {
					Gemm(m, n, k, 1, op.a, op.b, 0, op.c, n)
				}
				reportFlops(b, 2*float64(m*n*k)*float64(b.N), time.Since(t0), t)
			})
		}
	}
}

// BenchmarkGemmB16 shows what widening a 16-bit weight while packing costs:
// a linear layer (x·Wᵀ, W stored [out, in]) with W in float32, float16 and
// bfloat16.
func BenchmarkGemmB16(b *testing.B) {
	defer SetThreads(0)
	SetThreads(1)
	for _, s := range [][3]int{{4096, 320, 320}, {77, 768, 768}} {
		m, n, k := s[0], s[1], s[2]
		for _, kind := range []Kind{F32, F16, BF16} {
			b.Run(fmt.Sprintf("%dx%dx%d/%s", m, n, k, [...]string{"f32", "f16", "bf16"}[kind]), func(b *testing.B) {
				op := newBenchOperands(m, n, k, kind, true)
				t0 := time.Now()
				for b.Loop() {
					Gemm(m, n, k, 1, op.a, op.b, 0, op.c, n)
				}
				reportFlops(b, 2*float64(m*n*k)*float64(b.N), time.Since(t0), 1)
			})
		}
	}
}

// BenchmarkPeak reports the measured single-core FMA peak used for %peak.
func BenchmarkPeak(b *testing.B) {
	for b.Loop() {
	}
	b.ReportMetric(peakGFLOPS(), "GFLOP/s/core")
}
