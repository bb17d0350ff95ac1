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
	out := &Tensor{shape: shape, strides: contiguousStrides(shape), offset: c.offset, dtype: c.dtype, f32: c.f32, u16: c.u16, i64: c.i64}
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
	out := &Tensor{shape: make([]int, len(perm)), strides: make([]int, len(perm)), offset: t.offset, dtype: t.dtype, f32: t.f32, u16: t.u16, i64: t.i64}
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
	out := &Tensor{shape: cloneInts(t.shape), strides: cloneInts(t.strides), offset: t.offset + start*t.strides[dim], dtype: t.dtype, f32: t.f32, u16: t.u16, i64: t.i64}
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
