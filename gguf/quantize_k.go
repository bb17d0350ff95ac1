package gguf

import "math"

// The K-quants: quantize_row_q4_K_ref, quantize_row_q5_K_ref and
// quantize_row_q6_K_ref of ggml-quants.c with their helpers nearest_int,
// make_qkx2_quants and make_qx_quants, in float32 as quantize.go's.

// groupMaxEps is ggml's GROUP_MAX_EPS: a group whose largest magnitude is
// below it is all zero.
const groupMaxEps float32 = 1e-15

// nearestInt rounds as ggml's nearest_int does (adding 1.5·2²³ and reading
// the mantissa: ties to even), for |v| ≤ 2²². Beyond that it returns what
// ggml's (built without asserts) returns.
func nearestInt(v float32) int {
	f := v + 12582912
	return int(math.Float32bits(f)&0x007fffff) - 0x00400000
}

// quantQ4_K is quantize_row_q4_K_ref for one super-block of 256 values:
// block_q4_K {f16 d, dmin; u8 scales[12]; u8 qs[128]}.
func quantQ4_K(x []float32, b []byte) {
	var L [qk]uint8
	quantKScaleMin(x, b, &L, 15, -1, 20)
	q := b[16:144]
	for j := 0; j < qk; j += 64 {
		for l := 0; l < 32; l++ {
			q[j/2+l] = L[j+l] | L[j+l+32]<<4
		}
	}
}

// quantQ5_K is quantize_row_q5_K_ref for one super-block of 256 values:
// block_q5_K {f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}; the
// fifth bit of element l of sub-block 2i (2i+1) is bit 2i (2i+1) of qh[l].
func quantQ5_K(x []float32, b []byte) {
	var L [qk]uint8
	quantKScaleMin(x, b, &L, 31, -0.5, 15)
	qh, q := b[16:48], b[48:176]
	clear(qh)
	m1, m2 := byte(1), byte(2)
	for n := 0; n < qk; n += 64 {
		for j := 0; j < 32; j++ {
			l1, l2 := L[n+j], L[n+j+32]
			if l1 > 15 {
				l1 -= 16
				qh[j] |= m1
			}
			if l2 > 15 {
				l2 -= 16
				qh[j] |= m2
			}
			q[n/2+j] = l1 | l2<<4
		}
		m1, m2 = m1<<2, m2<<2
	}
}

// quantKScaleMin is what quantize_row_q4_K_ref and quantize_row_q5_K_ref
// share: it chooses each 32-value sub-block's scale and min
// (make_qkx2_quants with levels 0…nmax, rmin, rdelta 0.1 and nstep),
// writes d, dmin and the twelve bytes of 6-bit scales and mins to b[0:16],
// and leaves in L the levels for the scales and mins as stored.
func quantKScaleMin(x []float32, b []byte, L *[qk]uint8, nmax int, rmin float32, nstep int) {
	var (
		laux    [32]uint8
		weights [32]float32
		mins    [8]float32
		scales  [8]float32
	)
	var maxScale, maxMin float32
	for j := 0; j < 8; j++ {
		xs := x[32*j : 32*j+32]
		kWeights(xs, weights[:])
		scales[j], mins[j] = makeQKX2Quants(nmax, xs, weights[:], L[32*j:32*j+32], laux[:], rmin, 0.1, nstep)
		maxScale = more(scales[j], maxScale)
		maxMin = more(mins[j], maxMin)
	}
	packScaleMin(b, &scales, &mins, maxScale, maxMin)
	requantK(x, b, L, nmax)
}

// kWeights sets the weights make_qkx2_quants gets for a sub-block:
// sqrt(mean x²) + |x|.
func kWeights(xs, weights []float32) {
	var sumX2 float32
	for _, v := range xs {
		sumX2 += float32(v * v)
	}
	avX := float32(math.Sqrt(float64(sumX2 / 32)))
	for l, v := range xs {
		weights[l] = avX + abs32(v)
	}
}

// packScaleMin stores d = maxScale/63 and dmin = maxMin/63 as f16 in
// b[0:4] and each sub-block's scale and min in 6 bits of b[4:16] (the
// layout get_scale_min_k4 reads).
func packScaleMin(b []byte, scales, mins *[8]float32, maxScale, maxMin float32) {
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	sc := b[4:16]
	for j := 0; j < 8; j++ {
		ls := min(63, uint8(nearestInt(float32(invScale*scales[j]))))
		lm := min(63, uint8(nearestInt(float32(invMin*mins[j]))))
		if j < 4 {
			sc[j], sc[j+4] = ls, lm
		} else {
			sc[j+4] = ls&0xf | (lm&0xf)<<4
			sc[j-4] |= (ls >> 4) << 6
			sc[j] |= (lm >> 4) << 6
		}
	}
	putF16(b, maxScale/63)
	putF16(b[2:], maxMin/63)
}

// requantK sets the levels L (0…nmax) of each sub-block from its scale and
// min as stored in b; a sub-block whose scale is zero keeps the levels
// make_qkx2_quants chose, as ggml does.
func requantK(x []float32, b []byte, L *[qk]uint8, nmax int) {
	d, dmin := f16(b), f16(b[2:])
	for j := 0; j < 8; j++ {
		s, m := scaleMinK4(j, b[4:16])
		dj := d * float32(s)
		if dj == 0 {
			continue
		}
		dm := float32(dmin * float32(m))
		for i, v := range x[32*j : 32*j+32] {
			L[32*j+i] = uint8(max(0, min(nmax, nearestInt((v+dm)/dj))))
		}
	}
}

// makeQKX2Quants is ggml's make_qkx2_quants (use_mad false): it chooses
// levels L in [0, nmax] and a scale and min (returned negated, as ggml
// does) for x ≈ scale·L − min, searching nstep+1 candidate scales for the
// smallest weighted squared error.
func makeQKX2Quants(nmax int, x, weights []float32, L, laux []uint8, rmin, rdelta float32, nstep int) (scale, negMin float32) {
	lo, hi := x[0], x[0]
	sumW := weights[0]
	sumX := float32(sumW * x[0])
	for i := 1; i < len(x); i++ {
		lo, hi = less(x[i], lo), more(x[i], hi)
		sumW += weights[i]
		sumX += float32(weights[i] * x[i])
	}
	if lo > 0 {
		lo = 0
	}
	if hi == lo {
		clear(L[:len(x)])
		return 0, -lo
	}
	iscale := float32(nmax) / (hi - lo)
	scale = 1 / iscale
	var bestError float32
	for i, v := range x {
		L[i] = uint8(max(0, min(nmax, nearestInt(float32(iscale*(v-lo))))))
		diff := float32(scale*float32(L[i])) + lo - v
		bestError += float32(weights[i] * float32(diff*diff))
	}
	for is := 0; is <= nstep; is++ {
		iscale = (float32(rdelta*float32(is)) + rmin + float32(nmax)) / (hi - lo)
		var sumL, sumL2, sumXL float32
		for i, v := range x {
			l := max(0, min(nmax, nearestInt(float32(iscale*(v-lo)))))
			laux[i] = uint8(l)
			wl := float32(weights[i] * float32(l))
			sumL += wl
			sumL2 += float32(wl * float32(l))
			sumXL += float32(wl * v)
		}
		D := float32(sumW*sumL2) - float32(sumL*sumL)
		if D <= 0 {
			continue
		}
		thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / D
		thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / D
		if thisMin > 0 {
			thisMin = 0
			thisScale = sumXL / sumL2
		}
		var curError float32
		for i, v := range x {
			diff := float32(thisScale*float32(laux[i])) + thisMin - v
			curError += float32(weights[i] * float32(diff*diff))
		}
		if curError < bestError {
			copy(L[:len(x)], laux[:len(x)])
			bestError, scale, lo = curError, thisScale, thisMin
		}
	}
	return scale, -lo
}

// quantQ6_K is quantize_row_q6_K_ref for one super-block of 256 values:
// block_q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}, sixteen
// sub-blocks of 16 with signed 8-bit scales and levels −32…31.
func quantQ6_K(x []float32, b []byte) {
	var (
		L      [qk]uint8 // level + 32
		scales [16]float32
	)
	var maxScale, maxAbs float32
	for ib := 0; ib < 16; ib++ {
		scales[ib] = makeQXQuants(32, x[16*ib:16*ib+16], L[16*ib:16*ib+16])
		if a := abs32(scales[ib]); a > maxAbs {
			maxAbs, maxScale = a, scales[ib]
		}
	}
	if maxAbs < groupMaxEps {
		clear(b[:210]) // levels 0 and d = +0, as ggml's memset
		return
	}
	iscale := -128 / maxScale
	putF16(b[208:], 1/iscale)
	sc := b[192:208]
	for ib := range sc {
		sc[ib] = byte(min(127, nearestInt(float32(iscale*scales[ib]))))
	}
	requantQ6(x, b, &L)
	packQ6(&L, b)
}

// requantQ6 sets the levels of each sub-block from d and its scale as
// stored in b; a sub-block whose scale is zero keeps make_qx_quants'
// levels.
func requantQ6(x []float32, b []byte, L *[qk]uint8) {
	d := f16(b[208:])
	for j := 0; j < 16; j++ {
		dj := d * float32(int8(b[192+j]))
		if dj == 0 {
			continue
		}
		for i, v := range x[16*j : 16*j+16] {
			L[16*j+i] = uint8(max(-32, min(31, nearestInt(v/dj))) + 32)
		}
	}
}

// packQ6 stores the 6-bit levels: in each half of 128, element l+32k
// (k = 0…3) puts its low four bits in ql[l + 32(k&1)] (low nibble for
// k < 2) and its top two in bits 2k of qh[l].
func packQ6(L *[qk]uint8, b []byte) {
	for j := 0; j < qk; j += 128 {
		ql, qh := b[j/2:j/2+64], b[128+j/4:128+j/4+32]
		for l := 0; l < 32; l++ {
			q1, q2, q3, q4 := L[j+l], L[j+l+32], L[j+l+64], L[j+l+96]
			ql[l] = q1&0xf | q3<<4
			ql[l+32] = q2&0xf | q4<<4
			qh[l] = q1>>4 | q2>>4<<2 | q3>>4<<4 | q4>>4<<6
		}
	}
}

// makeQXQuants is ggml's make_qx_quants with rmse_type 1 and no
// importance weights (the weights are x²), as quantize_row_q6_K_ref calls
// it: levels L = l + nmax with l in [−nmax, nmax−1] and the scale for
// x ≈ scale·l, the best of 19 candidates by weighted least squares. A
// group whose largest magnitude is below groupMaxEps gets levels 0 and
// scale 0.
func makeQXQuants(nmax int, x []float32, L []uint8) float32 {
	var amax, mx float32
	for _, v := range x {
		if a := abs32(v); a > amax {
			amax, mx = a, v
		}
	}
	if amax < groupMaxEps {
		clear(L[:len(x)])
		return 0
	}
	iscale := float32(-nmax) / mx
	sumLX, sumL2 := qxSums(nmax, iscale, x, L)
	var scale float32
	if sumL2 != 0 {
		scale = sumLX / sumL2
	}
	best := scale * sumLX
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -(float32(nmax) + float32(0.1*float32(is))) / mx
		sumLX, sumL2 = qxSums(nmax, iscale, x, nil)
		if sumL2 > 0 && sumLX*sumLX > best*sumL2 {
			qxSums(nmax, iscale, x, L)
			scale = sumLX / sumL2
			best = scale * sumLX
		}
	}
	return scale
}

// qxSums rounds iscale·x to levels l in [−nmax, nmax−1] and returns
// Σ w·x·l and Σ w·l² with w = x²; L, when not nil, receives l + nmax.
func qxSums(nmax int, iscale float32, x []float32, L []uint8) (sumLX, sumL2 float32) {
	for i, v := range x {
		l := max(-nmax, min(nmax-1, nearestInt(float32(iscale*v))))
		if L != nil {
			L[i] = uint8(l + nmax)
		}
		w, fl := float32(v*v), float32(l)
		sumLX += float32(float32(w*v) * fl)
		sumL2 += float32(float32(w*fl) * fl)
	}
	return sumLX, sumL2
}
