//go:build amd64

#include "textflag.h"

// AVX-512 versions of the elementwise and reduction kernels in vec_amd64.s.
// They run the same operation sequence per lane as the AVX2 ones (so Exp,
// Sigmoid, SiLU and Max give bit-identical results), 16 lanes at a time,
// and finish a ragged tail with an opmask instead of a padded buffer, so n
// may be any positive count.

// Scalar constants, broadcast into Z17..Z31 by EXPCONSTS16.
DATA e5c<>+0(SB)/4, $0x42b18000  // expMax
DATA e5c<>+4(SB)/4, $0xc2d00000  // expMin
DATA e5c<>+8(SB)/4, $0x3fb8aa3b  // log2e
DATA e5c<>+12(SB)/4, $0xbf318000 // -ln2 hi
DATA e5c<>+16(SB)/4, $0x395e8083 // -ln2 lo
DATA e5c<>+20(SB)/4, $0x39506967 // p0
DATA e5c<>+24(SB)/4, $0x3ab743ce // p1
DATA e5c<>+28(SB)/4, $0x3c088908 // p2
DATA e5c<>+32(SB)/4, $0x3d2aa9c1 // p3
DATA e5c<>+36(SB)/4, $0x3e2aaaaa // p4
DATA e5c<>+40(SB)/4, $0x3f000000 // p5
DATA e5c<>+44(SB)/4, $0x3f800000 // one
DATA e5c<>+48(SB)/4, $0x0000007f // bias127
DATA e5c<>+52(SB)/4, $0x80000000 // signbit
DATA e5c<>+56(SB)/4, $0xff800000 // -Inf
GLOBL e5c<>(SB), RODATA|NOPTR, $60

// EXPCONSTS16 loads the exp constants: Z31 expMax, Z30 expMin, Z29 log2e,
// Z28 -ln2Hi, Z27 -ln2Lo, Z26..Z21 p0..p5, Z20 one, Z19 bias127,
// Z18 signbit, Z17 -Inf.
#define EXPCONSTS16 \
	VBROADCASTSS e5c<>+0(SB), Z31  \
	VBROADCASTSS e5c<>+4(SB), Z30  \
	VBROADCASTSS e5c<>+8(SB), Z29  \
	VBROADCASTSS e5c<>+12(SB), Z28 \
	VBROADCASTSS e5c<>+16(SB), Z27 \
	VBROADCASTSS e5c<>+20(SB), Z26 \
	VBROADCASTSS e5c<>+24(SB), Z25 \
	VBROADCASTSS e5c<>+28(SB), Z24 \
	VBROADCASTSS e5c<>+32(SB), Z23 \
	VBROADCASTSS e5c<>+36(SB), Z22 \
	VBROADCASTSS e5c<>+40(SB), Z21 \
	VBROADCASTSS e5c<>+44(SB), Z20 \
	VBROADCASTSS e5c<>+48(SB), Z19 \
	VBROADCASTSS e5c<>+52(SB), Z18 \
	VBROADCASTSS e5c<>+56(SB), Z17

// EXP16 sets Z0 = e^Z0 (16 lanes), clobbering Z1..Z3: EXP8 of vec_amd64.s
// step for step (VRNDSCALEPS $0 is VROUNDPS $0's EVEX form).
#define EXP16 \
	VMINPS      Z0, Z31, Z0   \
	VMAXPS      Z0, Z30, Z0   \
	VMULPS      Z29, Z0, Z1   \
	VRNDSCALEPS $0, Z1, Z1    \
	VFMADD231PS Z28, Z1, Z0   \
	VFMADD231PS Z27, Z1, Z0   \
	VMULPS      Z0, Z0, Z2    \
	VMOVAPS     Z26, Z3       \
	VFMADD213PS Z25, Z0, Z3   \
	VFMADD213PS Z24, Z0, Z3   \
	VFMADD213PS Z23, Z0, Z3   \
	VFMADD213PS Z22, Z0, Z3   \
	VFMADD213PS Z21, Z0, Z3   \
	VFMADD213PS Z0, Z2, Z3    \
	VADDPS      Z20, Z3, Z3   \
	VCVTPS2DQ   Z1, Z1        \
	VPSRAD      $1, Z1, Z2    \
	VPSUBD      Z2, Z1, Z1    \
	VPADDD      Z19, Z2, Z2   \
	VPSLLD      $23, Z2, Z2   \
	VPADDD      Z19, Z1, Z1   \
	VPSLLD      $23, Z1, Z1   \
	VMULPS      Z2, Z3, Z3    \
	VMULPS      Z1, Z3, Z0

// TAILMASK sets K1 to the low CX bits (0 < CX < 16), clobbering AX.
#define TAILMASK \
	MOVL  $1, AX  \
	SHLL  CX, AX  \
	DECL  AX      \
	KMOVW AX, K1

// HSUM16 sets X0[0] to the sum of Z0's lanes, clobbering Z1.
#define HSUM16 \
	VEXTRACTF64X4 $1, Z0, Y1 \
	VADDPS        Y1, Y0, Y0 \
	VEXTRACTF128  $1, Y0, X1 \
	VADDPS        X1, X0, X0 \
	VPERMILPS     $0x4E, X0, X1 \
	VADDPS        X1, X0, X0 \
	VPERMILPS     $0xB1, X0, X1 \
	VADDPS        X1, X0, X0

// func expAVX512(dst, src *float32, n int)
TEXT ·expAVX512(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	EXPCONSTS16
	CMPQ CX, $16
	JLT  expTail

expLoop:
	VMOVUPS (SI), Z0
	EXP16
	VMOVUPS Z0, (DI)
	ADDQ    $64, SI
	ADDQ    $64, DI
	SUBQ    $16, CX
	CMPQ    CX, $16
	JGE     expLoop

expTail:
	TESTQ     CX, CX
	JZ        expDone
	TAILMASK
	VMOVUPS.Z (SI), K1, Z0
	EXP16
	VMOVUPS   Z0, K1, (DI)

expDone:
	VZEROUPPER
	RET

// func sigmoidAVX512(dst, src *float32, n int)
TEXT ·sigmoidAVX512(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	EXPCONSTS16
	CMPQ CX, $16
	JLT  sigTail

sigLoop:
	VMOVUPS (SI), Z10
	VPXORD  Z18, Z10, Z0 // -x
	EXP16
	VADDPS  Z20, Z0, Z0
	VDIVPS  Z0, Z20, Z0  // 1 / (1 + e^-x)
	VMOVUPS Z0, (DI)
	ADDQ    $64, SI
	ADDQ    $64, DI
	SUBQ    $16, CX
	CMPQ    CX, $16
	JGE     sigLoop

sigTail:
	TESTQ     CX, CX
	JZ        sigDone
	TAILMASK
	VMOVUPS.Z (SI), K1, Z10
	VPXORD    Z18, Z10, Z0
	EXP16
	VADDPS    Z20, Z0, Z0
	VDIVPS    Z0, Z20, Z0
	VMOVUPS   Z0, K1, (DI)

sigDone:
	VZEROUPPER
	RET

// func siluAVX512(dst, src *float32, n int)
TEXT ·siluAVX512(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	EXPCONSTS16
	CMPQ CX, $16
	JLT  siluTail

siluLoop:
	VMOVUPS (SI), Z10
	VPXORD  Z18, Z10, Z0 // -x
	EXP16
	VADDPS  Z20, Z0, Z0
	VDIVPS  Z0, Z10, Z0  // x / (1 + e^-x)
	VMOVUPS Z0, (DI)
	ADDQ    $64, SI
	ADDQ    $64, DI
	SUBQ    $16, CX
	CMPQ    CX, $16
	JGE     siluLoop

siluTail:
	TESTQ     CX, CX
	JZ        siluDone
	TAILMASK
	VMOVUPS.Z (SI), K1, Z10
	VPXORD    Z18, Z10, Z0
	EXP16
	VADDPS    Z20, Z0, Z0
	VDIVPS    Z0, Z10, Z0
	VMOVUPS   Z0, K1, (DI)

siluDone:
	VZEROUPPER
	RET

// func maxAVX512(x *float32, n int) float32
TEXT ·maxAVX512(SB), NOSPLIT, $0-20
	MOVQ         x+0(FP), SI
	MOVQ         n+8(FP), CX
	VBROADCASTSS e5c<>+56(SB), Z0 // -Inf
	VMOVAPS      Z0, Z1
	VMOVAPS      Z0, Z4
	CMPQ         CX, $32
	JLT          max16

maxLoop:
	// The loaded value is the first source: a NaN element keeps the max.
	VMOVUPS (SI), Z2
	VMOVUPS 64(SI), Z3
	VMAXPS  Z0, Z2, Z0
	VMAXPS  Z1, Z3, Z1
	ADDQ    $128, SI
	SUBQ    $32, CX
	CMPQ    CX, $32
	JGE     maxLoop

max16:
	CMPQ    CX, $16
	JLT     maxTail
	VMOVUPS (SI), Z2
	VMAXPS  Z0, Z2, Z0
	ADDQ    $64, SI
	SUBQ    $16, CX

maxTail:
	TESTQ   CX, CX
	JZ      maxDone
	TAILMASK
	VMOVAPS Z4, Z2
	VMOVUPS (SI), K1, Z2 // lanes past the end stay -Inf
	VMAXPS  Z0, Z2, Z0

maxDone:
	VMAXPS        Z1, Z0, Z0
	VEXTRACTF64X4 $1, Z0, Y1
	VMAXPS        Y1, Y0, Y0
	VEXTRACTF128  $1, Y0, X1
	VMAXPS        X1, X0, X0
	VPERMILPS     $0x4E, X0, X1
	VMAXPS        X1, X0, X0
	VPERMILPS     $0xB1, X0, X1
	VMAXPS        X1, X0, X0
	VZEROUPPER
	MOVSS         X0, ret+16(FP)
	RET

// func expSubSumAVX512(x *float32, n int, m float32) float32
TEXT ·expSubSumAVX512(SB), NOSPLIT, $0-28
	MOVQ         x+0(FP), SI
	MOVQ         n+8(FP), CX
	VBROADCASTSS m+16(FP), Z9
	VPXORD       Z10, Z10, Z10
	EXPCONSTS16
	CMPQ         CX, $16
	JLT          essTail

essLoop:
	VMOVUPS (SI), Z0
	VSUBPS  Z9, Z0, Z0
	EXP16
	VMOVUPS Z0, (SI)
	VADDPS  Z0, Z10, Z10
	ADDQ    $64, SI
	SUBQ    $16, CX
	CMPQ    CX, $16
	JGE     essLoop

essTail:
	TESTQ     CX, CX
	JZ        essDone
	TAILMASK
	VMOVUPS.Z (SI), K1, Z0
	VSUBPS    Z9, Z0, Z0
	EXP16
	VMOVUPS   Z0, K1, (SI)
	VADDPS    Z0, Z10, K1, Z10

essDone:
	VMOVAPS Z10, Z0
	HSUM16
	VZEROUPPER
	MOVSS   X0, ret+24(FP)
	RET

// func sumAVX512(x *float32, n int) float32
TEXT ·sumAVX512(SB), NOSPLIT, $0-20
	MOVQ   x+0(FP), SI
	MOVQ   n+8(FP), CX
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	CMPQ   CX, $64
	JLT    sum16

sumLoop:
	VADDPS (SI), Z0, Z0
	VADDPS 64(SI), Z1, Z1
	VADDPS 128(SI), Z2, Z2
	VADDPS 192(SI), Z3, Z3
	ADDQ   $256, SI
	SUBQ   $64, CX
	CMPQ   CX, $64
	JGE    sumLoop

sum16:
	CMPQ   CX, $16
	JLT    sumTail
	VADDPS (SI), Z0, Z0
	ADDQ   $64, SI
	SUBQ   $16, CX
	JMP    sum16

sumTail:
	TESTQ     CX, CX
	JZ        sumDone
	TAILMASK
	VMOVUPS.Z (SI), K1, Z4
	VADDPS    Z4, Z1, Z1

sumDone:
	VADDPS Z1, Z0, Z0
	VADDPS Z3, Z2, Z2
	VADDPS Z2, Z0, Z0
	HSUM16
	VZEROUPPER
	MOVSS  X0, ret+16(FP)
	RET

// func dotAVX512(x, y *float32, n int) float32
TEXT ·dotAVX512(SB), NOSPLIT, $0-28
	MOVQ   x+0(FP), SI
	MOVQ   y+8(FP), DI
	MOVQ   n+16(FP), CX
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	CMPQ   CX, $64
	JLT    dot16

dotLoop:
	VMOVUPS     (SI), Z4
	VMOVUPS     64(SI), Z5
	VMOVUPS     128(SI), Z6
	VMOVUPS     192(SI), Z7
	VFMADD231PS (DI), Z4, Z0
	VFMADD231PS 64(DI), Z5, Z1
	VFMADD231PS 128(DI), Z6, Z2
	VFMADD231PS 192(DI), Z7, Z3
	ADDQ        $256, SI
	ADDQ        $256, DI
	SUBQ        $64, CX
	CMPQ        CX, $64
	JGE         dotLoop

dot16:
	CMPQ        CX, $16
	JLT         dotTail
	VMOVUPS     (SI), Z4
	VFMADD231PS (DI), Z4, Z0
	ADDQ        $64, SI
	ADDQ        $64, DI
	SUBQ        $16, CX
	JMP         dot16

dotTail:
	TESTQ       CX, CX
	JZ          dotDone
	TAILMASK
	VMOVUPS.Z   (SI), K1, Z4
	VMOVUPS.Z   (DI), K1, Z5
	VFMADD231PS Z5, Z4, Z1

dotDone:
	VADDPS Z1, Z0, Z0
	VADDPS Z3, Z2, Z2
	VADDPS Z2, Z0, Z0
	HSUM16
	VZEROUPPER
	MOVSS  X0, ret+24(FP)
	RET

// func axpyAVX512(a float32, x, y *float32, n int)
TEXT ·axpyAVX512(SB), NOSPLIT, $0-32
	VBROADCASTSS a+0(FP), Z0
	MOVQ         x+8(FP), SI
	MOVQ         y+16(FP), DI
	MOVQ         n+24(FP), CX
	CMPQ         CX, $16
	JLT          axpyTail

axpyLoop:
	VMOVUPS     (DI), Z1
	VFMADD231PS (SI), Z0, Z1
	VMOVUPS     Z1, (DI)
	ADDQ        $64, SI
	ADDQ        $64, DI
	SUBQ        $16, CX
	CMPQ        CX, $16
	JGE         axpyLoop

axpyTail:
	TESTQ       CX, CX
	JZ          axpyDone
	TAILMASK
	VMOVUPS.Z   (DI), K1, Z1
	VMOVUPS.Z   (SI), K1, Z2
	VFMADD231PS Z2, Z0, Z1
	VMOVUPS     Z1, K1, (DI)

axpyDone:
	VZEROUPPER
	RET

// func scaleAVX512(x *float32, n int, a float32)
TEXT ·scaleAVX512(SB), NOSPLIT, $0-20
	MOVQ         x+0(FP), SI
	MOVQ         n+8(FP), CX
	VBROADCASTSS a+16(FP), Z0
	CMPQ         CX, $16
	JLT          scaleTail

scaleLoop:
	VMULPS  (SI), Z0, Z1
	VMOVUPS Z1, (SI)
	ADDQ    $64, SI
	SUBQ    $16, CX
	CMPQ    CX, $16
	JGE     scaleLoop

scaleTail:
	TESTQ     CX, CX
	JZ        scaleDone
	TAILMASK
	VMOVUPS.Z (SI), K1, Z1
	VMULPS    Z1, Z0, Z1
	VMOVUPS   Z1, K1, (SI)

scaleDone:
	VZEROUPPER
	RET

// GELU-tanh constants: 0.044715 and -2·√(2/π).
DATA gt5c<>+0(SB)/4, $0x3d372713
DATA gt5c<>+4(SB)/4, $0xbfcc422a
GLOBL gt5c<>(SB), RODATA|NOPTR, $8

// GELUTANHARG sets Z0 = -2u = -2·√(2/π)·(x + 0.044715·x³) for x in Z10.
#define GELUTANHARG \
	VMULPS      Z10, Z10, Z0 \
	VMULPS      Z10, Z0, Z0  \
	VFMADD213PS Z10, Z9, Z0  \
	VMULPS      Z11, Z0, Z0

// The GELU constants of vec_amd64.s's gelc table, one of each (gelc offset/8).
DATA g5c<>+0(SB)/4, $0x3f3504f3
DATA g5c<>+4(SB)/4, $0xbf000000
DATA g5c<>+8(SB)/4, $0x7fffffff
DATA g5c<>+12(SB)/4, $0x40272f05
DATA g5c<>+16(SB)/4, $0xbf800000
DATA g5c<>+20(SB)/4, $0x3f7fe109
DATA g5c<>+24(SB)/4, $0xbdeb8f8c
DATA g5c<>+28(SB)/4, $0x3c4ecebe
DATA g5c<>+32(SB)/4, $0xba9305bb
DATA g5c<>+36(SB)/4, $0x38ac4d5e
DATA g5c<>+40(SB)/4, $0xb6ab8a55
DATA g5c<>+44(SB)/4, $0x3492e7ef
DATA g5c<>+48(SB)/4, $0xc09c0000
DATA g5c<>+52(SB)/4, $0x3ea3d70a
DATA g5c<>+56(SB)/4, $0x3e5cb9ca
DATA g5c<>+60(SB)/4, $0xbdf831d1
DATA g5c<>+64(SB)/4, $0x3d847d5b
DATA g5c<>+68(SB)/4, $0xbd07212d
DATA g5c<>+72(SB)/4, $0x3c844a36
DATA g5c<>+76(SB)/4, $0xbbf95301
DATA g5c<>+80(SB)/4, $0x3b634344
DATA g5c<>+84(SB)/4, $0xbacc5359
DATA g5c<>+88(SB)/4, $0x3a2fe3c5
DATA g5c<>+92(SB)/4, $0xb97735f3
DATA g5c<>+96(SB)/4, $0x38c6383c
DATA g5c<>+100(SB)/4, $0xb899a442
DATA g5c<>+104(SB)/4, $0x37f28af2
DATA g5c<>+108(SB)/4, $0x3d947ae1
DATA g5c<>+112(SB)/4, $0x41986186
DATA g5c<>+116(SB)/4, $0x3f0df210
DATA g5c<>+120(SB)/4, $0xbbdb56e9
DATA g5c<>+124(SB)/4, $0x396f4362
DATA g5c<>+128(SB)/4, $0xb74db0d2
DATA g5c<>+132(SB)/4, $0x356e4e39
DATA g5c<>+136(SB)/4, $0xb3a8104f
DATA g5c<>+140(SB)/4, $0x3f600000
DATA g5c<>+144(SB)/4, $0x40800000
DATA g5c<>+148(SB)/4, $0x41200000
DATA g5c<>+152(SB)/4, $0x3f800000
DATA g5c<>+156(SB)/4, $0x3f000000
GLOBL g5c<>(SB), RODATA|NOPTR, $160

// GELU16 is GELU8 of vec_amd64.s on 16 lanes, step for step: constants are
// broadcast from memory, the range selections are opmasks (K2..K4, K7 for
// the sign) instead of VBLENDVPS masks. Clobbers Z1..Z7.
#define GELU16 \
	VMULPS Z0, Z0, Z2 \
	VMULPS.BCST g5c<>+4(SB), Z2, Z2 \
	VMAXPS.BCST e5c<>+4(SB), Z2, Z2 \
	VMULPS.BCST e5c<>+8(SB), Z2, Z3 \
	VRNDSCALEPS $0, Z3, Z3 \
	VFMADD231PS.BCST e5c<>+12(SB), Z3, Z2 \
	VFMADD231PS.BCST e5c<>+16(SB), Z3, Z2 \
	VMULPS Z2, Z2, Z4 \
	VBROADCASTSS e5c<>+20(SB), Z5 \
	VFMADD213PS.BCST e5c<>+24(SB), Z2, Z5 \
	VFMADD213PS.BCST e5c<>+28(SB), Z2, Z5 \
	VFMADD213PS.BCST e5c<>+32(SB), Z2, Z5 \
	VFMADD213PS.BCST e5c<>+36(SB), Z2, Z5 \
	VFMADD213PS.BCST e5c<>+40(SB), Z2, Z5 \
	VFMADD213PS Z2, Z4, Z5 \
	VADDPS.BCST e5c<>+44(SB), Z5, Z5 \
	VCVTPS2DQ Z3, Z3 \
	VPSRAD $1, Z3, Z4 \
	VPSUBD Z4, Z3, Z3 \
	VPADDD.BCST e5c<>+48(SB), Z4, Z4 \
	VPSLLD $23, Z4, Z4 \
	VPADDD.BCST e5c<>+48(SB), Z3, Z3 \
	VPSLLD $23, Z3, Z3 \
	VMULPS Z4, Z5, Z5 \
	VMULPS Z3, Z5, Z2 \
	VMULPS.BCST g5c<>+0(SB), Z0, Z1 \
	VPANDD.BCST g5c<>+8(SB), Z1, Z1 \
	VMULPS Z1, Z1, Z3 \
	VBROADCASTSS g5c<>+12(SB), Z4 \
	VFMADD213PS.BCST g5c<>+16(SB), Z3, Z4 \
	VBROADCASTSS g5c<>+44(SB), Z5 \
	VFMADD213PS.BCST g5c<>+40(SB), Z4, Z5 \
	VFMADD213PS.BCST g5c<>+36(SB), Z4, Z5 \
	VFMADD213PS.BCST g5c<>+32(SB), Z4, Z5 \
	VFMADD213PS.BCST g5c<>+28(SB), Z4, Z5 \
	VFMADD213PS.BCST g5c<>+24(SB), Z4, Z5 \
	VFMADD213PS.BCST g5c<>+20(SB), Z4, Z5 \
	VMULPS Z1, Z5, Z5 \
	VADDPS Z1, Z1, Z4 \
	VADDPS.BCST g5c<>+48(SB), Z4, Z4 \
	VMULPS.BCST g5c<>+52(SB), Z4, Z4 \
	VBROADCASTSS g5c<>+104(SB), Z6 \
	VFMADD213PS.BCST g5c<>+100(SB), Z4, Z6 \
	VFMADD213PS.BCST g5c<>+96(SB), Z4, Z6 \
	VFMADD213PS.BCST g5c<>+92(SB), Z4, Z6 \
	VFMADD213PS.BCST g5c<>+88(SB), Z4, Z6 \
	VFMADD213PS.BCST g5c<>+84(SB), Z4, Z6 \
	VFMADD213PS.BCST g5c<>+80(SB), Z4, Z6 \
	VFMADD213PS.BCST g5c<>+76(SB), Z4, Z6 \
	VFMADD213PS.BCST g5c<>+72(SB), Z4, Z6 \
	VFMADD213PS.BCST g5c<>+68(SB), Z4, Z6 \
	VFMADD213PS.BCST g5c<>+64(SB), Z4, Z6 \
	VFMADD213PS.BCST g5c<>+60(SB), Z4, Z6 \
	VFMADD213PS.BCST g5c<>+56(SB), Z4, Z6 \
	VBROADCASTSS g5c<>+152(SB), Z4 \
	VDIVPS Z3, Z4, Z4 \
	VADDPS Z4, Z4, Z4 \
	VSUBPS.BCST g5c<>+108(SB), Z4, Z4 \
	VMULPS.BCST g5c<>+112(SB), Z4, Z4 \
	VBROADCASTSS g5c<>+136(SB), Z3 \
	VFMADD213PS.BCST g5c<>+132(SB), Z4, Z3 \
	VFMADD213PS.BCST g5c<>+128(SB), Z4, Z3 \
	VFMADD213PS.BCST g5c<>+124(SB), Z4, Z3 \
	VFMADD213PS.BCST g5c<>+120(SB), Z4, Z3 \
	VFMADD213PS.BCST g5c<>+116(SB), Z4, Z3 \
	VDIVPS Z1, Z3, Z3 \
	VMULPS Z2, Z6, Z6 \
	VMULPS Z2, Z3, Z3 \
	VCMPPS.BCST $1, g5c<>+144(SB), Z1, K2 \
	VBLENDMPS Z6, Z3, K2, Z3 \
	VCMPPS.BCST $1, g5c<>+148(SB), Z1, K3 \
	VMOVAPS.Z Z3, K3, Z3 \
	VCMPPS.BCST $1, g5c<>+140(SB), Z1, K4 \
	VBROADCASTSS g5c<>+152(SB), Z7 \
	VSUBPS Z5, Z7, Z6 \
	VSUBPS Z3, Z7, Z2 \
	VBLENDMPS Z6, Z3, K4, Z3 \
	VBLENDMPS Z5, Z2, K4, Z2 \
	VADDPS Z7, Z2, Z2 \
	VPTESTMD.BCST e5c<>+52(SB), Z0, K7 \
	VBLENDMPS Z3, Z2, K7, Z2 \
	VMULPS.BCST g5c<>+156(SB), Z0, Z3 \
	VMULPS Z3, Z2, Z0

// func geluAVX512(dst, src *float32, n int)
TEXT ·geluAVX512(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	CMPQ CX, $16
	JLT  geluTail

geluLoop:
	VMOVUPS (SI), Z0
	GELU16
	VMOVUPS Z0, (DI)
	ADDQ    $64, SI
	ADDQ    $64, DI
	SUBQ    $16, CX
	CMPQ    CX, $16
	JGE     geluLoop

geluTail:
	TESTQ     CX, CX
	JZ        geluDone
	TAILMASK
	VMOVUPS.Z (SI), K1, Z0
	GELU16
	VMOVUPS   Z0, K1, (DI)

geluDone:
	VZEROUPPER
	RET

// func geluMulAVX512(dst, src, a *float32, n int)
TEXT ·geluMulAVX512(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ a+16(FP), DX
	MOVQ n+24(FP), CX
	CMPQ CX, $16
	JLT  geluMulTail

geluMulLoop:
	VMOVUPS (SI), Z0
	GELU16
	VMULPS  (DX), Z0, Z0 // a·GELU(x)
	VMOVUPS Z0, (DI)
	ADDQ    $64, SI
	ADDQ    $64, DX
	ADDQ    $64, DI
	SUBQ    $16, CX
	CMPQ    CX, $16
	JGE     geluMulLoop

geluMulTail:
	TESTQ     CX, CX
	JZ        geluMulDone
	TAILMASK
	VMOVUPS.Z (SI), K1, Z0
	GELU16
	VMOVUPS.Z (DX), K1, Z1
	VMULPS    Z1, Z0, Z0
	VMOVUPS   Z0, K1, (DI)

geluMulDone:
	VZEROUPPER
	RET

// func geluTanhAVX512(dst, src *float32, n int)
TEXT ·geluTanhAVX512(SB), NOSPLIT, $0-24
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	EXPCONSTS16
	VBROADCASTSS gt5c<>+0(SB), Z9
	VBROADCASTSS gt5c<>+4(SB), Z11
	CMPQ         CX, $16
	JLT          gtTail

gtLoop:
	VMOVUPS     (SI), Z10
	GELUTANHARG
	EXP16
	VADDPS      Z20, Z0, Z0
	VDIVPS      Z0, Z10, Z0 // x / (1 + e^(-2u))
	VMOVUPS     Z0, (DI)
	ADDQ        $64, SI
	ADDQ        $64, DI
	SUBQ        $16, CX
	CMPQ        CX, $16
	JGE         gtLoop

gtTail:
	TESTQ     CX, CX
	JZ        gtDone
	TAILMASK
	VMOVUPS.Z (SI), K1, Z10
	GELUTANHARG
	EXP16
	VADDPS    Z20, Z0, Z0
	VDIVPS    Z0, Z10, Z0
	VMOVUPS   Z0, K1, (DI)

gtDone:
	VZEROUPPER
	RET

// NORMAFF16 sets Z11 = ((Z11-Z12)-Z13)·Z9 + Z14: NormAffine's map.
#define NORMAFF16 \
	VSUBPS      Z12, Z11, Z11 \
	VSUBPS      Z13, Z11, Z11 \
	VFMADD213PS Z14, Z9, Z11

// NORMPARAMS loads NormAffine's p (mhi, mlo, a, b, each repeated 8 times)
// from R8: Z12 mhi, Z13 mlo, Z9 a, Z14 b.
#define NORMPARAMS \
	VBROADCASTSS (R8), Z12   \
	VBROADCASTSS 32(R8), Z13 \
	VBROADCASTSS 64(R8), Z9  \
	VBROADCASTSS 96(R8), Z14

// func normAffineAVX512(dst, src *float32, n int, p *float32)
TEXT ·normAffineAVX512(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ p+24(FP), R8
	NORMPARAMS
	CMPQ CX, $16
	JLT  naTail

naLoop:
	VMOVUPS (SI), Z11
	NORMAFF16
	VMOVUPS Z11, (DI)
	ADDQ    $64, SI
	ADDQ    $64, DI
	SUBQ    $16, CX
	CMPQ    CX, $16
	JGE     naLoop

naTail:
	TESTQ     CX, CX
	JZ        naDone
	TAILMASK
	VMOVUPS.Z (SI), K1, Z11
	NORMAFF16
	VMOVUPS   Z11, K1, (DI)

naDone:
	VZEROUPPER
	RET

// func normAffineSiLUAVX512(dst, src *float32, n int, p *float32)
TEXT ·normAffineSiLUAVX512(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ p+24(FP), R8
	EXPCONSTS16
	NORMPARAMS
	CMPQ CX, $16
	JLT  nasTail

nasLoop:
	VMOVUPS (SI), Z11
	NORMAFF16
	VPXORD  Z18, Z11, Z0 // -y
	EXP16
	VADDPS  Z20, Z0, Z0
	VDIVPS  Z0, Z11, Z0  // y / (1 + e^-y)
	VMOVUPS Z0, (DI)
	ADDQ    $64, SI
	ADDQ    $64, DI
	SUBQ    $16, CX
	CMPQ    CX, $16
	JGE     nasLoop

nasTail:
	TESTQ     CX, CX
	JZ        nasDone
	TAILMASK
	VMOVUPS.Z (SI), K1, Z11
	NORMAFF16
	VPXORD    Z18, Z11, Z0
	EXP16
	VADDPS    Z20, Z0, Z0
	VDIVPS    Z0, Z11, Z0
	VMOVUPS   Z0, K1, (DI)

nasDone:
	VZEROUPPER
	RET

// func normAffineRowAVX512(dst, src *float32, n int, p, w, b *float32)
// p holds mhi, mlo, a, each repeated 8 times; w and b have n values.
TEXT ·normAffineRowAVX512(SB), NOSPLIT, $0-48
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	MOVQ         p+24(FP), R8
	MOVQ         w+32(FP), R9
	MOVQ         b+40(FP), R10
	VBROADCASTSS (R8), Z9
	VBROADCASTSS 32(R8), Z10
	VBROADCASTSS 64(R8), Z11
	CMPQ         CX, $16
	JLT          narTail

narLoop:
	VMOVUPS     (SI), Z0
	VSUBPS      Z9, Z0, Z0
	VSUBPS      Z10, Z0, Z0
	VMULPS      Z11, Z0, Z0   // (x-mhi-mlo)·a
	VMOVUPS     (R9), Z1
	VFMADD213PS (R10), Z1, Z0 // ·w + b
	VMOVUPS     Z0, (DI)
	ADDQ        $64, SI
	ADDQ        $64, DI
	ADDQ        $64, R9
	ADDQ        $64, R10
	SUBQ        $16, CX
	CMPQ        CX, $16
	JGE         narLoop

narTail:
	TESTQ       CX, CX
	JZ          narDone
	TAILMASK
	VMOVUPS.Z   (SI), K1, Z0
	VSUBPS      Z9, Z0, Z0
	VSUBPS      Z10, Z0, Z0
	VMULPS      Z11, Z0, Z0
	VMOVUPS.Z   (R9), K1, Z1
	VMOVUPS.Z   (R10), K1, Z2
	VFMADD213PS Z2, Z1, Z0
	VMOVUPS     Z0, K1, (DI)

narDone:
	VZEROUPPER
	RET
