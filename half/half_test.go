package half

import (
	"math"
	"testing"
)

func TestF16RoundTripAllValues(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := F16ToF32(h)
		if f != f { // NaN
			if g := F16ToF32(F32ToF16(f)); g == g {
				t.Fatalf("NaN %#04x did not stay NaN", h)
			}
			continue
		}
		if back := F32ToF16(f); back != h {
			t.Fatalf("%#04x -> %v -> %#04x", h, f, back)
		}
	}
}

func TestF16KnownValues(t *testing.T) {
	cases := []struct {
		f float32
		h uint16
	}{
		{1, 0x3c00}, {-2, 0xc000}, {65504, 0x7bff}, {65520, 0x7c00}, {6.103515625e-05, 0x0400},
		{5.960464477539063e-08, 0x0001}, {2.9802322387695312e-08, 0x0000}, // tie rounds to even (0)
		{1.0009765625, 0x3c01}, {1.00048828125, 0x3c00}, // tie to even
		{float32(math.Inf(1)), 0x7c00},
	}
	for _, c := range cases {
		if got := F32ToF16(c.f); got != c.h {
			t.Errorf("F32ToF16(%v) = %#04x, want %#04x", c.f, got, c.h)
		}
	}
}

func TestBF16(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := BF16ToF32(h)
		if f != f {
			continue
		}
		if back := F32ToBF16(f); back != h {
			t.Fatalf("%#04x -> %v -> %#04x", h, f, back)
		}
	}
	// 1 + 2^-8 is a tie between 1 and 1+2^-7: rounds to even (1).
	if got := F32ToBF16(1 + 1.0/256); got != 0x3f80 {
		t.Errorf("tie: got %#04x", got)
	}
	if got := F32ToBF16(1 + 3.0/256); got != 0x3f82 {
		t.Errorf("tie up: got %#04x", got)
	}
}
