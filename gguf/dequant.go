package gguf

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/half"
)

// The block layouts below are ggml's (ggml-common.h); the arithmetic is that
// of ggml's dequantize_row_* (ggml-quants.c) operation for operation in
// float32. Each product is converted to float32 before a following add so
// that the compiler cannot fuse them into one FMA: the values are those of
// the C code evaluated without contraction (and of gguf-py's numpy
// dequantisation), bit for bit. The conversion matters also for a product
// kept in a variable (m1 below): Go may fuse across statements.

// blockFuncs dequantises one block of each supported type: src is one block
// (TypeSize bytes), dst its BlockSize elements.
var blockFuncs = map[Type]func(src []byte, dst []float32){
	F32:  func(b []byte, y []float32) { y[0] = math.Float32frombits(binary.LittleEndian.Uint32(b)) },
	F16:  func(b []byte, y []float32) { y[0] = half.F16ToF32(binary.LittleEndian.Uint16(b)) },
	BF16: func(b []byte, y []float32) { y[0] = half.BF16ToF32(binary.LittleEndian.Uint16(b)) },
	Q4_0: dequantQ4_0,
	Q4_1: dequantQ4_1,
	Q5_0: dequantQ5_0,
	Q5_1: dequantQ5_1,
	Q8_0: dequantQ8_0,
	Q4_K: dequantQ4_K,
	Q5_K: dequantQ5_K,
	Q6_K: dequantQ6_K,
}

// CanDequantize reports whether DequantizeRow handles the type: F32, F16,
// BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K.
func CanDequantize(t Type) bool { _, ok := blockFuncs[t]; return ok }

// DequantizeRow converts len(dst) elements of type t, stored in src, to
// float32. len(dst) must be a whole number of blocks and src exactly their
// bytes (t.RowBytes(len(dst))). It may be called on any run of whole blocks,
// such as one panel of a weight matrix.
func DequantizeRow(t Type, src []byte, dst []float32) error {
	fn, ok := blockFuncs[t]
	if !ok {
		return fmt.Errorf("gguf: cannot dequantise tensor type %s", t)
	}
	n, err := t.RowBytes(len(dst))
	if err != nil {
		return err
	}
	if len(src) != n {
		return fmt.Errorf("gguf: %d elements of %s take %d bytes, got %d", len(dst), t, n, len(src))
	}
	if plainRow(t, src, dst) {
		return nil
	}
	bs, ts := t.BlockSize(), t.TypeSize()
	for i := 0; i < len(dst)/bs; i++ {
		fn(src[i*ts:(i+1)*ts], dst[i*bs:(i+1)*bs])
	}
	return nil
}

// plainRow converts the one-element "blocks" of F32, F16 and BF16 in one
// loop rather than a call per element; it reports whether t is one of them.
func plainRow(t Type, src []byte, dst []float32) bool {
	le := binary.LittleEndian
	switch t {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(le.Uint32(src[4*i:]))
		}
	case F16:
		for i := range dst {
			dst[i] = half.F16ToF32(le.Uint16(src[2*i:]))
		}
	case BF16:
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(le.Uint16(src[2*i:])) << 16)
		}
	default:
		return false
	}
	return true
}

func f16(b []byte) float32 { return half.F16ToF32(binary.LittleEndian.Uint16(b)) }

// dequantQ4_0: block_q4_0 {f16 d; u8 qs[16]}; element j is (low nibble of
// qs[j]) − 8, element j+16 (high nibble) − 8, each times d.
func dequantQ4_0(b []byte, y []float32) {
	d := f16(b)
	qs := b[2:18]
	for j := 0; j < 16; j++ {
		y[j] = float32(int(qs[j]&0x0f)-8) * d
		y[j+16] = float32(int(qs[j]>>4)-8) * d
	}
}

// dequantQ4_1: block_q4_1 {f16 d, m; u8 qs[16]}; x = q·d + m.
func dequantQ4_1(b []byte, y []float32) {
	d, m := f16(b), f16(b[2:])
	qs := b[4:20]
	for j := 0; j < 16; j++ {
		y[j] = float32(float32(qs[j]&0x0f)*d) + m
		y[j+16] = float32(float32(qs[j]>>4)*d) + m
	}
}

// dequantQ5_0: block_q5_0 {f16 d; u8 qh[4]; u8 qs[16]}; bit j of the
// little-endian qh is the fifth bit of element j; x = (q − 16)·d.
func dequantQ5_0(b []byte, y []float32) {
	d := f16(b)
	qh := binary.LittleEndian.Uint32(b[2:])
	qs := b[6:22]
	for j := 0; j < 16; j++ {
		h0 := byte(qh>>j<<4) & 0x10
		h1 := byte(qh>>(j+12)) & 0x10
		y[j] = float32(int(qs[j]&0x0f|h0)-16) * d
		y[j+16] = float32(int(qs[j]>>4|h1)-16) * d
	}
}

// dequantQ5_1: block_q5_1 {f16 d, m; u8 qh[4]; u8 qs[16]}; x = q·d + m.
func dequantQ5_1(b []byte, y []float32) {
	d, m := f16(b), f16(b[2:])
	qh := binary.LittleEndian.Uint32(b[4:])
	qs := b[8:24]
	for j := 0; j < 16; j++ {
		h0 := byte(qh>>j<<4) & 0x10
		h1 := byte(qh>>(j+12)) & 0x10
		y[j] = float32(float32(qs[j]&0x0f|h0)*d) + m
		y[j+16] = float32(float32(qs[j]>>4|h1)*d) + m
	}
}

// dequantQ8_0: block_q8_0 {f16 d; i8 qs[32]}; x = q·d.
func dequantQ8_0(b []byte, y []float32) {
	d := f16(b)
	// Fixed-size views: no bounds checks in the loop (the GEMM's packing
	// runs this once per 32 weights of every product).
	qs, out := (*[32]byte)(b[2:34]), (*[32]float32)(y[:32])
	for j, q := range qs {
		out[j] = float32(int8(q)) * d
	}
}

// scaleMinK4 unpacks the 6-bit scale and min of sub-block j (0…7) from the
// 12 packed bytes of a Q4_K or Q5_K block (ggml's get_scale_min_k4).
func scaleMinK4(j int, q []byte) (sc, m byte) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&0xf | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

// dequantQ4_K: block_q4_K {f16 d, dmin; u8 scales[12]; u8 qs[128]}: eight
// sub-blocks of 32; sub-block pair (2i, 2i+1) takes the low and high nibbles
// of qs[32i:32i+32]; x = (d·sc)·q − dmin·m.
func dequantQ4_K(b []byte, y []float32) {
	d, dmin := f16(b), f16(b[2:])
	scales := b[4:16]
	q := b[16:144]
	for j := 0; j < 4; j++ {
		sc, m := scaleMinK4(2*j, scales)
		d1, m1 := d*float32(sc), float32(dmin*float32(m))
		sc, m = scaleMinK4(2*j+1, scales)
		d2, m2 := d*float32(sc), float32(dmin*float32(m))
		qs, out := q[32*j:32*j+32], y[64*j:64*j+64]
		for l := 0; l < 32; l++ {
			out[l] = float32(d1*float32(qs[l]&0xf)) - m1
			out[l+32] = float32(d2*float32(qs[l]>>4)) - m2
		}
	}
}

// dequantQ5_K: block_q5_K {f16 d, dmin; u8 scales[12]; u8 qh[32];
// u8 qs[128]}: as Q4_K, with bit 2i (low nibbles) or 2i+1 (high nibbles)
// of qh[l] adding 16 to element l of sub-block pair i.
func dequantQ5_K(b []byte, y []float32) {
	d, dmin := f16(b), f16(b[2:])
	scales := b[4:16]
	qh := b[16:48]
	q := b[48:176]
	for j := 0; j < 4; j++ {
		sc, m := scaleMinK4(2*j, scales)
		d1, m1 := d*float32(sc), float32(dmin*float32(m))
		sc, m = scaleMinK4(2*j+1, scales)
		d2, m2 := d*float32(sc), float32(dmin*float32(m))
		u1, u2 := byte(1)<<(2*j), byte(2)<<(2*j)
		qs, out := q[32*j:32*j+32], y[64*j:64*j+64]
		for l := 0; l < 32; l++ {
			lo, hi := int(qs[l]&0xf), int(qs[l]>>4)
			if qh[l]&u1 != 0 {
				lo += 16
			}
			if qh[l]&u2 != 0 {
				hi += 16
			}
			out[l] = float32(d1*float32(lo)) - m1
			out[l+32] = float32(d2*float32(hi)) - m2
		}
	}
}

// dequantQ6_K: block_q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}:
// two halves of 128; in half n, element l+32k (k = 0…3) takes its low four
// bits from ql[64n + l + 32(k&1)] (low nibble for k < 2, high otherwise)
// and its top two from bits 2k of qh[32n+l]; x = (d·scale)·(q − 32) with
// scale = scales[8n + l/16 + 2k].
func dequantQ6_K(b []byte, y []float32) {
	ql, qh, sc := b[0:128], b[128:192], b[192:208]
	d := f16(b[208:])
	for n := 0; n < 2; n++ {
		l4, h2, s, out := ql[64*n:], qh[32*n:], sc[8*n:], y[128*n:]
		for l := 0; l < 32; l++ {
			is := l / 16
			q1 := int(l4[l]&0xf|(h2[l]>>0&3)<<4) - 32
			q2 := int(l4[l+32]&0xf|(h2[l]>>2&3)<<4) - 32
			q3 := int(l4[l]>>4|(h2[l]>>4&3)<<4) - 32
			q4 := int(l4[l+32]>>4|(h2[l]>>6&3)<<4) - 32
			out[l] = d * float32(int8(s[is])) * float32(q1)
			out[l+32] = d * float32(int8(s[is+2])) * float32(q2)
			out[l+64] = d * float32(int8(s[is+4])) * float32(q3)
			out[l+96] = d * float32(int8(s[is+6])) * float32(q4)
		}
	}
}
