package gemm

// Integer products for Q8_0 weights: an opt-in path (GemmQ8) that
// multiplies ggml's Q8_0 blocks (32 int8 values and a float16 scale) by
// activations quantised the same way, 32 values of a row to a float32
// scale, as ggml's own Q8_0 product does (quantize_row_q8_0 on the
// activations, then ggml_vec_dot_q8_0_q8_0). Each 32-long block product is
// a sum of integer products, exact in int32; only the scaling and the sum
// over blocks are floating point. The activations' rounding to 8 bits is
// the only departure from the float32 product of the dequantised weight,
// which is why the path is opt-in.
//
// Why 16-bit pairs and not bytes: on AVX2 the int8 instruction
// (VPMADDUBSW) multiplies unsigned by signed bytes and saturates its pair
// sums, so exact signed products need sign juggling (two more
// instructions); VPMADDWD multiplies signed 16-bit pairs into int32
// exactly. On Zen 3 its 6×16 kernel runs at 1.6× the float32 FMA kernel's
// multiply-adds per cycle before the per-block scaling, 1.35× with it.
//
// Layout: both operands are packed as int32 words holding two consecutive
// k values as int16 (low half the even one). A sliver of q8MR rows of A
// is, per block of 32 k, 16 pairs × q8MR rows (the rows' pairs of one k
// adjacent, for the kernel's broadcasts), and apart from them its q8MR
// scales; a sliver of q8NR columns of W is, per block, 16 pairs × q8NR
// columns (a vector of columns per pair) and q8NR scales. The kernel
// accumulates each block in int32 and adds isum·(scaleA·scaleW) to C
// (a multiply, then an add: no FMA, so that the Go kernel gives the same
// bits).

import (
	"fmt"
	"math"
	"sync"

	"github.com/diffuse-go/diffuse/half"
)

const (
	q8Block = 32 // values per Q8_0 block
	q8Bytes = 34 // bytes per Q8_0 block: float16 scale, 32 int8
	q8Pairs = q8Block / 2
	q8MR    = 6  // rows of an A sliver
	q8NR    = 16 // columns of a W sliver
	// Blocking: a W sliver of q8KB blocks (16 KB of pairs) stays in L1
	// while it meets q8MS slivers of A (in L2); a chunk of q8NC columns of
	// W is packed at a time. On Zen 3, 8–32 blocks and 8–32 A slivers ran
	// within a few percent of each other (BenchmarkGemmQ8).
	q8KB = 16 // blocks (of 32 k) per k chunk of packed W
	q8NC = 256
	q8MS = 16 // A slivers per row block
)

// q8Kernel computes, for nkb blocks, C[r][j] += float32(isum)·(sa[r]·sw[j])
// over a q8MR×q8NR tile of C (row stride ldc).
type q8Kernel func(nkb int, a []int32, sa []float32, w []int32, sw []float32, c []float32, ldc int)

// q8Kern is the kernel GemmQ8 runs: the assembly one where the CPU has
// it, else q8KernelGo. Tests swap it.
var q8Kern = q8Best()

// quantizeRow is the row quantiser quantizeA runs: the assembly one where
// the CPU has it, else quantizeRowGo. Tests swap it.
var quantizeRow = quantizeRowBest()

// GemmQ8 computes C = A·Wᵀ (+ o.ColBias) for an m×k float32 A (row stride
// lda) and an n×k weight W stored as Q8_0 blocks (n rows of k/32 blocks of
// 34 bytes, as GGUF holds them), with A quantised to Q8_0 per row and
// block (see the file comment). k must be a multiple of 32. o.Threads
// bounds the goroutines (0: Threads()); RowBias is not supported.
func GemmQ8(o Opts, m, n, k int, a []float32, lda int, w []byte, c []float32, ldc int) {
	if m <= 0 || n <= 0 {
		return
	}
	if k <= 0 || k%q8Block != 0 {
		panic(fmt.Sprintf("gemm: GemmQ8 k = %d is not a positive multiple of %d", k, q8Block))
	}
	nkb := k / q8Block
	switch {
	case lda < k || len(a) < (m-1)*lda+k:
		panic(fmt.Sprintf("gemm: GemmQ8 A of %d values, lda %d, for %d×%d", len(a), lda, m, k))
	case len(w) < n*nkb*q8Bytes:
		panic(fmt.Sprintf("gemm: GemmQ8 W of %d bytes for %d×%d Q8_0", len(w), n, k))
	case ldc < n || len(c) < (m-1)*ldc+n:
		panic(fmt.Sprintf("gemm: GemmQ8 C of %d values, ldc %d, for %d×%d", len(c), ldc, m, n))
	case o.RowBias != nil:
		panic("gemm: GemmQ8 takes no row bias")
	case o.ColBias != nil && len(o.ColBias) < n:
		panic(fmt.Sprintf("gemm: GemmQ8 %d column biases for %d columns", len(o.ColBias), n))
	}
	t := productThreads(o, m, n, k)
	qa := quantizeA(m, k, a, lda, t)
	defer q8APool.Put(qa)
	// Column groups of whole slivers, one per goroutine: each packs its own
	// part of W, the only operand that is large.
	slivers := (n + q8NR - 1) / q8NR
	t = min(t, slivers)
	var wg sync.WaitGroup
	for g := range t {
		j0, j1 := g*slivers/t*q8NR, min((g+1)*slivers/t*q8NR, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range m {
				row := c[i*ldc+j0 : i*ldc+j1]
				if o.ColBias != nil {
					copy(row, o.ColBias[j0:j1])
				} else {
					clear(row)
				}
			}
			q8Columns(qa, m, nkb, w, j0, j1, c, ldc)
		}()
	}
	wg.Wait()
}

// q8A is A quantised and packed: per sliver of q8MR rows, per block, the
// rows' pairs; the scales apart.
type q8A struct {
	q []int32   // [sliver][block][pair][row]
	s []float32 // [sliver][block][row]
}

// q8APool keeps quantised A buffers between products: a FLUX projection's
// is over 100 MB, which a fresh allocation would clear and the collector
// then reclaim, once per layer and step.
var q8APool = sync.Pool{New: func() any { return new(q8A) }}

// quantizeA quantises each row's blocks of 32 (see quantizeBlock) on t
// goroutines, into buffers from q8APool (the caller puts them back). Rows
// past m in the last sliver are zero with scale 0.
func quantizeA(m, k int, a []float32, lda, t int) *q8A {
	nkb := k / q8Block
	ns := (m + q8MR - 1) / q8MR
	qa := q8APool.Get().(*q8A)
	qa.q = grow(qa.q, ns*nkb*q8MR*q8Pairs)
	qa.s = grow(qa.s, ns*nkb*q8MR)
	last := (ns - 1) * nkb
	for r := m - (ns-1)*q8MR; r < q8MR; r++ { // the last sliver's padding rows
		for b := range nkb {
			qa.s[(last+b)*q8MR+r] = 0
			for p := range q8Pairs {
				qa.q[((last+b)*q8Pairs+p)*q8MR+r] = 0
			}
		}
	}
	parallelFor(m, t, func(i0, i1 int) {
		for i := i0; i < i1; i++ {
			s, r := i/q8MR, i%q8MR
			q := qa.q[s*nkb*q8MR*q8Pairs+r:]
			sc := qa.s[s*nkb*q8MR+r:]
			quantizeRow(nkb, a[i*lda:i*lda+k], q, sc)
		}
	})
	return qa
}

// quantizeRowGo quantises the nkb blocks of row x, writing pair p of block
// b at q[(b·q8Pairs+p)·q8MR] and the block's scale at s[b·q8MR].
func quantizeRowGo(nkb int, x []float32, q []int32, s []float32) {
	var v [q8Block]int16
	for b := range nkb {
		s[b*q8MR] = quantizeBlock(x[b*q8Block:(b+1)*q8Block], &v)
		qb := q[b*q8MR*q8Pairs:]
		for p := range q8Pairs {
			qb[p*q8MR] = pair(v[2*p], v[2*p+1])
		}
	}
}

// quantizeBlock rounds x (32 values) to int8 steps of max|x|/127, to
// nearest with ties to even (as ggml's AVX2 and AVX-512 quantize_row_q8_0
// round), and returns the step.
func quantizeBlock(x []float32, q *[q8Block]int16) float32 {
	var amax float32
	for _, v := range x {
		amax = max(amax, math.Float32frombits(math.Float32bits(v)&^(1<<31)))
	}
	d := amax / 127
	var id float32
	if d != 0 {
		id = 1 / d
	}
	for i, v := range x {
		// Adding and removing 1.5·2²³ rounds |f| ≤ 2²² to an integer, ties
		// to even; the conversions keep the compiler from fusing or
		// reassociating the two float32 operations.
		f := float32(v * id)
		r := int32(float32(float32(f+roundMagic) - roundMagic))
		q[i] = int16(max(-127, min(127, r)))
	}
	return d
}

const roundMagic = 0x1.8p23

func pair(lo, hi int16) int32 { return int32(uint32(uint16(lo)) | uint32(uint16(hi))<<16) }

// q8Columns computes columns [j0, j1) of C, packing W a chunk of q8NC
// columns × q8KB blocks at a time.
func q8Columns(qa *q8A, m, nkb int, w []byte, j0, j1 int, c []float32, ldc int) {
	pw := make([]int32, q8NC/q8NR*q8KB*q8Pairs*q8NR)
	sw := make([]float32, q8NC/q8NR*q8KB*q8NR)
	var tile [q8MR * q8NR]float32
	for jc := j0; jc < j1; jc += q8NC {
		nc := min(q8NC, j1-jc)
		for b0 := 0; b0 < nkb; b0 += q8KB {
			kb := min(q8KB, nkb-b0)
			packW(pw, sw, w, nkb, jc, nc, b0, kb)
			// W's sliver stays in L1 while it meets q8MS slivers of A (in L2).
			for s0 := 0; s0*q8MR < m; s0 += q8MS {
				for js := 0; js*q8NR < nc; js++ {
					wp := pw[js*kb*q8Pairs*q8NR : (js+1)*kb*q8Pairs*q8NR]
					ws := sw[js*kb*q8NR : (js+1)*kb*q8NR]
					j, cols := jc+js*q8NR, min(q8NR, nc-js*q8NR)
					for s := s0; s < s0+q8MS && s*q8MR < m; s++ {
						ao := (s*nkb + b0) * q8Pairs * q8MR
						as := (s*nkb + b0) * q8MR
						a, sa := qa.q[ao:ao+kb*q8Pairs*q8MR], qa.s[as:as+kb*q8MR]
						i0, rows := s*q8MR, min(q8MR, m-s*q8MR)
						if rows == q8MR && cols == q8NR {
							q8Kern(kb, a, sa, wp, ws, c[i0*ldc+j:], ldc)
							continue
						}
						// An edge tile runs on a copy, with the same arithmetic.
						for r := range rows {
							copy(tile[r*q8NR:r*q8NR+cols], c[(i0+r)*ldc+j:])
						}
						q8Kern(kb, a, sa, wp, ws, tile[:], q8NR)
						for r := range rows {
							copy(c[(i0+r)*ldc+j:(i0+r)*ldc+j+cols], tile[r*q8NR:])
						}
					}
				}
			}
		}
	}
}

// packW packs blocks [b0, b0+kb) of W's rows [jc, jc+nc) into slivers of
// q8NR columns (missing columns zero): pairs [sliver][block][pair][col],
// scales [sliver][block][col].
func packW(pw []int32, sw []float32, w []byte, nkb, jc, nc, b0, kb int) {
	for js := 0; js*q8NR < nc; js++ {
		p := pw[js*kb*q8Pairs*q8NR:][:kb*q8Pairs*q8NR]
		s := sw[js*kb*q8NR:][:kb*q8NR]
		for col := range q8NR {
			j := js*q8NR + col
			if j >= nc {
				for b := range kb {
					s[b*q8NR+col] = 0
					for i := range q8Pairs {
						p[(b*q8Pairs+i)*q8NR+col] = 0
					}
				}
				continue
			}
			row := w[((jc+j)*nkb+b0)*q8Bytes:][:kb*q8Bytes]
			for b := range kb {
				blk := row[b*q8Bytes:][:q8Bytes]
				s[b*q8NR+col] = half.F16ToF32(uint16(blk[0]) | uint16(blk[1])<<8)
				pb := p[b*q8Pairs*q8NR+col:]
				for i := range q8Pairs {
					// Sign-extend both bytes into their int16 halves.
					pb[i*q8NR] = int32(uint32(uint16(int8(blk[2+2*i]))) | uint32(int8(blk[3+2*i]))<<16)
				}
			}
		}
	}
}

// q8KernelGo is the portable kernel, and the definition the assembly one
// is tested against bit for bit.
func q8KernelGo(nkb int, a []int32, sa []float32, w []int32, sw []float32, c []float32, ldc int) {
	for b := range nkb {
		var acc [q8MR][q8NR]int32
		for p := range q8Pairs {
			wr := w[(b*q8Pairs+p)*q8NR:][:q8NR]
			for r := range q8MR {
				av := a[(b*q8Pairs+p)*q8MR+r]
				a0, a1 := int32(int16(av)), av>>16
				for j, wv := range wr {
					acc[r][j] += a0*int32(int16(wv)) + a1*(wv>>16)
				}
			}
		}
		for r := range q8MR {
			cr := c[r*ldc:][:q8NR]
			for j := range q8NR {
				s := sa[b*q8MR+r] * sw[b*q8NR+j]
				cr[j] += float32(float32(acc[r][j]) * s)
			}
		}
	}
}

// parallelFor runs f over [0, n) split into t contiguous ranges.
func parallelFor(n, t int, f func(lo, hi int)) {
	t = max(1, min(t, n))
	if t == 1 {
		f(0, n)
		return
	}
	var wg sync.WaitGroup
	for g := range t {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(g*n/t, (g+1)*n/t)
		}()
	}
	wg.Wait()
}
