package vec

import "golang.org/x/sys/cpu"

// useAVX512 selects the AVX-512 kernels of vec512_amd64.s over the AVX2
// ones where both exist (cpu.X86.HasAVX512F is only set when the OS saves
// ZMM and opmask state). The AVX2 kernels stay the path for CPUs without
// AVX-512 and for the kernels that have no AVX-512 version.
var useAVX512 = useAVX2 && cpu.X86.HasAVX512F

// Implemented in vec512_amd64.s. n is any positive count (the tail is
// masked); dst may equal src.

//go:noescape
func expAVX512(dst, src *float32, n int)

//go:noescape
func sigmoidAVX512(dst, src *float32, n int)

//go:noescape
func siluAVX512(dst, src *float32, n int)

//go:noescape
func maxAVX512(x *float32, n int) float32

//go:noescape
func expSubSumAVX512(x *float32, n int, m float32) float32

//go:noescape
func sumAVX512(x *float32, n int) float32

//go:noescape
func dotAVX512(x, y *float32, n int) float32

//go:noescape
func axpyAVX512(a float32, x, y *float32, n int)

//go:noescape
func scaleAVX512(x *float32, n int, a float32)

//go:noescape
func geluAVX512(dst, src *float32, n int)

//go:noescape
func geluMulAVX512(dst, src, a *float32, n int)

//go:noescape
func geluTanhAVX512(dst, src *float32, n int)

//go:noescape
func normAffineAVX512(dst, src *float32, n int, p *float32)

//go:noescape
func normAffineSiLUAVX512(dst, src *float32, n int, p *float32)

//go:noescape
func normAffineRowAVX512(dst, src *float32, n int, p, w, b *float32)
