package imageio

import "image"

// pattern and shapes build the same images as testdata/gen_ref.py.
func pattern(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			p := img.Pix[img.PixOffset(x, y):]
			for c := 0; c < 3; c++ {
				p[c] = uint8((x*37 + y*91 + c*53 + ((x*y)%17)*11) % 256)
			}
			p[3] = 255
		}
	}
	return img
}

func shapes(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			r, g, b := 20, 40, 90
			if (x-14)*(x-14)+(y-12)*(y-12) < 64 {
				r = 200
			}
			if 24 <= x && x < 36 && 6 <= y && y < 22 {
				g = 180
			}
			if x+y > 30 {
				b = (x*6 + y*3) % 256
			}
			p := img.Pix[img.PixOffset(x, y):]
			p[0], p[1], p[2], p[3] = uint8(r), uint8(g), uint8(b), 255
		}
	}
	return img
}
