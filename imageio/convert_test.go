package imageio

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResizeMatchesPIL(t *testing.T) {
	for _, ref := range pilResizeRef {
		r := toRGB8(pattern(ref.inW, ref.inH)).resize(ref.outW, ref.outH)
		if got := hex.EncodeToString(r.pix); got != ref.rgb {
			t.Errorf("%dx%d -> %dx%d: RGB differs from PIL\n got %s\nwant %s", ref.inW, ref.inH, ref.outW, ref.outH, got, ref.rgb)
		}
		if got := hex.EncodeToString(r.toL().pix); got != ref.l {
			t.Errorf("%dx%d -> %dx%d: L differs from PIL\n got %s\nwant %s", ref.inW, ref.inH, ref.outW, ref.outH, got, ref.l)
		}
	}
}

func TestResizeIdentityAndConstant(t *testing.T) {
	src := pattern(13, 9)
	out, err := Resize(src, 13, 9)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Pix, src.Pix) {
		t.Error("same-size resize changed pixels")
	}
	flat := image.NewNRGBA(image.Rect(0, 0, 50, 30))
	for i := 0; i < len(flat.Pix); i += 4 {
		copy(flat.Pix[i:], []uint8{0, 128, 255, 255})
	}
	for _, sz := range [][2]int{{7, 5}, {120, 77}, {50, 3}, {1, 1}} {
		out, err := Resize(flat, sz[0], sz[1])
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(out.Pix); i += 4 {
			if !bytes.Equal(out.Pix[i:i+4], []uint8{0, 128, 255, 255}) {
				t.Fatalf("constant image resized to %v: pixel %d = %v", sz, i/4, out.Pix[i:i+4])
			}
		}
	}
}

func TestResizeDownscaleAntialiases(t *testing.T) {
	// One-pixel black/white stripes averaged 4:1 must come out a flat
	// mid gray, not aliased stripes.
	src := image.NewGray(image.Rect(0, 0, 64, 8))
	for y := 0; y < 8; y++ {
		for x := 0; x < 64; x += 2 {
			src.SetGray(x, y, color.Gray{255})
		}
	}
	v, err := MaskToNCHW(src, 16, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range v {
		if c := i % 16; c == 0 || c == 15 {
			continue // the kernel is clipped at the image border
		}
		if math.Abs(float64(x)-0.5) > 0.02 {
			t.Fatalf("pixel %d = %v, want about 0.5", i, x)
		}
	}
}

func TestToNCHW(t *testing.T) {
	src := pattern(6, 4)
	v, err := ToNCHW(src, 6, 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 3*6*4 {
		t.Fatalf("len %d", len(v))
	}
	for y := 0; y < 4; y++ {
		for x := 0; x < 6; x++ {
			p := src.NRGBAAt(x, y)
			for c, b := range []uint8{p.R, p.G, p.B} {
				if got, want := v[c*24+y*6+x], float32(b)/255; got != want {
					t.Fatalf("c%d (%d,%d) = %v, want %v", c, x, y, got, want)
				}
			}
		}
	}
	// A resized call agrees with Resize then conversion.
	r, _ := Resize(pattern(23, 17), 10, 7)
	v, _ = ToNCHW(pattern(23, 17), 10, 7)
	if v[70+3*10+4] != float32(r.NRGBAAt(4, 3).G)/255 {
		t.Error("ToNCHW disagrees with Resize")
	}
	if _, err := ToNCHW(src, 0, 4); err == nil {
		t.Error("zero width accepted")
	}
	if _, err := ToNCHW(nil, 4, 4); err == nil {
		t.Error("nil image accepted")
	}
}

func TestMaskToNCHW(t *testing.T) {
	// PIL's L of (255, 0, 0) is 76, of (0, 255, 0) 150, of (0, 0, 255) 29.
	img := image.NewNRGBA(image.Rect(0, 0, 3, 1))
	img.SetNRGBA(0, 0, color.NRGBA{255, 0, 0, 255})
	img.SetNRGBA(1, 0, color.NRGBA{0, 255, 0, 255})
	img.SetNRGBA(2, 0, color.NRGBA{0, 0, 255, 255})
	v, err := MaskToNCHW(img, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []float32{76.0 / 255, 150.0 / 255, 29.0 / 255} {
		if v[i] != want {
			t.Errorf("pixel %d = %v, want %v", i, v[i], want)
		}
	}
}

func TestFromNHWCRounding(t *testing.T) {
	// Three RGB pixels: clamping (-1, 2, NaN) and rounding.
	in := []float32{0, 1, 0.5, -1, 2, float32(math.NaN()), 0.2, 0.6, 1.0 / 3}
	img, err := FromNHWC(in, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := []uint8{0, 255, 128, 255, 0, 255, 0, 255, 51, 153, 85, 255}
	if !bytes.Equal(img.Pix, want) {
		t.Errorf("pixels %v, want %v", img.Pix, want)
	}
	// x*255 is computed in float32 and halves round to even, as NumPy's
	// (images * 255).round() does on float32 arrays: 0.5, 2.5/255 and
	// 254.5/255 give exact halves in float32 (127.5, 2.5, 254.5), which
	// round to 128, 2 and 254 where rounding half up gives 3 and 255.
	for _, c := range []struct {
		x    float32
		want uint8
	}{{0.5, 128}, {2.5 / 255, 2}, {0.4 / 255, 0}, {1.6 / 255, 2}, {254.5 / 255, 254}, {0.9999, 255}} {
		img, _ := FromNHWC([]float32{c.x}, 1, 1) // one channel: gray
		if img.Pix[0] != c.want || img.Pix[1] != c.want || img.Pix[2] != c.want || img.Pix[3] != 255 {
			t.Errorf("%v (x*255 = %v): got %v, want %d", c.x, c.x*255, img.Pix, c.want)
		}
	}
	chw, _ := FromNCHW([]float32{0, 1, 0.2, 0.6, 1, 0}, 2, 1)
	if !bytes.Equal(chw.Pix, []uint8{0, 51, 255, 255, 255, 153, 0, 255}) {
		t.Errorf("FromNCHW = %v", chw.Pix)
	}
	if _, err := FromNHWC(make([]float32, 5), 2, 1); err == nil {
		t.Error("bad length accepted")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	src := pattern(8, 5)
	p := filepath.Join(dir, "a.png")
	if err := WritePNG(p, src, nil); err != nil {
		t.Fatal(err)
	}
	img, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := Resize(img, 8, 5); !bytes.Equal(r.Pix, src.Pix) {
		t.Error("PNG round trip changed pixels")
	}
	var jb bytes.Buffer
	if err := jpeg.Encode(&jb, src, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	jp := filepath.Join(dir, "a.jpg")
	os.WriteFile(jp, jb.Bytes(), 0o644)
	if img, err := Load(jp); err != nil || img.Bounds().Dx() != 8 {
		t.Fatalf("jpeg: %v", err)
	}

	bad := map[string][]byte{
		"empty.png":     nil,
		"text.png":      []byte("hello, not an image"),
		"trunc.png":     pngBytes(t, src)[:40],
		"trunc.jpg":     jb.Bytes()[:30],
		"corrupt.png":   corruptIDAT(pngBytes(t, src)),
		"missing.jpg":   nil, // not created
		"directory.png": nil,
	}
	for name, data := range bad {
		path := filepath.Join(dir, name)
		switch name {
		case "missing.jpg":
		case "directory.png":
			os.Mkdir(path, 0o755)
		default:
			os.WriteFile(path, data, 0o644)
		}
		_, err := Load(path)
		if err == nil {
			t.Errorf("%s: loaded without error", name)
			continue
		}
		if !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %q does not name the file", name, err)
		}
	}
}

func pngBytes(t *testing.T, img image.Image) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func corruptIDAT(b []byte) []byte {
	i := bytes.Index(b, []byte("IDAT"))
	b[i+6] ^= 0xff
	return b
}

// jpegWithOrientation inserts an EXIF APP1 segment holding orientation o.
func jpegWithOrientation(t *testing.T, img image.Image, o uint16, order binary.AppendByteOrder) []byte {
	var jb bytes.Buffer
	if err := jpeg.Encode(&jb, img, &jpeg.Options{Quality: 100}); err != nil {
		t.Fatal(err)
	}
	var tiff []byte
	if order == binary.LittleEndian {
		tiff = []byte("II*\x00")
	} else {
		tiff = []byte("MM\x00*")
	}
	tiff = order.AppendUint32(tiff, 8)
	tiff = order.AppendUint16(tiff, 1)      // one entry
	tiff = order.AppendUint16(tiff, 0x0112) // Orientation
	tiff = order.AppendUint16(tiff, 3)      // SHORT
	tiff = order.AppendUint32(tiff, 1)
	tiff = order.AppendUint16(tiff, o)
	tiff = append(tiff, 0, 0, 0, 0, 0, 0)
	seg := append([]byte("Exif\x00\x00"), tiff...)
	app1 := []byte{0xff, 0xe1}
	app1 = binary.BigEndian.AppendUint16(app1, uint16(len(seg)+2))
	app1 = append(app1, seg...)
	b := jb.Bytes()
	return append(append(append([]byte{}, b[:2]...), app1...), b[2:]...)
}

func TestLoadJPEGOrientation(t *testing.T) {
	// A 16x8 image, left half white, right half black, in 8x8 blocks so
	// JPEG keeps it almost exact.
	src := image.NewGray(image.Rect(0, 0, 16, 8))
	for y := 0; y < 8; y++ {
		for x := 0; x < 8; x++ {
			src.SetGray(x, y, color.Gray{255})
		}
	}
	white := func(img image.Image, x, y int) bool {
		r, _, _, _ := img.At(x, y).RGBA()
		return r > 0x8000
	}
	dir := t.TempDir()
	for _, c := range []struct {
		o          uint16
		w, h       int
		wx, wy     int // a pixel that must be white
		bx, by     int // and one that must be black
		byteOrder  binary.AppendByteOrder
		orderLabel string
	}{
		{1, 16, 8, 2, 4, 13, 4, binary.BigEndian, "MM"},
		{2, 16, 8, 13, 4, 2, 4, binary.LittleEndian, "II"},
		{3, 16, 8, 13, 4, 2, 4, binary.BigEndian, "MM"},
		{6, 8, 16, 4, 2, 4, 13, binary.LittleEndian, "II"}, // rotate CW: left goes to top
		{8, 8, 16, 4, 13, 4, 2, binary.BigEndian, "MM"},    // rotate CCW: left goes to bottom
	} {
		p := filepath.Join(dir, "o.jpg")
		os.WriteFile(p, jpegWithOrientation(t, src, c.o, c.byteOrder), 0o644)
		img, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		if b := img.Bounds(); b.Dx() != c.w || b.Dy() != c.h {
			t.Errorf("orientation %d (%s): size %v, want %dx%d", c.o, c.orderLabel, b.Size(), c.w, c.h)
			continue
		}
		if !white(img, c.wx, c.wy) || white(img, c.bx, c.by) {
			t.Errorf("orientation %d (%s): wrong transform", c.o, c.orderLabel)
		}
	}
}

func TestToRGB8Types(t *testing.T) {
	// The fast paths agree with the generic conversion.
	src := pattern(9, 7)
	ycc := image.NewYCbCr(src.Bounds(), image.YCbCrSubsampleRatio420)
	for y := 0; y < 7; y++ {
		for x := 0; x < 9; x++ {
			c := src.NRGBAAt(x, y)
			yy, cb, cr := color.RGBToYCbCr(c.R, c.G, c.B)
			ycc.Y[ycc.YOffset(x, y)] = yy
			ycc.Cb[ycc.COffset(x, y)] = cb
			ycc.Cr[ycc.COffset(x, y)] = cr
		}
	}
	gray := image.NewGray(src.Bounds())
	for i := range gray.Pix {
		gray.Pix[i] = src.Pix[4*i+1]
	}
	for _, img := range []image.Image{src, ycc, gray, src.SubImage(image.Rect(2, 1, 8, 6))} {
		fast := toRGB8(img)
		b := img.Bounds()
		i := 0
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
				p := fast.pix[3*i : 3*i+3]
				// YCbCrToRGB and YCbCr.RGBA may round one step apart.
				for k, v := range []uint8{c.R, c.G, c.B} {
					if d := int(p[k]) - int(v); d < -1 || d > 1 {
						t.Fatalf("%T (%d,%d): %v, want %v", img, x, y, p, c)
					}
				}
				i++
			}
		}
	}
}
