package nn

import (
	"strings"
	"testing"
)

// TestCheckActivation checks the names accepted and that a refused one is
// named in the error.
func TestCheckActivation(t *testing.T) {
	for _, a := range []string{"silu", "swish", "mish", "gelu", "relu"} {
		if err := CheckActivation("act_fn", a); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
	for _, a := range []string{"", "tanh", "SiLU", "gelu-approximate"} {
		if err := CheckActivation("act_fn", a); err == nil || !strings.Contains(err.Error(), "act_fn") {
			t.Errorf("%q: error %v, want one naming act_fn", a, err)
		}
	}
}

// TestFeedForwardActivationRefused checks that the block constructors
// refuse a feed-forward activation Forward would not know, instead of
// building a block that panics when run.
func TestFeedForwardActivationRefused(t *testing.T) {
	for _, act := range []string{"swiglu", "linear-silu", "relu"} {
		_, err := NewBasicTransformerBlock(BlockConfig{Dim: 8, Heads: 2, HeadDim: 4, ActivationFn: act})
		if err == nil || !strings.Contains(err.Error(), act) {
			t.Errorf("BasicTransformerBlock %q: error %v", act, err)
		}
		_, err = NewHunyuanDiTBlock(HunyuanBlockConfig{Dim: 8, Heads: 2, CrossAttentionDim: 4, ActivationFn: act})
		if err == nil || !strings.Contains(err.Error(), act) {
			t.Errorf("HunyuanDiTBlock %q: error %v", act, err)
		}
	}
	for _, act := range []string{"geglu", "geglu-approximate", "gelu", "gelu-approximate"} {
		if _, err := NewBasicTransformerBlock(BlockConfig{Dim: 8, Heads: 2, HeadDim: 4, ActivationFn: act}); err != nil {
			t.Errorf("BasicTransformerBlock %q: %v", act, err)
		}
	}
	if _, err := NewBasicTransformerBlock(BlockConfig{Dim: 8, Heads: 0, HeadDim: 4}); err == nil {
		t.Error("BasicTransformerBlock with 0 heads: no error")
	}
}
