package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/diffuse-go/diffuse/imageio"
)

// runPlot is "diffuse plot LOG -o loss.png": the loss curve of a training
// log (output_dir/logs/loss.jsonl).
func runPlot(args []string) error {
	fs := flag.NewFlagSet("plot", flag.ContinueOnError)
	out := fs.String("o", "loss.png", "output PNG")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: diffuse plot LOG.jsonl [-o loss.png]")
		fs.PrintDefaults()
	}
	// The log may come before or after the flags.
	var logPath string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		logPath, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if logPath == "" && fs.NArg() > 0 {
		logPath = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return fmt.Errorf("plot: unexpected arguments %q", fs.Args())
	}
	if logPath == "" {
		return errors.New("plot: no log file given (diffuse plot output_dir/logs/loss.jsonl -o loss.png)")
	}
	if err := plotFile(logPath, *out); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	fmt.Fprintln(os.Stderr, "wrote", *out)
	return nil
}

// plotFile draws the loss curve of the log at logPath into a PNG.
func plotFile(logPath, out string) error {
	steps, losses, err := readLossLog(logPath)
	if err != nil {
		return err
	}
	return imageio.WritePNG(out, plotLoss(steps, losses, 800, 480), nil)
}

// readLossLog reads a loss.jsonl, keeping the last line of each step (a
// resumed run logs the steps after its checkpoint again), in step order.
func readLossLog(path string) (steps []int, losses []float64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	byStep := map[int]float64{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" {
			continue
		}
		var e lossEntry
		if err := json.Unmarshal([]byte(s), &e); err != nil {
			return nil, nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		byStep[e.Step] = e.Loss
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	if len(byStep) == 0 {
		return nil, nil, fmt.Errorf("%s holds no steps", path)
	}
	for s := range byStep {
		steps = append(steps, s)
	}
	sort.Ints(steps)
	for _, s := range steps {
		losses = append(losses, byStep[s])
	}
	return steps, losses, nil
}

var (
	plotBG     = color.NRGBA{255, 255, 255, 255}
	plotAxis   = color.NRGBA{40, 40, 40, 255}
	plotGrid   = color.NRGBA{225, 225, 225, 255}
	plotRaw    = color.NRGBA{150, 190, 235, 255}
	plotSmooth = color.NRGBA{20, 70, 170, 255}
)

// plotLoss draws loss against step: grid, axes with labelled ticks, the
// raw curve (light) and its exponential moving average (dark, weight 0.9
// as TensorBoard's smoothing).
func plotLoss(steps []int, losses []float64, w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	fill(img, img.Bounds(), plotBG)
	const left, right, top, bottom = 70, 20, 20, 50
	pw, ph := w-left-right, h-top-bottom
	x0, x1 := float64(steps[0]), float64(steps[len(steps)-1])
	if x1 == x0 {
		x1 = x0 + 1
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, l := range losses {
		if !math.IsNaN(l) && !math.IsInf(l, 0) {
			lo, hi = math.Min(lo, l), math.Max(hi, l)
		}
	}
	if math.IsInf(lo, 0) {
		lo, hi = 0, 1
	}
	yt := niceTicks(lo, hi, 6)
	lo, hi = math.Min(lo, yt[0]), math.Max(hi, yt[len(yt)-1])
	if hi == lo {
		hi = lo + 1
	}
	px := func(s float64) int { return left + int(math.Round((s-x0)/(x1-x0)*float64(pw))) }
	py := func(l float64) int { return top + ph - int(math.Round((l-lo)/(hi-lo)*float64(ph))) }
	for _, v := range yt {
		y := py(v)
		line(img, left, y, left+pw, y, plotGrid)
		line(img, left-4, y, left, y, plotAxis)
		s := tickLabel(v)
		text(img, left-8-textWidth(s), y-textHeight/2, s, plotAxis)
	}
	for _, v := range niceTicks(x0, x1, 8) {
		if v < x0 || v > x1 {
			continue
		}
		x := px(v)
		line(img, x, top, x, top+ph, plotGrid)
		line(img, x, top+ph, x, top+ph+4, plotAxis)
		s := tickLabel(v)
		text(img, x-textWidth(s)/2, top+ph+8, s, plotAxis)
	}
	line(img, left, top, left, top+ph, plotAxis)
	line(img, left, top+ph, left+pw, top+ph, plotAxis)
	text(img, left+pw/2-textWidth("step")/2, h-16, "step", plotAxis)
	text(img, 6, top, "loss", plotAxis)
	curve := func(ys []float64, c color.NRGBA) {
		for i := 1; i < len(ys); i++ {
			line(img, px(float64(steps[i-1])), py(ys[i-1]), px(float64(steps[i])), py(ys[i]), c)
		}
		if len(ys) == 1 {
			fill(img, image.Rect(px(float64(steps[0]))-1, py(ys[0])-1, px(float64(steps[0]))+2, py(ys[0])+2), c)
		}
	}
	curve(losses, plotRaw)
	smooth := make([]float64, len(losses))
	for i, l := range losses {
		smooth[i] = l
		if i > 0 {
			smooth[i] = 0.9*smooth[i-1] + 0.1*l
		}
	}
	curve(smooth, plotSmooth)
	return img
}

// niceTicks are about n round values (1, 2 or 5 × 10^k apart) covering
// [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	if hi <= lo {
		hi = lo + 1
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []float64
	// From the last multiple of step at or below lo to the first at or
	// above hi.
	first, last := math.Floor(lo/step+1e-9), math.Ceil(hi/step-1e-9)
	for k := first; k <= last; k++ {
		out = append(out, k*step)
	}
	return out
}

func tickLabel(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e7 {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func fill(img *image.NRGBA, r image.Rectangle, c color.NRGBA) {
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.SetNRGBA(x, y, c)
		}
	}
}

// line draws a one-pixel line (Bresenham).
func line(img *image.NRGBA, x0, y0, x1, y1 int, c color.NRGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		img.SetNRGBA(x0, y0, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
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
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}

// glyphs is a 3×5 pixel font for tick labels and axis names: each row is 3
// bits, the top row first.
var glyphs = map[rune][5]uint8{
	'0': {7, 5, 5, 5, 7}, '1': {2, 6, 2, 2, 7}, '2': {7, 1, 7, 4, 7}, '3': {7, 1, 7, 1, 7},
	'4': {5, 5, 7, 1, 1}, '5': {7, 4, 7, 1, 7}, '6': {7, 4, 7, 5, 7}, '7': {7, 1, 1, 1, 1},
	'8': {7, 5, 7, 5, 7}, '9': {7, 5, 7, 1, 7}, '.': {0, 0, 0, 0, 2}, '-': {0, 0, 7, 0, 0},
	'+': {0, 2, 7, 2, 0}, 'e': {7, 5, 7, 4, 7}, 's': {7, 4, 7, 1, 7}, 't': {4, 7, 4, 4, 7},
	'p': {7, 5, 7, 4, 4}, 'l': {4, 4, 4, 4, 7}, 'o': {0, 7, 5, 5, 7},
}

// The font is drawn at scale 2: 6×10 pixels a glyph, 2 pixels apart.
const (
	glyphScale   = 2
	glyphAdvance = 4 * glyphScale
	textHeight   = 5 * glyphScale
)

func textWidth(s string) int { return len(s)*glyphAdvance - glyphScale }

func text(img *image.NRGBA, x, y int, s string, c color.NRGBA) {
	for _, r := range s {
		g := glyphs[r]
		for row := 0; row < 5; row++ {
			for col := 0; col < 3; col++ {
				if g[row]&(4>>col) != 0 {
					fill(img, image.Rect(x+col*glyphScale, y+row*glyphScale, x+(col+1)*glyphScale, y+(row+1)*glyphScale), c)
				}
			}
		}
		x += glyphAdvance
	}
}
