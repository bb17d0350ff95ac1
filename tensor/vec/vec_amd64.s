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

// GELU constants, each repeated 8 times (one YMM) so they serve as memory
// operands: offset, name (erf polynomial coefficients aN, bN, cN as in erf.go).
//     0: rsqrt2 (1/√2)
//    32: negHalf
//    64: abs (clears the sign)
//    96: cA (2/0.875²)
//   128: negOne
//   160: a0
//   192: a1
//   224: a2
//   256: a3
//   288: a4
//   320: a5
//   352: a6
//   384: negB (-(0.875+4))
//   416: rB (1/(4-0.875))
//   448: b0
//   480: b1
//   512: b2
//   544: b3
//   576: b4
//   608: b5
//   640: b6
//   672: b7
//   704: b8
//   736: b9
//   768: b10
//   800: b11
//   832: b12
//   864: cC (1/100+1/16)
//   896: rC (1/(1/16-1/100))
//   928: c0
//   960: c1
//   992: c2
//  1024: c3
//  1056: c4
//  1088: c5
//  1120: zA
//  1152: zB
//  1184: zC
//  1216: one
//  1248: half
DATA gelc<>+0(SB)/4, $0x3f3504f3
DATA gelc<>+4(SB)/4, $0x3f3504f3
DATA gelc<>+8(SB)/4, $0x3f3504f3
DATA gelc<>+12(SB)/4, $0x3f3504f3
DATA gelc<>+16(SB)/4, $0x3f3504f3
DATA gelc<>+20(SB)/4, $0x3f3504f3
DATA gelc<>+24(SB)/4, $0x3f3504f3
DATA gelc<>+28(SB)/4, $0x3f3504f3
DATA gelc<>+32(SB)/4, $0xbf000000
DATA gelc<>+36(SB)/4, $0xbf000000
DATA gelc<>+40(SB)/4, $0xbf000000
DATA gelc<>+44(SB)/4, $0xbf000000
DATA gelc<>+48(SB)/4, $0xbf000000
DATA gelc<>+52(SB)/4, $0xbf000000
DATA gelc<>+56(SB)/4, $0xbf000000
DATA gelc<>+60(SB)/4, $0xbf000000
DATA gelc<>+64(SB)/4, $0x7fffffff
DATA gelc<>+68(SB)/4, $0x7fffffff
DATA gelc<>+72(SB)/4, $0x7fffffff
DATA gelc<>+76(SB)/4, $0x7fffffff
DATA gelc<>+80(SB)/4, $0x7fffffff
DATA gelc<>+84(SB)/4, $0x7fffffff
DATA gelc<>+88(SB)/4, $0x7fffffff
DATA gelc<>+92(SB)/4, $0x7fffffff
DATA gelc<>+96(SB)/4, $0x40272f05
DATA gelc<>+100(SB)/4, $0x40272f05
DATA gelc<>+104(SB)/4, $0x40272f05
DATA gelc<>+108(SB)/4, $0x40272f05
DATA gelc<>+112(SB)/4, $0x40272f05
DATA gelc<>+116(SB)/4, $0x40272f05
DATA gelc<>+120(SB)/4, $0x40272f05
DATA gelc<>+124(SB)/4, $0x40272f05
DATA gelc<>+128(SB)/4, $0xbf800000
DATA gelc<>+132(SB)/4, $0xbf800000
DATA gelc<>+136(SB)/4, $0xbf800000
DATA gelc<>+140(SB)/4, $0xbf800000
DATA gelc<>+144(SB)/4, $0xbf800000
DATA gelc<>+148(SB)/4, $0xbf800000
DATA gelc<>+152(SB)/4, $0xbf800000
DATA gelc<>+156(SB)/4, $0xbf800000
DATA gelc<>+160(SB)/4, $0x3f7fe109
DATA gelc<>+164(SB)/4, $0x3f7fe109
DATA gelc<>+168(SB)/4, $0x3f7fe109
DATA gelc<>+172(SB)/4, $0x3f7fe109
DATA gelc<>+176(SB)/4, $0x3f7fe109
DATA gelc<>+180(SB)/4, $0x3f7fe109
DATA gelc<>+184(SB)/4, $0x3f7fe109
DATA gelc<>+188(SB)/4, $0x3f7fe109
DATA gelc<>+192(SB)/4, $0xbdeb8f8c
DATA gelc<>+196(SB)/4, $0xbdeb8f8c
DATA gelc<>+200(SB)/4, $0xbdeb8f8c
DATA gelc<>+204(SB)/4, $0xbdeb8f8c
DATA gelc<>+208(SB)/4, $0xbdeb8f8c
DATA gelc<>+212(SB)/4, $0xbdeb8f8c
DATA gelc<>+216(SB)/4, $0xbdeb8f8c
DATA gelc<>+220(SB)/4, $0xbdeb8f8c
DATA gelc<>+224(SB)/4, $0x3c4ecebe
DATA gelc<>+228(SB)/4, $0x3c4ecebe
DATA gelc<>+232(SB)/4, $0x3c4ecebe
DATA gelc<>+236(SB)/4, $0x3c4ecebe
DATA gelc<>+240(SB)/4, $0x3c4ecebe
DATA gelc<>+244(SB)/4, $0x3c4ecebe
DATA gelc<>+248(SB)/4, $0x3c4ecebe
DATA gelc<>+252(SB)/4, $0x3c4ecebe
DATA gelc<>+256(SB)/4, $0xba9305bb
DATA gelc<>+260(SB)/4, $0xba9305bb
DATA gelc<>+264(SB)/4, $0xba9305bb
DATA gelc<>+268(SB)/4, $0xba9305bb
DATA gelc<>+272(SB)/4, $0xba9305bb
DATA gelc<>+276(SB)/4, $0xba9305bb
DATA gelc<>+280(SB)/4, $0xba9305bb
DATA gelc<>+284(SB)/4, $0xba9305bb
DATA gelc<>+288(SB)/4, $0x38ac4d5e
DATA gelc<>+292(SB)/4, $0x38ac4d5e
DATA gelc<>+296(SB)/4, $0x38ac4d5e
DATA gelc<>+300(SB)/4, $0x38ac4d5e
DATA gelc<>+304(SB)/4, $0x38ac4d5e
DATA gelc<>+308(SB)/4, $0x38ac4d5e
DATA gelc<>+312(SB)/4, $0x38ac4d5e
DATA gelc<>+316(SB)/4, $0x38ac4d5e
DATA gelc<>+320(SB)/4, $0xb6ab8a55
DATA gelc<>+324(SB)/4, $0xb6ab8a55
DATA gelc<>+328(SB)/4, $0xb6ab8a55
DATA gelc<>+332(SB)/4, $0xb6ab8a55
DATA gelc<>+336(SB)/4, $0xb6ab8a55
DATA gelc<>+340(SB)/4, $0xb6ab8a55
DATA gelc<>+344(SB)/4, $0xb6ab8a55
DATA gelc<>+348(SB)/4, $0xb6ab8a55
DATA gelc<>+352(SB)/4, $0x3492e7ef
DATA gelc<>+356(SB)/4, $0x3492e7ef
DATA gelc<>+360(SB)/4, $0x3492e7ef
DATA gelc<>+364(SB)/4, $0x3492e7ef
DATA gelc<>+368(SB)/4, $0x3492e7ef
DATA gelc<>+372(SB)/4, $0x3492e7ef
DATA gelc<>+376(SB)/4, $0x3492e7ef
DATA gelc<>+380(SB)/4, $0x3492e7ef
DATA gelc<>+384(SB)/4, $0xc09c0000
DATA gelc<>+388(SB)/4, $0xc09c0000
DATA gelc<>+392(SB)/4, $0xc09c0000
DATA gelc<>+396(SB)/4, $0xc09c0000
DATA gelc<>+400(SB)/4, $0xc09c0000
DATA gelc<>+404(SB)/4, $0xc09c0000
DATA gelc<>+408(SB)/4, $0xc09c0000
DATA gelc<>+412(SB)/4, $0xc09c0000
DATA gelc<>+416(SB)/4, $0x3ea3d70a
DATA gelc<>+420(SB)/4, $0x3ea3d70a
DATA gelc<>+424(SB)/4, $0x3ea3d70a
DATA gelc<>+428(SB)/4, $0x3ea3d70a
DATA gelc<>+432(SB)/4, $0x3ea3d70a
DATA gelc<>+436(SB)/4, $0x3ea3d70a
DATA gelc<>+440(SB)/4, $0x3ea3d70a
DATA gelc<>+444(SB)/4, $0x3ea3d70a
DATA gelc<>+448(SB)/4, $0x3e5cb9ca
DATA gelc<>+452(SB)/4, $0x3e5cb9ca
DATA gelc<>+456(SB)/4, $0x3e5cb9ca
DATA gelc<>+460(SB)/4, $0x3e5cb9ca
DATA gelc<>+464(SB)/4, $0x3e5cb9ca
DATA gelc<>+468(SB)/4, $0x3e5cb9ca
DATA gelc<>+472(SB)/4, $0x3e5cb9ca
DATA gelc<>+476(SB)/4, $0x3e5cb9ca
DATA gelc<>+480(SB)/4, $0xbdf831d1
DATA gelc<>+484(SB)/4, $0xbdf831d1
DATA gelc<>+488(SB)/4, $0xbdf831d1
DATA gelc<>+492(SB)/4, $0xbdf831d1
DATA gelc<>+496(SB)/4, $0xbdf831d1
DATA gelc<>+500(SB)/4, $0xbdf831d1
DATA gelc<>+504(SB)/4, $0xbdf831d1
DATA gelc<>+508(SB)/4, $0xbdf831d1
DATA gelc<>+512(SB)/4, $0x3d847d5b
DATA gelc<>+516(SB)/4, $0x3d847d5b
DATA gelc<>+520(SB)/4, $0x3d847d5b
DATA gelc<>+524(SB)/4, $0x3d847d5b
DATA gelc<>+528(SB)/4, $0x3d847d5b
DATA gelc<>+532(SB)/4, $0x3d847d5b
DATA gelc<>+536(SB)/4, $0x3d847d5b
DATA gelc<>+540(SB)/4, $0x3d847d5b
DATA gelc<>+544(SB)/4, $0xbd07212d
DATA gelc<>+548(SB)/4, $0xbd07212d
DATA gelc<>+552(SB)/4, $0xbd07212d
DATA gelc<>+556(SB)/4, $0xbd07212d
DATA gelc<>+560(SB)/4, $0xbd07212d
DATA gelc<>+564(SB)/4, $0xbd07212d
DATA gelc<>+568(SB)/4, $0xbd07212d
DATA gelc<>+572(SB)/4, $0xbd07212d
DATA gelc<>+576(SB)/4, $0x3c844a36
DATA gelc<>+580(SB)/4, $0x3c844a36
DATA gelc<>+584(SB)/4, $0x3c844a36
DATA gelc<>+588(SB)/4, $0x3c844a36
DATA gelc<>+592(SB)/4, $0x3c844a36
DATA gelc<>+596(SB)/4, $0x3c844a36
DATA gelc<>+600(SB)/4, $0x3c844a36
DATA gelc<>+604(SB)/4, $0x3c844a36
DATA gelc<>+608(SB)/4, $0xbbf95301
DATA gelc<>+612(SB)/4, $0xbbf95301
DATA gelc<>+616(SB)/4, $0xbbf95301
DATA gelc<>+620(SB)/4, $0xbbf95301
DATA gelc<>+624(SB)/4, $0xbbf95301
DATA gelc<>+628(SB)/4, $0xbbf95301
DATA gelc<>+632(SB)/4, $0xbbf95301
DATA gelc<>+636(SB)/4, $0xbbf95301
DATA gelc<>+640(SB)/4, $0x3b634344
DATA gelc<>+644(SB)/4, $0x3b634344
DATA gelc<>+648(SB)/4, $0x3b634344
DATA gelc<>+652(SB)/4, $0x3b634344
DATA gelc<>+656(SB)/4, $0x3b634344
DATA gelc<>+660(SB)/4, $0x3b634344
DATA gelc<>+664(SB)/4, $0x3b634344
DATA gelc<>+668(SB)/4, $0x3b634344
DATA gelc<>+672(SB)/4, $0xbacc5359
DATA gelc<>+676(SB)/4, $0xbacc5359
DATA gelc<>+680(SB)/4, $0xbacc5359
DATA gelc<>+684(SB)/4, $0xbacc5359
DATA gelc<>+688(SB)/4, $0xbacc5359
DATA gelc<>+692(SB)/4, $0xbacc5359
DATA gelc<>+696(SB)/4, $0xbacc5359
DATA gelc<>+700(SB)/4, $0xbacc5359
DATA gelc<>+704(SB)/4, $0x3a2fe3c5
DATA gelc<>+708(SB)/4, $0x3a2fe3c5
DATA gelc<>+712(SB)/4, $0x3a2fe3c5
DATA gelc<>+716(SB)/4, $0x3a2fe3c5
DATA gelc<>+720(SB)/4, $0x3a2fe3c5
DATA gelc<>+724(SB)/4, $0x3a2fe3c5
DATA gelc<>+728(SB)/4, $0x3a2fe3c5
DATA gelc<>+732(SB)/4, $0x3a2fe3c5
DATA gelc<>+736(SB)/4, $0xb97735f3
DATA gelc<>+740(SB)/4, $0xb97735f3
DATA gelc<>+744(SB)/4, $0xb97735f3
DATA gelc<>+748(SB)/4, $0xb97735f3
DATA gelc<>+752(SB)/4, $0xb97735f3
DATA gelc<>+756(SB)/4, $0xb97735f3
DATA gelc<>+760(SB)/4, $0xb97735f3
DATA gelc<>+764(SB)/4, $0xb97735f3
DATA gelc<>+768(SB)/4, $0x38c6383c
DATA gelc<>+772(SB)/4, $0x38c6383c
DATA gelc<>+776(SB)/4, $0x38c6383c
DATA gelc<>+780(SB)/4, $0x38c6383c
DATA gelc<>+784(SB)/4, $0x38c6383c
DATA gelc<>+788(SB)/4, $0x38c6383c
DATA gelc<>+792(SB)/4, $0x38c6383c
DATA gelc<>+796(SB)/4, $0x38c6383c
DATA gelc<>+800(SB)/4, $0xb899a442
DATA gelc<>+804(SB)/4, $0xb899a442
DATA gelc<>+808(SB)/4, $0xb899a442
DATA gelc<>+812(SB)/4, $0xb899a442
DATA gelc<>+816(SB)/4, $0xb899a442
DATA gelc<>+820(SB)/4, $0xb899a442
DATA gelc<>+824(SB)/4, $0xb899a442
DATA gelc<>+828(SB)/4, $0xb899a442
DATA gelc<>+832(SB)/4, $0x37f28af2
DATA gelc<>+836(SB)/4, $0x37f28af2
DATA gelc<>+840(SB)/4, $0x37f28af2
DATA gelc<>+844(SB)/4, $0x37f28af2
DATA gelc<>+848(SB)/4, $0x37f28af2
DATA gelc<>+852(SB)/4, $0x37f28af2
DATA gelc<>+856(SB)/4, $0x37f28af2
DATA gelc<>+860(SB)/4, $0x37f28af2
DATA gelc<>+864(SB)/4, $0x3d947ae1
DATA gelc<>+868(SB)/4, $0x3d947ae1
DATA gelc<>+872(SB)/4, $0x3d947ae1
DATA gelc<>+876(SB)/4, $0x3d947ae1
DATA gelc<>+880(SB)/4, $0x3d947ae1
DATA gelc<>+884(SB)/4, $0x3d947ae1
DATA gelc<>+888(SB)/4, $0x3d947ae1
DATA gelc<>+892(SB)/4, $0x3d947ae1
DATA gelc<>+896(SB)/4, $0x41986186
DATA gelc<>+900(SB)/4, $0x41986186
DATA gelc<>+904(SB)/4, $0x41986186
DATA gelc<>+908(SB)/4, $0x41986186
DATA gelc<>+912(SB)/4, $0x41986186
DATA gelc<>+916(SB)/4, $0x41986186
DATA gelc<>+920(SB)/4, $0x41986186
DATA gelc<>+924(SB)/4, $0x41986186
DATA gelc<>+928(SB)/4, $0x3f0df210
DATA gelc<>+932(SB)/4, $0x3f0df210
DATA gelc<>+936(SB)/4, $0x3f0df210
DATA gelc<>+940(SB)/4, $0x3f0df210
DATA gelc<>+944(SB)/4, $0x3f0df210
DATA gelc<>+948(SB)/4, $0x3f0df210
DATA gelc<>+952(SB)/4, $0x3f0df210
DATA gelc<>+956(SB)/4, $0x3f0df210
DATA gelc<>+960(SB)/4, $0xbbdb56e9
DATA gelc<>+964(SB)/4, $0xbbdb56e9
DATA gelc<>+968(SB)/4, $0xbbdb56e9
DATA gelc<>+972(SB)/4, $0xbbdb56e9
DATA gelc<>+976(SB)/4, $0xbbdb56e9
DATA gelc<>+980(SB)/4, $0xbbdb56e9
DATA gelc<>+984(SB)/4, $0xbbdb56e9
DATA gelc<>+988(SB)/4, $0xbbdb56e9
DATA gelc<>+992(SB)/4, $0x396f4362
DATA gelc<>+996(SB)/4, $0x396f4362
DATA gelc<>+1000(SB)/4, $0x396f4362
DATA gelc<>+1004(SB)/4, $0x396f4362
DATA gelc<>+1008(SB)/4, $0x396f4362
DATA gelc<>+1012(SB)/4, $0x396f4362
DATA gelc<>+1016(SB)/4, $0x396f4362
DATA gelc<>+1020(SB)/4, $0x396f4362
DATA gelc<>+1024(SB)/4, $0xb74db0d2
DATA gelc<>+1028(SB)/4, $0xb74db0d2
DATA gelc<>+1032(SB)/4, $0xb74db0d2
DATA gelc<>+1036(SB)/4, $0xb74db0d2
DATA gelc<>+1040(SB)/4, $0xb74db0d2
DATA gelc<>+1044(SB)/4, $0xb74db0d2
DATA gelc<>+1048(SB)/4, $0xb74db0d2
DATA gelc<>+1052(SB)/4, $0xb74db0d2
DATA gelc<>+1056(SB)/4, $0x356e4e39
DATA gelc<>+1060(SB)/4, $0x356e4e39
DATA gelc<>+1064(SB)/4, $0x356e4e39
DATA gelc<>+1068(SB)/4, $0x356e4e39
DATA gelc<>+1072(SB)/4, $0x356e4e39
DATA gelc<>+1076(SB)/4, $0x356e4e39
DATA gelc<>+1080(SB)/4, $0x356e4e39
DATA gelc<>+1084(SB)/4, $0x356e4e39
DATA gelc<>+1088(SB)/4, $0xb3a8104f
DATA gelc<>+1092(SB)/4, $0xb3a8104f
DATA gelc<>+1096(SB)/4, $0xb3a8104f
DATA gelc<>+1100(SB)/4, $0xb3a8104f
DATA gelc<>+1104(SB)/4, $0xb3a8104f
DATA gelc<>+1108(SB)/4, $0xb3a8104f
DATA gelc<>+1112(SB)/4, $0xb3a8104f
DATA gelc<>+1116(SB)/4, $0xb3a8104f
DATA gelc<>+1120(SB)/4, $0x3f600000
DATA gelc<>+1124(SB)/4, $0x3f600000
DATA gelc<>+1128(SB)/4, $0x3f600000
DATA gelc<>+1132(SB)/4, $0x3f600000
DATA gelc<>+1136(SB)/4, $0x3f600000
DATA gelc<>+1140(SB)/4, $0x3f600000
DATA gelc<>+1144(SB)/4, $0x3f600000
DATA gelc<>+1148(SB)/4, $0x3f600000
DATA gelc<>+1152(SB)/4, $0x40800000
DATA gelc<>+1156(SB)/4, $0x40800000
DATA gelc<>+1160(SB)/4, $0x40800000
DATA gelc<>+1164(SB)/4, $0x40800000
DATA gelc<>+1168(SB)/4, $0x40800000
DATA gelc<>+1172(SB)/4, $0x40800000
DATA gelc<>+1176(SB)/4, $0x40800000
DATA gelc<>+1180(SB)/4, $0x40800000
DATA gelc<>+1184(SB)/4, $0x41200000
DATA gelc<>+1188(SB)/4, $0x41200000
DATA gelc<>+1192(SB)/4, $0x41200000
DATA gelc<>+1196(SB)/4, $0x41200000
DATA gelc<>+1200(SB)/4, $0x41200000
DATA gelc<>+1204(SB)/4, $0x41200000
DATA gelc<>+1208(SB)/4, $0x41200000
DATA gelc<>+1212(SB)/4, $0x41200000
DATA gelc<>+1216(SB)/4, $0x3f800000
DATA gelc<>+1220(SB)/4, $0x3f800000
DATA gelc<>+1224(SB)/4, $0x3f800000
DATA gelc<>+1228(SB)/4, $0x3f800000
DATA gelc<>+1232(SB)/4, $0x3f800000
DATA gelc<>+1236(SB)/4, $0x3f800000
DATA gelc<>+1240(SB)/4, $0x3f800000
DATA gelc<>+1244(SB)/4, $0x3f800000
DATA gelc<>+1248(SB)/4, $0x3f000000
DATA gelc<>+1252(SB)/4, $0x3f000000
DATA gelc<>+1256(SB)/4, $0x3f000000
DATA gelc<>+1260(SB)/4, $0x3f000000
DATA gelc<>+1264(SB)/4, $0x3f000000
DATA gelc<>+1268(SB)/4, $0x3f000000
DATA gelc<>+1272(SB)/4, $0x3f000000
DATA gelc<>+1276(SB)/4, $0x3f000000
GLOBL gelc<>(SB), RODATA|NOPTR, $1280

// GELU8 sets Y0 = GELU(Y0) = x/2·(1 + erf(x/√2)) (8 lanes), clobbering
// Y1..Y7: the lane-parallel form of the Go GELU in erf.go. With
// z = |x|/√2 and e = e^(-z²) (EXP8's steps, constants read from memory
// since no registers are left for them), all three ranges are evaluated
// and blended by z: erf = z·A(sA) below 0.875; erfc = e·B(sB) below 4,
// e·C(sC)/z below 10, 0 from there on (and for NaN). Negative x (sign bit
// set) take x/2·erfc, the others x/2·(1 + erf), as in Go.
#define GELU8 \
	VMULPS      Y0, Y0, Y2                  \
	VMULPS      gelc<>+32(SB), Y2, Y2       \
	VMAXPS      expc<>+32(SB), Y2, Y2       \
	VMULPS      expc<>+64(SB), Y2, Y3       \
	VROUNDPS    $0, Y3, Y3                  \
	VFMADD231PS expc<>+96(SB), Y3, Y2       \
	VFMADD231PS expc<>+128(SB), Y3, Y2      \
	VMULPS      Y2, Y2, Y4                  \
	VMOVUPS     expc<>+160(SB), Y5          \
	VFMADD213PS expc<>+192(SB), Y2, Y5      \
	VFMADD213PS expc<>+224(SB), Y2, Y5      \
	VFMADD213PS expc<>+256(SB), Y2, Y5      \
	VFMADD213PS expc<>+288(SB), Y2, Y5      \
	VFMADD213PS expc<>+320(SB), Y2, Y5      \
	VFMADD213PS Y2, Y4, Y5                  \
	VADDPS      expc<>+352(SB), Y5, Y5      \
	VCVTPS2DQ   Y3, Y3                      \
	VPSRAD      $1, Y3, Y4                  \
	VPSUBD      Y4, Y3, Y3                  \
	VPADDD      expc<>+384(SB), Y4, Y4      \
	VPSLLD      $23, Y4, Y4                 \
	VPADDD      expc<>+384(SB), Y3, Y3      \
	VPSLLD      $23, Y3, Y3                 \
	VMULPS      Y4, Y5, Y5                  \
	VMULPS      Y3, Y5, Y2                  \
	VMULPS      gelc<>+0(SB), Y0, Y1        \
	VANDPS      gelc<>+64(SB), Y1, Y1       \
	VMULPS      Y1, Y1, Y3                  \
	VMOVUPS     gelc<>+96(SB), Y4           \
	VFMADD213PS gelc<>+128(SB), Y3, Y4      \
	VMOVUPS     gelc<>+352(SB), Y5          \
	VFMADD213PS gelc<>+320(SB), Y4, Y5      \
	VFMADD213PS gelc<>+288(SB), Y4, Y5      \
	VFMADD213PS gelc<>+256(SB), Y4, Y5      \
	VFMADD213PS gelc<>+224(SB), Y4, Y5      \
	VFMADD213PS gelc<>+192(SB), Y4, Y5      \
	VFMADD213PS gelc<>+160(SB), Y4, Y5      \
	VMULPS      Y1, Y5, Y5                  \
	VADDPS      Y1, Y1, Y4                  \
	VADDPS      gelc<>+384(SB), Y4, Y4      \
	VMULPS      gelc<>+416(SB), Y4, Y4      \
	VMOVUPS     gelc<>+832(SB), Y6          \
	VFMADD213PS gelc<>+800(SB), Y4, Y6      \
	VFMADD213PS gelc<>+768(SB), Y4, Y6      \
	VFMADD213PS gelc<>+736(SB), Y4, Y6      \
	VFMADD213PS gelc<>+704(SB), Y4, Y6      \
	VFMADD213PS gelc<>+672(SB), Y4, Y6      \
	VFMADD213PS gelc<>+640(SB), Y4, Y6      \
	VFMADD213PS gelc<>+608(SB), Y4, Y6      \
	VFMADD213PS gelc<>+576(SB), Y4, Y6      \
	VFMADD213PS gelc<>+544(SB), Y4, Y6      \
	VFMADD213PS gelc<>+512(SB), Y4, Y6      \
	VFMADD213PS gelc<>+480(SB), Y4, Y6      \
	VFMADD213PS gelc<>+448(SB), Y4, Y6      \
	VMOVUPS     gelc<>+1216(SB), Y4         \
	VDIVPS      Y3, Y4, Y4                  \
	VADDPS      Y4, Y4, Y4                  \
	VSUBPS      gelc<>+864(SB), Y4, Y4      \
	VMULPS      gelc<>+896(SB), Y4, Y4      \
	VMOVUPS     gelc<>+1088(SB), Y3         \
	VFMADD213PS gelc<>+1056(SB), Y4, Y3     \
	VFMADD213PS gelc<>+1024(SB), Y4, Y3     \
	VFMADD213PS gelc<>+992(SB), Y4, Y3      \
	VFMADD213PS gelc<>+960(SB), Y4, Y3      \
	VFMADD213PS gelc<>+928(SB), Y4, Y3      \
	VDIVPS      Y1, Y3, Y3                  \
	VMULPS      Y2, Y6, Y6                  \
	VMULPS      Y2, Y3, Y3                  \
	VCMPPS      $1, gelc<>+1152(SB), Y1, Y4 \
	VBLENDVPS   Y4, Y6, Y3, Y3              \
	VCMPPS      $1, gelc<>+1184(SB), Y1, Y4 \
	VANDPS      Y4, Y3, Y3                  \
	VCMPPS      $1, gelc<>+1120(SB), Y1, Y4 \
	VMOVUPS     gelc<>+1216(SB), Y7         \
	VSUBPS      Y5, Y7, Y6                  \
	VSUBPS      Y3, Y7, Y2                  \
	VBLENDVPS   Y4, Y6, Y3, Y3              \
	VBLENDVPS   Y4, Y5, Y2, Y2              \
	VADDPS      Y7, Y2, Y2                  \
	VBLENDVPS   Y0, Y3, Y2, Y2              \
	VMULPS      gelc<>+1248(SB), Y0, Y3     \
	VMULPS      Y3, Y2, Y0

// func geluAVX2(dst, src *float32, n int)
TEXT ·geluAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX

geluLoop:
	VMOVUPS (SI), Y0
	GELU8
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	JNZ     geluLoop
	VZEROUPPER
	RET

// func geluMulAVX2(dst, src, a *float32, n int)
TEXT ·geluMulAVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ a+16(FP), DX
	MOVQ n+24(FP), CX

geluMulLoop:
	VMOVUPS (SI), Y0
	GELU8
	VMULPS  (DX), Y0, Y0 // a·GELU(x)
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DX
	ADDQ    $32, DI
	SUBQ    $8, CX
	JNZ     geluMulLoop
	VZEROUPPER
	RET

// GELU-tanh constants: 0.044715 and -2·√(2/π).
DATA gtc<>+0(SB)/4, $0x3d372713
DATA gtc<>+4(SB)/4, $0xbfcc422a
GLOBL gtc<>(SB), RODATA|NOPTR, $8

// func geluTanhAVX2(dst, src *float32, n int)
TEXT ·geluTanhAVX2(SB), NOSPLIT, $0-24
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	EXPCONSTS
	VBROADCASTSS gtc<>+0(SB), Y9
	VBROADCASTSS gtc<>+4(SB), Y11

gtLoop:
	VMOVUPS     (SI), Y10
	VMULPS      Y10, Y10, Y0
	VMULPS      Y10, Y0, Y0              // x³
	VFMADD213PS Y10, Y9, Y0              // x + 0.044715·x³
	VMULPS      Y11, Y0, Y0              // -2u
	EXP8
	VADDPS      expc<>+352(SB), Y0, Y0
	VDIVPS      Y0, Y10, Y0              // x / (1 + e^(-2u))
	VMOVUPS     Y0, (DI)
	ADDQ        $32, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	JNZ         gtLoop
	VZEROUPPER
	RET

// func normAffineRowAVX2(dst, src *float32, n int, p, w, b *float32)
// p holds mhi, mlo, a, each repeated 8 times; w and b have n values.
TEXT ·normAffineRowAVX2(SB), NOSPLIT, $0-48
	MOVQ    dst+0(FP), DI
	MOVQ    src+8(FP), SI
	MOVQ    n+16(FP), CX
	MOVQ    p+24(FP), R8
	MOVQ    w+32(FP), R9
	MOVQ    b+40(FP), R10
	VMOVUPS (R8), Y9
	VMOVUPS 32(R8), Y10
	VMOVUPS 64(R8), Y11

narLoop:
	VMOVUPS     (SI), Y0
	VSUBPS      Y9, Y0, Y0
	VSUBPS      Y10, Y0, Y0
	VMULPS      Y11, Y0, Y0      // (x-mhi-mlo)·a
	VMOVUPS     (R9), Y1
	VFMADD213PS (R10), Y1, Y0    // ·w + b
	VMOVUPS     Y0, (DI)
	ADDQ        $32, SI
	ADDQ        $32, DI
	ADDQ        $32, R9
	ADDQ        $32, R10
	SUBQ        $8, CX
	JNZ         narLoop
	VZEROUPPER
	RET

// func copyRowsPadAVX2(dst *float32, dstStride int, src *float32, srcStride, rows, lead, n, trail int)
//
// For each of rows rows: lead zeros, the n >= 8 values at src, trail zeros,
// written from dst; then dst and src advance by their strides (in floats).
// A tail shorter than 8 is copied by one overlapping 8-wide move.
TEXT ·copyRowsPadAVX2(SB), NOSPLIT, $0-64
	MOVQ dst+0(FP), DI
	MOVQ dstStride+8(FP), R8
	SHLQ $2, R8
	MOVQ src+16(FP), SI
	MOVQ srcStride+24(FP), R9
	SHLQ $2, R9
	MOVQ rows+32(FP), CX
	MOVQ lead+40(FP), R10
	MOVQ n+48(FP), R11
	MOVQ trail+56(FP), R12

crp_row:
	MOVQ DI, AX
	MOVQ SI, BX
	MOVQ R10, DX
	TESTQ DX, DX
	JZ crp_copy
crp_lead:
	MOVL $0, (AX)
	ADDQ $4, AX
	DECQ DX
	JNZ crp_lead

crp_copy:
	MOVQ R11, DX
crp_copy8:
	VMOVUPS (BX), Y0
	VMOVUPS Y0, (AX)
	ADDQ $32, BX
	ADDQ $32, AX
	SUBQ $8, DX
	CMPQ DX, $8
	JGE crp_copy8
	TESTQ DX, DX
	JZ crp_trail
	// The last DX < 8 values: move the 8 that end there (n >= 8).
	VMOVUPS -32(BX)(DX*4), Y0
	VMOVUPS Y0, -32(AX)(DX*4)
	LEAQ (AX)(DX*4), AX

crp_trail:
	MOVQ R12, DX
	TESTQ DX, DX
	JZ crp_next
crp_trail1:
	MOVL $0, (AX)
	ADDQ $4, AX
	DECQ DX
	JNZ crp_trail1

crp_next:
	ADDQ R8, DI
	ADDQ R9, SI
	DECQ CX
	JNZ crp_row
	VZEROUPPER
	RET
