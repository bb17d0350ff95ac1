package gemm

// The native side of TestAsmInterpBF16, where this CPU has AVX512_BF16.

func init() {
	if !hasBF16 {
		return
	}
	asmNativeBF16 = func(kc int, a, b []float32, _ []int, c []float32, ldc int, alpha, beta float32) {
		if kc == 0 {
			// The wrapper needs kc ≥ 1; the assembly must not read a or b.
			var dummy uint32
			kern6x32BF16AVX512(0, &dummy, &dummy, &c[0], ldc, alpha, beta)
			return
		}
		bf16AsmKernel.fn(kc, a, b, c, ldc, alpha, beta)
	}
}
