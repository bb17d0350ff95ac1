package imageio

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"os"
)

// Load reads a PNG or JPEG file. A JPEG's EXIF orientation is applied, as
// diffusers' load_image does with PIL's exif_transpose, so phone photos
// come out upright. Errors name the file and say what is wrong with it.
// Go's JPEG decoder is not libjpeg: decoded pixels may differ from PIL's
// by a level or two; PNG pixels are exact.
func Load(path string) (image.Image, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("imageio: load: %w", err)
	}
	var img image.Image
	switch {
	case bytes.HasPrefix(data, pngSignature):
		img, err = png.Decode(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("imageio: load %s: bad PNG: %w", path, err)
		}
	case bytes.HasPrefix(data, []byte{0xff, 0xd8, 0xff}):
		img, err = jpeg.Decode(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("imageio: load %s: bad JPEG: %w", path, err)
		}
		if o := jpegOrientation(data); o > 1 {
			img = orient(img, o)
		}
	case len(data) == 0:
		return nil, fmt.Errorf("imageio: load %s: file is empty", path)
	default:
		head := data[:min(len(data), 8)]
		return nil, fmt.Errorf("imageio: load %s: not a PNG or JPEG file (starts with %q)", path, head)
	}
	if b := img.Bounds(); b.Empty() {
		return nil, fmt.Errorf("imageio: load %s: image has no pixels", path)
	}
	return img, nil
}

// rgb8 is an 8-bit image with nch interleaved channels (3 for RGB, 1 for
// L), the form PIL resizes in.
type rgb8 struct {
	w, h, nch int
	pix       []uint8
}

// toRGB8 converts img to 8-bit RGB, dropping alpha as PIL's
// convert("RGB") does (diffusers' load_image converts every input so).
func toRGB8(img image.Image) rgb8 {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	out := rgb8{w: w, h: h, nch: 3, pix: make([]uint8, w*h*3)}
	i := 0
	switch m := img.(type) {
	case *image.NRGBA:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, y):]
			for x := 0; x < w; x++ {
				copy(out.pix[i:i+3], row[4*x:4*x+3])
				i += 3
			}
		}
	case *image.YCbCr: // every JPEG; the generic path is several times slower
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				ci := m.COffset(x, y)
				out.pix[i], out.pix[i+1], out.pix[i+2] = color.YCbCrToRGB(m.Y[m.YOffset(x, y)], m.Cb[ci], m.Cr[ci])
				i += 3
			}
		}
	case *image.Gray:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, y):]
			for x := 0; x < w; x++ {
				v := row[x]
				out.pix[i], out.pix[i+1], out.pix[i+2] = v, v, v
				i += 3
			}
		}
	default:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
				out.pix[i], out.pix[i+1], out.pix[i+2] = c.R, c.G, c.B
				i += 3
			}
		}
	}
	return out
}

// toL converts RGB to PIL's "L" mode with PIL's fixed-point formula, a
// rounded R*299/1000 + G*587/1000 + B*114/1000.
func (im rgb8) toL() rgb8 {
	if im.nch == 1 {
		return im
	}
	out := rgb8{w: im.w, h: im.h, nch: 1, pix: make([]uint8, im.w*im.h)}
	for i := range out.pix {
		p := im.pix[3*i : 3*i+3]
		out.pix[i] = uint8((uint32(p[0])*19595 + uint32(p[1])*38470 + uint32(p[2])*7471 + 0x8000) >> 16)
	}
	return out
}

// Resize scales img to w×h with PIL's Image.resize(LANCZOS) arithmetic,
// the resampling diffusers' VaeImageProcessor applies to init images,
// masks and control images: a Lanczos-3 kernel widened by the scale
// factor when downscaling (so it antialiases), fixed-point coefficients
// and a horizontal pass before the vertical one, each rounded to 8 bits.
// The result is opaque RGB.
func Resize(img image.Image, w, h int) (*image.NRGBA, error) {
	if err := checkSize(img, w, h); err != nil {
		return nil, err
	}
	r := toRGB8(img).resize(w, h)
	out := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < w*h; i++ {
		copy(out.Pix[4*i:4*i+3], r.pix[3*i:3*i+3])
		out.Pix[4*i+3] = 255
	}
	return out, nil
}

func checkSize(img image.Image, w, h int) error {
	if img == nil {
		return errors.New("imageio: nil image")
	}
	if img.Bounds().Empty() {
		return errors.New("imageio: image has no pixels")
	}
	if w <= 0 || h <= 0 {
		return fmt.Errorf("imageio: bad target size %dx%d", w, h)
	}
	return nil
}

// ToNCHW returns img as channel-major RGB floats in [0, 1] (the
// [3][h][w] slice of a batch of one), resized to w×h with Resize when its
// size differs. Values are byte/255 in float32, as diffusers' pil_to_numpy
// computes them; map to [-1, 1] with 2x-1 for the VAE encoder.
func ToNCHW(img image.Image, w, h int) ([]float32, error) {
	if err := checkSize(img, w, h); err != nil {
		return nil, err
	}
	r := toRGB8(img).resize(w, h)
	n := w * h
	out := make([]float32, 3*n)
	for i := 0; i < n; i++ {
		for c := 0; c < 3; c++ {
			out[c*n+i] = float32(r.pix[3*i+c]) / 255
		}
	}
	return out, nil
}

// MaskToNCHW returns img as one channel of grayscale floats in [0, 1]
// ([h][w]), resized to w×h. As in diffusers' mask processor the RGB image
// is resized first and converted to PIL's "L" afterwards. Inpainting
// pipelines binarize the result at 0.5 themselves.
func MaskToNCHW(img image.Image, w, h int) ([]float32, error) {
	if err := checkSize(img, w, h); err != nil {
		return nil, err
	}
	l := toRGB8(img).resize(w, h).toL()
	out := make([]float32, len(l.pix))
	for i, v := range l.pix {
		out[i] = float32(v) / 255
	}
	return out, nil
}

// FromNHWC turns floats in [0, 1] laid out [h][w][c] (c = 3 for RGB, 1 for
// gray, 4 for RGBA; taken from the length) into an image, with diffusers'
// numpy_to_pil arithmetic: clamp to [0, 1], then (x*255).round() in
// float32, rounding halves to even as NumPy does. NaN becomes 0.
func FromNHWC(data []float32, w, h int) (*image.NRGBA, error) {
	c, err := channels(len(data), w, h)
	if err != nil {
		return nil, err
	}
	out := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < w*h; i++ {
		px := out.Pix[4*i : 4*i+4]
		px[3] = 255
		switch c {
		case 1:
			v := toByte(data[i])
			px[0], px[1], px[2] = v, v, v
		default:
			for k := 0; k < c; k++ {
				px[k] = toByte(data[c*i+k])
			}
		}
	}
	return out, nil
}

// FromNCHW is FromNHWC for channel-major data ([c][h][w]), the layout the
// VAE decoder produces; diffusers' postprocess permutes to NHWC first,
// which changes nothing in the values.
func FromNCHW(data []float32, w, h int) (*image.NRGBA, error) {
	c, err := channels(len(data), w, h)
	if err != nil {
		return nil, err
	}
	n := w * h
	t := make([]float32, len(data))
	for k := 0; k < c; k++ {
		for i := 0; i < n; i++ {
			t[c*i+k] = data[k*n+i]
		}
	}
	return FromNHWC(t, w, h)
}

func channels(n, w, h int) (int, error) {
	if w <= 0 || h <= 0 {
		return 0, fmt.Errorf("imageio: bad image size %dx%d", w, h)
	}
	for _, c := range []int{3, 1, 4} {
		if n == c*w*h {
			return c, nil
		}
	}
	return 0, fmt.Errorf("imageio: %d values do not make a %dx%d image of 1, 3 or 4 channels", n, w, h)
}

func toByte(x float32) uint8 {
	if !(x > 0) { // also NaN
		return 0
	}
	if x >= 1 {
		return 255
	}
	return uint8(math.RoundToEven(float64(x * 255)))
}

// lanczos is PIL's Lanczos-3 kernel.
func lanczos(x float64) float64 {
	if x < -3 || x >= 3 {
		return 0
	}
	return sinc(x) * sinc(x/3)
}

func sinc(x float64) float64 {
	if x == 0 {
		return 1
	}
	x *= math.Pi
	return math.Sin(x) / x
}

// precisionBits is PIL's fixed-point precision for 8-bit resampling.
const precisionBits = 32 - 8 - 2

// coeffs computes PIL's resampling weights (precompute_coeffs and
// normalize_coeffs_8bpc) for inSize→outSize: for each output index, the
// first input index and the fixed-point weights of the inputs it reads.
func coeffs(inSize, outSize int) (bounds []int, k [][]int32) {
	scale := float64(inSize) / float64(outSize)
	filterscale := max(scale, 1)
	support := 3 * filterscale
	bounds = make([]int, outSize)
	k = make([][]int32, outSize)
	w := make([]float64, 0, int(math.Ceil(support))*2+1)
	for xx := 0; xx < outSize; xx++ {
		center := (float64(xx) + 0.5) * scale
		ss := 1 / filterscale
		// C's (int) truncates toward zero; the operands here keep
		// PIL's exact rounding.
		xmin := int(center - support + 0.5)
		xmin = max(xmin, 0)
		xmax := min(int(center+support+0.5), inSize) - xmin
		w = w[:0]
		ww := 0.0
		for x := 0; x < xmax; x++ {
			v := lanczos((float64(x+xmin) - center + 0.5) * ss)
			w = append(w, v)
			ww += v
		}
		kk := make([]int32, xmax)
		for x, v := range w {
			if ww != 0 {
				v /= ww
			}
			if v < 0 {
				kk[x] = int32(-0.5 + v*(1<<precisionBits))
			} else {
				kk[x] = int32(0.5 + v*(1<<precisionBits))
			}
		}
		bounds[xx], k[xx] = xmin, kk
	}
	return bounds, k
}

func clip8(v int32) uint8 {
	v >>= precisionBits
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// resize is PIL's ImagingResample for 8-bit images with the Lanczos
// filter: a horizontal pass over the rows the vertical pass will read, then
// the vertical pass, each skipped when its size does not change.
func (im rgb8) resize(w, h int) rgb8 {
	if im.w == w && im.h == h {
		return im
	}
	nch := im.nch
	src := im
	if w != im.w {
		bounds, k := coeffs(im.w, w)
		// Only the rows the vertical pass reads need the horizontal
		// pass (PIL's ybox_first/ybox_last); with every row kept it
		// produces the same bytes, so keep the code simple.
		tmp := rgb8{w: w, h: im.h, nch: nch, pix: make([]uint8, w*im.h*nch)}
		for y := 0; y < im.h; y++ {
			row := im.pix[y*im.w*nch:]
			out := tmp.pix[y*w*nch:]
			for xx := 0; xx < w; xx++ {
				xmin, kk := bounds[xx], k[xx]
				for c := 0; c < nch; c++ {
					ss := int32(1 << (precisionBits - 1))
					for x, kv := range kk {
						ss += int32(row[(x+xmin)*nch+c]) * kv
					}
					out[xx*nch+c] = clip8(ss)
				}
			}
		}
		src = tmp
	}
	if h == src.h {
		return src
	}
	bounds, k := coeffs(src.h, h)
	dst := rgb8{w: w, h: h, nch: nch, pix: make([]uint8, w*h*nch)}
	stride := w * nch
	ss := make([]int32, stride)
	for yy := 0; yy < h; yy++ {
		ymin, kk := bounds[yy], k[yy]
		for i := range ss {
			ss[i] = 1 << (precisionBits - 1)
		}
		for y, kv := range kk {
			row := src.pix[(y+ymin)*stride : (y+ymin+1)*stride]
			for i, v := range row {
				ss[i] += int32(v) * kv
			}
		}
		out := dst.pix[yy*stride : (yy+1)*stride]
		for i, v := range ss {
			out[i] = clip8(v)
		}
	}
	return dst
}
