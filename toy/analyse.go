package toy

import (
	"image"
	"image/color"
	"math"
	"sort"
)

// Analysis is what Analyse reads from an image: the attributes (empty
// strings where no shape was found) and the measures they come from.
type Analysis struct {
	Attrs
	// Found is false when nothing stands out from the background.
	Found bool
	// Fill is the shape's area over its bounding box's; CX, CY the
	// bounding box centre and Extent its longer side, as fractions of the
	// image side.
	Fill, CX, CY, Extent float64
	// Corners is the filled fraction of the bounding box's four corner
	// cells (of a 3×3 grid): a cross leaves them empty, a triangle fills
	// its bottom two.
	Corners float64
}

// Thresholds of the analyser, as fractions of the image side (positions,
// sizes) or of the bounding box (fill). They sit halfway between the
// generator's nominal values.
const (
	centreBand   = 0.11  // |offset| below this is "center" (others lie 0.22 off)
	largeExtent  = 0.395 // small shapes span at most 0.36, large ones at least 0.43
	squareFill   = 0.9   // a square fills its box (1), a circle π/4
	triangleFill = 0.64  // a triangle fills half its box
	minContrast  = 60    // RGB distance below which nothing stands out
	crossCorners = 0.3   // a cross fills its corner cells at most 0.24, a triangle at least 0.37
)

// Analyse reads the shape, colour, size, position and background of img
// deterministically: the background is the median colour of the border;
// the shape is the largest 4-connected region of pixels at least halfway
// (in RGB distance) from the background to the most distant pixel; its
// colour is the palette colour nearest its core pixels, its position the
// offset of its bounding box centre from the image centre, its size the
// longer side of the box and its kind the fraction of the box it fills.
func Analyse(img image.Image) Analysis {
	px := pixels(img)
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	bg := borderMedian(px, w, h)
	a := Analysis{Attrs: Attrs{Background: nearest(bg, Backgrounds)}}
	dist := make([]float64, len(px))
	maxd := 0.0
	for i, p := range px {
		dist[i] = rgbDist(p, bg)
		maxd = math.Max(maxd, dist[i])
	}
	if maxd < minContrast {
		return a
	}
	comp := largestComponent(dist, w, h, maxd/2)
	if len(comp) == 0 {
		return a
	}
	x0, y0, x1, y1 := w, h, -1, -1
	var core [3]float64
	nCore := 0
	for _, i := range comp {
		x, y := i%w, i/w
		x0, y0, x1, y1 = min(x0, x), min(y0, y), max(x1, x), max(y1, y)
		if dist[i] >= 0.75*maxd {
			core[0], core[1], core[2] = core[0]+px[i][0], core[1]+px[i][1], core[2]+px[i][2]
			nCore++
		}
	}
	bw, bh := float64(x1-x0+1), float64(y1-y0+1)
	n := float64(max(w, h))
	a.Found = true
	a.Fill = float64(len(comp)) / (bw * bh)
	a.CX, a.CY = (float64(x0+x1+1)/2)/float64(w), (float64(y0+y1+1)/2)/float64(h)
	a.Extent = math.Max(bw, bh) / n
	a.Colour = nearest([3]float64{core[0] / float64(nCore), core[1] / float64(nCore), core[2] / float64(nCore)}, Colours)
	a.Position = position(a.CX-0.5, a.CY-0.5)
	a.Size = "small"
	if a.Extent >= largeExtent {
		a.Size = "large"
	}
	a.Corners = cornerFill(comp, w, x0, y0, x1, y1)
	switch {
	case a.Corners < crossCorners && a.Fill < triangleFill:
		a.Shape = "cross"
	case a.Fill >= squareFill:
		a.Shape = "square"
	case a.Fill >= triangleFill:
		a.Shape = "circle"
	default:
		a.Shape = "triangle"
	}
	return a
}

// position names an offset from the image centre.
func position(dx, dy float64) string {
	switch {
	case math.Abs(dx) < centreBand && math.Abs(dy) < centreBand:
		return "center"
	case math.Abs(dx) >= math.Abs(dy) && dx < 0:
		return "left"
	case math.Abs(dx) >= math.Abs(dy):
		return "right"
	case dy < 0:
		return "top"
	default:
		return "bottom"
	}
}

func pixels(img image.Image) [][3]float64 {
	b := img.Bounds()
	out := make([][3]float64, 0, b.Dx()*b.Dy())
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
			out = append(out, [3]float64{float64(c.R), float64(c.G), float64(c.B)})
		}
	}
	return out
}

// borderMedian is the per-channel median of the outermost pixels.
func borderMedian(px [][3]float64, w, h int) [3]float64 {
	var ch [3][]float64
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			if x == 0 || y == 0 || x == w-1 || y == h-1 {
				for c := range ch {
					ch[c] = append(ch[c], px[y*w+x][c])
				}
			}
		}
	}
	var out [3]float64
	for c := range ch {
		sort.Float64s(ch[c])
		out[c] = ch[c][len(ch[c])/2]
	}
	return out
}

func rgbDist(a, b [3]float64) float64 {
	return math.Sqrt((a[0]-b[0])*(a[0]-b[0]) + (a[1]-b[1])*(a[1]-b[1]) + (a[2]-b[2])*(a[2]-b[2]))
}

// nearest is the name in names whose palette colour lies closest to c.
func nearest(c [3]float64, names []string) string {
	best, bestD := "", math.Inf(1)
	for _, n := range names {
		p := Palette[n]
		if d := rgbDist(c, [3]float64{float64(p.R), float64(p.G), float64(p.B)}); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

// largestComponent is the largest 4-connected set of pixels whose dist
// exceeds thr (ties: the first found in raster order).
func largestComponent(dist []float64, w, h int, thr float64) []int {
	seen := make([]bool, len(dist))
	var best []int
	for s := range dist {
		if seen[s] || dist[s] <= thr {
			continue
		}
		comp := []int{s}
		seen[s] = true
		for k := 0; k < len(comp); k++ {
			i := comp[k]
			x, y := i%w, i/w
			for _, d := range [4][2]int{{-1, 0}, {1, 0}, {0, -1}, {0, 1}} {
				nx, ny := x+d[0], y+d[1]
				if nx < 0 || ny < 0 || nx >= w || ny >= h {
					continue
				}
				j := ny*w + nx
				if !seen[j] && dist[j] > thr {
					seen[j] = true
					comp = append(comp, j)
				}
			}
		}
		if len(comp) > len(best) {
			best = comp
		}
	}
	return best
}

// cornerFill is the fraction of the pixels of the box (x0, y0)–(x1, y1)
// lying in its four corner cells (outer thirds on both axes) that comp
// holds.
func cornerFill(comp []int, w, x0, y0, x1, y1 int) float64 {
	bw, bh := float64(x1-x0+1), float64(y1-y0+1)
	third := func(v, lo int, span float64) int { // 0, 1 or 2
		return min(int(3*(float64(v-lo)+0.5)/span), 2)
	}
	corner := func(x, y int) bool { return third(x, x0, bw) != 1 && third(y, y0, bh) != 1 }
	area, in := 0, 0
	for y := y0; y <= y1; y++ {
		for x := x0; x <= x1; x++ {
			if corner(x, y) {
				area++
			}
		}
	}
	for _, i := range comp {
		if corner(i%w, i/w) {
			in++
		}
	}
	if area == 0 {
		return 0
	}
	return float64(in) / float64(area)
}
