//go:build !amd64

package vec

// useAVX2 is false off amd64: the pure Go kernels run.
const useAVX2 = false

func expAVX2(dst, src *float32, n int)                   { panic("vec: no assembly") }
func sigmoidAVX2(dst, src *float32, n int)               { panic("vec: no assembly") }
func siluAVX2(dst, src *float32, n int)                  { panic("vec: no assembly") }
func maxAVX2(x *float32, n int) float32                  { panic("vec: no assembly") }
func expSubSumAVX2(x *float32, n int, m float32) float32 { panic("vec: no assembly") }
func sumAVX2(x *float32, n int) float32                  { panic("vec: no assembly") }
func dotAVX2(x, y *float32, n int) float32               { panic("vec: no assembly") }
func axpyAVX2(a float32, x, y *float32, n int)           { panic("vec: no assembly") }
func scaleAVX2(x *float32, n int, a float32)             { panic("vec: no assembly") }

func maxColsAVX2(x *float32, rows, stride int, m *float32) { panic("vec: no assembly") }
func expSubSumColsAVX2(dst *float32, dstride int, x *float32, rows, stride int, m, sums *float32) {
	panic("vec: no assembly")
}
func normAffineAVX2(dst, src *float32, n int, p *float32)          { panic("vec: no assembly") }
func normAffineSiLUAVX2(dst, src *float32, n int, p *float32)      { panic("vec: no assembly") }
func geluAVX2(dst, src *float32, n int)                            { panic("vec: no assembly") }
func geluMulAVX2(dst, src, a *float32, n int)                      { panic("vec: no assembly") }
func geluTanhAVX2(dst, src *float32, n int)                        { panic("vec: no assembly") }
func normAffineRowAVX2(dst, src *float32, n int, p, w, b *float32) { panic("vec: no assembly") }

func copyRowsPadAVX2(dst *float32, dstStride int, src *float32, srcStride, rows, lead, n, trail int) {
	panic("vec: no assembly")
}

func winogradIn8AVX2(x *float32, ldx int, v *float32, stride int) { panic("vec: no assembly") }
func winogradOut8AVX2(m *float32, stride int, out *float32, ldo int, bias float32) {
	panic("vec: no assembly")
}
