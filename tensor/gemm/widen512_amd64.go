package gemm

// Implemented in widen512_amd64.s.

//go:noescape
func widenF16AVX512(dst *float32, src *uint16, n int)

//go:noescape
func widenBF16AVX512(dst *float32, src *uint16, n int)

// useWiden512 selects the ZMM widening loops in widenAsm (a variable so the
// tests can run the YMM ones on an AVX-512 machine too).
var useWiden512 = hasAVX512
