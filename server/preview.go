package server

import (
	"image"
	"image/color"
)

// Latent → RGB coefficients of A1111's "approx cheap" previews
// (modules/sd_vae_approx.py, cheap_approximation): rgb = Σ_c latent_c ·
// coeffs[c], then (x+1)/2 to [0, 1].
var (
	cheapSD = [4][3]float32{
		{0.298, 0.207, 0.208},
		{0.187, 0.286, 0.173},
		{-0.158, 0.189, 0.264},
		{-0.184, -0.271, -0.473},
	}
	cheapSDXL = [4][3]float32{
		{0.3448, 0.4168, 0.4395},
		{-0.1953, -0.0290, 0.0250},
		{0.1074, 0.0886, -0.0163},
		{-0.3730, -0.2499, -0.2088},
	}
)

// cheapPreview maps latents [N, 4, h, w] (the first of the batch) to an
// h×w RGB image with the family's linear map. Latents of another channel
// count show their first three channels, so every family gets a preview.
func cheapPreview(lat []float32, shape []int, family string) *image.NRGBA {
	if len(shape) != 4 || shape[1] < 1 {
		return nil
	}
	c, h, w := shape[1], shape[2], shape[3]
	if len(lat) < c*h*w {
		return nil
	}
	coeffs := cheapSD
	if family == "sdxl" {
		coeffs = cheapSDXL
	}
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	plane := h * w
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			var rgb [3]float32
			i := y*w + x
			if c == 4 {
				for ch := 0; ch < 4; ch++ {
					v := lat[ch*plane+i]
					for k := 0; k < 3; k++ {
						rgb[k] += v * coeffs[ch][k]
					}
				}
			} else {
				for k := 0; k < 3; k++ {
					rgb[k] = lat[min(k, c-1)*plane+i]
				}
			}
			img.SetNRGBA(x, y, color.NRGBA{to8(rgb[0]), to8(rgb[1]), to8(rgb[2]), 255})
		}
	}
	return img
}

func to8(v float32) uint8 {
	v = (v + 1) / 2 * 255
	switch {
	case v != v || v < 0:
		return 0
	case v > 255:
		return 255
	}
	return uint8(v + 0.5)
}
