package gguf

import "testing"

// BenchmarkDequantizeRow measures one 4096-element row of each type, the
// unit a GEMM packer asks for.
func BenchmarkDequantizeRow(b *testing.B) {
	x := make([]float32, 4096)
	for i := range x {
		x[i] = float32(i%97) - 48
	}
	for _, typ := range []Type{F16, BF16, Q8_0, Q4_0, Q5_1, Q4_K, Q5_K, Q6_K} {
		src := make([]byte, must(typ.RowBytes(len(x))))
		if CanQuantize(typ) {
			QuantizeRow(typ, x, src)
		}
		dst := make([]float32, len(x))
		b.Run(typ.String(), func(b *testing.B) {
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				DequantizeRow(typ, src, dst)
			}
		})
	}
}

func must(n int, err error) int {
	if err != nil {
		panic(err)
	}
	return n
}
