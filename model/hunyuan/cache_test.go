package hunyuan

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

func randT(r *rand.Rand, shape ...int) *tensor.Tensor {
	x := tensor.Zeros(shape...)
	for i := range x.Data() {
		x.Data()[i] = float32(r.NormFloat64())
	}
	return x
}

// TestForwardCache checks the first-block cache in the Hunyuan forward
// (whose long skips start from the first block's output): no cache and a
// full step are the plain forward bit for bit; an unchanged input reuses
// the other blocks' residual and gives the same output up to rounding; a
// new input runs every block again.
func TestForwardCache(t *testing.T) {
	c, err := ParseConfig([]byte(`{"num_attention_heads": 2, "attention_head_dim": 8, "hidden_size": 16, "in_channels": 4,
		"patch_size": 2, "num_layers": 4, "cross_attention_dim": 8, "cross_attention_dim_t5": 8, "pooled_projection_dim": 8,
		"text_len": 4, "text_len_t5": 4, "sample_size": 8, "use_style_cond_and_image_meta_size": false}`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	nn.Init(m, 4, tensor.F32)
	r := rand.New(rand.NewPCG(3, 4))
	x := randT(r, 2, 4, 8, 8)
	cond := Cond{EncoderHiddenStates: randT(r, 2, 4, 8), EncoderHiddenStatesT5: randT(r, 2, 4, 8), Timesteps: []float32{300, 300}}
	want, err := m.Forward(x, cond)
	if err != nil {
		t.Fatal(err)
	}
	bc := &nn.BlockCache{Threshold: 0.05}
	cond.Cache = bc
	full, err := m.Forward(x, cond)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(full.Data(), want.Data()) || bc.Full != 1 {
		t.Fatalf("first step with a cache differs from the plain forward (full %d)", bc.Full)
	}
	again, err := m.Forward(x, cond)
	if err != nil {
		t.Fatal(err)
	}
	if bc.Reused != 1 {
		t.Errorf("an unchanged input ran every block (%+v)", bc)
	}
	for i, v := range want.Data() {
		if d := again.Data()[i] - v; d > 1e-4 || d < -1e-4 {
			t.Fatalf("reused step off by %g at %d", d, i)
		}
	}
	other := randT(r, 2, 4, 8, 8)
	got, err := m.Forward(other, cond)
	if err != nil {
		t.Fatal(err)
	}
	cond.Cache = nil
	plain, err := m.Forward(other, cond)
	if err != nil {
		t.Fatal(err)
	}
	if bc.Full != 2 || !slices.Equal(got.Data(), plain.Data()) {
		t.Errorf("a new input: %+v, output equal to the plain forward %v; want a full step", bc, slices.Equal(got.Data(), plain.Data()))
	}
}
