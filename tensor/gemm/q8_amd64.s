// Hand-written; the Q8_0 integer kernel of q8.go.

#include "textflag.h"

// One k pair of the 6×16 tile: two W vectors, six broadcast A pairs
// (A's pairs of one k for the six rows are adjacent: broadcasting from six
// lines 64 bytes apart instead ran 10% slower on Zen 3),
// twelve VPMADDWD into int32 accumulators Y0-Y11 (Y15 the product).
#define Q8STEP(aoff, woff) \
	VMOVDQU woff(DI), Y12 \
	VMOVDQU woff+32(DI), Y13 \
	VPBROADCASTD aoff(SI), Y14 \
	VPMADDWD Y12, Y14, Y15 \
	VPADDD Y15, Y0, Y0 \
	VPMADDWD Y13, Y14, Y15 \
	VPADDD Y15, Y1, Y1 \
	VPBROADCASTD aoff+4(SI), Y14 \
	VPMADDWD Y12, Y14, Y15 \
	VPADDD Y15, Y2, Y2 \
	VPMADDWD Y13, Y14, Y15 \
	VPADDD Y15, Y3, Y3 \
	VPBROADCASTD aoff+8(SI), Y14 \
	VPMADDWD Y12, Y14, Y15 \
	VPADDD Y15, Y4, Y4 \
	VPMADDWD Y13, Y14, Y15 \
	VPADDD Y15, Y5, Y5 \
	VPBROADCASTD aoff+12(SI), Y14 \
	VPMADDWD Y12, Y14, Y15 \
	VPADDD Y15, Y6, Y6 \
	VPMADDWD Y13, Y14, Y15 \
	VPADDD Y15, Y7, Y7 \
	VPBROADCASTD aoff+16(SI), Y14 \
	VPMADDWD Y12, Y14, Y15 \
	VPADDD Y15, Y8, Y8 \
	VPMADDWD Y13, Y14, Y15 \
	VPADDD Y15, Y9, Y9 \
	VPBROADCASTD aoff+20(SI), Y14 \
	VPMADDWD Y12, Y14, Y15 \
	VPADDD Y15, Y10, Y10 \
	VPMADDWD Y13, Y14, Y15 \
	VPADDD Y15, Y11, Y11

// The first pair of a block writes the accumulators instead of adding.
#define Q8FIRST \
	VMOVDQU (DI), Y12 \
	VMOVDQU 32(DI), Y13 \
	VPBROADCASTD (SI), Y14 \
	VPMADDWD Y12, Y14, Y0 \
	VPMADDWD Y13, Y14, Y1 \
	VPBROADCASTD 4(SI), Y14 \
	VPMADDWD Y12, Y14, Y2 \
	VPMADDWD Y13, Y14, Y3 \
	VPBROADCASTD 8(SI), Y14 \
	VPMADDWD Y12, Y14, Y4 \
	VPMADDWD Y13, Y14, Y5 \
	VPBROADCASTD 12(SI), Y14 \
	VPMADDWD Y12, Y14, Y6 \
	VPMADDWD Y13, Y14, Y7 \
	VPBROADCASTD 16(SI), Y14 \
	VPMADDWD Y12, Y14, Y8 \
	VPMADDWD Y13, Y14, Y9 \
	VPBROADCASTD 20(SI), Y14 \
	VPMADDWD Y12, Y14, Y10 \
	VPMADDWD Y13, Y14, Y11

// C row += float32(acc)·(sa[r]·sw): Y12/Y13 hold sw, Y14 the broadcast
// sa[r], Y15 the scale; a multiply, then an add (no FMA), as q8KernelGo.
#define Q8ROW(saoff, acc0, acc1, mem0, mem1) \
	VBROADCASTSS saoff(R8), Y14 \
	VMULPS Y12, Y14, Y15 \
	VCVTDQ2PS acc0, acc0 \
	VMULPS Y15, acc0, acc0 \
	VADDPS mem0, acc0, acc0 \
	VMOVUPS acc0, mem0 \
	VMULPS Y13, Y14, Y15 \
	VCVTDQ2PS acc1, acc1 \
	VMULPS Y15, acc1, acc1 \
	VADDPS mem1, acc1, acc1 \
	VMOVUPS acc1, mem1

// func q8KernAVX2(nkb int, a *int32, sa *float32, w *int32, sw *float32, c *float32, ldc int)
TEXT ·q8KernAVX2(SB), NOSPLIT, $0-56
	MOVQ nkb+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ sa+16(FP), R8
	MOVQ w+24(FP), DI
	MOVQ sw+32(FP), R9
	MOVQ c+40(FP), DX
	MOVQ ldc+48(FP), R10
	SHLQ $2, R10
	LEAQ (R10)(R10*2), R11
	ADDQ DX, R11
q8block:
	Q8FIRST
	Q8STEP(24, 64)
	Q8STEP(48, 128)
	Q8STEP(72, 192)
	Q8STEP(96, 256)
	Q8STEP(120, 320)
	Q8STEP(144, 384)
	Q8STEP(168, 448)
	Q8STEP(192, 512)
	Q8STEP(216, 576)
	Q8STEP(240, 640)
	Q8STEP(264, 704)
	Q8STEP(288, 768)
	Q8STEP(312, 832)
	Q8STEP(336, 896)
	Q8STEP(360, 960)
	VMOVUPS (R9), Y12
	VMOVUPS 32(R9), Y13
	Q8ROW(0, Y0, Y1, (DX), 32(DX))
	Q8ROW(4, Y2, Y3, (DX)(R10*1), 32(DX)(R10*1))
	Q8ROW(8, Y4, Y5, (DX)(R10*2), 32(DX)(R10*2))
	Q8ROW(12, Y6, Y7, (R11), 32(R11))
	Q8ROW(16, Y8, Y9, (R11)(R10*1), 32(R11)(R10*1))
	Q8ROW(20, Y10, Y11, (R11)(R10*2), 32(R11)(R10*2))
	ADDQ $384, SI
	ADDQ $1024, DI
	ADDQ $24, R8
	ADDQ $64, R9
	DECQ CX
	JNZ q8block
	VZEROUPPER
	RET

// func q8QuantRowAVX2(nkb int, x *float32, q *int32, s *float32)
//
// quantizeRowGo in AVX2: per block of 32 floats, the largest magnitude
// (NaN anywhere makes the scale NaN, as Go's max does), the scale d =
// amax/127 and 1/d (0 for d = 0), VCVTPS2DQ rounding to nearest even (the
// Go version's 1.5·2²³ trick), a clamp to ±127 (NaN converts to INT_MIN,
// as Go's conversion does on amd64), and the 16 pairs stored q8MR·4 bytes
// apart; blocks are q8MR·64 bytes apart in q, their scales q8MR·4 in s.
TEXT ·q8QuantRowAVX2(SB), NOSPLIT, $0-32
	MOVQ nkb+0(FP), CX
	MOVQ x+8(FP), SI
	MOVQ q+16(FP), DI
	MOVQ s+24(FP), DX
	VPCMPEQD Y15, Y15, Y15
	VPSRLD $1, Y15, Y15 // |x| mask
	MOVL $127, AX
	VMOVD AX, X14
	VPBROADCASTD X14, Y14 // 127
	VPXOR Y13, Y13, Y13
	VPSUBD Y14, Y13, Y13 // -127
	MOVL $0x42fe0000, AX // 127.0
	VMOVD AX, X12
	MOVL $0x3f800000, AX // 1.0
	VMOVD AX, X11
q8quant:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS 64(SI), Y2
	VMOVUPS 96(SI), Y3
	VANDPS Y15, Y0, Y4
	VANDPS Y15, Y1, Y5
	VANDPS Y15, Y2, Y6
	VANDPS Y15, Y3, Y7
	VMAXPS Y5, Y4, Y4
	VMAXPS Y7, Y6, Y6
	VMAXPS Y6, Y4, Y4
	VEXTRACTF128 $1, Y4, X5
	VMAXPS X5, X4, X4
	VPERMILPS $0x4e, X4, X5
	VMAXPS X5, X4, X4
	VPERMILPS $0xb1, X4, X5
	VMAXPS X5, X4, X4
	VDIVSS X12, X4, X4 // d
	VCMPPS $3, Y0, Y0, Y8
	VCMPPS $3, Y1, Y1, Y9
	VORPS Y9, Y8, Y8
	VCMPPS $3, Y2, Y2, Y9
	VORPS Y9, Y8, Y8
	VCMPPS $3, Y3, Y3, Y9
	VORPS Y9, Y8, Y8
	VPTEST Y8, Y8
	JZ q8nonan
	VPCMPEQD X4, X4, X4 // a NaN scale
q8nonan:
	VMOVSS X4, (DX)
	VDIVSS X4, X11, X5 // 1/d
	VXORPS X6, X6, X6
	VCMPSS $4, X6, X4, X6 // d != 0 (or NaN)
	VANDPS X6, X5, X5
	VBROADCASTSS X5, Y5
	VMULPS Y5, Y0, Y0
	VMULPS Y5, Y1, Y1
	VMULPS Y5, Y2, Y2
	VMULPS Y5, Y3, Y3
	VCVTPS2DQ Y0, Y0
	VCVTPS2DQ Y1, Y1
	VCVTPS2DQ Y2, Y2
	VCVTPS2DQ Y3, Y3
	VPMINSD Y14, Y0, Y0
	VPMINSD Y14, Y1, Y1
	VPMINSD Y14, Y2, Y2
	VPMINSD Y14, Y3, Y3
	VPMAXSD Y13, Y0, Y0
	VPMAXSD Y13, Y1, Y1
	VPMAXSD Y13, Y2, Y2
	VPMAXSD Y13, Y3, Y3
	VPACKSSDW Y1, Y0, Y0
	VPERMQ $0xd8, Y0, Y0
	VPACKSSDW Y3, Y2, Y2
	VPERMQ $0xd8, Y2, Y2
	// Pair p goes to q[p·q8MR] (24 bytes apart): A is packed pair-major.
	VMOVD X0, (DI)
	VPEXTRD $1, X0, 24(DI)
	VPEXTRD $2, X0, 48(DI)
	VPEXTRD $3, X0, 72(DI)
	VEXTRACTI128 $1, Y0, X1
	VMOVD X1, 96(DI)
	VPEXTRD $1, X1, 120(DI)
	VPEXTRD $2, X1, 144(DI)
	VPEXTRD $3, X1, 168(DI)
	VMOVD X2, 192(DI)
	VPEXTRD $1, X2, 216(DI)
	VPEXTRD $2, X2, 240(DI)
	VPEXTRD $3, X2, 264(DI)
	VEXTRACTI128 $1, Y2, X3
	VMOVD X3, 288(DI)
	VPEXTRD $1, X3, 312(DI)
	VPEXTRD $2, X3, 336(DI)
	VPEXTRD $3, X3, 360(DI)
	ADDQ $128, SI
	ADDQ $384, DI
	ADDQ $24, DX
	DECQ CX
	JNZ q8quant
	VZEROUPPER
	RET
