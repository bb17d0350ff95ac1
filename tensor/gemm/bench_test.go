package gemm

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
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

// benchThreads are the thread counts timed: 1 and 2, or the list in
// DIFFUSE_BENCH_THREADS ("1,2,16") for machines with more cores.
var benchThreads = func() []int {
	ts := []int{1, 2}
	if s := os.Getenv("DIFFUSE_BENCH_THREADS"); s != "" {
		ts = ts[:0]
		for _, f := range strings.Split(s, ",") {
			if t, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && t > 0 {
				ts = append(ts, t)
			}
		}
	}
	return ts
}()

// peakGFLOPS is the fp32 peak of one core (see PeakGFLOPS), pinned by
// DIFFUSE_PEAK_GFLOPS when set (a benchmark-run setting, read here because
// the library reads no environment).
func peakGFLOPS() float64 {
	if v, err := strconv.ParseFloat(os.Getenv("DIFFUSE_PEAK_GFLOPS"), 64); err == nil {
		SetPeakGFLOPS(v)
	}
	return PeakGFLOPS()
}

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

// BenchmarkGemmBF16 times the bf16 kernel (BF16Native) against float32 on
// the model's shapes and reports the ratio bf16/f32 (see benchAB).
func BenchmarkGemmBF16(b *testing.B) {
	if !HasBF16() {
		b.Skip("no AVX512_BF16 on this CPU")
	}
	defer SetBF16Mode(BF16Off)
	for _, s := range benchShapes {
		m, n, k := s[0], s[1], s[2]
		for _, t := range benchThreads {
			b.Run(fmt.Sprintf("%dx%dx%d/T%d", m, n, k, t), func(b *testing.B) {
				benchAB(b, m, n, k, t, "f32", "bf16", func(second bool) {
					SetBF16Mode(map[bool]BF16Mode{false: BF16Off, true: BF16Native}[second])
				})
			})
		}
	}
}

// BenchmarkGemmDirectA times narrow products with A packed (the blocked
// algorithm) and read where it lies (gemmDirectA), one thread, and reports
// the ratio direct/packed (see benchAB). It is how directMaxCols and
// directMinK were chosen.
func BenchmarkGemmDirectA(b *testing.B) {
	oldCols, oldK := directMaxCols, directMinK
	defer func() { directMaxCols, directMinK = oldCols, oldK }()
	for _, s := range [][3]int{{4096, 40, 4096}, {4096, 128, 4096}, {4096, 40, 1024}, {4096, 40, 320}, {4096, 320, 2880}} {
		m, n, k := s[0], s[1], s[2]
		b.Run(fmt.Sprintf("%dx%dx%d", m, n, k), func(b *testing.B) {
			benchAB(b, m, n, k, 1, "packed", "direct", func(second bool) {
				directMaxCols, directMinK = 0, 1
				if second {
					directMaxCols = n
				}
			})
		})
	}
}

// BenchmarkGemmStream times products with a short k and a large output,
// written with ordinary and with non-temporal stores (see useStream),
// whatever this CPU's default, and reports the ratio stream/plain (see
// benchAB).
func BenchmarkGemmStream(b *testing.B) {
	oldMin := streamMinBytes
	defer func() { streamMinBytes = oldMin }()
	defer SetStreamMode(CurrentStreamMode())
	for _, s := range [][3]int{{4096, 4096, 40}, {4096, 4096, 160}} {
		m, n, k := s[0], s[1], s[2]
		for _, t := range benchThreads {
			b.Run(fmt.Sprintf("%dx%dx%d/T%d", m, n, k, t), func(b *testing.B) {
				benchAB(b, m, n, k, t, "plain", "stream", func(second bool) {
					streamMinBytes = 0
					SetStreamMode(map[bool]StreamMode{false: StreamOff, true: StreamOn}[second])
				})
			})
		}
	}
}

// benchAB times an m×n×k float32 product on t threads in two
// configurations, set by set(false) and set(true), alternating them so that
// both see the same machine load, and reports the best rate of each and
// their ratio (second/first).
func benchAB(b *testing.B, m, n, k, t int, first, second string, set func(second bool)) {
	defer SetThreads(0)
	SetThreads(t)
	op := newBenchOperands(m, n, k, F32, false)
	best := [2]time.Duration{1 << 62, 1 << 62}
	for b.Loop() {
		for range 4 {
			for i := range best {
				set(i == 1)
				Gemm(m, n, k, 1, op.a, op.b, 0, op.c, n)
				t0 := time.Now()
				calls := 0
				for time.Since(t0) < 40*time.Millisecond {
					Gemm(m, n, k, 1, op.a, op.b, 0, op.c, n)
					calls++
				}
				if d := time.Since(t0) / time.Duration(calls); d < best[i] {
					best[i] = d
				}
			}
		}
	}
	flops := 2 * float64(m*n*k)
	b.ReportMetric(flops/best[0].Seconds()/1e9, first+"GFLOP/s")
	b.ReportMetric(flops/best[1].Seconds()/1e9, second+"GFLOP/s")
	b.ReportMetric(best[0].Seconds()/best[1].Seconds(), "speedup")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkPeak reports the measured single-core FMA peak used for %peak.
func BenchmarkPeak(b *testing.B) {
	for b.Loop() {
	}
	b.ReportMetric(peakGFLOPS(), "GFLOP/s/core")
}
