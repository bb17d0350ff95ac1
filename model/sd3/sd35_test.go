package sd3

import (
	"math"
	"testing"

	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// Per-head RMS norm, checked by hand: x = [3, 4 | 1, -1] in two heads of
// two, weight [2, 0.5]. Head 0 has RMS √12.5, so [3, 4]/√12.5 · [2, 0.5] =
// [1.697056, 0.565685]; head 1 has RMS 1, so [2, -0.5] (eps 1e-6 moves
// the values by 5e-7 relative).
func TestHeadNormByHand(t *testing.T) {
	n := &nn.RMSNorm{Dim: 2, Eps: 1e-6, Weight: tensor.FromSlice([]float32{2, 0.5}, 2)}
	got := headNorm(tensor.FromSlice([]float32{3, 4, 1, -1}, 1, 1, 4), n, 2).Data()
	want := []float32{1.697056, 0.565685, 2, -0.5}
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 2e-6 {
			t.Fatalf("headNorm = %v, want %v", got, want)
		}
	}
	if headNorm(tensor.FromSlice([]float32{3, 4}, 1, 1, 2), nil, 1).Data()[1] != 4 {
		t.Error("no norm changed the values")
	}
}

// refParams holds a model's parameters by diffusers name, as plain slices.
type refParams map[string][]float32

// randomizeParams sets every parameter of m to deterministic values in
// [-0.5, 0.5) (norm weights in [0.5, 1.5), so that a dropped or exchanged
// qk norm shows) and returns them by name.
func randomizeParams(m nn.Module, seed uint64) refParams {
	var ps nn.Params
	m.Params("", &ps)
	out := refParams{}
	s := seed
	for _, p := range ps.List() {
		n := 1
		for _, d := range p.Shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			s = s*6364136223846793005 + 1442695040888963407
			v[i] = float32(s>>40)/float32(1<<24) - 0.5
			if len(p.Shape) == 1 && !isBias(p.Name) {
				v[i] += 1
			}
		}
		out[p.Name] = v
		*p.Ptr = tensor.FromSlice(v, p.Shape...)
	}
	return out
}

func isBias(name string) bool { return len(name) > 4 && name[len(name)-4:] == "bias" }

// linear is x·Wᵀ + b for the rows of x, W [out, in] named prefix.weight.
func (r refParams) linear(x [][]float32, prefix string) [][]float32 {
	w, b := r[prefix+".weight"], r[prefix+".bias"]
	in := len(x[0])
	out := make([][]float32, len(x))
	for i, row := range x {
		out[i] = make([]float32, len(b))
		for o := range b {
			s := float64(b[o])
			for j := 0; j < in; j++ {
				s += float64(w[o*in+j]) * float64(row[j])
			}
			out[i][o] = float32(s)
		}
	}
	return out
}

// layerNorm normalises each row (no affine, eps 1e-6).
func layerNorm(x [][]float32) [][]float32 {
	out := make([][]float32, len(x))
	for i, row := range x {
		var mean, v float64
		for _, e := range row {
			mean += float64(e)
		}
		mean /= float64(len(row))
		for _, e := range row {
			v += (float64(e) - mean) * (float64(e) - mean)
		}
		v /= float64(len(row))
		out[i] = make([]float32, len(row))
		for j, e := range row {
			out[i][j] = float32((float64(e) - mean) / math.Sqrt(v+1e-6))
		}
	}
	return out
}

// modulated is LN(x)·(1 + scale) + shift.
func modulated(x [][]float32, shift, scale []float32) [][]float32 {
	n := layerNorm(x)
	for _, row := range n {
		for j := range row {
			row[j] = row[j]*(1+scale[j]) + shift[j]
		}
	}
	return n
}

// rmsHeads RMS-normalises each head (width hd) of each row by weight w.
func rmsHeads(x [][]float32, hd int, w []float32) [][]float32 {
	for _, row := range x {
		for h := 0; h < len(row); h += hd {
			var ss float64
			for _, e := range row[h : h+hd] {
				ss += float64(e) * float64(e)
			}
			inv := 1 / math.Sqrt(ss/float64(hd)+1e-6)
			for j := 0; j < hd; j++ {
				row[h+j] = float32(float64(row[h+j])*inv) * w[j]
			}
		}
	}
	return x
}

// softmaxAttention is multi-head attention of rows q over rows k, v.
func softmaxAttention(q, k, v [][]float32, heads int) [][]float32 {
	d := len(q[0])
	hd := d / heads
	out := make([][]float32, len(q))
	for i := range q {
		out[i] = make([]float32, d)
		for h := 0; h < heads; h++ {
			scores := make([]float64, len(k))
			top := math.Inf(-1)
			for j := range k {
				for c := h * hd; c < (h+1)*hd; c++ {
					scores[j] += float64(q[i][c]) * float64(k[j][c])
				}
				scores[j] /= math.Sqrt(float64(hd))
				top = math.Max(top, scores[j])
			}
			var sum float64
			for j := range scores {
				scores[j] = math.Exp(scores[j] - top)
				sum += scores[j]
			}
			for j := range k {
				for c := h * hd; c < (h+1)*hd; c++ {
					out[i][c] += float32(scores[j] / sum * float64(v[j][c]))
				}
			}
		}
	}
	return out
}

// gatedAdd returns x + gate·y.
func gatedAdd(x, y [][]float32, gate []float32) [][]float32 {
	out := make([][]float32, len(x))
	for i := range x {
		out[i] = make([]float32, len(x[i]))
		for j := range x[i] {
			out[i][j] = x[i][j] + gate[j]*y[i][j]
		}
	}
	return out
}

// feedForward is net.2(gelu_tanh(net.0.proj(x))).
func (r refParams) feedForward(x [][]float32, prefix string) [][]float32 {
	h := r.linear(x, prefix+".net.0.proj")
	for _, row := range h {
		for j, e := range row {
			u := float64(e)
			row[j] = float32(0.5 * u * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(u+0.044715*u*u*u))))
		}
	}
	return r.linear(h, prefix+".net.2")
}

// chunks splits the adaLN embedding silu(temb)·Wᵀ + b into n pieces.
func (r refParams) chunks(temb []float32, prefix string, n int) [][]float32 {
	s := make([]float32, len(temb))
	for i, e := range temb {
		s[i] = float32(float64(e) / (1 + math.Exp(-float64(e))))
	}
	emb := r.linear([][]float32{s}, prefix)[0]
	d := len(emb) / n
	out := make([][]float32, n)
	for i := range out {
		out[i] = emb[i*d : (i+1)*d]
	}
	return out
}

// refDualBlock is diffusers' JointTransformerBlock with qk_norm "rms_norm",
// use_dual_attention True and context_pre_only False for one sample,
// written out from attention.py, normalization.py (SD35AdaLayerNormZeroX:
// shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp,
// shift_msa2, scale_msa2, gate_msa2) and JointAttnProcessor2_0.
func refDualBlock(r refParams, x, ctx [][]float32, temb []float32, heads int) (ctxOut, xOut [][]float32) {
	hd := len(x[0]) / heads
	m := r.chunks(temb, "norm1.linear", 9)
	c := r.chunks(temb, "norm1_context.linear", 6)
	nx, nx2 := modulated(x, m[0], m[1]), modulated(x, m[6], m[7])
	nc := modulated(ctx, c[0], c[1])
	q := append(rmsHeads(r.linear(nx, "attn.to_q"), hd, r["attn.norm_q.weight"]),
		rmsHeads(r.linear(nc, "attn.add_q_proj"), hd, r["attn.norm_added_q.weight"])...)
	k := append(rmsHeads(r.linear(nx, "attn.to_k"), hd, r["attn.norm_k.weight"]),
		rmsHeads(r.linear(nc, "attn.add_k_proj"), hd, r["attn.norm_added_k.weight"])...)
	v := append(r.linear(nx, "attn.to_v"), r.linear(nc, "attn.add_v_proj")...)
	o := softmaxAttention(q, k, v, heads)
	n := len(x)
	x = gatedAdd(x, r.linear(o[:n], "attn.to_out.0"), m[2])
	q2 := rmsHeads(r.linear(nx2, "attn2.to_q"), hd, r["attn2.norm_q.weight"])
	k2 := rmsHeads(r.linear(nx2, "attn2.to_k"), hd, r["attn2.norm_k.weight"])
	o2 := softmaxAttention(q2, k2, r.linear(nx2, "attn2.to_v"), heads)
	x = gatedAdd(x, r.linear(o2, "attn2.to_out.0"), m[8])
	x = gatedAdd(x, r.feedForward(modulated(x, m[3], m[4]), "ff"), m[5])
	ctx = gatedAdd(ctx, r.linear(o[n:], "attn.to_add_out"), c[2])
	ctx = gatedAdd(ctx, r.feedForward(modulated(ctx, c[3], c[4]), "ff_context"), c[5])
	return ctx, x
}

// rows cuts sample b of a [B, L, D] value slice into L rows.
func rows(v []float32, b, l, d int) [][]float32 {
	out := make([][]float32, l)
	for i := range out {
		out[i] = v[(b*l+i)*d : (b*l+i+1)*d]
	}
	return out
}

// One SD3.5 Medium block (dual attention, qk norms) of width 8 in two
// heads, two samples with different conditionings, against refDualBlock:
// a wrong chunk order, a missing or exchanged norm, or attn2 reading the
// wrong input moves the outputs by far more than the 1e-4 allowed.
func TestDualAttentionBlockReference(t *testing.T) {
	const d, heads, n, l, batch = 8, 2, 3, 2, 2
	b := NewJointBlock(d, heads, BlockOptions{QKNorm: true, DualAttention: true})
	r := randomizeParams(b, 11)
	vals := func(k int, seed float64) []float32 {
		v := make([]float32, k)
		for i := range v {
			v[i] = float32(math.Sin(seed*float64(i+1)) * 1.5)
		}
		return v
	}
	xv, cv, tv := vals(batch*n*d, 0.7), vals(batch*l*d, 1.3), vals(batch*d, 2.1)
	ctxOut, xOut := b.Forward(tensor.FromSlice(xv, batch, n, d), tensor.FromSlice(cv, batch, l, d), tensor.FromSlice(tv, batch, d))
	for s := 0; s < batch; s++ {
		wc, wx := refDualBlock(r, rows(xv, s, n, d), rows(cv, s, l, d), tv[s*d:(s+1)*d], heads)
		compareRows(t, "image", rows(xOut.Data(), s, n, d), wx)
		compareRows(t, "text", rows(ctxOut.Data(), s, l, d), wc)
	}
}

func compareRows(t *testing.T, what string, got, want [][]float32) {
	t.Helper()
	for i := range want {
		for j := range want[i] {
			if e := math.Abs(float64(got[i][j] - want[i][j])); e > 1e-4*math.Max(1, math.Abs(float64(want[i][j]))) {
				t.Fatalf("%s row %d col %d: %v, reference %v", what, i, j, got[i][j], want[i][j])
			}
		}
	}
}
