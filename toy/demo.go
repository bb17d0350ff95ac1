package toy

import (
	"context"
	"fmt"
	"image"
	"io"
	"math"
	"sort"
	"strings"
)

// ShapeCounts generates seeds images of prompt (seeds 0, 1, ...) and
// counts the shapes the analyser reads in them ("none" where it finds no
// shape): how often a DreamBooth prompt gives its new shape.
func ShapeCounts(ctx context.Context, prompt string, seeds int, gen Generate) (map[string]int, error) {
	out := map[string]int{}
	for s := range seeds {
		img, err := gen(ctx, prompt, int64(s))
		if err != nil {
			return nil, fmt.Errorf("toy: %q: %w", prompt, err)
		}
		a := Analyse(img)
		if a.Shape == "" {
			a.Shape = "none"
		}
		out[a.Shape]++
	}
	return out, nil
}

// FormatCounts writes counts as "cross 17, circle 3" (most first).
func FormatCounts(c map[string]int) string {
	var keys []string
	for k := range c {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if c[keys[i]] != c[keys[j]] {
			return c[keys[i]] > c[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, c[k])
	}
	return strings.Join(parts, ", ")
}

// PlacementSeed seeds the placement evaluation's examples, apart from
// any seed training data is drawn with.
const PlacementSeed = 90210

// PlacementSet is the fixed placement evaluation: n freely placed shapes
// (their captions leave the position out; their masks say it).
func PlacementSet(n int) ([]Example, error) {
	g := Generator{Seed: PlacementSeed, Resolution: Resolution, FreePosition: true}
	out := make([]Example, n)
	for i := range out {
		var err error
		if out[i], err = g.Example(uint64(i)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// PlaceGenerate makes one image for a prompt, a placement mask (nil:
// none) and a seed.
type PlaceGenerate func(ctx context.Context, prompt string, mask image.Image, seed int64) (image.Image, error)

// Placement is how well generated shapes land where their masks say.
type Placement struct {
	N, Found int
	// MeanError is the mean distance, in pixels, between the centre of
	// each found shape's box and its mask's; Within2 the fraction of all
	// images whose shape lies within two pixels of it.
	MeanError, Within2 float64
	// Shape, Colour are the fractions with the caption's shape / colour.
	Shape, Colour float64
}

// EvaluatePlacement generates every example of set from its caption and
// (when useMask) its mask, with seed i for example i, and measures where
// the shapes land against the masks.
func EvaluatePlacement(ctx context.Context, set []Example, useMask bool, gen PlaceGenerate) (Placement, error) {
	var p Placement
	var sum float64
	var within, shape, colour int
	for i, ex := range set {
		m, err := ex.Mask()
		if err != nil {
			return p, err
		}
		var cond image.Image
		if useMask {
			cond = m
		}
		img, err := gen(ctx, ex.Caption(), cond, int64(i))
		if err != nil {
			return p, fmt.Errorf("toy: placing %q: %w", ex.Caption(), err)
		}
		p.N++
		a, want := Analyse(img), Analyse(m)
		if !a.Found {
			continue
		}
		p.Found++
		d := math.Hypot(a.CX-want.CX, a.CY-want.CY) * float64(Resolution)
		sum += d
		if d <= 2 {
			within++
		}
		if a.Shape == ex.Shape {
			shape++
		}
		if a.Colour == ex.Colour {
			colour++
		}
	}
	if p.Found > 0 {
		p.MeanError = sum / float64(p.Found)
	}
	if p.N > 0 {
		p.Within2, p.Shape, p.Colour = float64(within)/float64(p.N), float64(shape)/float64(p.N), float64(colour)/float64(p.N)
	}
	return p, nil
}

// Write prints the placement figures on one line, labelled.
func (p Placement) Write(w io.Writer, label string) {
	fmt.Fprintf(w, "%-18s %d images, shape found in %d: centre error %.2f px mean, %.0f%% within 2 px; shape %.0f%%, colour %.0f%%\n",
		label, p.N, p.Found, p.MeanError, 100*p.Within2, 100*p.Shape, 100*p.Colour)
}
