package rng

import "testing"

// TestMarshalBinaryKeepsCachedNormal: unlike torch's get_state/set_state,
// MarshalBinary/UnmarshalBinary carry the serial path's cached second
// normal value, so draws continue exactly.
func TestMarshalBinaryKeepsCachedNormal(t *testing.T) {
	g := New(5)
	g.Randn([]int{3}) // odd count: one value stays cached
	b, err := g.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	want := g.Randn([]int{4})
	h := New(0)
	if err := h.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	got := h.Randn([]int{4})
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("draw %d after restoring: %g, want %g", i, got[i], want[i])
		}
	}
	if err := h.UnmarshalBinary(b[:10]); err == nil {
		t.Error("a truncated state restored")
	}
}

// TestRandIntRange checks the bounds and the empty-range error.
func TestRandIntRange(t *testing.T) {
	v, err := New(1).RandInt(-3, 4, 1000)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for _, x := range v {
		if x < -3 || x >= 4 {
			t.Fatalf("value %d outside [-3, 4)", x)
		}
		seen[x] = true
	}
	if len(seen) != 7 {
		t.Errorf("%d distinct values of 7", len(seen))
	}
	if _, err := New(1).RandInt(2, 2, 1); err == nil {
		t.Error("an empty range gave no error")
	}
}
