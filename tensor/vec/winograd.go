package vec

import "fmt"

// Winograd F(2×2, 3×3) tile transforms (see tensor's Conv2d): for 8 tiles
// side by side in a row of tiles, whose 4×4 input patches start 2 columns
// apart, and whose 2×2 outputs do too.

// WinogradIn8 transforms the 4×4 patches of 8 adjacent tiles, tile l's at
// x[2l:] with row stride ldx, into V = Bᵀ d B and stores element ξ = 4i+c
// of tile l at v[ξ·stride + l]. Columns first (u = d B), then rows
// (V = Bᵀ u), on every path.
func WinogradIn8(x []float32, ldx int, v []float32, stride int) {
	if len(x) < 3*ldx+18 || len(v) < 15*stride+8 || ldx < 18 || stride < 8 {
		panic(fmt.Sprintf("vec: WinogradIn8 of %d values (row stride %d) into %d (stride %d)", len(x), ldx, len(v), stride))
	}
	if useAVX2 {
		winogradIn8AVX2(&x[0], ldx, &v[0], stride)
		return
	}
	for l := 0; l < 8; l++ {
		WinogradIn1(x[2*l:], ldx, v[l:], stride)
	}
}

// WinogradIn1 is WinogradIn8 for one tile.
func WinogradIn1(x []float32, ldx int, v []float32, stride int) {
	_ = x[3*ldx+3]
	_ = v[15*stride]
	var u [4][4]float32
	for r := 0; r < 4; r++ {
		d := x[r*ldx : r*ldx+4 : r*ldx+4]
		u[r][0] = d[0] - d[2]
		u[r][1] = d[1] + d[2]
		u[r][2] = d[2] - d[1]
		u[r][3] = d[1] - d[3]
	}
	for c := 0; c < 4; c++ {
		v[c*stride] = u[0][c] - u[2][c]
		v[(4+c)*stride] = u[1][c] + u[2][c]
		v[(8+c)*stride] = u[2][c] - u[1][c]
		v[(12+c)*stride] = u[1][c] - u[3][c]
	}
}

// WinogradOut8 reads the 16 products of 8 adjacent tiles (element ξ of
// tile l at m[ξ·stride + l]), computes Y = Aᵀ M A + bias and writes tile
// l's 2×2 block at out[2l:] and out[ldo+2l:].
func WinogradOut8(m []float32, stride int, out []float32, ldo int, bias float32) {
	if len(m) < 15*stride+8 || len(out) < ldo+16 || stride < 8 || ldo < 16 {
		panic(fmt.Sprintf("vec: WinogradOut8 of %d values (stride %d) into %d (row stride %d)", len(m), stride, len(out), ldo))
	}
	if useAVX2 {
		winogradOut8AVX2(&m[0], stride, &out[0], ldo, bias)
		return
	}
	for l := 0; l < 8; l++ {
		y00, y01, y10, y11 := WinogradOut1(m[l:], stride)
		out[2*l] = y00 + bias
		out[2*l+1] = y01 + bias
		out[ldo+2*l] = y10 + bias
		out[ldo+2*l+1] = y11 + bias
	}
}

// WinogradOut1 returns Aᵀ M A for one tile (element ξ at m[ξ·stride]):
// rows first, then columns, as WinogradOut8 computes it.
func WinogradOut1(m []float32, stride int) (y00, y01, y10, y11 float32) {
	_ = m[15*stride]
	var s [2][4]float32
	for c := 0; c < 4; c++ {
		m0, m1, m2, m3 := m[c*stride], m[(4+c)*stride], m[(8+c)*stride], m[(12+c)*stride]
		s[0][c] = m0 + m1 + m2
		s[1][c] = m1 - m2 - m3
	}
	y00 = s[0][0] + s[0][1] + s[0][2]
	y01 = s[0][1] - s[0][2] - s[0][3]
	y10 = s[1][0] + s[1][1] + s[1][2]
	y11 = s[1][1] - s[1][2] - s[1][3]
	return
}
