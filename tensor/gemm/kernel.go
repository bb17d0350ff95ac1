package gemm

import (
	"fmt"
	"unsafe"
)

// A microKernel multiplies one packed MR×kc sliver of A by one packed kc×NR
// sliver of B and folds the product into an MR×NR tile of C:
//
//	C = alpha·(A·B) + beta·C   (C is not read when beta == 0)
//
// a holds kc groups of MR values (column p of the sliver, rows 0..MR-1) and b
// holds kc groups of NR values (row p, columns 0..NR-1); the driver zero-pads
// both, so a kernel only ever sees full tiles. c is the tile's top-left
// element with row stride ldc.
//
// half, if set, computes only the left nr/2 columns of the same tile (from
// the same packed B layout); the driver uses it for column edges that narrow,
// such as the last 8 of n = 40, instead of multiplying by padding zeros.
//
// indirect, if set, is fn with B read in place (see InPlace): row p of the B
// sliver is b[offs[p] : offs[p]+NR]. Its caller checks those bounds.
//
// stream, if set, is fn writing C with non-temporal stores when beta == 0;
// it needs C's tile and row stride aligned to vecBytes, and a fence after
// the last call (see useStream).
//
// direct and directHalf, if set, are fn and half with A read where it lies:
// row i of the A sliver is a[i*lda : i*lda+kc]. The driver uses them for
// products with few columns, where packing a large A would cost as much as
// multiplying it (see useDirectA).
type microKernel struct {
	name       string
	mr, nr     int
	fn         func(kc int, a, b, c []float32, ldc int, alpha, beta float32)
	half       func(kc int, a, b, c []float32, ldc int, alpha, beta float32)
	indirect   func(kc int, a, b []float32, offs []int, c []float32, ldc int, alpha, beta float32)
	direct     directFn
	directHalf directFn
	stream     func(kc int, a, b, c []float32, ldc int, alpha, beta float32)
	vecBytes   int
}

// directFn is a micro-kernel reading its A sliver from rows of stride lda.
type directFn func(kc int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32)

// Go kernels. They are compiled and tested on every platform; goKernel4x4 is
// the production path where no assembly kernel applies, goKernelGeneric lets
// tests drive the blocked driver with the geometry of a SIMD kernel that the
// test machine cannot execute (for example the AVX-512 one).

var goKernel4x4 = microKernel{name: "go4x4", mr: 4, nr: 4, fn: kern4x4Go}

// kern4x4Go keeps its 16 accumulators in named locals so the compiler can hold
// them in registers; a [16]float32 array would be spilled to the stack on
// every update.
func kern4x4Go(kc int, a, b, c []float32, ldc int, alpha, beta float32) {
	var c00, c01, c02, c03 float32
	var c10, c11, c12, c13 float32
	var c20, c21, c22, c23 float32
	var c30, c31, c32, c33 float32
	a = a[:4*kc]
	b = b[:4*kc]
	for p := 0; p < kc; p++ {
		av := a[4*p : 4*p+4 : 4*p+4]
		bv := b[4*p : 4*p+4 : 4*p+4]
		a0, a1, a2, a3 := av[0], av[1], av[2], av[3]
		b0, b1, b2, b3 := bv[0], bv[1], bv[2], bv[3]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2
		c23 += a2 * b3
		c30 += a3 * b0
		c31 += a3 * b1
		c32 += a3 * b2
		c33 += a3 * b3
	}
	storeRow4(c[0:4:4], c00, c01, c02, c03, alpha, beta)
	storeRow4(c[ldc:ldc+4:ldc+4], c10, c11, c12, c13, alpha, beta)
	storeRow4(c[2*ldc:2*ldc+4:2*ldc+4], c20, c21, c22, c23, alpha, beta)
	storeRow4(c[3*ldc:3*ldc+4:3*ldc+4], c30, c31, c32, c33, alpha, beta)
}

func storeRow4(c []float32, v0, v1, v2, v3, alpha, beta float32) {
	if beta == 0 {
		c[0], c[1], c[2], c[3] = alpha*v0, alpha*v1, alpha*v2, alpha*v3
		return
	}
	c[0] = alpha*v0 + beta*c[0]
	c[1] = alpha*v1 + beta*c[1]
	c[2] = alpha*v2 + beta*c[2]
	c[3] = alpha*v3 + beta*c[3]
}

// genericKernel returns a slow Go kernel with an arbitrary geometry; with
// half it also has a half-width variant, like the SIMD kernels, and a
// streaming one that, like theirs, faults (panics) on a tile not aligned to
// a vector of nr/2 floats. It always has indirect and direct variants.
func genericKernel(mr, nr int, half bool) microKernel {
	k := microKernel{name: fmt.Sprintf("generic%dx%d", mr, nr), mr: mr, nr: nr, fn: genericFn(mr, nr, nr)}
	k.indirect = func(kc int, a, b []float32, offs []int, c []float32, ldc int, alpha, beta float32) {
		// Gather the B rows into a packed sliver and run the packed kernel.
		bp := make([]float32, kc*nr)
		for p, o := range offs[:kc] {
			copy(bp[p*nr:p*nr+nr], b[o:o+nr])
		}
		k.fn(kc, a, bp, c, ldc, alpha, beta)
	}
	k.direct = gatherA(mr, k.fn)
	if half {
		k.name += "h"
		k.half = genericFn(mr, nr, nr/2)
		k.directHalf = gatherA(mr, k.half)
		k.vecBytes = nr * 2
		k.stream = func(kc int, a, b, c []float32, ldc int, alpha, beta float32) {
			if uintptr(unsafe.Pointer(&c[0]))%uintptr(k.vecBytes) != 0 || ldc*4%k.vecBytes != 0 {
				panic(fmt.Sprintf("gemm: streaming store to a tile not %d-byte aligned", k.vecBytes))
			}
			k.fn(kc, a, b, c, ldc, alpha, beta)
		}
	}
	return k
}

// gatherA makes a direct kernel of a packed one: the A rows are gathered
// into a packed sliver first.
func gatherA(mr int, fn func(kc int, a, b, c []float32, ldc int, alpha, beta float32)) directFn {
	return func(kc int, a []float32, lda int, b, c []float32, ldc int, alpha, beta float32) {
		ap := make([]float32, mr*kc)
		for i := 0; i < mr; i++ {
			for p, v := range a[i*lda : i*lda+kc] {
				ap[p*mr+i] = v
			}
		}
		fn(kc, ap, b, c, ldc, alpha, beta)
	}
}

// genericFn computes the left cols columns of an mr×nr tile.
func genericFn(mr, nr, cols int) func(kc int, a, b, c []float32, ldc int, alpha, beta float32) {
	return func(kc int, a, b, c []float32, ldc int, alpha, beta float32) {
		acc := make([]float32, mr*nr)
		for p := 0; p < kc; p++ {
			av := a[p*mr : p*mr+mr]
			bv := b[p*nr : p*nr+nr]
			for i, x := range av {
				row := acc[i*nr : i*nr+nr]
				for j, y := range bv {
					row[j] += x * y
				}
			}
		}
		for i := 0; i < mr; i++ {
			cr := c[i*ldc : i*ldc+cols]
			for j := range cr {
				if beta == 0 {
					cr[j] = alpha * acc[i*nr+j]
				} else {
					cr[j] = alpha*acc[i*nr+j] + beta*cr[j]
				}
			}
		}
	}
}
