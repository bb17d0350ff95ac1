package tensor

import (
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/tensor/gemm"
	"github.com/diffuse-go/diffuse/tensor/vec"
)

// softmaxRow replaces row with its softmax in place (a fully masked row,
// all -Inf, becomes zeros where torch gives NaN).
func softmaxRow(row []float32) { vec.SoftmaxRow(row) }

// Softmax over the last dimension.
func Softmax(x *Tensor) *Tensor {
	n := x.Dim(-1)
	out := x.Float32().Contiguous().Clone()
	o := out.f32
	rows := len(o) / n
	parallelFor(rows, max(1, 2048/n), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			softmaxRow(o[r*n : (r+1)*n])
		}
	})
	record(out, []*Tensor{x}, func(g *Tensor) []*Tensor {
		gs := g.Data()
		gx := make([]float32, len(gs))
		for r := 0; r < rows; r++ {
			y := o[r*n : (r+1)*n]
			gr := gs[r*n : (r+1)*n]
			var dot float64
			for i := range y {
				dot += float64(y[i]) * float64(gr[i])
			}
			for i := range y {
				gx[r*n+i] = y[i] * (gr[i] - float32(dot))
			}
		}
		return []*Tensor{FromSlice(gx, x.shape...)}
	})
	return out
}

// attnBlock is the number of query rows whose scores the backward pass holds
// at once: the score matrix is never materialised beyond [attnBlock, Lk]
// per worker. (The forward pass picks its own block; see Attention.)
const attnBlock = 128

// attnOperand is a rank-4 attention operand [B, H, L, D] as float32 rows:
// row l of head (b, h) starts at base(b, h) + l·row and its D values are
// contiguous. Views whose last dimension is contiguous (the [B, L, H·D] →
// [B, H, L, D] heads split is one) are read in place, without a copy.
type attnOperand struct {
	f32              []float32
	off, sb, sh, row int
}

func newAttnOperand(t *Tensor) attnOperand {
	t = t.Float32()
	if t.shape[3] > 1 && t.strides[3] != 1 || t.shape[2] > 1 && t.strides[2] < t.shape[3] {
		t = t.Contiguous() // the GEMM needs unit-stride rows that do not overlap
	}
	return attnOperand{f32: t.f32, off: t.offset, sb: t.strides[0], sh: t.strides[1], row: t.strides[2]}
}

// head returns the storage from head (b, h)'s first row on.
func (a attnOperand) head(b, h int) []float32 { return a.f32[a.off+b*a.sb+h*a.sh:] }

// Attention computes softmax(q·kᵀ·scale + mask)·v for q [B, H, Lq, D],
// k [B, H, Lk, D], v [B, H, Lk, Dv]. mask (may be nil) is an additive bias
// broadcastable to [B, H, Lq, Lk] (use -Inf to exclude a key). scale <= 0
// means 1/√D. Queries are processed in blocks so memory stays O(block·Lk).
//
// q, k and v may be strided views (such as the heads split of a [B, L, H·D]
// projection): any whose last dimension is contiguous is read in place. The
// result is a [B, H, Lq, Dv] view of [B, Lq, H, Dv] storage, so that the
// usual heads merge, Permute(0, 2, 1, 3).Reshape(B, Lq, H·Dv), is free.
func Attention(q, k, v, mask *Tensor, scale float32) *Tensor {
	if q.Rank() != 4 || k.Rank() != 4 || v.Rank() != 4 {
		panic(fmt.Sprintf("tensor: Attention wants rank-4 q, k, v; got %v %v %v", q.shape, k.shape, v.shape))
	}
	B, H, Lq, D := q.Dim(0), q.Dim(1), q.Dim(2), q.Dim(3)
	Lk, Dv := k.Dim(2), v.Dim(3)
	if k.Dim(0) != B || k.Dim(1) != H || k.Dim(3) != D || v.Dim(0) != B || v.Dim(1) != H || v.Dim(2) != Lk {
		panic(fmt.Sprintf("tensor: Attention shapes q %v k %v v %v", q.shape, k.shape, v.shape))
	}
	if scale <= 0 {
		scale = float32(1 / math.Sqrt(float64(D)))
	}
	qo, ko, vo := newAttnOperand(q), newAttnOperand(k), newAttnOperand(v)
	var ms []float32
	var mstr []int
	if mask != nil {
		mb := mask.Float32()
		shape4 := []int{B, H, Lq, Lk}
		if _, err := BroadcastShapes(shape4, mb.shape); err != nil {
			panic(fmt.Sprintf("tensor: Attention mask %v for scores %v", mask.shape, shape4))
		}
		ms, mstr = mb.f32, mb.broadcastStrides(shape4)
		mstr = append(mstr, mb.offset)
	}
	// Storage [B, Lq, H, Dv], seen as [B, H, Lq, Dv].
	out := &Tensor{shape: []int{B, H, Lq, Dv}, strides: []int{Lq * H * Dv, Dv, H * Dv, 1}, f32: make([]float32, B*H*Lq*Dv)}
	// Scores are computed transposed, Sᵀ = scale·K·Qᵀ [Lk, bq]: one query
	// per column, so the softmax runs down the columns, 8 queries per
	// vector, and its exp pass writes the probabilities straight into the
	// packed B layout of the second product Oᵀ = Vᵀ·Pᵀ (in place when the
	// block is one B sliver wide, whose packed layout is Sᵀ itself). The 1/Σ
	// normalisation is applied to the Dv outputs rather than to the Lk
	// probabilities. A block is nq slivers of w queries: one for narrow
	// heads, so the Lk·w score tile stays in L2; more for wide heads, whose
	// packed K and Vᵀ (Lk·(D+Dv) values, read once per block) would
	// otherwise dominate.
	//
	// Every (head, query block) is a task; the workers run their products
	// on one thread each rather than nesting the GEMM's own threads inside
	// this loop. A worker's tasks are consecutive, so it packs each head's
	// K and Vᵀ once and reuses the panels for all of that head's blocks.
	w := gemm.NR()
	nq := min(8, max(1, (D+Dv)/64))
	bqMax := nq * w
	nblk := (Lq + bqMax - 1) / bqMax
	kcb := gemm.KBlock(Lk)
	parallelFor(B*H*nblk, 1, func(lo, hi int) {
		st := make([]float32, Lk*bqMax) // Sᵀ, row stride npad
		pt := st                        // Pᵀ in the packed layout
		if nq > 1 {
			pt = make([]float32, Lk*bqMax)
		}
		ot := make([]float32, Dv*bqMax)
		mx := make([]float32, bqMax)
		sums := make([]float64, bqMax)
		var km, vtm gemm.Mat
		for t, cur := lo, -1; t < hi; t++ {
			bh, blk := t/nblk, t%nblk
			b, h := bh/H, bh%H
			if bh != cur {
				cur = bh
				km = gemm.PackAWith(gemm.PackOpts{Threads: 1}, Lk, D, gemm.F32Mat(ko.head(b, h), ko.row, false)).Mat()
				vtm = gemm.PackAWith(gemm.PackOpts{Threads: 1}, Dv, Lk, gemm.F32Mat(vo.head(b, h), vo.row, true)).Mat()
			}
			q0 := blk * bqMax
			bq := min(bqMax, Lq-q0)
			npad := (bq + w - 1) / w * w
			qm := gemm.F32Mat(qo.head(b, h)[q0*qo.row:], qo.row, true)
			gemm.GemmThreads(1, Lk, bq, D, scale, km, qm, 0, st, npad)
			if ms != nil {
				for i := 0; i < bq; i++ {
					base := mstr[4] + b*mstr[0] + h*mstr[1] + (q0+i)*mstr[2]
					for j := 0; j < Lk; j++ {
						st[j*npad+i] += ms[base+j*mstr[3]]
					}
				}
			}
			for i := range mx {
				mx[i] = float32(math.Inf(-1))
			}
			vec.MaxCols(st, npad, Lk, bq, mx)
			for i, m := range mx {
				if m < -math.MaxFloat32 { // every key masked: all e^x are 0
					mx[i] = 0
				}
			}
			clear(sums)
			for pc := 0; pc < Lk; pc += kcb {
				kc := min(kcb, Lk-pc)
				for c := 0; c < bq; c += w {
					// Columns past bq keep stale finite values: they only
					// feed discarded output columns.
					vec.ExpSubSumCols(pt[pc*npad+c*kc:], w, st[pc*npad+c:], npad, kc, min(w, bq-c), mx[c:], sums[c:])
				}
			}
			gemm.GemmThreads(1, Dv, bq, Lk, 1, vtm, gemm.PanelsB(Lk, bq, pt).Mat(), 0, ot, bq)
			for i := 0; i < bq; i++ {
				inv := float32(0) // a fully masked query gives zeros, not NaN
				if sums[i] > 0 {
					inv = float32(1 / sums[i])
				}
				o := ((b*Lq+q0+i)*H + h) * Dv
				orow := out.f32[o : o+Dv]
				for d := range orow {
					orow[d] = ot[d*bq+i] * inv
				}
			}
		}
	})
	record(out, []*Tensor{q, k, v}, func(g *Tensor) []*Tensor {
		// The backward pass reads dense [B, H, L, D] copies.
		dense := func(t *Tensor) []float32 { return t.Detach().Float32().Contiguous().Data() }
		return attentionBackward(dense(q), dense(k), dense(v), ms, mstr, g, B, H, Lq, Lk, D, Dv, scale)
	})
	return out
}

func attentionBackward(qs, ks, vs, ms []float32, mstr []int, g *Tensor, B, H, Lq, Lk, D, Dv int, scale float32) []*Tensor {
	gs := g.Data()
	gq, gk, gv := Zeros(B, H, Lq, D), Zeros(B, H, Lk, D), Zeros(B, H, Lk, Dv)
	parallelFor(B*H, 1, func(lo, hi int) {
		p := make([]float32, attnBlock*Lk)
		dp := make([]float32, attnBlock*Lk)
		for bh := lo; bh < hi; bh++ {
			km := gemm.F32Mat(ks[bh*Lk*D:(bh+1)*Lk*D], D, true)
			vmT := gemm.F32Mat(vs[bh*Lk*Dv:(bh+1)*Lk*Dv], Dv, true)
			for q0 := 0; q0 < Lq; q0 += attnBlock {
				bq := min(attnBlock, Lq-q0)
				P, dP := p[:bq*Lk], dp[:bq*Lk]
				qblk := qs[(bh*Lq+q0)*D : (bh*Lq+q0+bq)*D]
				gblk := gs[(bh*Lq+q0)*Dv : (bh*Lq+q0+bq)*Dv]
				gemm.Gemm(bq, Lk, D, scale, gemm.F32Mat(qblk, D, false), km, 0, P, Lk)
				for i := 0; i < bq; i++ {
					row := P[i*Lk : (i+1)*Lk]
					if ms != nil {
						b, h := bh/H, bh%H
						base := mstr[4] + b*mstr[0] + h*mstr[1] + (q0+i)*mstr[2]
						for j := range row {
							row[j] += ms[base+j*mstr[3]]
						}
					}
					softmaxRow(row)
				}
				// dV += Pᵀ·dO
				gemm.Gemm(Lk, Dv, bq, 1, gemm.F32Mat(P, Lk, true), gemm.F32Mat(gblk, Dv, false), 1, gv.f32[bh*Lk*Dv:], Dv)
				// dP = dO·Vᵀ
				gemm.Gemm(bq, Lk, Dv, 1, gemm.F32Mat(gblk, Dv, false), vmT, 0, dP, Lk)
				// dS = P ∘ (dP − rowsum(dP∘P))
				// (The row sum in float32 with the vector dot, as torch's
				// softmax backward reduces in the input's dtype.)
				for i := 0; i < bq; i++ {
					pr, dr := P[i*Lk:(i+1)*Lk], dP[i*Lk:(i+1)*Lk]
					dot := vec.Dot(pr, dr)
					for j, p := range pr {
						dr[j] = p * (dr[j] - dot)
					}
				}
				// dQ = scale·dS·K ; dK += scale·dSᵀ·Q
				gemm.Gemm(bq, D, Lk, scale, gemm.F32Mat(dP, Lk, false), gemm.F32Mat(ks[bh*Lk*D:(bh+1)*Lk*D], D, false), 0, gq.f32[(bh*Lq+q0)*D:], D)
				gemm.Gemm(Lk, D, bq, scale, gemm.F32Mat(dP, Lk, true), gemm.F32Mat(qblk, D, false), 1, gk.f32[bh*Lk*D:], D)
			}
		}
	})
	return []*Tensor{gq, gk, gv}
}
