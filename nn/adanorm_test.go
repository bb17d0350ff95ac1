package nn

import (
	"math"
	"testing"

	"github.com/diffuse-go/diffuse/tensor"
)

func TestSinCosPosEmbed2D(t *testing.T) {
	// 2×3 grid, dim 8: per axis 4 channels (2 sines, 2 cosines) with
	// frequencies 1 and 1/100; columns first, then rows.
	e := SinCosPosEmbed2D(8, 2, 3, 2, 1)
	if s := e.Shape(); s[0] != 6 || s[1] != 8 {
		t.Fatalf("shape %v", s)
	}
	pos := func(r, c int) []float32 { return e.Data()[(r*3+c)*8 : (r*3+c+1)*8] }
	want := func(col, row float64) []float64 {
		// grid coordinates scale by baseSize/size: columns 2/3, rows 1.
		return []float64{math.Sin(col), math.Sin(col / 100), math.Cos(col), math.Cos(col / 100),
			math.Sin(row), math.Sin(row / 100), math.Cos(row), math.Cos(row / 100)}
	}
	for r := 0; r < 2; r++ {
		for c := 0; c < 3; c++ {
			col := float64(float32(c) / float32(3.0/2.0))
			for i, w := range want(col, float64(r)) {
				if d := math.Abs(float64(pos(r, c)[i]) - w); d > 1e-6 {
					t.Errorf("(%d,%d)[%d] = %g, want %g", r, c, i, pos(r, c)[i], w)
				}
			}
		}
	}
}

func TestUnpatchifyInvertsPatchLayout(t *testing.T) {
	// Image [1, 2, 4, 6] in 2×2 patches: token (i, j) holds the patch's
	// values in (p, q, c) order.
	const c, h, w, p = 2, 2, 3, 2
	img := make([]float32, c*h*p*w*p)
	for i := range img {
		img[i] = float32(i)
	}
	x := tensor.FromSlice(img, 1, c, h*p, w*p)
	tokens := x.Reshape(1, c, h, p, w, p).Permute(0, 2, 4, 3, 5, 1).Reshape(1, h*w, p*p*c)
	back := Unpatchify(tokens, h, w, p, c).Contiguous().Data()
	for i := range img {
		if back[i] != img[i] {
			t.Fatalf("element %d = %g, want %g", i, back[i], img[i])
		}
	}
}

func TestBlockNormTypes(t *testing.T) {
	base := BlockConfig{Dim: 8, Heads: 2, HeadDim: 4}
	for _, c := range []struct {
		norm    string
		classes int
		ok      bool
		names   []string
	}{
		{"ada_norm_zero", 10, true, []string{"norm1.emb.class_embedder.embedding_table.weight", "norm1.linear.weight"}},
		{"ada_norm_zero", 0, false, nil},
		{"ada_norm_single", 0, true, []string{"scale_shift_table"}},
		{"ada_norm", 10, false, nil},
	} {
		cfg := base
		cfg.NormType, cfg.NumEmbedsAdaNorm = c.norm, c.classes
		b, err := NewBasicTransformerBlock(cfg)
		if (err == nil) != c.ok {
			t.Errorf("%s with %d classes: err %v", c.norm, c.classes, err)
			continue
		}
		if err != nil {
			continue
		}
		var ps Params
		b.Params("", &ps)
		have := map[string][]int{}
		for _, p := range ps.List() {
			have[p.Name] = p.Shape
		}
		for _, n := range c.names {
			if _, ok := have[n]; !ok {
				t.Errorf("%s: no parameter %s", c.norm, n)
			}
		}
		if s := have["norm1.emb.class_embedder.embedding_table.weight"]; s != nil && s[0] != c.classes+1 {
			t.Errorf("label table has %d rows, want %d (null class included)", s[0], c.classes+1)
		}
	}
}
