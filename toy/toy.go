// Package toy is the captioned shapes world that diffuse's embedded
// default model is trained on and evaluated in: a deterministic, seeded,
// unbounded generator of small RGB images of one shape (circle, square,
// triangle) in a colour, size and position on a plain background, each
// with its caption ("a large red circle on the left, gray background"), and
// an analyser that reads those attributes back from any image by simple
// geometric measures, so that what a model generates can be scored.
//
// Some attribute combinations (HeldOut) never appear in training data;
// evaluation prompts them to measure whether the model composes attributes
// it only saw apart.
package toy

import (
	"fmt"
	"image"
	"image/color"
	"math/rand/v2"
)

// Shapes, colours, sizes, positions and backgrounds of the toy world, in
// the words captions use.
var (
	Shapes      = []string{"circle", "square", "triangle"}
	Colours     = []string{"red", "green", "blue", "yellow"}
	Sizes       = []string{"small", "large"}
	Positions   = []string{"left", "right", "top", "bottom", "center"}
	Backgrounds = []string{"white", "black", "gray"}
)

// NewShapes are shapes the generator can draw but training data never
// shows: a DreamBooth run teaches one of them to the trained model.
var NewShapes = []string{"cross"}

// Palette maps every colour name of the world (foreground and background)
// to the RGB the generator paints it with.
var Palette = map[string]color.NRGBA{
	"red":    {220, 40, 40, 255},
	"green":  {40, 170, 60, 255},
	"blue":   {40, 70, 220, 255},
	"yellow": {235, 215, 40, 255},
	"white":  {245, 245, 245, 255},
	"black":  {15, 15, 15, 255},
	"gray":   {128, 128, 128, 255},
}

// Attrs are one image's attributes.
type Attrs struct {
	Shape, Colour, Size, Position, Background string
}

// Caption is the attributes in words, the text the model is trained on.
// An empty Position (a shape placed freely) leaves the position out.
func (a Attrs) Caption() string {
	if a.Position == "" {
		return fmt.Sprintf("a %s %s %s, %s background", a.Size, a.Colour, a.Shape, a.Background)
	}
	return fmt.Sprintf("a %s %s %s %s, %s background", a.Size, a.Colour, a.Shape, positionPhrase[a.Position], a.Background)
}

// positionPhrase words a position as a caption does.
var positionPhrase = map[string]string{"left": "on the left", "right": "on the right", "top": "at the top",
	"bottom": "at the bottom", "center": "in the center"}

// HeldOut are the (colour, shape, position) triples that training data
// never shows, at any size or background: they test composition.
var HeldOut = []Attrs{
	{Colour: "red", Shape: "triangle", Position: "left"},
	{Colour: "blue", Shape: "circle", Position: "top"},
	{Colour: "green", Shape: "square", Position: "right"},
	{Colour: "yellow", Shape: "circle", Position: "bottom"},
	{Colour: "green", Shape: "triangle", Position: "center"},
}

// IsHeldOut reports whether a's colour, shape and position form a
// held-out triple.
func (a Attrs) IsHeldOut() bool {
	for _, h := range HeldOut {
		if h.Colour == a.Colour && h.Shape == a.Shape && h.Position == a.Position {
			return true
		}
	}
	return false
}

// All lists every attribute combination of the world in a fixed order.
func All() []Attrs {
	var out []Attrs
	for _, s := range Shapes {
		for _, c := range Colours {
			for _, z := range Sizes {
				for _, p := range Positions {
					for _, b := range Backgrounds {
						out = append(out, Attrs{Shape: s, Colour: c, Size: z, Position: p, Background: b})
					}
				}
			}
		}
	}
	return out
}

// Generator draws the examples of one seeded, unbounded dataset: example i
// depends only on the seed, i and the resolution.
type Generator struct {
	Seed uint64
	// Resolution is the square image size in pixels (16 or more).
	Resolution int
	// IncludeHeldOut also draws the held-out combinations (for
	// evaluation); training data leaves them out.
	IncludeHeldOut bool
	// Shape, when set, gives every example this shape (one of Shapes or
	// NewShapes): DreamBooth instance images.
	Shape string
	// FreePosition places each shape anywhere it fits instead of at the
	// five named positions, and captions leave the position out
	// (ControlNet data, whose condition image says where).
	FreePosition bool
}

// Example is one generated image with its attributes.
type Example struct {
	Attrs
	Image *image.NRGBA
	// Jitter is how the shape was moved and scaled from its nominal
	// place (from the centre when Position is empty) and size.
	Jitter Jitter
}

// Example draws example i.
func (g Generator) Example(i uint64) (Example, error) {
	if g.Resolution < 16 {
		return Example{}, fmt.Errorf("toy: resolution %d is below 16", g.Resolution)
	}
	r := rand.New(rand.NewPCG(g.Seed, i))
	pick := func(l []string) string { return l[r.IntN(len(l))] }
	for {
		a := Attrs{Shape: pick(Shapes), Colour: pick(Colours), Size: pick(Sizes), Position: pick(Positions),
			Background: pick(Backgrounds)}
		if g.Shape != "" {
			a.Shape = g.Shape
		}
		if a.IsHeldOut() && !g.IncludeHeldOut {
			continue
		}
		// Jitter of up to a pixel or two in place and size, so that the
		// model learns regions rather than a few exact pictures.
		j := Jitter{DX: r.Float64()*3 - 1.5, DY: r.Float64()*3 - 1.5, Scale: 0.93 + 0.14*r.Float64()}
		// Free placement draws after the attributes, so that without it
		// example i is what it always was.
		if g.FreePosition {
			a, j = freePlace(r, a, g.Resolution)
		}
		img, err := Render(a, g.Resolution, j)
		return Example{Attrs: a, Image: img, Jitter: j}, err
	}
}

// freePlace moves a's shape to a uniformly drawn place where it fits
// (as an offset from the centre) and clears its named position.
func freePlace(r *rand.Rand, a Attrs, res int) (Attrs, Jitter) {
	half := extent[a.Size] / 2
	span := (0.5 - half - 0.03) * float64(res)
	j := Jitter{DX: (2*r.Float64() - 1) * span, DY: (2*r.Float64() - 1) * span, Scale: 0.93 + 0.14*r.Float64()}
	a.Position = ""
	return a, j
}

// Mask is the example's condition image for a placement ControlNet: its
// shape in white on black, where and as large as the example has it.
func (e Example) Mask() (*image.NRGBA, error) {
	a := e.Attrs
	a.Colour, a.Background = "white", "black"
	return Render(a, e.Image.Bounds().Dx(), e.Jitter)
}

// Jitter moves (in pixels) and scales a shape away from its nominal place
// and size.
type Jitter struct {
	DX, DY, Scale float64
}

// Geometry of the world as fractions of the image side: shape extents per
// size and centres per position.
var (
	extent  = map[string]float64{"small": 0.34, "large": 0.5}
	centres = map[string][2]float64{"left": {0.28, 0.5}, "right": {0.72, 0.5}, "top": {0.5, 0.28},
		"bottom": {0.5, 0.72}, "center": {0.5, 0.5}}
)

// supersample is the per-axis subpixel count of the anti-aliased render.
const supersample = 4

// Render paints a's shape on its background at res×res, anti-aliased.
func Render(a Attrs, res int, j Jitter) (*image.NRGBA, error) {
	fg, ok1 := Palette[a.Colour]
	bg, ok2 := Palette[a.Background]
	c, ok3 := centres[a.Position]
	if a.Position == "" {
		c, ok3 = [2]float64{0.5, 0.5}, true
	}
	e, ok4 := extent[a.Size]
	inside, ok5 := insideFuncs[a.Shape]
	if !(ok1 && ok2 && ok3 && ok4 && ok5) {
		return nil, fmt.Errorf("toy: unknown attribute in %+v", a)
	}
	if j.Scale == 0 {
		j.Scale = 1
	}
	n := float64(res)
	cx, cy, half := c[0]*n+j.DX, c[1]*n+j.DY, e*n*j.Scale/2
	img := image.NewNRGBA(image.Rect(0, 0, res, res))
	for y := 0; y < res; y++ {
		for x := 0; x < res; x++ {
			hits := 0
			for sy := 0; sy < supersample; sy++ {
				for sx := 0; sx < supersample; sx++ {
					px := (float64(x) + (float64(sx)+0.5)/supersample - cx) / half
					py := (float64(y) + (float64(sy)+0.5)/supersample - cy) / half
					if inside(px, py) {
						hits++
					}
				}
			}
			img.SetNRGBA(x, y, mix(bg, fg, float64(hits)/(supersample*supersample)))
		}
	}
	return img, nil
}

// insideFuncs test a point in shape coordinates (the shape spans [-1, 1]
// on both axes, y down).
var insideFuncs = map[string]func(x, y float64) bool{
	"circle": func(x, y float64) bool { return x*x+y*y <= 1 },
	"square": func(x, y float64) bool { return x >= -0.92 && x <= 0.92 && y >= -0.92 && y <= 0.92 },
	// An upward triangle: apex at the top centre, base along the bottom.
	"triangle": func(x, y float64) bool { return y <= 1 && y >= -1 && 2*x <= y+1 && -2*x <= y+1 },
	// A plus sign whose arms are a third of its span wide.
	"cross": func(x, y float64) bool {
		in := func(v float64) bool { return v >= -1 && v <= 1 }
		return in(x) && in(y) && (x >= -1.0/3 && x <= 1.0/3 || y >= -1.0/3 && y <= 1.0/3)
	},
}

func mix(a, b color.NRGBA, t float64) color.NRGBA {
	l := func(u, v uint8) uint8 { return uint8(float64(u)*(1-t) + float64(v)*t + 0.5) }
	return color.NRGBA{l(a.R, b.R), l(a.G, b.G), l(a.B, b.B), 255}
}

// CHW is img as [3, H, W] floats in [-1, 1], the layout and range the
// models train on.
func CHW(img *image.NRGBA) []float32 {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	out := make([]float32, 3*w*h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			p := img.NRGBAAt(b.Min.X+x, b.Min.Y+y)
			for c, v := range [3]uint8{p.R, p.G, p.B} {
				out[(c*h+y)*w+x] = float32(v)/127.5 - 1
			}
		}
	}
	return out
}
