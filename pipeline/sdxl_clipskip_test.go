package pipeline

import (
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/tensor"
)

// fixedTokenizer turns every prompt into the same short id row (the tiny
// encoders' vocabulary is small), varied by the prompt's length.
type fixedTokenizer struct{}

func (fixedTokenizer) Encode(s string) []int64 {
	ids := make([]int64, 8)
	for i := range ids {
		ids[i] = int64((i*7 + len(s)) % 50)
	}
	return ids
}

// TestSDXLClipSkip checks which hidden states SDXL's prompt embeddings take:
// the penultimate layer of both encoders by default and for clip skip 2,
// hidden state -N for clip skip N >= 3, the pooled projection unchanged,
// and a clear error past the first layer.
func TestSDXLClipSkip(t *testing.T) {
	c, _, _ := tinySDXL(t, false)
	p := &SDXL{TextEncoder: c.TextEncoder, TextEncoder2: c.TextEncoder2, Tokenizer: fixedTokenizer{}, Tokenizer2: fixedTokenizer{}}
	prompts := []string{"a", "bb"}
	ids := func() []int64 {
		var all []int64
		for _, s := range prompts {
			all = append(all, fixedTokenizer{}.Encode(s)...)
		}
		return all
	}()
	o1, err := c.TextEncoder.Forward(ids, 2, 8)
	if err != nil {
		t.Fatal(err)
	}
	o2, err := c.TextEncoder2.Forward(ids, 2, 8)
	if err != nil {
		t.Fatal(err)
	}
	n1, n2 := len(o1.HiddenStates), len(o2.HiddenStates)
	if min(n1, n2) < 4 {
		t.Fatalf("the tiny encoders have %d and %d hidden states; the test needs 4", n1, n2)
	}
	for _, tc := range []struct{ skip, back int }{{0, 2}, {1, 2}, {2, 2}, {3, 3}} {
		emb, pooled, err := p.encodeXL(prompts, prompts, tc.skip)
		if err != nil {
			t.Fatalf("clip skip %d: %v", tc.skip, err)
		}
		want := tensor.Concat(2, o1.HiddenStates[n1-tc.back], o2.HiddenStates[n2-tc.back]).Data()
		got := emb.Data()
		if len(got) != len(want) {
			t.Fatalf("clip skip %d: %d values, want %d", tc.skip, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("clip skip %d: embeds[%d] = %v, want hidden state -%d's %v", tc.skip, i, got[i], tc.back, want[i])
			}
		}
		wp, gp := o2.TextEmbeds.Data(), pooled.Data()
		for i := range wp {
			if gp[i] != wp[i] {
				t.Fatalf("clip skip %d: pooled[%d] = %v, want %v", tc.skip, i, gp[i], wp[i])
			}
		}
	}
	// Hidden state 0 is the token embeddings, not a layer's output.
	if _, _, err := p.encodeXL(prompts, prompts, min(n1, n2)); err == nil || !strings.Contains(err.Error(), "clip skip") {
		t.Errorf("clip skip past the first layer: %v", err)
	}
}
