package vae

import (
	"math"
	"math/rand"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// goldenVAE loads the tiny VAE of the golden "vae" case.
func goldenVAE(t *testing.T) *Model {
	t.Helper()
	c, err := golden.Find("vae")
	if err != nil {
		t.Skipf("no golden vae case: %v", err)
	}
	t.Cleanup(c.Close)
	w, err := c.Weights("")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := nn.Load(m, "", nn.FileSource{F: w}, nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	return m
}

func randTensor(seed int64, scale float64, shape ...int) *tensor.Tensor {
	r := rand.New(rand.NewSource(seed))
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * scale)
	}
	return tensor.FromSlice(v, shape...)
}

// grid is a plain [N, C, H, W] float32 array for the reference below.
type grid struct {
	n, c, h, w int
	d          []float32
}

func toGrid(x *tensor.Tensor) grid {
	s := x.Shape()
	return grid{s[0], s[1], s[2], s[3], append([]float32(nil), x.Data()...)}
}

func (g grid) at(n, c, y, x int) *float32 { return &g.d[((n*g.c+c)*g.h+y)*g.w+x] }

// crop is g[:, :, :h, :w] (clipped like a Python slice).
func (g grid) crop(h, w int) grid {
	h, w = min(h, g.h), min(w, g.w)
	out := grid{g.n, g.c, h, w, make([]float32, g.n*g.c*h*w)}
	for n := 0; n < g.n; n++ {
		for c := 0; c < g.c; c++ {
			for y := 0; y < h; y++ {
				for x := 0; x < w; x++ {
					*out.at(n, c, y, x) = *g.at(n, c, y, x)
				}
			}
		}
	}
	return out
}

// cat joins grids along height (dim 2) or width (dim 3).
func cat(dim int, gs []grid) grid {
	out := gs[0]
	out.d = nil
	if dim == 2 {
		out.h = 0
		for _, g := range gs {
			out.h += g.h
		}
	} else {
		out.w = 0
		for _, g := range gs {
			out.w += g.w
		}
	}
	out.d = make([]float32, out.n*out.c*out.h*out.w)
	off := 0
	for _, g := range gs {
		for n := 0; n < g.n; n++ {
			for c := 0; c < g.c; c++ {
				for y := 0; y < g.h; y++ {
					for x := 0; x < g.w; x++ {
						if dim == 2 {
							*out.at(n, c, off+y, x) = *g.at(n, c, y, x)
						} else {
							*out.at(n, c, y, off+x) = *g.at(n, c, y, x)
						}
					}
				}
			}
		}
		if dim == 2 {
			off += g.h
		} else {
			off += g.w
		}
	}
	return out
}

// refTiled is a direct transcription of diffusers' tiled_decode /
// tiled_encode loop: every tile is mapped first, then blended in place in
// row-major order (blend_v with the tile above, blend_h with the tile to the
// left) and cropped to rowLimit; rows are concatenated.
func refTiled(t *testing.T, x *tensor.Tensor, tile, overlapSize, blendExtent, rowLimit int, fn func(*tensor.Tensor) *tensor.Tensor) grid {
	t.Helper()
	H, W := x.Dim(2), x.Dim(3)
	var rows [][]grid
	for i := 0; i < H; i += overlapSize {
		var row []grid
		for j := 0; j < W; j += overlapSize {
			in := x.Narrow(2, i, min(tile, H-i)).Narrow(3, j, min(tile, W-j)).Contiguous()
			row = append(row, toGrid(fn(in)))
		}
		rows = append(rows, row)
	}
	weights := func(k, e int) (float32, float32) {
		return float32(1 - float64(k)/float64(e)), float32(float64(k) / float64(e))
	}
	blendV := func(a, b grid) {
		e := min(a.h, b.h, blendExtent)
		for y := 0; y < e; y++ {
			wa, wb := weights(y, e)
			for n := 0; n < b.n; n++ {
				for c := 0; c < b.c; c++ {
					for x := 0; x < b.w; x++ {
						p := b.at(n, c, y, x)
						*p = float32(*a.at(n, c, a.h-e+y, x)*wa) + float32(*p*wb)
					}
				}
			}
		}
	}
	blendH := func(a, b grid) {
		e := min(a.w, b.w, blendExtent)
		for x := 0; x < e; x++ {
			wa, wb := weights(x, e)
			for n := 0; n < b.n; n++ {
				for c := 0; c < b.c; c++ {
					for y := 0; y < b.h; y++ {
						p := b.at(n, c, y, x)
						*p = float32(*a.at(n, c, y, a.w-e+x)*wa) + float32(*p*wb)
					}
				}
			}
		}
	}
	var resultRows []grid
	for i, row := range rows {
		var resultRow []grid
		for j, tl := range row {
			if i > 0 {
				blendV(rows[i-1][j], tl)
			}
			if j > 0 {
				blendH(row[j-1], tl)
			}
			resultRow = append(resultRow, tl.crop(rowLimit, rowLimit))
		}
		resultRows = append(resultRows, cat(3, resultRow))
	}
	return cat(2, resultRows)
}

// diffusersSizes are AutoencoderKL's tiling attributes for the config.
func diffusersSizes(c Config) (sampleTile, latentTile int, overlap float64) {
	return c.SampleSize, int(float64(c.SampleSize) / math.Pow(2, float64(len(c.BlockOutChannels)-1))), 0.25
}

func maxDiff(a []float32, b []float32) float64 {
	var m float64
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return m
}

func mustDecode(t *testing.T, m *Model, z *tensor.Tensor) *tensor.Tensor {
	t.Helper()
	out, err := m.Decode(z)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestTiledSingleTileIsDecode(t *testing.T) {
	m := goldenVAE(t)
	_, lt, _ := diffusersSizes(m.Cfg)
	for _, hw := range [][2]int{{lt, lt}, {lt - 3, lt - 1}} {
		z := randTensor(1, 1, 1, m.Cfg.LatentChannels, hw[0], hw[1])
		got, err := m.DecodeTiled(z, TileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := mustDecode(t, m, z)
		if !tensor.SameShape(got.Shape(), want.Shape()) || maxDiff(got.Data(), want.Data()) != 0 {
			t.Errorf("%v: single-tile DecodeTiled differs from Decode (shape %v vs %v)", hw, got.Shape(), want.Shape())
		}
		auto, err := m.DecodeAuto(z)
		if err != nil {
			t.Fatal(err)
		}
		if maxDiff(auto.Data(), want.Data()) != 0 {
			t.Errorf("%v: DecodeAuto of a small latent differs from Decode", hw)
		}
	}
	f := m.Factor()
	x := randTensor(2, 0.5, 1, m.Cfg.InChannels, (lt-2)*f, lt*f)
	got, err := m.EncodeTiled(x, TileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want, err := m.Encode(x)
	if err != nil {
		t.Fatal(err)
	}
	if maxDiff(got.Mean.Data(), want.Mean.Data()) != 0 || maxDiff(got.LogVar.Data(), want.LogVar.Data()) != 0 {
		t.Error("single-tile EncodeTiled differs from Encode")
	}
}

func TestTiledDecodeMatchesDiffusers(t *testing.T) {
	m := goldenVAE(t)
	st, lt, ov := diffusersSizes(m.Cfg)
	f := m.Factor()
	// Not a multiple of the tile step either way: the last tiles are clipped.
	h, w := 2*lt-2, 2*lt+4
	z := randTensor(3, 1, 1, m.Cfg.LatentChannels, h, w)
	got, err := m.DecodeTiled(z, TileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	blend := int(float64(st) * ov)
	ref := refTiled(t, z, lt, int(float64(lt)*(1-ov)), blend, st-blend, func(x *tensor.Tensor) *tensor.Tensor { return mustDecode(t, m, x) })
	if want := []int{1, m.Cfg.OutChannels, h * f, w * f}; !tensor.SameShape(got.Shape(), want) || !tensor.SameShape(want, []int{ref.n, ref.c, ref.h, ref.w}) {
		t.Fatalf("tiled decode shape %v, reference [%d %d %d %d], want %v", got.Shape(), ref.n, ref.c, ref.h, ref.w, want)
	}
	if d := maxDiff(got.Data(), ref.d); d != 0 {
		t.Errorf("tiled decode differs from the diffusers transcription by %g", d)
	}

	// Against one full pass: the tiles lose context (GroupNorm statistics,
	// mid-block attention), so they differ everywhere a little, and most
	// where tiles meet. The differences stay a fraction of the output range.
	full := mustDecode(t, m, z)
	fd, gd := full.Data(), got.Data()
	H, W := h*f, w*f
	stepPx := int(float64(lt)*(1-ov)) * f
	nearSeam := func(p, size int) bool {
		for s := stepPx; s < size; s += stepPx {
			if p >= s-blend && p < s+blend {
				return true
			}
		}
		return false
	}
	var maxAll, maxAbs, sumSeam, sumIn float64
	var nSeam, nIn int
	for i := range fd {
		y, x := (i/W)%H, i%W
		d := math.Abs(float64(fd[i]) - float64(gd[i]))
		maxAll = math.Max(maxAll, d)
		maxAbs = math.Max(maxAbs, math.Abs(float64(fd[i])))
		if nearSeam(y, H) || nearSeam(x, W) {
			sumSeam += d
			nSeam++
		} else {
			sumIn += d
			nIn++
		}
	}
	meanSeam, meanIn := sumSeam/float64(nSeam), sumIn/float64(nIn)
	t.Logf("tiled vs full decode: max |diff| %.3g (output max |value| %.3g); mean |diff| near seams %.3g, elsewhere %.3g", maxAll, maxAbs, meanSeam, meanIn)
	if maxAll == 0 || maxAll > maxAbs {
		t.Errorf("tiled vs full decode: max difference %g not in (0, max |output| %g]", maxAll, maxAbs)
	}
	if meanSeam <= meanIn {
		t.Errorf("tiled vs full decode: mean difference near seams %g not above elsewhere %g", meanSeam, meanIn)
	}
	// Larger tiles keep more context: the difference shrinks.
	bigger, err := m.DecodeTiled(z, TileOptions{TileSize: 2 * st})
	if err != nil {
		t.Fatal(err)
	}
	meanOf := func(a []float32) float64 {
		var s float64
		for i := range a {
			s += math.Abs(float64(a[i]) - float64(fd[i]))
		}
		return s / float64(len(a))
	}
	small, large := meanOf(gd), meanOf(bigger.Data())
	t.Logf("mean |tiled - full|: tile %d: %.3g, tile %d: %.3g", st, small, 2*st, large)
	if large >= small {
		t.Errorf("doubling the tile size did not bring the tiled decode closer to the full one (%g, then %g)", small, large)
	}
}

func TestTiledEncodeMatchesDiffusers(t *testing.T) {
	m := goldenVAE(t)
	st, lt, ov := diffusersSizes(m.Cfg)
	f := m.Factor()
	h, w := 2*lt-3, lt+5 // latent size
	x := randTensor(4, 0.5, 2, m.Cfg.InChannels, h*f, w*f)
	got, err := m.EncodeTiled(x, TileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	blend := int(float64(lt) * ov)
	ref := refTiled(t, x, st, int(float64(st)*(1-ov)), blend, lt-blend, m.moments)
	want := posterior(tensor.FromSlice(ref.d, ref.n, ref.c, ref.h, ref.w))
	if !tensor.SameShape(got.Mean.Shape(), []int{2, m.Cfg.LatentChannels, h, w}) {
		t.Fatalf("tiled encode mean shape %v, want [2 %d %d %d]", got.Mean.Shape(), m.Cfg.LatentChannels, h, w)
	}
	for _, p := range [][2]*tensor.Tensor{{got.Mean, want.Mean}, {got.LogVar, want.LogVar}, {got.Std, want.Std}} {
		if d := maxDiff(p[0].Data(), p[1].Data()); d != 0 {
			t.Errorf("tiled encode differs from the diffusers transcription by %g", d)
		}
	}
}

func TestTiledShapes(t *testing.T) {
	m := goldenVAE(t)
	_, lt, _ := diffusersSizes(m.Cfg)
	f := m.Factor()
	for _, hw := range [][2]int{{lt + 1, 3}, {5, 2*lt + 1}, {lt*2 + 5, lt + 3}} {
		z := randTensor(5, 1, 2, m.Cfg.LatentChannels, hw[0], hw[1])
		got, err := m.DecodeTiled(z, TileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if want := []int{2, m.Cfg.OutChannels, hw[0] * f, hw[1] * f}; !tensor.SameShape(got.Shape(), want) {
			t.Errorf("latent %v: tiled decode shape %v, want %v", hw, got.Shape(), want)
		}
		// A larger tile with another overlap still gives the full size.
		got, err = m.DecodeTiled(z, TileOptions{TileSize: 2 * m.Cfg.SampleSize, Overlap: 0.5})
		if err != nil {
			t.Fatal(err)
		}
		if want := []int{2, m.Cfg.OutChannels, hw[0] * f, hw[1] * f}; !tensor.SameShape(got.Shape(), want) {
			t.Errorf("latent %v, tile %d overlap 0.5: shape %v, want %v", hw, 2*m.Cfg.SampleSize, got.Shape(), want)
		}
	}
	// DecodeWithin slices the batch and tiles images over the budget.
	z := randTensor(6, 1, 2, m.Cfg.LatentChannels, lt+2, lt)
	per := (lt + 2) * f * lt * f
	tiled, err := m.DecodeTiled(z, TileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		budget int
		want   *tensor.Tensor
	}{{2 * per, mustDecode(t, m, z)}, {per, mustDecode(t, m, z)}, {per - 1, tiled}} {
		got, err := m.DecodeWithin(z, c.budget, TileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !tensor.SameShape(got.Shape(), c.want.Shape()) {
			t.Fatalf("budget %d: shape %v, want %v", c.budget, got.Shape(), c.want.Shape())
		}
		if d := maxDiff(got.Data(), c.want.Data()); d > 1e-5 {
			t.Errorf("budget %d: differs by %g", c.budget, d)
		}
	}
}

func TestTiledErrors(t *testing.T) {
	m := goldenVAE(t)
	f := m.Factor()
	lat, img := m.Cfg.LatentChannels, m.Cfg.InChannels
	big := 2 * m.Cfg.SampleSize
	for _, c := range []struct {
		name string
		z    *tensor.Tensor
		o    TileOptions
	}{
		{"rank 3", tensor.Zeros(lat, 20, 20), TileOptions{}},
		{"channels", tensor.Zeros(1, lat+1, 20, 20), TileOptions{}},
		{"tile not a multiple of the factor", tensor.Zeros(1, lat, 20, 20), TileOptions{TileSize: f*4 + 1}},
		{"negative tile", tensor.Zeros(1, lat, 20, 20), TileOptions{TileSize: -f}},
		{"overlap 1", tensor.Zeros(1, lat, 20, 20), TileOptions{Overlap: 1}},
		{"negative overlap", tensor.Zeros(1, lat, 20, 20), TileOptions{Overlap: -0.25}},
		{"fractional latent step", tensor.Zeros(1, lat, 20, 20), TileOptions{TileSize: f, Overlap: 0.3}},
	} {
		if _, err := m.DecodeTiled(c.z, c.o); err == nil {
			t.Errorf("DecodeTiled %s: no error", c.name)
		}
	}
	if _, err := m.DecodeAuto(tensor.Zeros(1, lat+1, 4, 4)); err == nil {
		t.Error("DecodeAuto with wrong channels: no error")
	}
	for _, c := range []struct {
		name string
		x    *tensor.Tensor
	}{
		{"rank 3", tensor.Zeros(img, big, big)},
		{"channels", tensor.Zeros(1, img+1, big, big)},
		{"side not a multiple of the factor", tensor.Zeros(1, img, big+1, big)},
	} {
		if _, err := m.EncodeTiled(c.x, TileOptions{}); err == nil {
			t.Errorf("EncodeTiled %s: no error", c.name)
		}
	}
}
