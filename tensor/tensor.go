// Package tensor is diffuse's n-dimensional array: float32 compute over
// weights that may stay stored as float16/bfloat16 or quantised (GGUF block
// formats, fp8; see quant.go), strided views, the ops the
// model families need, and reverse-mode autodiff that costs nothing unless an
// input requires gradients.
package tensor

import (
	"fmt"
	"math"
	"strings"

	"github.com/diffuse-go/diffuse/half"
)

// DType is a tensor's storage type. Compute is always float32; F16 and BF16
// tensors hold weights that are widened when an op reads them, quantised
// ones (Q8_0 … F8E5M2, DType.Quantized) weights that are dequantised so.
type DType uint8

// Storage types.
const (
	F32 DType = iota
	F16
	BF16
	I64
)

func (d DType) String() string {
	switch d {
	case F32:
		return "f32"
	case F16:
		return "f16"
	case BF16:
		return "bf16"
	case I64:
		return "i64"
	case F8E4M3:
		return "f8_e4m3"
	case F8E5M2:
		return "f8_e5m2"
	}
	if gt, ok := quantTypes[d]; ok {
		return gt.String()
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// Tensor is a strided view over typed storage. The zero value is not usable;
// build tensors with New, FromSlice, Zeros and the ops.
type Tensor struct {
	shape   []int
	strides []int
	offset  int
	dtype   DType
	f32     []float32
	u16     []uint16
	i64     []int64
	q       *qstore // quantised storage (quant.go)

	requiresGrad bool
	grad         *Tensor
	node         *node

	// release, if set, lets the memory behind the storage go once the
	// weight cache holds a packed copy (see SetRelease).
	release func()
}

// SetRelease attaches to a weight whose storage lies in a read-only file
// mapping a function that drops the storage's pages from memory while
// keeping them readable (re-read from the file when touched). Conv2d and
// Linear call it once they have cached the weight's packed copy, so that a
// model does not hold its weights twice. Reshape carries it over.
func (t *Tensor) SetRelease(release func()) { t.release = release }

// New makes a zero-filled float32 tensor.
func New(shape ...int) *Tensor { return Zeros(shape...) }

// Zeros makes a zero-filled float32 tensor.
func Zeros(shape ...int) *Tensor {
	n := numel(shape)
	return &Tensor{shape: cloneInts(shape), strides: contiguousStrides(shape), f32: make([]float32, n)}
}

// Full makes a float32 tensor filled with v.
func Full(v float32, shape ...int) *Tensor {
	t := Zeros(shape...)
	for i := range t.f32 {
		t.f32[i] = v
	}
	return t
}

// FromSlice wraps data (not copied) as a contiguous float32 tensor. It panics
// if the sizes disagree, which is a programming error; use FromData for
// untrusted input.
func FromSlice(data []float32, shape ...int) *Tensor {
	t, err := FromData(data, shape...)
	if err != nil {
		panic(err)
	}
	return t
}

// FromData wraps data as a float32 tensor, checking the size.
func FromData(data []float32, shape ...int) (*Tensor, error) {
	if n := numel(shape); n != len(data) {
		return nil, fmt.Errorf("tensor: shape %v needs %d values, got %d", shape, n, len(data))
	}
	return &Tensor{shape: cloneInts(shape), strides: contiguousStrides(shape), f32: data}, nil
}

// FromU16 wraps 16-bit float storage (F16 or BF16) without converting it.
func FromU16(dtype DType, data []uint16, shape ...int) (*Tensor, error) {
	if dtype != F16 && dtype != BF16 {
		return nil, fmt.Errorf("tensor: FromU16 needs F16 or BF16, got %v", dtype)
	}
	if n := numel(shape); n != len(data) {
		return nil, fmt.Errorf("tensor: shape %v needs %d values, got %d", shape, n, len(data))
	}
	return &Tensor{shape: cloneInts(shape), strides: contiguousStrides(shape), dtype: dtype, u16: data}, nil
}

// FromInt64 wraps integer data (token ids, labels).
func FromInt64(data []int64, shape ...int) (*Tensor, error) {
	if n := numel(shape); n != len(data) {
		return nil, fmt.Errorf("tensor: shape %v needs %d values, got %d", shape, n, len(data))
	}
	return &Tensor{shape: cloneInts(shape), strides: contiguousStrides(shape), dtype: I64, i64: data}, nil
}

// Scalar makes a 0-d float32 tensor.
func Scalar(v float32) *Tensor { return FromSlice([]float32{v}) }

// Shape returns the dimensions (do not modify).
func (t *Tensor) Shape() []int { return t.shape }

// Dim returns dimension i; negative i counts from the end.
func (t *Tensor) Dim(i int) int {
	if i < 0 {
		i += len(t.shape)
	}
	return t.shape[i]
}

// Rank is the number of dimensions.
func (t *Tensor) Rank() int { return len(t.shape) }

// Numel is the number of elements.
func (t *Tensor) Numel() int { return numel(t.shape) }

// DType returns the storage type.
func (t *Tensor) DType() DType { return t.dtype }

// Strides returns the element strides (do not modify).
func (t *Tensor) Strides() []int { return t.strides }

// IsContiguous reports whether the view is dense row-major from its offset.
func (t *Tensor) IsContiguous() bool {
	s := 1
	for i := len(t.shape) - 1; i >= 0; i-- {
		if t.shape[i] != 1 && t.strides[i] != s {
			return false
		}
		s *= t.shape[i]
	}
	return true
}

// Data returns the float32 elements of a contiguous float32 tensor, sharing
// storage. Other tensors are converted into a new contiguous slice.
func (t *Tensor) Data() []float32 {
	if t.dtype == F32 && t.IsContiguous() {
		return t.f32[t.offset : t.offset+t.Numel()]
	}
	return t.Contiguous().Float32().f32
}

// Int64s returns the elements of an I64 tensor in row-major order.
func (t *Tensor) Int64s() []int64 {
	if t.dtype != I64 {
		d := t.Data()
		out := make([]int64, len(d))
		for i, v := range d {
			out[i] = int64(v)
		}
		return out
	}
	if t.IsContiguous() {
		return t.i64[t.offset : t.offset+t.Numel()]
	}
	out := make([]int64, 0, t.Numel())
	t.forEachIndex(func(off int) { out = append(out, t.i64[off]) })
	return out
}

// U16 returns the raw 16-bit storage of a contiguous F16/BF16 tensor.
func (t *Tensor) U16() []uint16 {
	if (t.dtype == F16 || t.dtype == BF16) && t.IsContiguous() {
		return t.u16[t.offset : t.offset+t.Numel()]
	}
	return nil
}

// Item returns the single value of a one-element tensor.
func (t *Tensor) Item() float32 {
	if t.Numel() != 1 {
		panic(fmt.Sprintf("tensor: Item on shape %v", t.shape))
	}
	return t.at(t.offset)
}

func (t *Tensor) at(off int) float32 {
	switch t.dtype {
	case F16:
		return half.F16ToF32(t.u16[off])
	case BF16:
		return half.BF16ToF32(t.u16[off])
	case I64:
		return float32(t.i64[off])
	}
	if t.q != nil {
		var v [1]float32
		t.q.decode(off, v[:])
		return v[0]
	}
	return t.f32[off]
}

// valuesAt converts the len(dst) stored values from storage offset off on
// (contiguous storage) to float32.
func (t *Tensor) valuesAt(off int, dst []float32) {
	switch t.dtype {
	case F16:
		half.F16sToF32s(dst, t.u16[off:off+len(dst)])
	case BF16:
		half.BF16sToF32s(dst, t.u16[off:off+len(dst)])
	case F32:
		copy(dst, t.f32[off:off+len(dst)])
	default:
		if t.q != nil {
			t.q.decode(off, dst)
			return
		}
		for i := range dst {
			dst[i] = t.at(off + i)
		}
	}
}

// At returns the element at the given index (slow; for tests and debugging).
func (t *Tensor) At(idx ...int) float32 {
	off := t.offset
	for i, v := range idx {
		off += v * t.strides[i]
	}
	return t.at(off)
}

// forEachIndex calls fn with the storage offset of every element in row-major order.
func (t *Tensor) forEachIndex(fn func(off int)) {
	n := t.Numel()
	if n == 0 {
		return
	}
	nd := len(t.shape)
	if nd == 0 {
		fn(t.offset)
		return
	}
	idx := make([]int, nd)
	off := t.offset
	last := nd - 1
	for {
		// Innermost loop unrolled for speed.
		s := t.strides[last]
		for j := 0; j < t.shape[last]; j++ {
			fn(off + j*s)
		}
		d := last - 1
		for ; d >= 0; d-- {
			idx[d]++
			off += t.strides[d]
			if idx[d] < t.shape[d] {
				break
			}
			off -= idx[d] * t.strides[d]
			idx[d] = 0
		}
		if d < 0 {
			return
		}
	}
}

// Contiguous returns t if it is dense row-major, else a dense copy (keeping
// the dtype, except that a quantised view becomes float32: its elements no
// longer form whole blocks). Gradients flow through the copy.
func (t *Tensor) Contiguous() *Tensor {
	if t.IsContiguous() {
		return t
	}
	if t.q != nil {
		return t.quantFloat32()
	}
	out := &Tensor{shape: cloneInts(t.shape), strides: contiguousStrides(t.shape), dtype: t.dtype}
	n := t.Numel()
	switch t.dtype {
	case F32:
		out.f32 = make([]float32, n)
		gatherStrided(out.f32, t.f32, t.shape, t.strides, t.offset)
	case F16, BF16:
		out.u16 = make([]uint16, n)
		gatherStrided(out.u16, t.u16, t.shape, t.strides, t.offset)
	case I64:
		out.i64 = make([]int64, n)
		gatherStrided(out.i64, t.i64, t.shape, t.strides, t.offset)
	}
	if t.requiresGrad {
		record(out, []*Tensor{t}, func(g *Tensor) []*Tensor { return []*Tensor{g} })
	}
	return out
}

// Float32 returns t converted to float32 storage (t itself if already f32).
func (t *Tensor) Float32() *Tensor {
	if t.dtype == F32 {
		return t
	}
	if t.q != nil {
		return t.quantFloat32()
	}
	c := t.Contiguous()
	out := Zeros(t.shape...)
	switch c.dtype {
	case F16:
		half.F16sToF32s(out.f32, c.u16[c.offset:c.offset+c.Numel()])
	case BF16:
		half.BF16sToF32s(out.f32, c.u16[c.offset:c.offset+c.Numel()])
	case I64:
		for i, v := range c.i64[c.offset : c.offset+c.Numel()] {
			out.f32[i] = float32(v)
		}
	}
	return out
}

// ToDType converts float32 values to storage dtype d (rounding to nearest
// even; a block dtype quantises with Quantize, and panics where Quantize
// fails, as on a shape that is not whole blocks).
func (t *Tensor) ToDType(d DType) *Tensor {
	if t.dtype == d {
		return t
	}
	if d.Quantized() {
		out, err := Quantize(t, d)
		if err != nil {
			panic(err)
		}
		return out
	}
	src := t.Float32().Data()
	switch d {
	case F32:
		return FromSlice(src, t.shape...)
	case F16, BF16:
		u := make([]uint16, len(src))
		for i, v := range src {
			if d == F16 {
				u[i] = half.F32ToF16(v)
			} else {
				u[i] = half.F32ToBF16(v)
			}
		}
		out, _ := FromU16(d, u, t.shape...)
		return out
	case I64:
		v := make([]int64, len(src))
		for i, x := range src {
			v[i] = int64(x)
		}
		out, _ := FromInt64(v, t.shape...)
		return out
	}
	panic("tensor: unknown dtype")
}

// Clone returns a contiguous copy with its own storage (not tracked by autodiff).
func (t *Tensor) Clone() *Tensor {
	if t.q != nil {
		return t.quantClone()
	}
	c := t.Contiguous()
	out := &Tensor{shape: cloneInts(t.shape), strides: contiguousStrides(t.shape), dtype: t.dtype}
	n := t.Numel()
	switch t.dtype {
	case F32:
		out.f32 = append([]float32(nil), c.f32[c.offset:c.offset+n]...)
	case F16, BF16:
		out.u16 = append([]uint16(nil), c.u16[c.offset:c.offset+n]...)
	case I64:
		out.i64 = append([]int64(nil), c.i64[c.offset:c.offset+n]...)
	}
	return out
}

// Detach returns a view of the same data that is not tracked by autodiff.
func (t *Tensor) Detach() *Tensor {
	out := *t
	out.requiresGrad, out.grad, out.node = false, nil, nil
	return &out
}

func (t *Tensor) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Tensor%v %v", t.shape, t.dtype)
	n := t.Numel()
	if n <= 8 {
		d := t.Float32().Data()
		fmt.Fprintf(&b, " %v", d)
	}
	return b.String()
}

// SameShape reports whether two shapes are equal.
func SameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// MaxAbsDiff returns max |a - b| over two tensors of equal size (tests).
func MaxAbsDiff(a, b *Tensor) float64 {
	x, y := a.Data(), b.Data()
	m := 0.0
	for i := range x {
		d := math.Abs(float64(x[i]) - float64(y[i]))
		if d > m || d != d {
			m = d
		}
	}
	return m
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

func cloneInts(a []int) []int { return append([]int(nil), a...) }

func contiguousStrides(shape []int) []int {
	s := make([]int, len(shape))
	acc := 1
	for i := len(shape) - 1; i >= 0; i-- {
		s[i] = acc
		acc *= shape[i]
	}
	return s
}

// normDim turns a possibly negative dimension into an index.
func normDim(d, rank int) int {
	if d < 0 {
		d += rank
	}
	if d < 0 || d >= rank {
		panic(fmt.Sprintf("tensor: dimension %d out of range for rank %d", d, rank))
	}
	return d
}
