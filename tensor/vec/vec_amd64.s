//go:build amd64

#include "textflag.h"

// Constants, each repeated 8 times (one YMM) so they serve as memory operands.
//    0: expMax
//   32: expMin
//   64: log2e
//   96: negLn2Hi
//  128: negLn2Lo
//  160: p0
//  192: p1
//  224: p2
//  256: p3
//  288: p4
//  320: p5
//  352: one
//  384: bias127
//  416: signbit
//  448: negInf
DATA expc<>+0(SB)/4, $0x42b18000
DATA expc<>+4(SB)/4, $0x42b18000
DATA expc<>+8(SB)/4, $0x42b18000
DATA expc<>+12(SB)/4, $0x42b18000
DATA expc<>+16(SB)/4, $0x42b18000
DATA expc<>+20(SB)/4, $0x42b18000
DATA expc<>+24(SB)/4, $0x42b18000
DATA expc<>+28(SB)/4, $0x42b18000
DATA expc<>+32(SB)/4, $0xc2d00000
DATA expc<>+36(SB)/4, $0xc2d00000
DATA expc<>+40(SB)/4, $0xc2d00000
DATA expc<>+44(SB)/4, $0xc2d00000
DATA expc<>+48(SB)/4, $0xc2d00000
DATA expc<>+52(SB)/4, $0xc2d00000
DATA expc<>+56(SB)/4, $0xc2d00000
DATA expc<>+60(SB)/4, $0xc2d00000
DATA expc<>+64(SB)/4, $0x3fb8aa3b
DATA expc<>+68(SB)/4, $0x3fb8aa3b
DATA expc<>+72(SB)/4, $0x3fb8aa3b
DATA expc<>+76(SB)/4, $0x3fb8aa3b
DATA expc<>+80(SB)/4, $0x3fb8aa3b
DATA expc<>+84(SB)/4, $0x3fb8aa3b
DATA expc<>+88(SB)/4, $0x3fb8aa3b
DATA expc<>+92(SB)/4, $0x3fb8aa3b
DATA expc<>+96(SB)/4, $0xbf318000
DATA expc<>+100(SB)/4, $0xbf318000
DATA expc<>+104(SB)/4, $0xbf318000
DATA expc<>+108(SB)/4, $0xbf318000
DATA expc<>+112(SB)/4, $0xbf318000
DATA expc<>+116(SB)/4, $0xbf318000
DATA expc<>+120(SB)/4, $0xbf318000
DATA expc<>+124(SB)/4, $0xbf318000
DATA expc<>+128(SB)/4, $0x395e8083
DATA expc<>+132(SB)/4, $0x395e8083
DATA expc<>+136(SB)/4, $0x395e8083
DATA expc<>+140(SB)/4, $0x395e8083
DATA expc<>+144(SB)/4, $0x395e8083
DATA expc<>+148(SB)/4, $0x395e8083
DATA expc<>+152(SB)/4, $0x395e8083
DATA expc<>+156(SB)/4, $0x395e8083
DATA expc<>+160(SB)/4, $0x39506967
DATA expc<>+164(SB)/4, $0x39506967
DATA expc<>+168(SB)/4, $0x39506967
DATA expc<>+172(SB)/4, $0x39506967
DATA expc<>+176(SB)/4, $0x39506967
DATA expc<>+180(SB)/4, $0x39506967
DATA expc<>+184(SB)/4, $0x39506967
DATA expc<>+188(SB)/4, $0x39506967
DATA expc<>+192(SB)/4, $0x3ab743ce
DATA expc<>+196(SB)/4, $0x3ab743ce
DATA expc<>+200(SB)/4, $0x3ab743ce
DATA expc<>+204(SB)/4, $0x3ab743ce
DATA expc<>+208(SB)/4, $0x3ab743ce
DATA expc<>+212(SB)/4, $0x3ab743ce
DATA expc<>+216(SB)/4, $0x3ab743ce
DATA expc<>+220(SB)/4, $0x3ab743ce
DATA expc<>+224(SB)/4, $0x3c088908
DATA expc<>+228(SB)/4, $0x3c088908
DATA expc<>+232(SB)/4, $0x3c088908
DATA expc<>+236(SB)/4, $0x3c088908
DATA expc<>+240(SB)/4, $0x3c088908
DATA expc<>+244(SB)/4, $0x3c088908
DATA expc<>+248(SB)/4, $0x3c088908
DATA expc<>+252(SB)/4, $0x3c088908
DATA expc<>+256(SB)/4, $0x3d2aa9c1
DATA expc<>+260(SB)/4, $0x3d2aa9c1
DATA expc<>+264(SB)/4, $0x3d2aa9c1
DATA expc<>+268(SB)/4, $0x3d2aa9c1
DATA expc<>+272(SB)/4, $0x3d2aa9c1
DATA expc<>+276(SB)/4, $0x3d2aa9c1
DATA expc<>+280(SB)/4, $0x3d2aa9c1
DATA expc<>+284(SB)/4, $0x3d2aa9c1
DATA expc<>+288(SB)/4, $0x3e2aaaaa
DATA expc<>+292(SB)/4, $0x3e2aaaaa
DATA expc<>+296(SB)/4, $0x3e2aaaaa
DATA expc<>+300(SB)/4, $0x3e2aaaaa
DATA expc<>+304(SB)/4, $0x3e2aaaaa
DATA expc<>+308(SB)/4, $0x3e2aaaaa
DATA expc<>+312(SB)/4, $0x3e2aaaaa
DATA expc<>+316(SB)/4, $0x3e2aaaaa
DATA expc<>+320(SB)/4, $0x3f000000
DATA expc<>+324(SB)/4, $0x3f000000
DATA expc<>+328(SB)/4, $0x3f000000
DATA expc<>+332(SB)/4, $0x3f000000
DATA expc<>+336(SB)/4, $0x3f000000
DATA expc<>+340(SB)/4, $0x3f000000
DATA expc<>+344(SB)/4, $0x3f000000
DATA expc<>+348(SB)/4, $0x3f000000
DATA expc<>+352(SB)/4, $0x3f800000
DATA expc<>+356(SB)/4, $0x3f800000
DATA expc<>+360(SB)/4, $0x3f800000
DATA expc<>+364(SB)/4, $0x3f800000
DATA expc<>+368(SB)/4, $0x3f800000
DATA expc<>+372(SB)/4, $0x3f800000
DATA expc<>+376(SB)/4, $0x3f800000
DATA expc<>+380(SB)/4, $0x3f800000
DATA expc<>+384(SB)/4, $0x0000007f
DATA expc<>+388(SB)/4, $0x0000007f
DATA expc<>+392(SB)/4, $0x0000007f
DATA expc<>+396(SB)/4, $0x0000007f
DATA expc<>+400(SB)/4, $0x0000007f
DATA expc<>+404(SB)/4, $0x0000007f
DATA expc<>+408(SB)/4, $0x0000007f
DATA expc<>+412(SB)/4, $0x0000007f
DATA expc<>+416(SB)/4, $0x80000000
DATA expc<>+420(SB)/4, $0x80000000
DATA expc<>+424(SB)/4, $0x80000000
DATA expc<>+428(SB)/4, $0x80000000
DATA expc<>+432(SB)/4, $0x80000000
DATA expc<>+436(SB)/4, $0x80000000
DATA expc<>+440(SB)/4, $0x80000000
DATA expc<>+444(SB)/4, $0x80000000
DATA expc<>+448(SB)/4, $0xff800000
DATA expc<>+452(SB)/4, $0xff800000
DATA expc<>+456(SB)/4, $0xff800000
DATA expc<>+460(SB)/4, $0xff800000
DATA expc<>+464(SB)/4, $0xff800000
DATA expc<>+468(SB)/4, $0xff800000
DATA expc<>+472(SB)/4, $0xff800000
DATA expc<>+476(SB)/4, $0xff800000
GLOBL expc<>(SB), RODATA|NOPTR, $480

// EXPCONSTS loads the exp constants kept in registers:
// Y15 expMax, Y14 expMin, Y13 log2e, Y12 -ln2Hi, Y4..Y8 p1..p5.
#define EXPCONSTS \
	VMOVUPS expc<>+0(SB), Y15   \
	VMOVUPS expc<>+32(SB), Y14  \
	VMOVUPS expc<>+64(SB), Y13  \
	VMOVUPS expc<>+96(SB), Y12  \
	VMOVUPS expc<>+192(SB), Y4  \
	VMOVUPS expc<>+224(SB), Y5  \
	VMOVUPS expc<>+256(SB), Y6  \
	VMOVUPS expc<>+288(SB), Y7  \
	VMOVUPS expc<>+320(SB), Y8

// EXP8 sets Y0 = e^Y0 (8 lanes), clobbering Y1..Y3. The clamps keep NaN
// (it is the second source operand of VMINPS/VMAXPS). n = round(x·log2 e),
// r = x - n·ln2 (two FMAs), e^r = 1 + r + r²·P(r), then two scalings by
// 2^(n>>1) and 2^(n-(n>>1)), both normal, so subnormal results round once.
#define EXP8 \
	VMINPS Y0, Y15, Y0                    \
	VMAXPS Y0, Y14, Y0                    \
	VMULPS Y13, Y0, Y1                    \
	VROUNDPS $0, Y1, Y1                   \
	VFMADD231PS Y12, Y1, Y0               \
	VFMADD231PS expc<>+128(SB), Y1, Y0    \
	VMULPS Y0, Y0, Y2                     \
	VMOVUPS expc<>+160(SB), Y3            \
	VFMADD213PS Y4, Y0, Y3                \
	VFMADD213PS Y5, Y0, Y3                \
	VFMADD213PS Y6, Y0, Y3                \
	VFMADD213PS Y7, Y0, Y3                \
	VFMADD213PS Y8, Y0, Y3                \
	VFMADD213PS Y0, Y2, Y3                \
	VADDPS expc<>+352(SB), Y3, Y3         \
	VCVTPS2DQ Y1, Y1                      \
	VPSRAD $1, Y1, Y2                     \
	VPSUBD Y2, Y1, Y1                     \
	VPADDD expc<>+384(SB), Y2, Y2         \
	VPSLLD $23, Y2, Y2                    \
	VPADDD expc<>+384(SB), Y1, Y1         \
	VPSLLD $23, Y1, Y1                    \
	VMULPS Y2, Y3, Y3                     \
	VMULPS Y1, Y3, Y0

// HSUM8 sets X0[0] to the sum of Y0's lanes, clobbering Y1.
#define HSUM8 \
	VEXTRACTF128 $1, Y0, X1     \
	VADDPS X1, X0, X0           \
	VPERMILPS $0x4E, X0, X1     \
	VADDPS X1, X0, X0           \
	VPERMILPS $0xB1, X0, X1     \
	VADDPS X1, X0, X0

// func expAVX2(dst, src *float32, n int)
TEXT ·expAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	EXPCONSTS

expLoop:
	VMOVUPS (SI), Y0
	EXP8
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	JNZ     expLoop
	VZEROUPPER
	RET

// func sigmoidAVX2(dst, src *float32, n int)
TEXT ·sigmoidAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	EXPCONSTS
	VMOVUPS expc<>+352(SB), Y9 // 1

sigLoop:
	VMOVUPS (SI), Y0
	VXORPS  expc<>+416(SB), Y0, Y0 // -x
	EXP8
	VADDPS  Y9, Y0, Y0
	VDIVPS  Y0, Y9, Y0             // 1 / (1 + e^-x)
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	JNZ     sigLoop
	VZEROUPPER
	RET

// func siluAVX2(dst, src *float32, n int)
TEXT ·siluAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	EXPCONSTS
	VMOVUPS expc<>+352(SB), Y9 // 1

siluLoop:
	VMOVUPS (SI), Y10
	VXORPS  expc<>+416(SB), Y10, Y0 // -x
	EXP8
	VADDPS  Y9, Y0, Y0
	VDIVPS  Y0, Y10, Y0             // x / (1 + e^-x)
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	JNZ     siluLoop
	VZEROUPPER
	RET

// func maxAVX2(x *float32, n int) float32
TEXT ·maxAVX2(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VMOVUPS expc<>+448(SB), Y0 // -Inf
	VMOVAPS Y0, Y1
	CMPQ    CX, $16
	JLT     maxTail

maxLoop:
	// The loaded value is the first source: a NaN element keeps the max.
	VMOVUPS (SI), Y2
	VMOVUPS 32(SI), Y3
	VMAXPS  Y0, Y2, Y0
	VMAXPS  Y1, Y3, Y1
	ADDQ    $64, SI
	SUBQ    $16, CX
	CMPQ    CX, $16
	JGE     maxLoop

maxTail:
	TESTQ   CX, CX
	JZ      maxDone
	VMOVUPS (SI), Y2
	VMAXPS  Y0, Y2, Y0

maxDone:
	VMAXPS       Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0x4E, X0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0xB1, X0, X1
	VMAXPS       X1, X0, X0
	VZEROUPPER
	MOVSS        X0, ret+16(FP)
	RET

// func expSubSumAVX2(x *float32, n int, m float32) float32
TEXT ·expSubSumAVX2(SB), NOSPLIT, $0-28
	MOVQ         x+0(FP), SI
	MOVQ         n+8(FP), CX
	VBROADCASTSS m+16(FP), Y9
	VXORPS       Y10, Y10, Y10
	EXPCONSTS

essLoop:
	VMOVUPS (SI), Y0
	VSUBPS  Y9, Y0, Y0
	EXP8
	VMOVUPS Y0, (SI)
	VADDPS  Y0, Y10, Y10
	ADDQ    $32, SI
	SUBQ    $8, CX
	JNZ     essLoop
	VMOVAPS Y10, Y0
	HSUM8
	VZEROUPPER
	MOVSS   X0, ret+24(FP)
	RET

// func sumAVX2(x *float32, n int) float32
TEXT ·sumAVX2(SB), NOSPLIT, $0-20
	MOVQ   x+0(FP), SI
	MOVQ   n+8(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

sumLoop:
	VADDPS (SI), Y0, Y0
	VADDPS 32(SI), Y1, Y1
	VADDPS 64(SI), Y2, Y2
	VADDPS 96(SI), Y3, Y3
	ADDQ   $128, SI
	SUBQ   $32, CX
	JNZ    sumLoop
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	HSUM8
	VZEROUPPER
	MOVSS  X0, ret+16(FP)
	RET

// func dotAVX2(x, y *float32, n int) float32
TEXT ·dotAVX2(SB), NOSPLIT, $0-28
	MOVQ   x+0(FP), SI
	MOVQ   y+8(FP), DI
	MOVQ   n+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

dotLoop:
	VMOVUPS     (SI), Y4
	VMOVUPS     32(SI), Y5
	VMOVUPS     64(SI), Y6
	VMOVUPS     96(SI), Y7
	VFMADD231PS (DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ        $128, SI
	ADDQ        $128, DI
	SUBQ        $32, CX
	JNZ         dotLoop
	VADDPS      Y1, Y0, Y0
	VADDPS      Y3, Y2, Y2
	VADDPS      Y2, Y0, Y0
	HSUM8
	VZEROUPPER
	MOVSS       X0, ret+24(FP)
	RET

// func axpyAVX2(a float32, x, y *float32, n int)
TEXT ·axpyAVX2(SB), NOSPLIT, $0-32
	VBROADCASTSS a+0(FP), Y0
	MOVQ         x+8(FP), SI
	MOVQ         y+16(FP), DI
	MOVQ         n+24(FP), CX

axpyLoop:
	VMOVUPS     (DI), Y1
	VFMADD231PS (SI), Y0, Y1
	VMOVUPS     Y1, (DI)
	ADDQ        $32, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	JNZ         axpyLoop
	VZEROUPPER
	RET

// func scaleAVX2(x *float32, n int, a float32)
TEXT ·scaleAVX2(SB), NOSPLIT, $0-20
	MOVQ         x+0(FP), SI
	MOVQ         n+8(FP), CX
	VBROADCASTSS a+16(FP), Y0

scaleLoop:
	VMULPS  (SI), Y0, Y1
	VMOVUPS Y1, (SI)
	ADDQ    $32, SI
	SUBQ    $8, CX
	JNZ     scaleLoop
	VZEROUPPER
	RET

// func maxColsAVX2(x *float32, rows, stride int, m *float32)
TEXT ·maxColsAVX2(SB), NOSPLIT, $0-32
	MOVQ    x+0(FP), SI
	MOVQ    rows+8(FP), CX
	MOVQ    stride+16(FP), DX
	MOVQ    m+24(FP), DI
	SHLQ    $2, DX
	VMOVUPS (DI), Y0

mcLoop:
	// The loaded value is the first source: a NaN element keeps the max.
	VMOVUPS (SI), Y2
	VMAXPS  Y0, Y2, Y0
	ADDQ    DX, SI
	DECQ    CX
	JNZ     mcLoop
	VMOVUPS Y0, (DI)
	VZEROUPPER
	RET

// func expSubSumColsAVX2(dst *float32, dstride int, x *float32, rows, stride int, m, sums *float32)
TEXT ·expSubSumColsAVX2(SB), NOSPLIT, $0-56
	MOVQ    dst+0(FP), DI
	MOVQ    dstride+8(FP), BX
	MOVQ    x+16(FP), SI
	MOVQ    rows+24(FP), CX
	MOVQ    stride+32(FP), DX
	MOVQ    m+40(FP), R9
	MOVQ    sums+48(FP), R8
	SHLQ    $2, DX
	SHLQ    $2, BX
	VMOVUPS (R9), Y9
	VXORPS  Y10, Y10, Y10
	EXPCONSTS

escLoop:
	VMOVUPS (SI), Y0
	VSUBPS  Y9, Y0, Y0
	EXP8
	VMOVUPS Y0, (DI)
	VADDPS  Y0, Y10, Y10
	ADDQ    DX, SI
	ADDQ    BX, DI
	DECQ    CX
	JNZ     escLoop
	VMOVUPS Y10, (R8)
	VZEROUPPER
	RET

// func normAffineAVX2(dst, src *float32, n int, p *float32)
// p holds mhi, mlo, a, b, each repeated 8 times.
TEXT ·normAffineAVX2(SB), NOSPLIT, $0-32
	MOVQ    dst+0(FP), DI
	MOVQ    src+8(FP), SI
	MOVQ    n+16(FP), CX
	MOVQ    p+24(FP), R8
	VMOVUPS (R8), Y9
	VMOVUPS 32(R8), Y10
	VMOVUPS 64(R8), Y11
	VMOVUPS 96(R8), Y12

naLoop:
	VMOVUPS     (SI), Y0
	VSUBPS      Y9, Y0, Y0
	VSUBPS      Y10, Y0, Y0
	VFMADD213PS Y12, Y11, Y0 // (x-mhi-mlo)·a + b
	VMOVUPS     Y0, (DI)
	ADDQ        $32, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	JNZ         naLoop
	VZEROUPPER
	RET

// func normAffineSiLUAVX2(dst, src *float32, n int, p *float32)
TEXT ·normAffineSiLUAVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ p+24(FP), R8
	EXPCONSTS
	VMOVUPS 64(R8), Y9 // a

nasLoop:
	VMOVUPS     (SI), Y11
	VSUBPS      (R8), Y11, Y11
	VSUBPS      32(R8), Y11, Y11
	VFMADD213PS 96(R8), Y9, Y11      // y = (x-mhi-mlo)·a + b
	VXORPS      expc<>+416(SB), Y11, Y0 // -y
	EXP8
	VADDPS      expc<>+352(SB), Y0, Y0
	VDIVPS      Y0, Y11, Y0          // y / (1 + e^-y)
	VMOVUPS     Y0, (DI)
	ADDQ        $32, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	JNZ         nasLoop
	VZEROUPPER
	RET
