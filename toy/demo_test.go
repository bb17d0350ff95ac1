package toy

import (
	"context"
	"image"
	"strings"
	"testing"
)

// TestShapeCounts feeds rendered images as a perfect generator would.
func TestShapeCounts(t *testing.T) {
	gen := func(_ context.Context, prompt string, seed int64) (image.Image, error) {
		shape := "circle"
		if strings.Contains(prompt, "sks") && seed%4 != 0 {
			shape = "cross"
		}
		return Render(Attrs{Shape: shape, Colour: "red", Size: "large", Position: "center", Background: "white"}, 32, Jitter{})
	}
	c, err := ShapeCounts(context.Background(), "a sks shape", 8, gen)
	if err != nil {
		t.Fatal(err)
	}
	if c["cross"] != 6 || c["circle"] != 2 {
		t.Errorf("counts %v, want cross 6, circle 2", c)
	}
	if got := FormatCounts(c); got != "cross 6, circle 2" {
		t.Errorf("FormatCounts %q", got)
	}
}

// TestEvaluatePlacement scores a generator that follows the mask exactly
// and one that always draws in the centre.
func TestEvaluatePlacement(t *testing.T) {
	set, err := PlacementSet(20)
	if err != nil {
		t.Fatal(err)
	}
	// Example i is generated with seed i.
	exact := func(_ context.Context, prompt string, mask image.Image, seed int64) (image.Image, error) {
		if mask == nil || prompt != set[seed].Caption() {
			t.Fatalf("seed %d: prompt %q, mask %v", seed, prompt, mask != nil)
		}
		return set[seed].Image, nil
	}
	p, err := EvaluatePlacement(context.Background(), set, true, exact)
	if err != nil {
		t.Fatal(err)
	}
	if p.N != 20 || p.Found != 20 || p.MeanError > 0.5 || p.Within2 != 1 || p.Shape < 0.95 {
		t.Errorf("exact generator scored %+v", p)
	}
	centre := func(_ context.Context, prompt string, mask image.Image, seed int64) (image.Image, error) {
		if mask != nil {
			t.Fatal("mask passed without useMask")
		}
		a := set[seed].Attrs
		a.Position = "center"
		return Render(a, Resolution, Jitter{})
	}
	q, err := EvaluatePlacement(context.Background(), set, false, centre)
	if err != nil {
		t.Fatal(err)
	}
	if q.MeanError < 2 || q.Within2 > 0.5 {
		t.Errorf("centre-only generator scored %+v", q)
	}
}
