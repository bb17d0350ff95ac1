package toy

import (
	"context"
	"fmt"
	"image"
	"io"
	"math/rand/v2"
	"sort"
)

// EvalSet is the fixed evaluation prompt set: seen combinations (a
// seeded sample of n of those training shows, balanced by cycling through
// shapes, colours, sizes and positions) and every held-out (colour, shape,
// position) triple at both sizes on one background each.
func EvalSet(n int) []Attrs {
	r := rand.New(rand.NewPCG(2024, 14))
	var seen []Attrs
	for i := 0; len(seen) < n; i++ {
		a := Attrs{Shape: Shapes[i%len(Shapes)], Colour: Colours[(i/len(Shapes))%len(Colours)],
			Size: Sizes[i%len(Sizes)], Position: Positions[i%len(Positions)], Background: Backgrounds[r.IntN(len(Backgrounds))]}
		if !a.IsHeldOut() {
			seen = append(seen, a)
		}
	}
	out := seen
	for i, h := range HeldOut {
		for j, s := range Sizes {
			out = append(out, Attrs{Shape: h.Shape, Colour: h.Colour, Position: h.Position, Size: s,
				Background: Backgrounds[(i+j)%len(Backgrounds)]})
		}
	}
	return out
}

// Generate makes one image for a prompt and seed.
type Generate func(ctx context.Context, prompt string, seed int64) (image.Image, error)

// Sample is one evaluated image.
type Sample struct {
	Want  Attrs
	Got   Analysis
	Seed  int64
	Image image.Image
}

// Report is the per-attribute accuracy of an evaluation.
type Report struct {
	Samples []Sample
}

// Attributes are the scored attributes, in report order.
var Attributes = []string{"colour", "position", "shape", "size", "background"}

func field(a Attrs, name string) string {
	switch name {
	case "colour":
		return a.Colour
	case "position":
		return a.Position
	case "shape":
		return a.Shape
	case "size":
		return a.Size
	}
	return a.Background
}

// Evaluate generates seeds images per prompt of set (seeds 0, 1, ...)
// and analyses each; onSample, when non-nil, sees every sample as it is
// scored.
func Evaluate(ctx context.Context, set []Attrs, seeds int, gen Generate, onSample func(Sample)) (*Report, error) {
	rep := &Report{}
	for _, a := range set {
		for s := range seeds {
			img, err := gen(ctx, a.Caption(), int64(s))
			if err != nil {
				return nil, fmt.Errorf("toy: evaluating %q: %w", a.Caption(), err)
			}
			smp := Sample{Want: a, Got: Analyse(img), Seed: int64(s), Image: img}
			rep.Samples = append(rep.Samples, smp)
			if onSample != nil {
				onSample(smp)
			}
		}
	}
	return rep, nil
}

// Accuracy is the fraction of samples (held out or seen) whose analysed
// attribute matches the prompt, and their count.
func (r *Report) Accuracy(attr string, heldOut bool) (float64, int) {
	n, ok := 0, 0
	for _, s := range r.Samples {
		if s.Want.IsHeldOut() != heldOut {
			continue
		}
		n++
		if field(s.Got.Attrs, attr) == field(s.Want, attr) {
			ok++
		}
	}
	if n == 0 {
		return 0, 0
	}
	return float64(ok) / float64(n), n
}

// Write prints the accuracy table.
func (r *Report) Write(w io.Writer) {
	seenN, heldN := 0, 0
	for _, s := range r.Samples {
		if s.Want.IsHeldOut() {
			heldN++
		} else {
			seenN++
		}
	}
	fmt.Fprintf(w, "%-11s %8s %8s\n", "attribute", "seen", "held-out")
	for _, a := range Attributes {
		s, _ := r.Accuracy(a, false)
		h, _ := r.Accuracy(a, true)
		fmt.Fprintf(w, "%-11s %7.1f%% %7.1f%%\n", a, 100*s, 100*h)
	}
	fmt.Fprintf(w, "(%d seen images, %d held-out)\n", seenN, heldN)
}

// Confusions lists, per attribute, the most frequent (want → got) errors.
func (r *Report) Confusions(attr string) []string {
	c := map[string]int{}
	for _, s := range r.Samples {
		if w, g := field(s.Want, attr), field(s.Got.Attrs, attr); w != g {
			c[w+"→"+g]++
		}
	}
	var out []string
	for k, v := range c {
		out = append(out, fmt.Sprintf("%s ×%d", k, v))
	}
	sort.Strings(out)
	return out
}
