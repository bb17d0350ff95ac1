package vec

import "fmt"

// CopyRowsPad writes rows rows into dst, dstStride apart: each is lead
// zeros, n values from src (rows srcStride apart), then trail zeros. It is
// how a convolution unfolds its input for one kernel tap: every output row
// is an input row shifted, with the padding zeroed.
func CopyRowsPad(dst []float32, dstStride int, src []float32, srcStride, rows, lead, n, trail int) {
	if rows <= 0 {
		return
	}
	if lead < 0 || n < 0 || trail < 0 || (rows-1)*dstStride+lead+n+trail > len(dst) || n > 0 && (rows-1)*srcStride+n > len(src) {
		panic(fmt.Sprintf("vec: CopyRowsPad of %d rows (%d+%d+%d, strides %d, %d) from %d into %d values", rows, lead, n, trail, dstStride, srcStride, len(src), len(dst)))
	}
	if useAVX2 && n >= 8 {
		copyRowsPadAVX2(&dst[0], dstStride, &src[0], srcStride, rows, lead, n, trail)
		return
	}
	copyRowsPadGeneric(dst, dstStride, src, srcStride, rows, lead, n, trail)
}

func copyRowsPadGeneric(dst []float32, dstStride int, src []float32, srcStride, rows, lead, n, trail int) {
	for r := 0; r < rows; r++ {
		d := dst[r*dstStride : r*dstStride+lead+n+trail]
		clear(d[:lead])
		if n > 0 { // src may be empty when nothing is copied
			copy(d[lead:lead+n], src[r*srcStride:r*srcStride+n])
		}
		clear(d[lead+n:])
	}
}
