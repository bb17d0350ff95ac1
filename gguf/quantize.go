package gguf

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/half"
)

// The quantisers follow ggml's reference quantize_row_*_ref (ggml-quants.c),
// the ones ggml documents as "for deterministic creation of model files",
// operation for operation in float32 (products converted to float32 before
// a following add, so nothing is fused): the bytes are ggml's.

// quantFuncs quantise one block: src is BlockSize values, dst TypeSize bytes.
var quantFuncs = map[Type]func(src []float32, dst []byte){
	F32:  func(x []float32, b []byte) { binary.LittleEndian.PutUint32(b, math.Float32bits(x[0])) },
	F16:  func(x []float32, b []byte) { binary.LittleEndian.PutUint16(b, half.F32ToF16(x[0])) },
	BF16: func(x []float32, b []byte) { binary.LittleEndian.PutUint16(b, half.F32ToBF16(x[0])) },
	Q4_0: quantQ4_0,
	Q4_1: quantQ4_1,
	Q5_0: quantQ5_0,
	Q5_1: quantQ5_1,
	Q8_0: quantQ8_0,
	Q4_K: quantQ4_K,
	Q5_K: quantQ5_K,
	Q6_K: quantQ6_K,
}

// CanQuantize reports whether QuantizeRow handles the type: F32, F16, BF16,
// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K (every type
// DequantizeRow reads).
func CanQuantize(t Type) bool { _, ok := quantFuncs[t]; return ok }

// QuantizeRow encodes the values of src as type t into dst. len(src) must
// be a whole number of blocks and len(dst) exactly t.RowBytes(len(src)).
// Blocks are independent, so a tensor may be quantised row by row.
func QuantizeRow(t Type, src []float32, dst []byte) error {
	fn, ok := quantFuncs[t]
	if !ok {
		return fmt.Errorf("gguf: cannot quantise to type %s", t)
	}
	n, err := t.RowBytes(len(src))
	if err != nil {
		return err
	}
	if len(dst) != n {
		return fmt.Errorf("gguf: %d elements of %s take %d bytes, got a %d-byte buffer", len(src), t, n, len(dst))
	}
	bs, ts := t.BlockSize(), t.TypeSize()
	for i := 0; i < len(src)/bs; i++ {
		fn(src[i*bs:(i+1)*bs], dst[i*ts:(i+1)*ts])
	}
	return nil
}

// Quantize encodes a tensor of the given row-major shape as type t, ready
// for a Tensor's Data. The last dimension must be a whole number of blocks.
func Quantize(t Type, shape []int, src []float32) ([]byte, error) {
	n := 1
	for _, d := range shape {
		n *= d
	}
	if n != len(src) {
		return nil, fmt.Errorf("gguf: shape %v has %d elements, got %d values", shape, n, len(src))
	}
	if len(shape) > 0 && shape[len(shape)-1]%max(t.BlockSize(), 1) != 0 {
		return nil, fmt.Errorf("gguf: rows of %d elements are not a whole number of %s blocks (%d)", shape[len(shape)-1], t, t.BlockSize())
	}
	size, err := t.RowBytes(n)
	if err != nil {
		return nil, err
	}
	out := make([]byte, size)
	return out, QuantizeRow(t, src, out)
}

func putF16(b []byte, x float32) { binary.LittleEndian.PutUint16(b, half.F32ToF16(x)) }

// absMax returns the value of largest magnitude (the first one on ties).
func absMax(x []float32) (amax, v float32) {
	for _, e := range x {
		if a := abs32(e); amax < a {
			amax, v = a, e
		}
	}
	return amax, v
}

func minMax(x []float32) (lo, hi float32) {
	lo, hi = math.MaxFloat32, -math.MaxFloat32
	for _, v := range x {
		lo, hi = less(v, lo), more(v, hi)
	}
	return lo, hi
}

// less and more pick as ggml's "if (v < m) m = v" does, which differs from
// the min and max builtins for signed zeros.
func less(v, m float32) float32 {
	if v < m {
		return v
	}
	return m
}

func more(v, m float32) float32 {
	if v > m {
		return v
	}
	return m
}

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// inv is ggml's "d ? 1.0f/d : 0.0f".
func inv(d float32) float32 {
	if d == 0 {
		return 0
	}
	return 1 / d
}

// quantQ8_0: d = amax/127, q = round(x/d) (roundf: halves away from zero).
func quantQ8_0(x []float32, b []byte) {
	amax, _ := absMax(x)
	d := amax / 127
	id := inv(d)
	putF16(b, d)
	for j, v := range x {
		b[2+j] = byte(int8(math.Round(float64(v * id))))
	}
}

// quantQ4_0: d = max/−8 (max the value of largest magnitude), q =
// min(15, trunc(x/d + 8.5)).
func quantQ4_0(x []float32, b []byte) {
	_, mx := absMax(x)
	d := mx / -8
	id := inv(d)
	putF16(b, d)
	for j := 0; j < 16; j++ {
		q0 := min(15, int8(float32(x[j]*id)+8.5))
		q1 := min(15, int8(float32(x[j+16]*id)+8.5))
		b[2+j] = byte(q0) | byte(q1)<<4
	}
}

// quantQ4_1: d = (max − min)/15, m = min, q = min(15, trunc((x−min)/d + 0.5)).
func quantQ4_1(x []float32, b []byte) {
	lo, hi := minMax(x)
	d := (hi - lo) / 15
	id := inv(d)
	putF16(b, d)
	putF16(b[2:], lo)
	for j := 0; j < 16; j++ {
		q0 := min(15, int8(float32((x[j]-lo)*id)+0.5))
		q1 := min(15, int8(float32((x[j+16]-lo)*id)+0.5))
		b[4+j] = byte(q0) | byte(q1)<<4
	}
}

// quantQ5_0: d = max/−16, q = min(31, trunc(x/d + 16.5)).
func quantQ5_0(x []float32, b []byte) {
	_, mx := absMax(x)
	d := mx / -16
	id := inv(d)
	putF16(b, d)
	var qh uint32
	for j := 0; j < 16; j++ {
		q0 := byte(min(31, int8(float32(x[j]*id)+16.5)))
		q1 := byte(min(31, int8(float32(x[j+16]*id)+16.5)))
		b[6+j] = q0&0xf | (q1&0xf)<<4
		qh |= uint32(q0>>4&1)<<j | uint32(q1>>4&1)<<(j+16)
	}
	binary.LittleEndian.PutUint32(b[2:], qh)
}

// quantQ5_1: d = (max − min)/31, m = min, q = trunc((x−min)/d + 0.5).
func quantQ5_1(x []float32, b []byte) {
	lo, hi := minMax(x)
	d := (hi - lo) / 31
	id := inv(d)
	putF16(b, d)
	putF16(b[2:], lo)
	var qh uint32
	for j := 0; j < 16; j++ {
		q0 := uint8(float32((x[j]-lo)*id) + 0.5)
		q1 := uint8(float32((x[j+16]-lo)*id) + 0.5)
		b[8+j] = q0&0xf | (q1&0xf)<<4
		qh |= uint32(q0>>4&1)<<j | uint32(q1>>4&1)<<(j+16)
	}
	binary.LittleEndian.PutUint32(b[4:], qh)
}
