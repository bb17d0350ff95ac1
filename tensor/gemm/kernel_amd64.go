package gemm

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// Implemented in gemm_amd64.s.

//go:noescape
func kern6x16AVX2(kc int, a, b, c *float32, ldc int, alpha, beta float32)

//go:noescape
func kern6x32AVX512(kc int, a, b, c *float32, ldc int, alpha, beta float32)

//go:noescape
func kern6x8AVX2(kc int, a, b, c *float32, ldc int, alpha, beta float32)

//go:noescape
func kern6x16AVX512(kc int, a, b, c *float32, ldc int, alpha, beta float32)

//go:noescape
func kern6x16IndAVX2(kc int, a, b *float32, offs *int, c *float32, ldc int, alpha, beta float32)

//go:noescape
func kern6x32IndAVX512(kc int, a, b *float32, offs *int, c *float32, ldc int, alpha, beta float32)

//go:noescape
func kern6x16NTAVX2(kc int, a, b, c *float32, ldc int, alpha, beta float32)

//go:noescape
func kern6x32NTAVX512(kc int, a, b, c *float32, ldc int, alpha, beta float32)

func sfence()

func cpuidVendor() (ebx, edx, ecx uint32)

// isIntel reports a "GenuineIntel" CPU (see streamDefault).
var isIntel = func() bool {
	b, d, c := cpuidVendor()
	return b == 0x756e6547 && d == 0x49656e69 && c == 0x6c65746e // "Genu", "ineI", "ntel"
}()

//go:noescape
func kern6x16DirAVX2(kc int, a, b, c *float32, ldc int, alpha, beta float32, lda int)

//go:noescape
func kern6x8DirAVX2(kc int, a, b, c *float32, ldc int, alpha, beta float32, lda int)

//go:noescape
func kern6x32DirAVX512(kc int, a, b, c *float32, ldc int, alpha, beta float32, lda int)

//go:noescape
func kern6x16DirAVX512(kc int, a, b, c *float32, ldc int, alpha, beta float32, lda int)

//go:noescape
func widenF16AVX(dst *float32, src *uint16, n int)

//go:noescape
func widenBF16AVX(dst *float32, src *uint16, n int)

func fmaLoopAVX2(n int)

func fmaLoopAVX512(n int)

var (
	hasAVX2FMA = cpu.X86.HasAVX2 && cpu.X86.HasFMA
	// cpu.X86.HasAVX512F is only set when the OS also saves ZMM state.
	hasAVX512 = cpu.X86.HasAVX512F
	useF16C   = cpu.X86.HasAVX2 && cpu.X86.HasF16C
)

// The assembly kernels take raw pointers; gemmFast has checked that C holds
// every tile, and the packed slivers are sized by the driver, so the slice
// expressions below are the only bounds checks needed.

var avx2Kernel = microKernel{name: "avx2-6x16", mr: 6, nr: 16, fn: func(kc int, a, b, c []float32, ldc int, alpha, beta float32) {
	_, _ = a[6*kc-1], b[16*kc-1]
	kern6x16AVX2(kc, &a[0], &b[0], &c[0], ldc, alpha, beta)
}, half: func(kc int, a, b, c []float32, ldc int, alpha, beta float32) {
	_, _ = a[6*kc-1], b[16*kc-1]
	kern6x8AVX2(kc, &a[0], &b[0], &c[0], ldc, alpha, beta)
}, indirect: func(kc int, a, b []float32, offs []int, c []float32, ldc int, alpha, beta float32) {
	// The driver has checked that every row offs[p] of b is in bounds.
	_, _ = a[6*kc-1], offs[kc-1]
	kern6x16IndAVX2(kc, &a[0], &b[0], &offs[0], &c[0], ldc, alpha, beta)
}, direct: func(kc int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32) {
	_, _ = a[5*lda+kc-1], b[16*kc-1]
	kern6x16DirAVX2(kc, &a[0], &b[0], &c[0], ldc, alpha, beta, lda)
}, directHalf: func(kc int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32) {
	_, _ = a[5*lda+kc-1], b[16*kc-1]
	kern6x8DirAVX2(kc, &a[0], &b[0], &c[0], ldc, alpha, beta, lda)
}, stream: func(kc int, a, b, c []float32, ldc int, alpha, beta float32) {
	_, _ = a[6*kc-1], b[16*kc-1]
	kern6x16NTAVX2(kc, &a[0], &b[0], &c[0], ldc, alpha, beta)
}, vecBytes: 32}

var avx512Kernel = microKernel{name: "avx512-6x32", mr: 6, nr: 32, fn: func(kc int, a, b, c []float32, ldc int, alpha, beta float32) {
	_, _ = a[6*kc-1], b[32*kc-1]
	kern6x32AVX512(kc, &a[0], &b[0], &c[0], ldc, alpha, beta)
}, half: func(kc int, a, b, c []float32, ldc int, alpha, beta float32) {
	_, _ = a[6*kc-1], b[32*kc-1]
	kern6x16AVX512(kc, &a[0], &b[0], &c[0], ldc, alpha, beta)
}, indirect: func(kc int, a, b []float32, offs []int, c []float32, ldc int, alpha, beta float32) {
	_, _ = a[6*kc-1], offs[kc-1]
	kern6x32IndAVX512(kc, &a[0], &b[0], &offs[0], &c[0], ldc, alpha, beta)
}, direct: func(kc int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32) {
	_, _ = a[5*lda+kc-1], b[32*kc-1]
	kern6x32DirAVX512(kc, &a[0], &b[0], &c[0], ldc, alpha, beta, lda)
}, directHalf: func(kc int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32) {
	_, _ = a[5*lda+kc-1], b[32*kc-1]
	kern6x16DirAVX512(kc, &a[0], &b[0], &c[0], ldc, alpha, beta, lda)
}, stream: func(kc int, a, b, c []float32, ldc int, alpha, beta float32) {
	_, _ = a[6*kc-1], b[32*kc-1]
	kern6x32NTAVX512(kc, &a[0], &b[0], &c[0], ldc, alpha, beta)
}, vecBytes: 64}

func bestKernel() microKernel {
	switch {
	case hasAVX512:
		return avx512Kernel
	case hasAVX2FMA:
		return avx2Kernel
	}
	return goKernel4x4
}

// widenAsm widens the longest multiple-of-8 prefix of src into dst and
// returns its length: 16 lanes at a time with AVX-512, the last 8 (or all,
// without AVX-512) with AVX/F16C.
func widenAsm(dst []float32, src []uint16, kind Kind) int {
	n := len(dst) &^ 7
	if n == 0 {
		return 0
	}
	_ = src[n-1]
	n16 := 0
	if useWiden512 {
		n16 = n &^ 15
	}
	if n16 > 0 {
		if kind == BF16 {
			widenBF16AVX512(&dst[0], (*uint16)(unsafe.Pointer(&src[0])), n16)
		} else {
			widenF16AVX512(&dst[0], &src[0], n16)
		}
	}
	if n > n16 {
		if kind == BF16 {
			widenBF16AVX(&dst[n16], (*uint16)(unsafe.Pointer(&src[n16])), n-n16)
		} else {
			widenF16AVX(&dst[n16], &src[n16], n-n16)
		}
	}
	return n
}

// fmaLoop runs n iterations of 12 vector FMAs with the widest vectors the
// CPU has and returns the flops performed, for peak-rate estimates.
func fmaLoop(n int) (flops float64) {
	switch {
	case hasAVX512:
		fmaLoopAVX512(n)
		return float64(n) * 12 * 16 * 2
	case hasAVX2FMA:
		fmaLoopAVX2(n)
		return float64(n) * 12 * 8 * 2
	}
	return 0
}

// fence orders the streaming kernels' stores before what follows.
func fence() { sfence() }

// runnableKernels lists the assembly kernels this CPU can execute.
func runnableKernels() []microKernel {
	var ks []microKernel
	if hasAVX2FMA {
		ks = append(ks, avx2Kernel)
	}
	if hasAVX512 {
		ks = append(ks, avx512Kernel)
	}
	return ks
}

//go:noescape
func pack4AVX(dst, src *float32, lds, n4, w, pf int)

//go:noescape
func pack2AVX(dst, src *float32, lds, n4, w, pf int)

// packRowsAsm interleaves w rows of src, each kc long with stride lds, into
// panel (panel[p*w+r] = src[r*lds+p]) for the largest multiple of 4 of kc
// and returns that count; the caller packs the rest. It does nothing (and
// returns 0) for odd w, which only test kernels use.
func packRowsAsm(panel, src []float32, lds, kc, w int) int {
	n4 := kc / 4
	if !hasAVX2FMA || n4 == 0 || w%2 != 0 {
		return 0
	}
	_ = panel[(4*n4-1)*w+w-1]
	_ = src[(w-1)*lds+4*n4-1]
	// Prefetch the same rows two slivers on: one sliver's packing time is
	// too short to cover DRAM latency. Prefetches never fault, so running
	// past the end of the operand is harmless.
	pf := 2 * w * lds * 4
	r := 0
	for ; r+4 <= w; r += 4 {
		pack4AVX(&panel[r], &src[r*lds], lds, n4, w, pf)
	}
	if r < w {
		pack2AVX(&panel[r], &src[r*lds], lds, n4, w, pf)
	}
	return 4 * n4
}

//go:noescape
func seedRowsAVX(c *float32, ldc int, bias *float32, rows, cols int)

//go:noescape
func seedColsAVX(c *float32, ldc int, bias *float32, rows, cols int)

// seedAsm sets a rows×cols tile of C to its row biases (row) or column
// biases (col; exactly one of them is non-nil) when cols is a multiple of 8,
// and reports whether it did.
func seedAsm(rows, cols int, row, col, c []float32, ldc int) bool {
	if !hasAVX2FMA || rows <= 0 || cols <= 0 || cols%8 != 0 {
		return false
	}
	_ = c[(rows-1)*ldc+cols-1]
	if row != nil {
		_ = row[rows-1]
		seedRowsAVX(&c[0], ldc, &row[0], rows, cols)
	} else {
		_ = col[cols-1]
		seedColsAVX(&c[0], ldc, &col[0], rows, cols)
	}
	return true
}

//go:noescape
func gatherChunksAVX(dst *float32, dstStride int, src *float32, srcStride, rows, chunks, w int)

// gatherChunksAsm copies, for q < chunks and r < rows, the w floats
// src[r*srcStride+q*w:] to dst[q*dstStride+r*w:] when w is a multiple of 8,
// and reports whether it did.
func gatherChunksAsm(dst []float32, dstStride int, src []float32, srcStride, rows, chunks, w int) bool {
	if !hasAVX2FMA || rows <= 0 || chunks <= 0 || w <= 0 || w%8 != 0 {
		return false
	}
	_, _ = dst[(chunks-1)*dstStride+rows*w-1], src[(rows-1)*srcStride+chunks*w-1]
	gatherChunksAVX(&dst[0], dstStride, &src[0], srcStride, rows, chunks, w)
	return true
}

// disableAsm turns off the assembly packing and widening helpers, so that
// tests cover the pure-Go paths that machines without AVX2 take, and returns
// a function that restores them.
func disableAsm() (restore func()) {
	a, f := hasAVX2FMA, useF16C
	hasAVX2FMA, useF16C = false, false
	return func() { hasAVX2FMA, useF16C = a, f }
}
