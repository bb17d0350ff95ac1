//go:build amd64

#include "textflag.h"

// 16-lane versions of widenF16AVX and widenBF16AVX (gemm_amd64.s, which is
// generated: these live apart from it).

// func widenF16AVX512(dst *float32, src *uint16, n int)
//
// n must be a positive multiple of 16.
TEXT ·widenF16AVX512(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX

widenF16_512_loop:
	VCVTPH2PS (SI), Z0
	VMOVUPS   Z0, (DI)
	ADDQ      $32, SI
	ADDQ      $64, DI
	SUBQ      $16, CX
	JNZ       widenF16_512_loop
	VZEROUPPER
	RET

// func widenBF16AVX512(dst *float32, src *uint16, n int)
//
// n must be a positive multiple of 16. A bfloat16 is the top half of a float32.
TEXT ·widenBF16AVX512(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX

widenBF16_512_loop:
	VPMOVZXWD (SI), Z0
	VPSLLD    $16, Z0, Z0
	VMOVUPS   Z0, (DI)
	ADDQ      $32, SI
	ADDQ      $64, DI
	SUBQ      $16, CX
	JNZ       widenBF16_512_loop
	VZEROUPPER
	RET
