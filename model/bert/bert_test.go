package bert

import (
	"math"
	"testing"

	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

func tiny(t *testing.T) *Model {
	t.Helper()
	c, err := ParseConfig([]byte(`{"vocab_size": 20, "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2,
		"intermediate_size": 12, "max_position_embeddings": 10}`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	nn.Init(m, 3, tensor.F32)
	return m
}

// Masked padding must not change the states of the real tokens, and
// without a mask it must.
func TestMaskHidesPadding(t *testing.T) {
	m := tiny(t)
	short, err := m.Forward([]int64{2, 5, 7, 3}, nil, 1, 4)
	if err != nil {
		t.Fatal(err)
	}
	ids := []int64{2, 5, 7, 3, 0, 0}
	padded, err := m.Forward(ids, []int64{1, 1, 1, 1, 0, 0}, 1, 6)
	if err != nil {
		t.Fatal(err)
	}
	unmasked, err := m.Forward(ids, nil, 1, 6)
	if err != nil {
		t.Fatal(err)
	}
	d := m.Cfg.HiddenSize
	worst, moved := 0.0, 0.0
	for i, v := range short.LastHiddenState.Data() {
		worst = math.Max(worst, math.Abs(float64(v-padded.LastHiddenState.Data()[i])))
		moved = math.Max(moved, math.Abs(float64(v-unmasked.LastHiddenState.Data()[i])))
	}
	if worst > 1e-5 {
		t.Errorf("masked padding moved the real tokens by %g", worst)
	}
	if moved < 1e-4 {
		t.Errorf("unmasked padding left the real tokens unchanged (%g): the test cannot tell masking apart", moved)
	}
	if len(short.LastHiddenState.Data()) != 4*d || short.PoolerOutput == nil || short.PoolerOutput.Dim(1) != d {
		t.Errorf("shapes: last %v pooler %v", short.LastHiddenState.Shape(), short.PoolerOutput)
	}
}

func TestBadInput(t *testing.T) {
	m := tiny(t)
	if _, err := m.Forward([]int64{1, 2, 3}, nil, 1, 2); err == nil {
		t.Error("ids/shape mismatch accepted")
	}
	if _, err := m.Forward(make([]int64, 11), nil, 1, 11); err == nil {
		t.Error("more tokens than positions accepted")
	}
	if _, err := m.Forward([]int64{99}, nil, 1, 1); err == nil {
		t.Error("out-of-vocabulary id accepted")
	}
	if _, err := ParseConfig([]byte(`{"hidden_size": 10, "num_attention_heads": 3}`)); err == nil {
		t.Error("indivisible heads accepted")
	}
	if _, err := ParseConfig([]byte(`{"position_embedding_type": "relative_key"}`)); err == nil {
		t.Error("relative positions accepted")
	}
}
