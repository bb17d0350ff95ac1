package gguf

// BlockDequantizer returns a function that converts whole blocks of type t
// to float32 with exactly DequantizeRow's arithmetic, for callers that
// dequantise many short runs (the GEMM's packing, one panel at a time) and
// have checked the sizes already: len(dst) must be a whole number of blocks
// and src hold at least their bytes. ok is false for the types
// DequantizeRow refuses.
func BlockDequantizer(t Type) (fn func(src []byte, dst []float32), ok bool) {
	block, ok := blockFuncs[t]
	if !ok {
		return nil, false
	}
	bs, ts := t.BlockSize(), t.TypeSize()
	return func(src []byte, dst []float32) {
		if plainRow(t, src, dst) {
			return
		}
		for i := 0; i < len(dst)/bs; i++ {
			block(src[i*ts:(i+1)*ts], dst[i*bs:(i+1)*bs])
		}
	}, true
}
