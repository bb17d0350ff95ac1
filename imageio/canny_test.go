package imageio

import (
	"image"
	"image/color"
	"strings"
	"testing"
)

func TestCannyMatchesOpenCV(t *testing.T) {
	src := shapes(40, 30)
	gray := image.NewGray(src.Bounds())
	l := toRGB8(src).toL()
	copy(gray.Pix, l.pix)
	for _, ref := range cannyRef {
		var in image.Image = src
		if ref.gray {
			in = gray
		}
		e := Canny(in, ref.low, ref.high)
		var sb strings.Builder
		for _, v := range e.Pix {
			if v == 255 {
				sb.WriteByte('1')
			} else if v == 0 {
				sb.WriteByte('0')
			} else {
				t.Fatalf("gray=%v %v/%v: value %d, want 0 or 255", ref.gray, ref.low, ref.high, v)
			}
		}
		if got := sb.String(); got != ref.edges {
			t.Errorf("gray=%v thresholds %v/%v: edges differ from cv2.Canny\n got:\n%s\nwant:\n%s",
				ref.gray, ref.low, ref.high, rows(got, 40), rows(ref.edges, 40))
		}
	}
}

func rows(s string, w int) string {
	var sb strings.Builder
	for i := 0; i < len(s); i += w {
		sb.WriteString(s[i:i+w] + "\n")
	}
	return sb.String()
}

// square draws a white square [x0,x1)×[y0,y1) on black.
func square(w, h, x0, y0, x1, y1 int, v uint8) *image.Gray {
	g := image.NewGray(image.Rect(0, 0, w, h))
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			g.SetGray(x, y, color.Gray{v})
		}
	}
	return g
}

func TestCannySquareBorderOnly(t *testing.T) {
	g := square(32, 32, 8, 8, 24, 24, 255)
	e := Canny(g, 100, 200)
	n := 0
	for y := 0; y < 32; y++ {
		for x := 0; x < 32; x++ {
			on := e.GrayAt(x, y).Y == 255
			if on {
				n++
			}
			// An edge pixel must lie within one pixel of the square's
			// boundary; nothing inside or far outside.
			nearX := (x >= 7 && x <= 24) && (y >= 7 && y <= 24)
			inner := x >= 9 && x <= 22 && y >= 9 && y <= 22
			if on && (!nearX || inner) {
				t.Errorf("edge at (%d,%d), away from the square's border", x, y)
			}
		}
	}
	// The border is a closed loop: every row and column of the square
	// has edge pixels on both sides.
	for i := 8; i < 24; i++ {
		if !(e.GrayAt(7, i).Y == 255 || e.GrayAt(8, i).Y == 255) || !(e.GrayAt(23, i).Y == 255 || e.GrayAt(24, i).Y == 255) {
			t.Errorf("row %d: missing left or right edge", i)
		}
		if !(e.GrayAt(i, 7).Y == 255 || e.GrayAt(i, 8).Y == 255) || !(e.GrayAt(i, 23).Y == 255 || e.GrayAt(i, 24).Y == 255) {
			t.Errorf("column %d: missing top or bottom edge", i)
		}
	}
	if n < 60 || n > 70 {
		t.Errorf("%d edge pixels, want one-pixel-thin loop (about 64)", n)
	}
	if e := Canny(square(16, 16, 0, 0, 0, 0, 0), 1, 2); countOn(e) != 0 {
		t.Error("flat image has edges")
	}
}

func countOn(g *image.Gray) int {
	n := 0
	for _, v := range g.Pix {
		if v != 0 {
			n++
		}
	}
	return n
}

func TestCannyThresholds(t *testing.T) {
	// A step of 40 gives an L1 Sobel magnitude of 4*40 = 160 across the
	// edge: above 100 and 150, below 200.
	g := square(24, 24, 12, 0, 24, 24, 40)
	if n := countOn(Canny(g, 100, 150)); n != 2*24 && n != 24 {
		t.Errorf("step 40 with high 150: %d edge pixels, want a full line", n)
	}
	if n := countOn(Canny(g, 100, 200)); n != 0 {
		t.Errorf("step 40 with high 200: %d edge pixels, want none (no strong seed)", n)
	}
	if n := countOn(Canny(g, 200, 100)); n != countOn(Canny(g, 100, 200)) {
		t.Error("swapped thresholds give a different result")
	}
	// Hysteresis: a weak edge (step 40, 160) joined to a strong one
	// (step 80, 320) survives with high 200, a lone weak one does not.
	h := square(24, 24, 12, 0, 24, 24, 40)
	for y := 0; y < 12; y++ {
		for x := 12; x < 24; x++ {
			h.SetGray(x, y, color.Gray{80})
		}
	}
	e := Canny(h, 100, 200)
	for y := 0; y < 24; y++ {
		if e.GrayAt(11, y).Y != 255 && e.GrayAt(12, y).Y != 255 {
			t.Errorf("row %d: weak edge connected to a strong one was dropped", y)
		}
	}
	rgb := GrayToRGB(e)
	if rgb.Bounds() != e.Bounds() {
		t.Fatal("GrayToRGB changed the size")
	}
	for i, v := range e.Pix {
		if p := rgb.Pix[4*i : 4*i+4]; p[0] != v || p[1] != v || p[2] != v || p[3] != 255 {
			t.Fatalf("GrayToRGB pixel %d = %v, want %d", i, p, v)
		}
	}
}
