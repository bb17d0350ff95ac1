package tensor

import (
	"math"
	"testing"
)

// oldNormRows is normRows before the vec kernels (float64 sums, one
// element at a time), kept for the side-by-side benchmark.
func oldNormRows(x []float32, rows, l int, eps float64, rms bool) (xhat []float32, rstd []float32) {
	xhat = make([]float32, len(x))
	rstd = make([]float32, rows)
	parallelFor(rows, max(1, 4096/max(l, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := x[r*l : (r+1)*l]
			var mean float64
			if !rms {
				var s float64
				for _, v := range row {
					s += float64(v)
				}
				mean = s / float64(l)
			}
			var ss float64
			for _, v := range row {
				d := float64(v) - mean
				ss += d * d
			}
			rs := 1 / math.Sqrt(ss/float64(l)+eps)
			rstd[r] = float32(rs)
			dst := xhat[r*l : (r+1)*l]
			m32, r32 := float32(mean), float32(rs)
			for i, v := range row {
				dst[i] = (v - m32) * r32
			}
		}
	})
	return xhat, rstd
}

// BenchmarkNormRows compares the row normalisation of GroupNorm (SD 1.5
// [2, 320, 64, 64] in 32 groups) and LayerNorm (8192 rows of 320).
func BenchmarkNormRows(b *testing.B) {
	for _, s := range []struct {
		name    string
		rows, l int
	}{{"groupnorm-64x40960", 64, 40960}, {"layernorm-8192x320", 8192, 320}} {
		x := benchRand(1, s.rows*s.l).Data()
		dst := make([]float32, len(x))
		b.Run(s.name+"/old", func(b *testing.B) {
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				oldNormRows(x, s.rows, s.l, 1e-5, false)
			}
		})
		b.Run(s.name+"/new", func(b *testing.B) {
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				normRows(x, dst, s.rows, s.l, 1e-5, false)
			}
		})
	}
}

// BenchmarkElementwiseOps times the tensor-level ops that now use the vec
// kernels and the closure-free broadcasting kernel, at SD 1.5 sizes.
func BenchmarkElementwiseOps(b *testing.B) {
	x := benchRand(1, 2, 320, 64, 64)
	bias := benchRand(2, 1, 320, 1, 1)
	scores := benchRand(3, 64, 4096)
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"silu-2x320x64x64", func() { SiLU(x) }},
		{"gelu-2x320x64x64", func() { GELU(x) }},
		{"add-channel-bias", func() { Add(x, bias) }},
		{"add-same-shape", func() { Add(x, x) }},
		{"softmax-64x4096", func() { Softmax(scores) }},
		{"groupnorm-2x320x64x64", func() { GroupNorm(x, 32, bias.Reshape(320), bias.Reshape(320), 1e-5) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				c.f()
			}
		})
	}
}
