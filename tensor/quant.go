package tensor

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/diffuse-go/diffuse/gguf"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor/gemm"
)

// Quantised storage: weights kept in a block format (ggml's Q8_0 … Q6_K, as
// GGUF files hold them) or as 8-bit floats (F8_E4M3/F8_E5M2 with an
// optional scale, as fp8 safetensors checkpoints hold them), usually read
// in place from a memory-mapped file. Compute stays float32: Linear and the
// other GEMM-based ops decode each block into the panel they are packing
// (gemm.Blocks), so no dequantised copy of a weight is ever made and a
// model takes about its file size in memory; the values are exactly those
// of gguf.DequantizeRow (or safetensors.File.ScaledFloat32), so a product
// gives the bits the dequantised weight would. Every other op reads such a
// tensor through Float32, which dequantises it.
//
// The elements are stored in row-major order, the blocks along the last
// dimension: each stored row is a whole number of blocks. Views (Reshape,
// Permute, Narrow) address the same storage by element offsets as for the
// other dtypes.

// Quantised storage types.
const (
	Q8_0 DType = iota + I64 + 1
	Q4_0
	Q4_1
	Q5_0
	Q5_1
	Q4_K
	Q5_K
	Q6_K
	// F8E4M3 and F8E5M2 are PyTorch's float8_e4m3fn and float8_e5m2, one
	// byte per element, each times an optional float32 scale (one for the
	// tensor or one per row of its first dimension).
	F8E4M3
	F8E5M2
)

// quantTypes maps the block dtypes to their ggml types.
var quantTypes = map[DType]gguf.Type{
	Q8_0: gguf.Q8_0, Q4_0: gguf.Q4_0, Q4_1: gguf.Q4_1, Q5_0: gguf.Q5_0, Q5_1: gguf.Q5_1,
	Q4_K: gguf.Q4_K, Q5_K: gguf.Q5_K, Q6_K: gguf.Q6_K,
}

// ErrQuantized is the error (wrapped, with the dtype and the operation)
// of operations that cannot take a tensor in quantised storage, such as
// writing into one or fusing an adapter into one; errors.Is finds it.
var ErrQuantized = errors.New("quantized tensor")

// QuantizedError reports an operation refused on quantised storage.
type QuantizedError struct {
	Op    string // what was attempted
	DType DType
}

func (e *QuantizedError) Error() string {
	return fmt.Sprintf("tensor: %s: %v storage is quantized (dequantize it with Float32 first)", e.Op, e.DType)
}

// Unwrap makes errors.Is(err, ErrQuantized) hold.
func (e *QuantizedError) Unwrap() error { return ErrQuantized }

// Quantized reports whether d is a quantised storage type.
func (d DType) Quantized() bool { return d >= Q8_0 && d <= F8E5M2 }

// BlockSize is the number of elements one block of a quantised dtype holds
// (1 for the 8-bit floats and the plain dtypes).
func (d DType) BlockSize() int {
	if gt, ok := quantTypes[d]; ok {
		return gt.BlockSize()
	}
	return 1
}

// GGUFType returns the ggml type of a block dtype, or false for others.
func (d DType) GGUFType() (gguf.Type, bool) { gt, ok := quantTypes[d]; return gt, ok }

// DTypeOfGGUF returns the block dtype holding ggml type t, or false when
// tensor has none (F32, F16 and BF16 tensors are plain dtypes).
func DTypeOfGGUF(t gguf.Type) (DType, bool) {
	for d, gt := range quantTypes {
		if gt == t {
			return d, true
		}
	}
	return 0, false
}

// qstore is the storage of a quantised tensor.
type qstore struct {
	data []byte
	// Block formats: whole-block decoder, elements and bytes per block.
	dec    func(src []byte, dst []float32)
	bs, ts int
	// 8-bit floats: the code table and the scales: nil, one, or one per
	// index of the first dimension (rows of them), each covering
	// len(data)/rows elements.
	fp8   *[256]float32
	scale []float32
	rows  int
}

// FromBlocks wraps the raw blocks of a block dtype (Q8_0 … Q6_K, laid out
// as ggml stores them) without converting them: the data, a file mapping
// for instance, is used in place and must not change while the tensor is
// in use. The last dimension must be a whole number of blocks.
func FromBlocks(dtype DType, data []byte, shape ...int) (*Tensor, error) {
	gt, ok := quantTypes[dtype]
	if !ok {
		return nil, fmt.Errorf("tensor: FromBlocks needs a block dtype (Q8_0 … Q6_K), got %v", dtype)
	}
	dec, ok := gguf.BlockDequantizer(gt)
	if !ok {
		return nil, fmt.Errorf("tensor: cannot dequantize %v", dtype)
	}
	if len(shape) == 0 || shape[len(shape)-1]%gt.BlockSize() != 0 {
		return nil, fmt.Errorf("tensor: %v shape %v: the last dimension must be a whole number of %d-element blocks", dtype, shape, gt.BlockSize())
	}
	n := numel(shape)
	if want := n / gt.BlockSize() * gt.TypeSize(); len(data) != want {
		return nil, fmt.Errorf("tensor: %v shape %v takes %d bytes, got %d", dtype, shape, want, len(data))
	}
	q := &qstore{data: data, dec: dec, bs: gt.BlockSize(), ts: gt.TypeSize()}
	return &Tensor{shape: cloneInts(shape), strides: contiguousStrides(shape), dtype: dtype, q: q}, nil
}

// FromFP8 wraps 8-bit float storage (F8E4M3 or F8E5M2, one byte per
// element, used in place) with its dequantisation scale: nil (none), one
// value for the whole tensor, or one per index of the first dimension (per
// output channel of a weight [out, in]). Element values are
// float32(code)·scale in float32, as safetensors.File.ScaledFloat32
// computes them.
func FromFP8(dtype DType, data []byte, scale []float32, shape ...int) (*Tensor, error) {
	var table *[256]float32
	switch dtype {
	case F8E4M3:
		table = safetensors.F8E4M3ToF32
	case F8E5M2:
		table = safetensors.F8E5M2ToF32
	default:
		return nil, fmt.Errorf("tensor: FromFP8 needs F8E4M3 or F8E5M2, got %v", dtype)
	}
	n := numel(shape)
	if len(data) != n {
		return nil, fmt.Errorf("tensor: %v shape %v takes %d bytes, got %d", dtype, shape, n, len(data))
	}
	rows := 1
	if len(shape) > 0 {
		rows = shape[0]
	}
	if len(scale) > 1 && len(scale) != rows {
		return nil, fmt.Errorf("tensor: %v shape %v: %d scales, need 1 or %d", dtype, shape, len(scale), rows)
	}
	q := &qstore{data: data, fp8: table, scale: scale, rows: rows, bs: 1, ts: 1}
	return &Tensor{shape: cloneInts(shape), strides: contiguousStrides(shape), dtype: dtype, q: q}, nil
}

// Blocks returns the raw storage of a quantised tensor (the whole of it,
// whatever the view) and, for the 8-bit floats, the scale; nil otherwise.
func (t *Tensor) Blocks() (data []byte, scale []float32) {
	if t.q == nil {
		return nil, nil
	}
	return t.q.data, t.q.scale
}

// Quantize converts t's values to block dtype d with gguf's quantisers
// (ggml's reference arithmetic). The last dimension must be a whole number
// of blocks. The 8-bit floats have no quantiser here.
func Quantize(t *Tensor, d DType) (*Tensor, error) {
	gt, ok := quantTypes[d]
	if !ok || !gguf.CanQuantize(gt) {
		return nil, fmt.Errorf("tensor: cannot quantize to %v", d)
	}
	if t.Rank() == 0 || t.Dim(-1)%gt.BlockSize() != 0 {
		return nil, fmt.Errorf("tensor: quantizing %v to %v: the last dimension must be a whole number of %d-element blocks", t.shape, d, gt.BlockSize())
	}
	b, err := gguf.Quantize(gt, []int{t.Numel()}, t.Float32().Data())
	if err != nil {
		return nil, fmt.Errorf("tensor: %w", err)
	}
	return FromBlocks(d, b, t.shape...)
}

// decode writes the len(dst) elements from storage offset off on as
// float32.
func (q *qstore) decode(off int, dst []float32) {
	if q.fp8 != nil {
		q.decodeFP8(off, dst)
		return
	}
	bs, ts := q.bs, q.ts
	for len(dst) > 0 {
		b, in := off/bs, off%bs
		if in == 0 && len(dst) >= bs {
			nb := len(dst) / bs
			q.dec(q.data[b*ts:(b+nb)*ts], dst[:nb*bs])
			off, dst = off+nb*bs, dst[nb*bs:]
			continue
		}
		n := q.decodePart(b, in, dst)
		off, dst = off+n, dst[n:]
	}
}

// decodePart decodes block b into scratch and copies its elements from in
// on into dst, returning how many it copied: the ends of a range that does
// not start or stop on a block boundary. (Kept apart from decode because
// the scratch escapes to the heap, which must not cost the whole-block
// path an allocation per call.)
func (q *qstore) decodePart(b, in int, dst []float32) int {
	tmp := make([]float32, q.bs)
	q.dec(q.data[b*q.ts:(b+1)*q.ts], tmp)
	return copy(dst, tmp[in:])
}

func (q *qstore) decodeFP8(off int, dst []float32) {
	codes := q.data[off : off+len(dst)]
	switch {
	case q.scale == nil:
		for i, c := range codes {
			dst[i] = q.fp8[c]
		}
	case len(q.scale) == 1:
		s := q.scale[0]
		for i, c := range codes {
			dst[i] = q.fp8[c] * s
		}
	default:
		per := len(q.data) / q.rows
		for i, c := range codes {
			dst[i] = q.fp8[c] * q.scale[(off+i)/per]
		}
	}
}

// int8Products is the SetInt8 setting.
var int8Products atomic.Bool

// SetInt8 turns integer products for Q8_0 weights on or off for later
// Linear calls and returns the previous setting. When on, Linear multiplies
// a contiguous Q8_0 weight by its input quantised to Q8_0 (per row, 32
// values to a scale), summing each block's products in int32, as ggml
// and stable-diffusion.cpp compute Q8_0 layers (gemm.GemmQ8); the input's
// rounding to 8 bits makes results differ slightly from the float32
// product of the dequantised weight, the default. Products that record
// gradients always use float32.
func SetInt8(on bool) bool { return int8Products.Swap(on) }

// int8Weight reports whether Linear(x, w) takes the integer path, with w's
// blocks when it does.
func int8Weight(x, w *Tensor) ([]byte, bool) {
	if w.dtype != Q8_0 || !int8Products.Load() || x.requiresGrad || w.requiresGrad {
		return nil, false
	}
	in := w.Dim(1)
	if in%w.q.bs != 0 || w.offset%w.q.bs != 0 {
		return nil, false
	}
	b0 := w.offset / w.q.bs * w.q.ts
	return w.q.data[b0 : b0+w.Numel()/w.q.bs*w.q.ts], true
}

// bytes is the memory the storage takes.
func (q *qstore) bytes() int64 { return int64(len(q.data)) + 4*int64(len(q.scale)) }

// quantMat is t.mat for quantised storage: a gemm.Blocks operand decoding
// the rows×cols matrix at storage offset off.
func (t *Tensor) quantMat(off, cols int, trans bool) gemm.Mat {
	q := t.q
	return gemm.Mat{Kind: gemm.Blocks, Trans: trans, Stride: cols, Decode: func(row, col int, dst []float32) {
		q.decode(off+row*cols+col, dst)
	}}
}

// quantFloat32 dequantises a quantised tensor (any view) to float32.
func (t *Tensor) quantFloat32() *Tensor {
	out := Zeros(t.shape...)
	if t.IsContiguous() {
		t.q.decode(t.offset, out.f32)
		return out
	}
	i := 0
	t.forEachIndex(func(off int) { out.f32[i] = t.at(off); i++ })
	return out
}

// quantClone copies quantised storage: the bytes of a view that starts and
// ends on whole blocks (and rows, for per-row scales), else its float32
// values.
func (t *Tensor) quantClone() *Tensor {
	q, n := t.q, t.Numel()
	rowAligned := len(q.scale) <= 1 || t.offset%(len(q.data)/q.rows) == 0 && n%(len(q.data)/q.rows) == 0
	if !t.IsContiguous() || t.offset%q.bs != 0 || n%q.bs != 0 || !rowAligned {
		return t.quantFloat32()
	}
	c := *q
	c.data = append([]byte(nil), q.data[t.offset/q.bs*q.ts:(t.offset+n)/q.bs*q.ts]...)
	if len(q.scale) > 1 {
		per := len(q.data) / q.rows
		c.scale = append([]float32(nil), q.scale[t.offset/per:(t.offset+n)/per]...)
		c.rows = n / per
	}
	return &Tensor{shape: cloneInts(t.shape), strides: contiguousStrides(t.shape), dtype: t.dtype, q: &c}
}

// JoinRows concatenates quantised tensors of one dtype along their first
// dimension by joining their stored bytes, so that no value is decoded or
// encoded again: the result holds exactly the parts' values, in their
// storage. 8-bit float scales stay one per tensor where all parts share
// it, else become one per row. ok is false where joining bytes cannot be
// done (not quantised, mixed dtypes or trailing shapes, a view that is not
// whole blocks or rows); the caller then concatenates float32 values.
func JoinRows(parts ...*Tensor) (out *Tensor, ok bool) {
	if len(parts) == 0 || !parts[0].dtype.Quantized() || parts[0].Rank() == 0 {
		return nil, false
	}
	d, rest := parts[0].dtype, parts[0].shape[1:]
	var data []byte
	rows := 0
	clones := make([]*Tensor, len(parts))
	for i, p := range parts {
		if p.dtype != d || p.Rank() != len(rest)+1 || !equalInts(p.shape[1:], rest) {
			return nil, false
		}
		c := p.quantClone()
		if c.q == nil { // not whole blocks or rows: quantClone widened it
			return nil, false
		}
		clones[i] = c
		data = append(data, c.q.data...)
		rows += p.shape[0]
	}
	shape := append([]int{rows}, rest...)
	if d != F8E4M3 && d != F8E5M2 {
		t, err := FromBlocks(d, data, shape...)
		return t, err == nil
	}
	t, err := FromFP8(d, data, joinScales(clones), shape...)
	return t, err == nil
}

// joinScales is the scale of 8-bit float parts joined by rows: nil when
// none has one, the shared value when each has the same one for the whole
// tensor, else one per row (a part without a scale taking 1).
func joinScales(parts []*Tensor) []float32 {
	shared := parts[0].q.scale
	for _, p := range parts {
		if len(p.q.scale) > 1 || len(p.q.scale) != len(shared) || len(shared) == 1 && p.q.scale[0] != shared[0] {
			shared = nil
			break
		}
	}
	if shared != nil || len(parts[0].q.scale) == 0 && allUnscaled(parts) {
		return shared
	}
	var out []float32
	for _, p := range parts {
		n, s := p.shape[0], p.q.scale
		for r := range n {
			switch len(s) {
			case 0:
				out = append(out, 1)
			case 1:
				out = append(out, s[0])
			default:
				out = append(out, s[r])
			}
		}
	}
	return out
}

func allUnscaled(parts []*Tensor) bool {
	for _, p := range parts {
		if len(p.q.scale) > 0 {
			return false
		}
	}
	return true
}

func equalInts(a, b []int) bool {
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
