package imageio

import (
	"image"
)

// Canny returns the edge map of img, 255 on edges and 0 elsewhere,
// following OpenCV's cv2.Canny(img, low, high) with its defaults (3×3
// Sobel with replicated borders, L1 gradient magnitude |dx|+|dy|, no
// blurring):
//
//   - a gray image (*image.Gray) is one channel; any other is taken as RGB
//     and, as OpenCV does for multi-channel input, each pixel uses the
//     gradient of its channel with the largest magnitude. The diffusers
//     ControlNet examples pass the RGB array straight to cv2.Canny, so
//     this reproduces them; convert to gray first for a gray edge map;
//   - non-maximum suppression along the gradient direction quantised to
//     0°, 45°, 90° or 135° with OpenCV's integer tangent test and its
//     asymmetric tie rules;
//   - hysteresis: pixels above floor(high) seed edges, which spread to
//     8-connected suppressed-maximum pixels above floor(low). The
//     thresholds are swapped if low > high.
func Canny(img image.Image, low, high float64) *image.Gray {
	if low > high {
		low, high = high, low
	}
	lo, hi := int32(floorInt(low)), int32(floorInt(high))

	var planes [][]uint8
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	out := image.NewGray(image.Rect(0, 0, w, h))
	if w == 0 || h == 0 {
		return out
	}
	if g, ok := img.(*image.Gray); ok {
		p := make([]uint8, w*h)
		for y := 0; y < h; y++ {
			copy(p[y*w:(y+1)*w], g.Pix[g.PixOffset(b.Min.X, b.Min.Y+y):])
		}
		planes = [][]uint8{p}
	} else {
		rgb := toRGB8(img)
		for c := 0; c < 3; c++ {
			p := make([]uint8, w*h)
			for i := range p {
				p[i] = rgb.pix[3*i+c]
			}
			planes = append(planes, p)
		}
	}

	// Gradients of the strongest channel; mag is padded with a zero
	// border, as OpenCV's magnitude ring buffer is.
	mw := w + 2
	mag := make([]int32, mw*(h+2))
	dx := make([]int32, w*h)
	dy := make([]int32, w*h)
	for c, p := range planes {
		for y := 0; y < h; y++ {
			ym, yp := max(y-1, 0), min(y+1, h-1)
			for x := 0; x < w; x++ {
				xm, xp := max(x-1, 0), min(x+1, w-1)
				at := func(yy, xx int) int32 { return int32(p[yy*w+xx]) }
				gx := (at(ym, xp) - at(ym, xm)) + 2*(at(y, xp)-at(y, xm)) + (at(yp, xp) - at(yp, xm))
				gy := (at(yp, xm) - at(ym, xm)) + 2*(at(yp, x)-at(ym, x)) + (at(yp, xp) - at(ym, xp))
				m := abs32(gx) + abs32(gy)
				mi := (y+1)*mw + x + 1
				// OpenCV keeps the first channel on ties.
				if c == 0 || m > mag[mi] {
					mag[mi], dx[y*w+x], dy[y*w+x] = m, gx, gy
				}
			}
		}
	}

	// The map: 0 may be an edge, 1 cannot be, 2 is. Its border is 1 so
	// that hysteresis stops at the image edge.
	const tg22 = 13573 // tan(22.5°) in 15-bit fixed point
	state := make([]uint8, mw*(h+2))
	for i := range state {
		state[i] = 1
	}
	var stack []int
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			mi := (y+1)*mw + x + 1
			m := mag[mi]
			if m <= lo {
				continue
			}
			xs, ys := dx[y*w+x], dy[y*w+x]
			ax, ay := int64(abs32(xs)), int64(abs32(ys))<<15
			t22 := ax * tg22
			var peak bool
			switch {
			case ay < t22: // horizontal gradient: compare left, right
				peak = m > mag[mi-1] && m >= mag[mi+1]
			case ay > t22+ax<<16: // vertical: compare above, below
				peak = m > mag[mi-mw] && m >= mag[mi+mw]
			default: // diagonal
				s := 1
				if (xs ^ ys) < 0 {
					s = -1
				}
				peak = m > mag[mi-mw-s] && m > mag[mi+mw+s]
			}
			if !peak {
				continue
			}
			if m > hi {
				state[mi] = 2
				stack = append(stack, mi)
			} else {
				state[mi] = 0
			}
		}
	}
	neighbours := [8]int{-1, 1, -mw - 1, -mw, -mw + 1, mw - 1, mw, mw + 1}
	for len(stack) > 0 {
		mi := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, d := range neighbours {
			if state[mi+d] == 0 {
				state[mi+d] = 2
				stack = append(stack, mi+d)
			}
		}
	}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			if state[(y+1)*mw+x+1] == 2 {
				out.Pix[y*out.Stride+x] = 255
			}
		}
	}
	return out
}

func abs32(v int32) int32 {
	if v < 0 {
		return -v
	}
	return v
}

// floorInt is OpenCV's cvFloor, saturated to the int32 range.
func floorInt(v float64) int64 {
	switch {
	case v != v:
		return 0
	case v <= -1<<31:
		return -1 << 31
	case v >= 1<<31-1:
		return 1<<31 - 1
	}
	f := int64(v)
	if float64(f) > v {
		f--
	}
	return f
}

// GrayToRGB repeats a one-channel image into three channels, as the
// diffusers ControlNet examples do with the Canny map before handing it to
// the pipeline.
func GrayToRGB(g *image.Gray) *image.NRGBA {
	b := g.Bounds()
	out := image.NewNRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			v := g.Pix[g.PixOffset(b.Min.X+x, b.Min.Y+y)]
			p := out.Pix[out.PixOffset(x, y):]
			p[0], p[1], p[2], p[3] = v, v, v, 255
		}
	}
	return out
}
