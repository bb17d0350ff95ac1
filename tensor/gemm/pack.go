package gemm

import "math"

// Packing copies a block of op(A) or op(B) into the contiguous sliver layout
// the micro-kernel streams through (see microKernel), widening 16-bit values
// to float32 on the way. Both operands are packed by the same code: B is
// packed as the rows of op(B)ᵀ, so "x" below is the row index of op(A) or the
// column index of op(B), and "p" runs along k.
//
// A source matrix is read in one of two orientations:
//   - along k:  element (x, p) is X[x*s + p] (A not transposed, B transposed);
//     each x is a contiguous line of kc values that is scattered with stride w.
//   - across k: element (x, p) is X[p*s + x] (A transposed, B not transposed);
//     each p is a contiguous line of nx values that is cut into w-wide pieces.

// packPanels packs x in [x0, x0+nx) and p in [p0, p0+kc) into ceil(nx/w)
// slivers of w×kc values each, zero-padding the last sliver. alongK selects the
// source orientation. line is scratch of at least max(w·kc, lineGroup·nx)
// floats, used to widen 16-bit data and hold generated lines before they are
// rearranged.
//
// A Lines operand is always produced one k index at a time, across k.
func packPanels(dst []float32, X Mat, alongK bool, x0, nx, p0, kc, w int, line []float32) {
	np := (nx + w - 1) / w
	dst = dst[:np*w*kc]
	s := X.Stride
	if X.Lines != nil {
		alongK = false
	}
	if alongK {
		for q := 0; q < np; q++ {
			panel := dst[q*w*kc : (q+1)*w*kc]
			rows := min(w, nx-q*w)
			off := (x0+q*w)*s + p0
			// Rows of the source sliver as one float32 matrix with stride lds:
			// the operand itself, or 16-bit rows widened into line.
			src, lds := X.F32, s
			if X.Kind != F32 {
				src, lds, off = line, kc, 0
				for xi := 0; xi < rows; xi++ {
					if X.Kind == Blocks {
						X.Decode(x0+q*w+xi, p0, line[xi*kc:xi*kc+kc])
						continue
					}
					o := (x0+q*w+xi)*s + p0
					widen(line[xi*kc:xi*kc+kc], X.U16[o:o+kc], X.Kind)
				}
			}
			done := 0
			if rows == w {
				done = packRowsAsm(panel, src[off:], lds, kc, w)
			}
			for xi := 0; xi < rows && done < kc; xi++ {
				o := off + xi*lds
				scatter(panel[done*w+xi:], src[o+done:o+kc], w)
			}
			for xi := rows; xi < w; xi++ {
				for p := 0; p < kc; p++ {
					panel[p*w+xi] = 0
				}
			}
		}
		return
	}
	// k rows go in groups of lineGroup: a group is gathered into the panels
	// one sliver at a time, so each sliver receives lineGroup·w contiguous
	// values rather than w values a whole sliver apart for every row.
	full := nx / w // slivers that a line fills completely
	for pg := 0; pg < kc; pg += lineGroup {
		rows := min(lineGroup, kc-pg)
		// The group's rows as one matrix: base with row stride bs.
		var base []float32
		bs := nx
		switch {
		case X.Lines != nil:
			base = line
			for r := 0; r < rows; r++ {
				X.Lines(p0+pg+r, x0, line[r*nx:(r+1)*nx])
			}
		case X.Kind == F32:
			base, bs = X.F32[(p0+pg)*s+x0:], s
		case X.Kind == Blocks:
			base = line
			for r := 0; r < rows; r++ {
				X.Decode(p0+pg+r, x0, line[r*nx:(r+1)*nx])
			}
		default:
			base = line
			for r := 0; r < rows; r++ {
				off := (p0+pg+r)*s + x0
				widen(line[r*nx:(r+1)*nx], X.U16[off:off+nx], X.Kind)
			}
		}
		d := dst[pg*w:]
		if full > 0 && !gatherChunksAsm(d, w*kc, base, bs, rows, full, w) {
			for q := 0; q < full; q++ {
				for r := 0; r < rows; r++ {
					copy(d[q*w*kc+r*w:q*w*kc+r*w+w], base[r*bs+q*w:])
				}
			}
		}
		if full < np {
			for r := 0; r < rows; r++ {
				dd := d[full*w*kc+r*w : full*w*kc+r*w+w]
				n := copy(dd, base[r*bs+full*w:r*bs+nx])
				clear(dd[n:])
			}
		}
	}
}

// lineGroup is the number of k rows packed together across k (see
// packPanels); line buffers hold that many lines. Four lines of a 2048-wide
// block stay in L1; eight or sixteen made convolution packing slower.
const lineGroup = 4

// scatter writes src[p] to dst[p*w].
func scatter(dst, src []float32, w int) {
	if len(src) == 0 {
		return
	}
	_ = dst[(len(src)-1)*w]
	switch w {
	case 16:
		// The common widths get constant strides so the compiler can drop
		// the multiply and most bounds checks.
		for p, v := range src {
			dst[p*16] = v
		}
	case 6:
		for p, v := range src {
			dst[p*6] = v
		}
	default:
		for p, v := range src {
			dst[p*w] = v
		}
	}
}

// widen converts 16-bit floats of the given kind to float32; len(dst) == len(src).
func widen(dst []float32, src []uint16, kind Kind) {
	n := 0
	if useF16C {
		n = widenAsm(dst, src, kind)
	}
	dst, src = dst[n:], src[n:len(dst)]
	if kind == BF16 {
		for i, h := range src {
			dst[i] = math.Float32frombits(uint32(h) << 16)
		}
		return
	}
	for i, h := range src {
		dst[i] = f16ToF32(h)
	}
}

// f16ToF32 is half.F16ToF32 restated with the common normal case first, as the
// packer's scalar tail sits on the hot path where no F16C instruction exists.
func f16ToF32(h uint16) float32 {
	exp := uint32(h>>10) & 0x1f
	if exp-1 < 30 { // normal numbers: 1 <= exp <= 30
		return math.Float32frombits(uint32(h>>15)<<31 | (exp+112)<<23 | (uint32(h)&0x3ff)<<13)
	}
	sign := uint32(h>>15) << 31
	man := uint32(h) & 0x3ff
	if exp == 0x1f {
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	}
	f := float32(man) * (1.0 / (1 << 24)) // zero or subnormal: man·2⁻²⁴
	if sign != 0 {
		f = -f
	}
	return f
}
