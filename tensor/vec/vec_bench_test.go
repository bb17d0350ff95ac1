package vec

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// Benchmarks of each kernel against the scalar code it replaced in the
// tensor package ("old": float64 math.Exp/math.Erf per element, float64
// sums), the pure Go kernel ("go") and the dispatched kernel ("vec", the
// AVX2 assembly where available). Compare variants of one run only.

func benchData(n int, scale float64) []float32 {
	r := rand.New(rand.NewPCG(1, 1))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * scale)
	}
	return x
}

func setBytes(b *testing.B, n int) { b.SetBytes(int64(4 * n)) }

func oldSigmoid(x float32) float32 { return float32(1 / (1 + math.Exp(-float64(x)))) }

func oldSoftmaxRow(row []float32) {
	m := float32(math.Inf(-1))
	for _, v := range row {
		if v > m {
			m = v
		}
	}
	if math.IsInf(float64(m), -1) {
		clear(row)
		return
	}
	var s float32
	for i, v := range row {
		e := float32(math.Exp(float64(v - m)))
		row[i] = e
		s += e
	}
	inv := 1 / s
	for i := range row {
		row[i] *= inv
	}
}

func BenchmarkExp(b *testing.B) {
	const n = 4096
	src, dst := benchData(n, 5), make([]float32, n)
	b.Run("old", func(b *testing.B) {
		setBytes(b, n)
		for b.Loop() {
			for i, x := range src {
				dst[i] = float32(math.Exp(float64(x)))
			}
		}
	})
	b.Run("go", func(b *testing.B) {
		setBytes(b, n)
		for b.Loop() {
			expGeneric(dst, src)
		}
	})
	b.Run("vec", func(b *testing.B) {
		setBytes(b, n)
		for b.Loop() {
			Exp(dst, src)
		}
	})
}

func BenchmarkSoftmaxRow(b *testing.B) {
	for _, n := range []int{77, 1024, 4096} {
		src := benchData(n, 3)
		row := make([]float32, n)
		for _, v := range []struct {
			name string
			f    func([]float32)
		}{{"old", oldSoftmaxRow}, {"go", softmaxRowGeneric}, {"vec", SoftmaxRow}} {
			b.Run(strconv.Itoa(n)+"/"+v.name, func(b *testing.B) {
				setBytes(b, n)
				for b.Loop() {
					copy(row, src)
					v.f(row)
				}
			})
		}
	}
}

func BenchmarkSiLU(b *testing.B) {
	const n = 4096
	src, dst := benchData(n, 3), make([]float32, n)
	b.Run("old", func(b *testing.B) {
		setBytes(b, n)
		for b.Loop() {
			for i, x := range src {
				dst[i] = x * oldSigmoid(x)
			}
		}
	})
	b.Run("go", func(b *testing.B) {
		setBytes(b, n)
		for b.Loop() {
			siluGeneric(dst, src)
		}
	})
	b.Run("vec", func(b *testing.B) {
		setBytes(b, n)
		for b.Loop() {
			SiLU(dst, src)
		}
	})
}

func BenchmarkGELU(b *testing.B) {
	const n = 4096
	src, dst := benchData(n, 3), make([]float32, n)
	b.Run("old", func(b *testing.B) {
		setBytes(b, n)
		for b.Loop() {
			for i, x := range src {
				dst[i] = float32(0.5 * float64(x) * (1 + math.Erf(float64(x)/math.Sqrt2)))
			}
		}
	})
	b.Run("go", func(b *testing.B) {
		setBytes(b, n)
		for b.Loop() {
			geluGeneric(dst, src)
		}
	})
	b.Run("vec", func(b *testing.B) {
		setBytes(b, n)
		for b.Loop() {
			GELU(dst, src)
		}
	})
	b.Run("vec-mul", func(b *testing.B) {
		setBytes(b, n)
		for b.Loop() {
			GELUMul(dst, src, src)
		}
	})
}

var sink float32

func BenchmarkSum(b *testing.B) {
	const n = 4096
	x := benchData(n, 1)
	b.Run("old", func(b *testing.B) { // the float64 loop of the old normRows
		setBytes(b, n)
		for b.Loop() {
			var s float64
			for _, v := range x {
				s += float64(v)
			}
			sink = float32(s)
		}
	})
	b.Run("go", func(b *testing.B) {
		setBytes(b, n)
		for b.Loop() {
			sink = sumGeneric(x)
		}
	})
	b.Run("vec", func(b *testing.B) {
		setBytes(b, n)
		for b.Loop() {
			sink = Sum(x)
		}
	})
}

func BenchmarkDot(b *testing.B) {
	const n = 4096
	x, y := benchData(n, 1), benchData(n+1, 1)[1:]
	b.Run("old", func(b *testing.B) {
		setBytes(b, n)
		for b.Loop() {
			var s float64
			for i, v := range x {
				s += float64(v) * float64(y[i])
			}
			sink = float32(s)
		}
	})
	b.Run("go", func(b *testing.B) {
		setBytes(b, n)
		for b.Loop() {
			sink = dotGeneric(x, y)
		}
	})
	b.Run("vec", func(b *testing.B) {
		setBytes(b, n)
		for b.Loop() {
			sink = Dot(x, y)
		}
	})
}

func BenchmarkAxpyScale(b *testing.B) {
	const n = 4096
	x, y := benchData(n, 1), benchData(n, 1)
	b.Run("axpy/go", func(b *testing.B) {
		setBytes(b, n)
		for b.Loop() {
			axpyGeneric(1e-3, x, y)
		}
	})
	b.Run("axpy/vec", func(b *testing.B) {
		setBytes(b, n)
		for b.Loop() {
			Axpy(1e-3, x, y)
		}
	})
	b.Run("scale/go", func(b *testing.B) {
		setBytes(b, n)
		for b.Loop() {
			scaleGeneric(y, 1)
		}
	})
	b.Run("scale/vec", func(b *testing.B) {
		setBytes(b, n)
		for b.Loop() {
			Scale(y, 1)
		}
	})
}
