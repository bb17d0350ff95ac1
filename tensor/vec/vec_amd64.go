package vec

import "golang.org/x/sys/cpu"

// useAVX2 selects the assembly kernels (AVX2 and FMA, with the OS saving
// YMM state, which x/sys/cpu checks).
var useAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// Implemented in vec_amd64.s. n is a positive multiple of 8 (32 for sum and
// dot); dst may equal src.

//go:noescape
func expAVX2(dst, src *float32, n int)

//go:noescape
func sigmoidAVX2(dst, src *float32, n int)

//go:noescape
func siluAVX2(dst, src *float32, n int)

//go:noescape
func maxAVX2(x *float32, n int) float32

//go:noescape
func expSubSumAVX2(x *float32, n int, m float32) float32

//go:noescape
func sumAVX2(x *float32, n int) float32

//go:noescape
func dotAVX2(x, y *float32, n int) float32

//go:noescape
func axpyAVX2(a float32, x, y *float32, n int)

//go:noescape
func scaleAVX2(x *float32, n int, a float32)

//go:noescape
func maxColsAVX2(x *float32, rows, stride int, m *float32)

//go:noescape
func expSubSumColsAVX2(dst *float32, dstride int, x *float32, rows, stride int, m, sums *float32)

//go:noescape
func normAffineAVX2(dst, src *float32, n int, p *float32)

//go:noescape
func normAffineSiLUAVX2(dst, src *float32, n int, p *float32)

//go:noescape
func geluAVX2(dst, src *float32, n int)

//go:noescape
func geluMulAVX2(dst, src, a *float32, n int)

//go:noescape
func geluTanhAVX2(dst, src *float32, n int)

//go:noescape
func normAffineRowAVX2(dst, src *float32, n int, p, w, b *float32)

//go:noescape
func copyRowsPadAVX2(dst *float32, dstStride int, src *float32, srcStride, rows, lead, n, trail int)

//go:noescape
func winogradIn8AVX2(x *float32, ldx int, v *float32, stride int)

//go:noescape
func winogradOut8AVX2(m *float32, stride int, out *float32, ldo int, bias float32)
