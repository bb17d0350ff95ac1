package tensor

import (
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/diffuse-go/diffuse/tensor/gemm"
)

// Benchmarks of the GEMM-backed ops at Stable Diffusion 1.5 shapes, with
// float16 weights as the models store them. Each reports GFLOP/s and the
// percentage of the fp32 peak of all GOMAXPROCS cores (gemm.PeakGFLOPS per
// core; set DIFFUSE_PEAK_GFLOPS to pin it). Weight packing is cached after
// the first call, as in a denoising loop.

func benchRand(seed uint64, shape ...int) *Tensor {
	rng := rand.New(rand.NewPCG(seed, 1))
	t := Zeros(shape...)
	for i := range t.f32 {
		t.f32[i] = rng.Float32()*2 - 1
	}
	return t
}

// opTimer measures a benchmark loop in wall time and in the process's CPU
// time. On a shared machine the wall-clock rate drops with every other job,
// while flops per CPU-second of this process (%cpupeak) only suffer from
// the cache contention: a steadier figure to compare kernels with while
// other work runs. The README's figures are wall-clock rates.
type opTimer struct {
	wall time.Time
	cpu  time.Duration
}

func startOpTimer() opTimer { return opTimer{time.Now(), cpuTime()} }

// peakGFLOPS is gemm.PeakGFLOPS, pinned by DIFFUSE_PEAK_GFLOPS when set (a
// benchmark-run setting, read here because the library reads no
// environment).
func peakGFLOPS() float64 {
	if v, err := strconv.ParseFloat(os.Getenv("DIFFUSE_PEAK_GFLOPS"), 64); err == nil {
		gemm.SetPeakGFLOPS(v)
	}
	return gemm.PeakGFLOPS()
}

func reportOpFlops(b *testing.B, flops float64, t0 opTimer) {
	elapsed, cpu := time.Since(t0.wall), cpuTime()-t0.cpu
	g := flops * float64(b.N) / elapsed.Seconds() / 1e9
	b.ReportMetric(g, "GFLOP/s")
	if p := peakGFLOPS(); p > 0 {
		b.ReportMetric(100*g/(p*float64(runtime.GOMAXPROCS(0))), "%peak")
		if cpu > 0 {
			b.ReportMetric(100*flops*float64(b.N)/cpu.Seconds()/1e9/p, "%cpupeak")
		}
	}
}

func BenchmarkConv2d(b *testing.B) {
	defer SetConvInPlace(convInPlace.Load())
	for _, s := range []struct {
		name             string
		n, cin, cout, hw int
	}{
		{"unet320@64", 2, 320, 320, 64},
		{"unet640@32", 2, 640, 640, 32},
		{"unet1280@16", 2, 1280, 1280, 16},
		{"unet1280@8", 2, 1280, 1280, 8},
		{"vae128@256", 1, 128, 128, 256},
		{"vae512@64", 1, 512, 512, 64},
	} {
		x := benchRand(1, s.n, s.cin, s.hw, s.hw)
		w := Mul(benchRand(2, s.cout, s.cin, 3, 3), Scalar(0.02)).ToDType(F16)
		bias := benchRand(3, s.cout)
		o := Conv2dOpts{Padding: [2]int{1, 1}}
		// The im2col GEMM with B read in place and with B unfolded and
		// packed, then the default (Winograd where it applies), one after
		// the other so all see the same machine load. Rates count the
		// direct convolution's flops.
		for _, mode := range []struct {
			name              string
			inPlace, winograd bool
		}{{"inplace", true, false}, {"packed", false, false}, {"default", false, true}} {
			b.Run(s.name+"/"+mode.name, func(b *testing.B) {
				SetConvInPlace(mode.inPlace)
				defer SetWinograd(SetWinograd(map[bool]WinogradMode{false: WinogradOff, true: WinogradAuto}[mode.winograd]))
				Conv2d(x, w, bias, o)
				t0 := startOpTimer()
				for b.Loop() {
					Conv2d(x, w, bias, o)
				}
				reportOpFlops(b, 2*float64(s.n*s.cout*s.cin*9*s.hw*s.hw), t0)
			})
		}
	}
}

func BenchmarkLinear(b *testing.B) {
	for _, s := range []struct {
		name          string
		rows, in, out int
	}{
		{"attn-proj-8192x320x320", 2 * 4096, 320, 320},
		{"geglu-8192x320x2560", 2 * 4096, 320, 2560},
		{"ff-out-8192x1280x320", 2 * 4096, 1280, 320},
		{"ctx-kv-154x768x320", 2 * 77, 768, 320},
		{"clip-fc1-154x768x3072", 2 * 77, 768, 3072},
		{"unet1280-512x1280x1280", 2 * 256, 1280, 1280},
	} {
		b.Run(s.name, func(b *testing.B) {
			x := benchRand(1, s.rows, s.in)
			w := Mul(benchRand(2, s.out, s.in), Scalar(0.05)).ToDType(F16)
			bias := benchRand(3, s.out)
			Linear(x, w, bias)
			t0 := startOpTimer()
			for b.Loop() {
				Linear(x, w, bias)
			}
			reportOpFlops(b, 2*float64(s.rows*s.in*s.out), t0)
		})
	}
}

// BenchmarkLinearQ8 times a FLUX-sized projection (1024 tokens,
// 3072→3072, bias) with a Q8_0 weight, float32 products (the Q8_0 blocks
// decoded while packing) against integer products (SetInt8), side by side.
func BenchmarkLinearQ8(b *testing.B) {
	const rows, in, out = 1024, 3072, 3072
	x := benchRand(1, rows, in)
	w, err := Quantize(Mul(benchRand(2, out, in), Scalar(0.05)), Q8_0)
	if err != nil {
		b.Fatal(err)
	}
	bias := benchRand(3, out)
	for _, int8 := range []bool{false, true} {
		b.Run(map[bool]string{false: "f32", true: "int8"}[int8], func(b *testing.B) {
			defer SetInt8(SetInt8(int8))
			Linear(x, w, bias)
			t0 := startOpTimer()
			for b.Loop() {
				Linear(x, w, bias)
			}
			reportOpFlops(b, 2*float64(rows*in*out), t0)
		})
	}
}

func BenchmarkAttention(b *testing.B) {
	for _, s := range []struct {
		name          string
		bh, lq, lk, d int
	}{
		{"self-16x4096x4096x40", 16, 4096, 4096, 40},
		{"cross-16x4096x77x40", 16, 4096, 77, 40},
		{"self-16x1024x1024x80", 16, 1024, 1024, 80},
		{"vae-1x4096x4096x512", 1, 4096, 4096, 512},
	} {
		b.Run(s.name, func(b *testing.B) {
			q := benchRand(1, 1, s.bh, s.lq, s.d)
			k := benchRand(2, 1, s.bh, s.lk, s.d)
			v := benchRand(3, 1, s.bh, s.lk, s.d)
			t0 := startOpTimer()
			for b.Loop() {
				Attention(q, k, v, nil, 0)
			}
			reportOpFlops(b, 4*float64(s.bh*s.lq*s.lk*s.d), t0)
		})
	}
}
