// Package gemm is the single-precision matrix-multiply engine behind every
// linear layer, convolution and attention product. Operands may be stored as
// float32, float16 or bfloat16, or in a block format that the caller decodes
// (Blocks: quantised weights); they are widened or decoded while packing, so
// weights keep their stored dtype in memory.
package gemm

import "github.com/diffuse-go/diffuse/half"

// Kind is the storage type of a matrix operand.
type Kind uint8

const (
	F32  Kind = iota // Mat.F32 holds the values
	F16              // Mat.U16 holds IEEE binary16 values
	BF16             // Mat.U16 holds bfloat16 values
	// Blocks is a matrix stored in a block format (quantised weights):
	// Mat.Decode produces its values, a stored row at a time, as the
	// operand is packed. No dequantised copy of the whole matrix is made.
	Blocks
)

// Mat is a row-major matrix operand. Element (i, j) of the logical matrix
// op(X) is X[i*Stride+j] when !Trans, X[j*Stride+i] when Trans.
//
// Two optional fields replace the stored matrix:
//   - Packed: an operand packed in advance by PackA or PackB, so that a
//     weight used by many products is packed (and widened) only once.
//   - Lines: an operand computed on the fly while it is packed, such as the
//     unfolded input of a convolution (implicit GEMM), so that it is never
//     materialised. Lines(p, x0, dst) stores into dst the elements of op(X)
//     with k index p and row (for A) or column (for B) indices x0, x0+1, ….
//     It is called from several goroutines at once. Build such operands
//     with LinesMat, which records in Trans which side of the product the
//     operand is (only Mat.At needs to know).
type Mat struct {
	Kind   Kind
	F32    []float32
	U16    []uint16
	Stride int
	Trans  bool

	Packed *Packed
	Lines  func(p, x0 int, dst []float32)
	// Decode, for Kind Blocks, writes the stored elements [col,
	// col+len(dst)) of stored row row (row i of X when !Trans, the
	// element index being j) into dst as float32. It is called from
	// several goroutines at once, with ranges that need not start or end on
	// a block boundary. Stride is unused.
	Decode func(row, col int, dst []float32)
	// InPlace, optional beside Lines on a B operand, lets kernels that can
	// read B where it lies do so instead of packing it from Lines.
	InPlace *InPlace
}

// InPlace describes a B operand that the micro-kernel can read where it
// lies, without packing: element (p, j) is Data[Col(j)+Off[p]], and the
// columns j, j+1, …, j+Run-1 are consecutive in Data whenever j is a
// multiple of Run. A stride-1 convolution's zero-padded input is such an
// operand (one kernel tap per row p, Run = the output width), so its GEMM
// needs neither the unfolded matrix nor its packed copy. Off must be >= 0
// and every element addressed must lie inside Data; Gemm checks both.
type InPlace struct {
	Data []float32
	Off  []int
	Run  int
	Col  func(j int) int
}

// At returns logical element (i, j) as float32 (slow; for tests and fallbacks).
func (m Mat) At(i, j int) float32 {
	if m.Packed != nil {
		return m.Packed.src.At(i, j)
	}
	if m.Lines != nil {
		var v [1]float32
		if m.Trans { // see LinesMat: Trans marks a B operand
			m.Lines(i, j, v[:])
		} else {
			m.Lines(j, i, v[:])
		}
		return v[0]
	}
	if m.Kind == Blocks {
		var v [1]float32
		if m.Trans {
			i, j = j, i
		}
		m.Decode(i, j, v[:])
		return v[0]
	}
	idx := i*m.Stride + j
	if m.Trans {
		idx = j*m.Stride + i
	}
	switch m.Kind {
	case F16:
		return half.F16ToF32(m.U16[idx])
	case BF16:
		return half.BF16ToF32(m.U16[idx])
	}
	return m.F32[idx]
}

// Gemm computes C = alpha * A·B + beta * C where A is m×k, B is k×n and C is
// m×n row-major with row stride ldc. When beta == 0, C is not read.
//
// Large products are split across Threads() goroutines. Gemm is safe for
// concurrent use as long as the calls write disjoint parts of memory.
func Gemm(m, n, k int, alpha float32, a, b Mat, beta float32, c []float32, ldc int) {
	gemmFast(activeKernel, Opts{}, m, n, k, alpha, a, b, beta, c, ldc)
}

// Opts are the optional parts of a product.
type Opts struct {
	// Threads bounds the goroutines; <= 0 means Threads().
	Threads int
	// RowBias (m values) and ColBias (n values), when set, are added to
	// every element of their row or column of C:
	//
	//	C[i][j] = alpha·(A·B)[i][j] + beta·C[i][j] + RowBias[i] + ColBias[j]
	//
	// They are written into each C tile just before its first product, while
	// the tile is in cache, instead of in a separate pass over C.
	RowBias, ColBias []float32
}

// GemmWith is Gemm with options.
func GemmWith(o Opts, m, n, k int, alpha float32, a, b Mat, beta float32, c []float32, ldc int) {
	gemmFast(activeKernel, o, m, n, k, alpha, a, b, beta, c, ldc)
}

// GemmThreads is Gemm using at most threads goroutines (threads <= 0 means
// Threads()). Callers that already run many products in parallel pass 1, so
// that goroutines do not multiply and each product keeps its packed blocks
// in its own core's caches.
func GemmThreads(threads, m, n, k int, alpha float32, a, b Mat, beta float32, c []float32, ldc int) {
	gemmFast(activeKernel, Opts{Threads: threads}, m, n, k, alpha, a, b, beta, c, ldc)
}

// LinesMat returns an operand whose elements are produced by lines (see
// Mat.Lines). isB says which side of the product it is, which fixes the
// meaning of lines' x0 argument; the gemm driver itself does not need it,
// only Mat.At does.
func LinesMat(isB bool, lines func(p, x0 int, dst []float32)) Mat {
	return Mat{Lines: lines, Trans: isB}
}

// activeKernel is the micro-kernel Gemm uses: the fastest one the CPU runs.
// Tests swap it to exercise the portable Go kernel on every machine.
var activeKernel = bestKernel()

// gemmRef is the plain reference: obviously correct, used to test the fast paths.
func gemmRef(m, n, k int, alpha float32, a, b Mat, beta float32, c []float32, ldc int) {
	row := make([]float32, n)
	for i := 0; i < m; i++ {
		for j := range row {
			row[j] = 0
		}
		for p := 0; p < k; p++ {
			av := a.At(i, p)
			if av == 0 {
				continue
			}
			for j := 0; j < n; j++ {
				row[j] += av * b.At(p, j)
			}
		}
		cr := c[i*ldc : i*ldc+n]
		for j := range cr {
			if beta == 0 {
				cr[j] = alpha * row[j]
			} else {
				cr[j] = alpha*row[j] + beta*cr[j]
			}
		}
	}
}

// F32Mat wraps a float32 row-major matrix.
func F32Mat(v []float32, stride int, trans bool) Mat {
	return Mat{Kind: F32, F32: v, Stride: stride, Trans: trans}
}
