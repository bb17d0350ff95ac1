package vec

// Column kernels: x is a row-major matrix of rows of w values, and each of
// its w columns is reduced or transformed on its own. Attention keeps its
// transposed score tile this way (one column per query), so a softmax over
// keys is a softmax down a column and runs 8 queries per vector.

// colSumBlock is the number of rows whose column sums ExpSubSumCols takes in
// float32 before accumulating them in float64.
const colSumBlock = 256

// MaxCols sets m[c] = max(m[c], x[r·stride+c]) for r < rows, c < cols.
// NaNs are skipped; callers start m at -Inf.
func MaxCols(x []float32, stride, rows, cols int, m []float32) {
	if rows <= 0 || cols <= 0 {
		return
	}
	_ = x[(rows-1)*stride+cols-1]
	m = m[:cols]
	c := 0
	if useAVX2 {
		for ; c+8 <= cols; c += 8 {
			maxColsAVX2(&x[c], rows, stride, &m[c])
		}
	}
	if c == cols {
		return // no ragged columns: skip the row walk (rows is Lk in attention)
	}
	for r := 0; r < rows; r++ {
		row := x[r*stride+c : r*stride+cols]
		mm := m[c:cols]
		for i, v := range row {
			if v > mm[i] {
				mm[i] = v
			}
		}
	}
}

// ExpSubSumCols sets dst[r·ds+c] = e^(src[r·ss+c]-m[c]) for r < rows,
// c < cols, and adds each column's sum of the new values to sums[c] (in
// float32 over blocks of rows, float64 across them). dst may be src when
// ds == ss.
func ExpSubSumCols(dst []float32, ds int, src []float32, ss, rows, cols int, m []float32, sums []float64) {
	if rows <= 0 || cols <= 0 {
		return
	}
	_ = src[(rows-1)*ss+cols-1]
	_ = dst[(rows-1)*ds+cols-1]
	m, sums = m[:cols], sums[:cols]
	c := 0
	if useAVX2 {
		var part [8]float32
		for ; c+8 <= cols; c += 8 {
			for r0 := 0; r0 < rows; r0 += colSumBlock {
				n := min(colSumBlock, rows-r0)
				expSubSumColsAVX2(&dst[r0*ds+c], ds, &src[r0*ss+c], n, ss, &m[c], &part[0])
				for i, v := range part {
					sums[c+i] += float64(v)
				}
			}
		}
	}
	if c == cols {
		return
	}
	part := make([]float32, cols-c)
	mm := m[c:cols]
	for r0 := 0; r0 < rows; r0 += colSumBlock {
		clear(part)
		for r := r0; r < min(r0+colSumBlock, rows); r++ {
			srow := src[r*ss+c : r*ss+cols]
			drow := dst[r*ds+c : r*ds+cols]
			for i, v := range srow {
				e := exp32(v - mm[i])
				drow[i] = e
				part[i] += e
			}
		}
		for i, v := range part {
			sums[c+i] += float64(v)
		}
	}
}

// NormAffine sets dst[i] = ((src[i]-mhi)-mlo)·a + b, the affine map that
// follows a normalisation (mean mhi+mlo split in two float32s so that values
// near a large mean keep their precision, a = rstd·weight), and applies SiLU
// to the result when silu is set. dst must be at least as long as src and
// may be src itself.
func NormAffine(dst, src []float32, mhi, mlo, a, b float32, silu bool) {
	dst = dst[:len(src)]
	n := 0
	if useAVX2 && len(src) >= 8 {
		n = len(src) &^ 7
		var p [32]float32
		for i := 0; i < 8; i++ {
			p[i], p[8+i], p[16+i], p[24+i] = mhi, mlo, a, b
		}
		switch {
		case useAVX512 && silu:
			n = len(src)
			normAffineSiLUAVX512(&dst[0], &src[0], n, &p[0])
		case useAVX512:
			n = len(src)
			normAffineAVX512(&dst[0], &src[0], n, &p[0])
		case silu:
			normAffineSiLUAVX2(&dst[0], &src[0], n, &p[0])
		default:
			normAffineAVX2(&dst[0], &src[0], n, &p[0])
		}
	}
	normAffineGeneric(dst[n:], src[n:], mhi, mlo, a, b, silu)
}

func normAffineGeneric(dst, src []float32, mhi, mlo, a, b float32, silu bool) {
	dst = dst[:len(src)]
	for i, x := range src {
		y := (x-mhi-mlo)*a + b
		if silu {
			y /= 1 + exp32(-y)
		}
		dst[i] = y
	}
}

// NormAffineRow sets dst[i] = ((src[i]-mhi)-mlo)·a·w[i] + b[i]: the
// normalisation of a row (mean mhi+mlo as in NormAffine, a = rstd) followed
// by a per-element affine map, as LayerNorm applies it along the channels.
// w and b must be at least as long as src; dst may be src.
func NormAffineRow(dst, src []float32, mhi, mlo, a float32, w, b []float32) {
	dst, w, b = dst[:len(src)], w[:len(src)], b[:len(src)]
	n := 0
	if useAVX2 && len(src) >= 8 {
		n = len(src) &^ 7
		var p [24]float32
		for i := 0; i < 8; i++ {
			p[i], p[8+i], p[16+i] = mhi, mlo, a
		}
		if useAVX512 {
			n = len(src)
			normAffineRowAVX512(&dst[0], &src[0], n, &p[0], &w[0], &b[0])
		} else {
			normAffineRowAVX2(&dst[0], &src[0], n, &p[0], &w[0], &b[0])
		}
	}
	normAffineRowGeneric(dst[n:], src[n:], mhi, mlo, a, w[n:], b[n:])
}

func normAffineRowGeneric(dst, src []float32, mhi, mlo, a float32, w, b []float32) {
	dst, w, b = dst[:len(src)], w[:len(src)], b[:len(src)]
	for i, x := range src {
		dst[i] = (x-mhi-mlo)*a*w[i] + b[i]
	}
}
