//go:build !amd64

package vec

// useAVX512 is false off amd64: the pure Go kernels run.
const useAVX512 = false

func expAVX512(dst, src *float32, n int)                   { panic("vec: no assembly") }
func sigmoidAVX512(dst, src *float32, n int)               { panic("vec: no assembly") }
func siluAVX512(dst, src *float32, n int)                  { panic("vec: no assembly") }
func maxAVX512(x *float32, n int) float32                  { panic("vec: no assembly") }
func expSubSumAVX512(x *float32, n int, m float32) float32 { panic("vec: no assembly") }
func sumAVX512(x *float32, n int) float32                  { panic("vec: no assembly") }
func dotAVX512(x, y *float32, n int) float32               { panic("vec: no assembly") }
func axpyAVX512(a float32, x, y *float32, n int)           { panic("vec: no assembly") }
func scaleAVX512(x *float32, n int, a float32)             { panic("vec: no assembly") }

func geluAVX512(dst, src *float32, n int)       { panic("vec: no assembly") }
func geluMulAVX512(dst, src, a *float32, n int) { panic("vec: no assembly") }
func geluTanhAVX512(dst, src *float32, n int)   { panic("vec: no assembly") }

func normAffineAVX512(dst, src *float32, n int, p *float32)          { panic("vec: no assembly") }
func normAffineSiLUAVX512(dst, src *float32, n int, p *float32)      { panic("vec: no assembly") }
func normAffineRowAVX512(dst, src *float32, n int, p, w, b *float32) { panic("vec: no assembly") }
