package tensor

import "fmt"

// Reshape returns a view with a new shape (one dimension may be -1). A
// non-contiguous tensor is copied first.
func (t *Tensor) Reshape(shape ...int) *Tensor {
	shape = cloneInts(shape)
	infer := -1
	n := 1
	for i, d := range shape {
		if d == -1 {
			if infer >= 0 {
				panic("tensor: Reshape with two -1 dimensions")
			}
			infer = i
			continue
		}
		n *= d
	}
	if infer >= 0 {
		if n == 0 {
			panic("tensor: cannot infer -1 dimension with zero-sized shape")
		}
		shape[infer] = t.Numel() / n
		n *= shape[infer]
	}
	if n != t.Numel() {
		panic(fmt.Sprintf("tensor: cannot reshape %v (%d elements) to %v", t.shape, t.Numel(), shape))
	}
	c := t.Contiguous()
	out := &Tensor{shape: shape, strides: contiguousStrides(shape), offset: c.offset, dtype: c.dtype, f32: c.f32, u16: c.u16, i64: c.i64, q: c.q, release: c.release}
	if c.requiresGrad {
		orig := t.shape
		record(out, []*Tensor{c}, func(g *Tensor) []*Tensor { return []*Tensor{g.Reshape(orig...)} })
	}
	return out
}

// Permute reorders dimensions (a strided view, no copy).
func (t *Tensor) Permute(perm ...int) *Tensor {
	if len(perm) != len(t.shape) {
		panic(fmt.Sprintf("tensor: Permute %v on rank %d", perm, len(t.shape)))
	}
	out := &Tensor{shape: make([]int, len(perm)), strides: make([]int, len(perm)), offset: t.offset, dtype: t.dtype, f32: t.f32, u16: t.u16, i64: t.i64, q: t.q}
	inv := make([]int, len(perm))
	seen := make([]bool, len(perm))
	for i, p := range perm {
		p = normDim(p, len(perm))
		if seen[p] {
			panic(fmt.Sprintf("tensor: Permute %v repeats a dimension", perm))
		}
		seen[p] = true
		out.shape[i] = t.shape[p]
		out.strides[i] = t.strides[p]
		inv[p] = i
	}
	record(out, []*Tensor{t}, func(g *Tensor) []*Tensor { return []*Tensor{g.Permute(inv...)} })
	return out
}

// Transpose swaps two dimensions (a view).
func (t *Tensor) Transpose(a, b int) *Tensor {
	perm := make([]int, len(t.shape))
	for i := range perm {
		perm[i] = i
	}
	a, b = normDim(a, len(perm)), normDim(b, len(perm))
	perm[a], perm[b] = perm[b], perm[a]
	return t.Permute(perm...)
}

// Narrow returns the view t[..., start:start+length, ...] along dim.
func (t *Tensor) Narrow(dim, start, length int) *Tensor {
	dim = normDim(dim, len(t.shape))
	if start < 0 || length < 0 || start+length > t.shape[dim] {
		panic(fmt.Sprintf("tensor: Narrow(%d, %d, %d) out of range for shape %v", dim, start, length, t.shape))
	}
	out := &Tensor{shape: cloneInts(t.shape), strides: cloneInts(t.strides), offset: t.offset + start*t.strides[dim], dtype: t.dtype, f32: t.f32, u16: t.u16, i64: t.i64, q: t.q}
	out.shape[dim] = length
	if t.requiresGrad {
		full := t.shape
		record(out, []*Tensor{t}, func(g *Tensor) []*Tensor {
			return []*Tensor{padNarrow(g, full, dim, start)}
		})
	}
	return out
}

// padNarrow embeds g into zeros of shape full at offset start along dim.
func padNarrow(g *Tensor, full []int, dim, start int) *Tensor {
	out := Zeros(full...)
	dst := out.Narrow(dim, start, g.shape[dim])
	copyInto(dst, g)
	return out
}

// copyInto copies src into the (possibly strided) float32 view dst.
func copyInto(dst, src *Tensor) {
	if !SameShape(dst.shape, src.shape) {
		panic(fmt.Sprintf("tensor: copy of %v into %v", src.shape, dst.shape))
	}
	s := src.Float32().Contiguous()
	vals := s.f32[s.offset : s.offset+s.Numel()]
	i := 0
	dst.forEachIndex(func(off int) { dst.f32[off] = vals[i]; i++ })
}

// Chunk splits t into n equal parts along dim (views).
func (t *Tensor) Chunk(n, dim int) []*Tensor {
	dim = normDim(dim, len(t.shape))
	if t.shape[dim]%n != 0 {
		panic(fmt.Sprintf("tensor: Chunk(%d) of dimension %d (size %d)", n, dim, t.shape[dim]))
	}
	size := t.shape[dim] / n
	out := make([]*Tensor, n)
	for i := range out {
		out[i] = t.Narrow(dim, i*size, size)
	}
	return out
}

// Concat joins tensors along dim.
func Concat(dim int, ts ...*Tensor) *Tensor {
	if len(ts) == 0 {
		panic("tensor: Concat of nothing")
	}
	rank := len(ts[0].shape)
	dim = normDim(dim, rank)
	shape := cloneInts(ts[0].shape)
	total := 0
	for _, x := range ts {
		if len(x.shape) != rank {
			panic(fmt.Sprintf("tensor: Concat of ranks %d and %d", rank, len(x.shape)))
		}
		for i := range shape {
			if i != dim && x.shape[i] != shape[i] {
				panic(fmt.Sprintf("tensor: Concat of shapes %v and %v along %d", ts[0].shape, x.shape, dim))
			}
		}
		total += x.shape[dim]
	}
	shape[dim] = total
	out := Zeros(shape...)
	// Fast path: copy blocks of contiguous rows.
	outer := 1
	for i := 0; i < dim; i++ {
		outer *= shape[i]
	}
	inner := 1
	for i := dim + 1; i < rank; i++ {
		inner *= shape[i]
	}
	pos := 0
	for _, x := range ts {
		c := x.Float32().Contiguous()
		src := c.f32[c.offset : c.offset+c.Numel()]
		blk := x.shape[dim] * inner
		for o := 0; o < outer; o++ {
			copy(out.f32[o*total*inner+pos*inner:], src[o*blk:(o+1)*blk])
		}
		pos += x.shape[dim]
	}
	inputs := append([]*Tensor(nil), ts...)
	record(out, inputs, func(g *Tensor) []*Tensor {
		gs := make([]*Tensor, len(inputs))
		p := 0
		for i, x := range inputs {
			gs[i] = g.Narrow(dim, p, x.shape[dim])
			p += x.shape[dim]
		}
		return gs
	})
	return out
}

// Stack joins equally shaped tensors along a new dimension.
func Stack(dim int, ts ...*Tensor) *Tensor {
	us := make([]*Tensor, len(ts))
	for i, x := range ts {
		us[i] = x.Unsqueeze(dim)
	}
	return Concat(dim, us...)
}

// Unsqueeze inserts a dimension of size 1.
func (t *Tensor) Unsqueeze(dim int) *Tensor {
	if dim < 0 {
		dim += len(t.shape) + 1
	}
	shape := append(cloneInts(t.shape[:dim]), 1)
	shape = append(shape, t.shape[dim:]...)
	return t.Reshape(shape...)
}

// Squeeze removes a dimension of size 1.
func (t *Tensor) Squeeze(dim int) *Tensor {
	dim = normDim(dim, len(t.shape))
	if t.shape[dim] != 1 {
		panic(fmt.Sprintf("tensor: Squeeze(%d) of shape %v", dim, t.shape))
	}
	shape := append(cloneInts(t.shape[:dim]), t.shape[dim+1:]...)
	return t.Reshape(shape...)
}

// Expand broadcasts t to shape (a copy).
func (t *Tensor) Expand(shape ...int) *Tensor {
	return Add(t, Zeros(shape...).Detach())
}

// Repeat tiles t reps[i] times along each dimension (torch .repeat).
func (t *Tensor) Repeat(reps ...int) *Tensor {
	out := t
	for d, r := range reps {
		if r == 1 {
			continue
		}
		parts := make([]*Tensor, r)
		for i := range parts {
			parts[i] = out
		}
		out = Concat(d, parts...)
	}
	return out
}

// copyGrain is the number of elements worth a goroutine of their own in the
// strided copies: below it the goroutine costs more than the copy.
const copyGrain = 1 << 15

// transposeTile is the side of the square tiles a transposing copy moves
// at once: 16 float32 values are one 64-byte cache line, so a tile is 16
// source lines and 16 destination lines.
const transposeTile = 16

// coalesceView drops size-1 dimensions of a strided view and merges
// neighbours that it walks as one (strides[d] == strides[d+1]·shape[d+1]),
// so that e.g. a permuted [B, H, W, C] view of NCHW storage becomes the
// transpose of [B, H·W, C]. The result has at least one dimension.
func coalesceView(shape, strides []int) ([]int, []int) {
	ns, nst := make([]int, 0, len(shape)), make([]int, 0, len(shape))
	for d := range shape {
		if shape[d] == 1 {
			continue
		}
		if k := len(ns) - 1; k >= 0 && nst[k] == strides[d]*shape[d] {
			ns[k] *= shape[d]
			nst[k] = strides[d]
			continue
		}
		ns, nst = append(ns, shape[d]), append(nst, strides[d])
	}
	if len(ns) == 0 {
		return []int{1}, []int{0}
	}
	return ns, nst
}

// viewOffset is the storage offset of row-major element i of the view
// (shape, strides) from its first element.
func viewOffset(i int, shape, strides []int) int {
	off := 0
	for d := len(shape) - 1; d >= 0 && i > 0; d-- {
		off += i % shape[d] * strides[d]
		i /= shape[d]
	}
	return off
}

// gatherStrided copies the strided view (shape, strides, offset) of src into
// dst (len(dst) = the view's element count) in row-major order. Rows whose
// last dimension is contiguous in src are block copies; a view whose last
// dimension is strided but has another, unit-stride dimension (a permute
// such as NCHW → NHWC or a heads split) is a transpose, copied in square
// tiles so that both sides move whole cache lines. Large copies run in
// parallel. It replaces a per-element walk through a callback, which cost
// several nanoseconds per value.
func gatherStrided[T any](dst, src []T, shape, strides []int, offset int) {
	if len(dst) == 0 {
		return
	}
	shape, strides = coalesceView(shape, strides)
	nd := len(shape)
	n, s := shape[nd-1], strides[nd-1]
	p := -1 // the unit-stride dimension a strided last dimension is transposed with
	if s != 1 && n > 1 {
		for d := nd - 2; d >= 0; d-- {
			if strides[d] == 1 {
				p = d
				break
			}
		}
	}
	if p < 0 {
		outer, ostr := shape[:nd-1], strides[:nd-1]
		parallelFor(len(dst)/n, max(1, copyGrain/n), func(lo, hi int) {
			for r := lo; r < hi; r++ {
				so := offset + viewOffset(r, outer, ostr)
				d := dst[r*n : (r+1)*n]
				if s == 1 {
					copy(d, src[so:so+n])
					continue
				}
				for j := range d {
					d[j] = src[so+j*s]
				}
			}
		})
		return
	}
	// dst is [outer..., P, middle..., n] with p the P dimension; element
	// (.., i, .., j) comes from src[base + i + j·s]. Tasks are (outer and
	// middle index o, a tile of P); each copies its P-tile × n slab.
	P := shape[p]
	mid := 1 // elements of the dims between p and the last
	for d := p + 1; d < nd-1; d++ {
		mid *= shape[d]
	}
	ds := mid * n          // dst stride of dimension p
	var oshape, ostr []int // every dim except p and the last, in order
	for d := 0; d < nd-1; d++ {
		if d != p {
			oshape, ostr = append(oshape, shape[d]), append(ostr, strides[d])
		}
	}
	// Inside a tile, each destination line is written whole from 16
	// strided source reads. (Reading whole source lines and scattering
	// them instead measured slower for both NCHW ↔ NHWC directions.)
	tiles := (P + transposeTile - 1) / transposeTile
	parallelFor(len(dst)/(P*n)*tiles, max(1, copyGrain/(transposeTile*n)), func(lo, hi int) {
		for t := lo; t < hi; t++ {
			o, i0 := t/tiles, t%tiles*transposeTile
			i1 := min(i0+transposeTile, P)
			// o enumerates the outer then the middle dims row-major; in
			// dst they sit at o/mid·P·ds + o%mid·n.
			sb := offset + viewOffset(o, oshape, ostr)
			db := o/mid*P*ds + o%mid*n
			for j0 := 0; j0 < n; j0 += transposeTile {
				j1 := min(j0+transposeTile, n)
				for i := i0; i < i1; i++ {
					line := dst[db+i*ds+j0 : db+i*ds+j1]
					for j := range line {
						line[j] = src[sb+i+(j0+j)*s]
					}
				}
			}
		}
	})
}
