package toy

import (
	"bufio"
	"fmt"
	"image"
	"image/color"
	"io"
	"math"
	"strconv"
	"strings"
)

// Point is one logged training step.
type Point struct {
	Step float64
	Loss float64
}

// ReadLossLog reads the "step loss ..." lines that training writes (tab or
// space separated; other columns and blank lines ignored).
func ReadLossLog(r io.Reader) ([]Point, error) {
	var out []Point
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("toy: loss log line %d: want step and loss", line)
		}
		s, err1 := strconv.ParseFloat(f[0], 64)
		l, err2 := strconv.ParseFloat(f[1], 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("toy: loss log line %d: %q is not numbers", line, sc.Text())
		}
		out = append(out, Point{s, l})
	}
	return out, sc.Err()
}

// PlotLoss draws a loss curve on a logarithmic loss axis: every step as a
// light dot and an exponential moving average (weight 1-smooth on the new
// value) as a line, with tick labels on both axes.
func PlotLoss(pts []Point, w, h int, smooth float64) (*image.NRGBA, error) {
	if len(pts) < 2 {
		return nil, fmt.Errorf("toy: plot needs at least 2 points, got %d", len(pts))
	}
	if w < 120 || h < 80 {
		return nil, fmt.Errorf("toy: plot size %dx%d is below 120x80", w, h)
	}
	x0, x1 := pts[0].Step, pts[len(pts)-1].Step
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range pts {
		if p.Loss > 0 {
			lo, hi = math.Min(lo, p.Loss), math.Max(hi, p.Loss)
		}
	}
	if x1 <= x0 || !(hi > lo) {
		return nil, fmt.Errorf("toy: plot: steps or losses do not vary")
	}
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	fill(img, img.Bounds(), color.NRGBA{255, 255, 255, 255})
	const left, right, top, bottom = 44, 10, 10, 22
	pw, ph := w-left-right, h-top-bottom
	ly0, ly1 := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	px := func(s float64) int { return left + int(math.Round((s-x0)/(x1-x0)*float64(pw-1))) }
	py := func(l float64) int {
		return top + int(math.Round((ly1-math.Log10(l))/(ly1-ly0)*float64(ph-1)))
	}
	grid, axis := color.NRGBA{225, 225, 225, 255}, color.NRGBA{60, 60, 60, 255}
	for e := ly0; e <= ly1; e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if v < math.Pow(10, ly0) || v > math.Pow(10, ly1) {
				continue
			}
			y := py(v)
			fill(img, image.Rect(left, y, left+pw, y+1), grid)
			text(img, left-4-textWidth(tickLabel(v)), y-2, tickLabel(v), axis)
		}
	}
	step := niceStep((x1 - x0) / 5)
	for s := math.Ceil(x0/step) * step; s <= x1; s += step {
		x := px(s)
		fill(img, image.Rect(x, top, x+1, top+ph), grid)
		l := strconv.FormatFloat(s, 'f', -1, 64)
		text(img, x-textWidth(l)/2, top+ph+5, l, axis)
	}
	fill(img, image.Rect(left, top, left+1, top+ph), axis)
	fill(img, image.Rect(left, top+ph-1, left+pw, top+ph), axis)
	ema := 0.0
	prevX, prevY := -1, -1
	for i, p := range pts {
		if p.Loss <= 0 {
			continue
		}
		img.SetNRGBA(px(p.Step), py(p.Loss), color.NRGBA{170, 190, 230, 255})
		if i == 0 {
			ema = p.Loss
		} else {
			ema = smooth*ema + (1-smooth)*p.Loss
		}
		x, y := px(p.Step), py(ema)
		if prevX >= 0 {
			line(img, prevX, prevY, x, y, color.NRGBA{200, 40, 40, 255})
		}
		prevX, prevY = x, y
	}
	return img, nil
}

func tickLabel(v float64) string { return strconv.FormatFloat(v, 'g', 3, 64) }

// niceStep rounds a step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func fill(img *image.NRGBA, r image.Rectangle, c color.NRGBA) {
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.SetNRGBA(x, y, c)
		}
	}
}

// line draws a 1-pixel line (Bresenham).
func line(img *image.NRGBA, x0, y0, x1, y1 int, c color.NRGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		img.SetNRGBA(x0, y0, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		if 2*e >= dy {
			e += dy
			x0 += sx
		}
		if 2*e <= dx {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}

// glyphs is a 3×5 pixel font for tick labels: each row's bits, high bit
// on the left.
var glyphs = map[rune][5]uint8{
	'0': {7, 5, 5, 5, 7}, '1': {2, 6, 2, 2, 7}, '2': {7, 1, 7, 4, 7}, '3': {7, 1, 7, 1, 7},
	'4': {5, 5, 7, 1, 1}, '5': {7, 4, 7, 1, 7}, '6': {7, 4, 7, 5, 7}, '7': {7, 1, 1, 1, 1},
	'8': {7, 5, 7, 5, 7}, '9': {7, 5, 7, 1, 7}, '.': {0, 0, 0, 0, 2}, '-': {0, 0, 7, 0, 0},
	'e': {0, 7, 7, 4, 7}, '+': {0, 2, 7, 2, 0},
}

func textWidth(s string) int { return 4 * len(s) }

// text draws s with its top-left corner at (x, y).
func text(img *image.NRGBA, x, y int, s string, c color.NRGBA) {
	for i, r := range s {
		g := glyphs[r]
		for row := range 5 {
			for col := range 3 {
				if g[row]&(4>>col) != 0 {
					img.SetNRGBA(x+4*i+col, y+row, c)
				}
			}
		}
	}
}
