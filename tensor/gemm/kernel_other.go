//go:build !amd64

package gemm

const useF16C = false

func bestKernel() microKernel { return goKernel4x4 }

func widenAsm(dst []float32, src []uint16, kind Kind) int { return 0 }

func fmaLoop(n int) float64 { return 0 }

func runnableKernels() []microKernel { return nil }

func packRowsAsm(panel, src []float32, lds, kc, w int) int { return 0 }

func disableAsm() (restore func()) { return func() {} }

func seedAsm(rows, cols int, row, col, c []float32, ldc int) bool { return false }

func gatherChunksAsm(dst []float32, dstStride int, src []float32, srcStride, rows, chunks, w int) bool {
	return false
}

func fence() {}

const isIntel = false
