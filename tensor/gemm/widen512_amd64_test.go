package gemm

import "testing"

// TestWidenYMM reruns TestWiden with the ZMM widening loops switched off, so
// the AVX/F16C ones (the path on CPUs without AVX-512) stay covered on an
// AVX-512 machine; TestWiden itself runs the ZMM loops there.
func TestWidenYMM(t *testing.T) {
	if !useWiden512 {
		t.Skip("no AVX-512: TestWiden already ran the YMM loops")
	}
	useWiden512 = false
	defer func() { useWiden512 = true }()
	TestWiden(t)
}

// BenchmarkWiden512 times widening 4096 float16s with the ZMM loops and, in
// the same run, the YMM ones.
func BenchmarkWiden512(b *testing.B) {
	if !useWiden512 {
		b.Skip("no AVX-512 on this CPU")
	}
	src, dst := make([]uint16, 4096), make([]float32, 4096)
	for i := range src {
		src[i] = uint16(i * 7)
	}
	for _, kind := range []Kind{F16, BF16} {
		for _, on := range []bool{false, true} {
			name := [...]string{"f16", "bf16"}[kind-F16] + map[bool]string{false: "/ymm", true: "/zmm"}[on]
			b.Run(name, func(b *testing.B) {
				useWiden512 = on
				defer func() { useWiden512 = true }()
				b.SetBytes(2 * 4096)
				for b.Loop() {
					widen(dst, src, kind)
				}
			})
		}
	}
}
