package gemm

import "golang.org/x/sys/cpu"

// Implemented in gemm_amd64.s. kc counts k pairs; a and b point at the
// bfloat16 pairs of packed slivers (see packPairs).
//
//go:noescape
func kern6x32BF16AVX512(kc int, a, b *uint32, c *float32, ldc int, alpha, beta float32)

// hasBF16: cpu.X86.HasAVX512BF16 is only set where AVX512F (with the OS's
// ZMM state) is. A variable so tests can simulate a CPU without it.
var hasBF16 = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BF16

// bf16AsmKernel runs kern6x32BF16AVX512 on pair panels that the driver
// passes as float32 views (see f32View). It has no half or indirect
// variant: column edges are computed into the driver's tile buffer.
var bf16AsmKernel = microKernel{name: "avx512bf16-6x32", mr: 6, nr: 32, fn: func(kc int, a, b, c []float32, ldc int, alpha, beta float32) {
	_, _ = a[6*kc-1], b[32*kc-1]
	kern6x32BF16AVX512(kc, &u32View(a)[0], &u32View(b)[0], &c[0], ldc, alpha, beta)
}}

//go:noescape
func packPairsAVX2(dst *uint32, src *float32, w, kp int, tail *[8]int32)

// packPairsAsm converts the complete pairs of one sliver (see packPairs)
// and returns how many pair rows it wrote, 0 where AVX2 is missing.
func packPairsAsm(dst []uint32, src []float32, w, kc int) int {
	kp := kc / 2
	if !hasAVX2FMA || kp == 0 {
		return 0
	}
	_, _ = dst[kp*w-1], src[2*kp*w-1]
	var tail [8]int32 // lanes of the last, partial chunk of a row
	for i := range w % 8 {
		tail[i] = -1
	}
	packPairsAVX2(&dst[0], &src[0], w, kp, &tail)
	return kp
}
