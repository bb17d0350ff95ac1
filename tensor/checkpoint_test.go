package tensor

import (
	"math/rand/v2"
	"testing"
)

func randTensor(r *rand.Rand, shape ...int) *Tensor {
	t := New(shape...)
	for i := range t.f32 {
		t.f32[i] = float32(r.NormFloat64())
	}
	return t
}

// TestCheckpointGradients: a checkpointed two-layer block gives its input
// and the parameters it closes over the same gradients, bit for bit, as
// the block recorded op by op; its forward keeps no graph inside.
func TestCheckpointGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	x0 := randTensor(r, 4, 8)
	w1, b1, w2 := randTensor(r, 16, 8), randTensor(r, 16), randTensor(r, 8, 16)
	block := func(in ...*Tensor) *Tensor { return Linear(Tanh(Linear(in[0], w1, b1)), w2, nil) }
	run := func(ckpt bool) (dx, dw1, db1, dw2 []float32, out *Tensor) {
		x := x0.Detach().Clone().SetRequiresGrad(true)
		for _, p := range []*Tensor{w1, b1, w2} {
			p.ZeroGrad()
			p.SetRequiresGrad(true)
		}
		h := Tanh(x)
		if ckpt {
			out = Checkpoint(block, h)
		} else {
			out = block(h)
		}
		Sum(Mul(out, out)).Backward()
		return x.Grad().Data(), w1.Grad().Data(), b1.Grad().Data(), w2.Grad().Data(), out
	}
	ax, aw1, ab1, aw2, _ := run(false)
	bx, bw1, bb1, bw2, out := run(true)
	if out.node == nil || len(out.node.inputs) != 1 || out.node.inputs[0].node == nil {
		t.Fatal("the checkpointed output is not one node on the block's input")
	}
	for name, pair := range map[string][2][]float32{"x": {ax, bx}, "w1": {aw1, bw1}, "b1": {ab1, bb1}, "w2": {aw2, bw2}} {
		if len(pair[0]) == 0 || len(pair[0]) != len(pair[1]) {
			t.Fatalf("%s: %d and %d gradient values", name, len(pair[0]), len(pair[1]))
		}
		for i := range pair[0] {
			if pair[0][i] != pair[1][i] {
				t.Fatalf("%s[%d]: %g with checkpointing, %g without", name, i, pair[1][i], pair[0][i])
			}
		}
	}
}

// TestNoGrad: inside NoGrad nothing is recorded, even from parameters;
// Checkpoint there is the plain call.
func TestNoGrad(t *testing.T) {
	w := Full(2, 3).SetRequiresGrad(true)
	var a, b *Tensor
	NoGrad(func() {
		a = Mul(w, w)
		b = Checkpoint(func(in ...*Tensor) *Tensor { return Mul(in[0], w) }, w)
	})
	if a.RequiresGrad() || a.node != nil || b.RequiresGrad() || b.node != nil {
		t.Fatal("NoGrad recorded a graph")
	}
	if c := Mul(w, w); !c.RequiresGrad() || c.node == nil {
		t.Fatal("recording did not resume after NoGrad")
	}
}
