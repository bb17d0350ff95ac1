package t2iadapter

import (
	"math"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

func smallConfig(kind string) Config {
	c := Config{InChannels: 3, Channels: []int{8, 16, 16}, NumResBlocks: 1, DownscaleFactor: 2, AdapterType: kind}
	if kind == FullAdapterXL {
		c.Channels = []int{8, 16, 16, 16}
	}
	return c
}

func newLoaded(t *testing.T, c Config, seed uint64) *Model {
	t.Helper()
	m, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	nn.Init(m, seed, tensor.F32)
	return m
}

func ramp(shape ...int) *tensor.Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.Sin(float64(i) * 0.37))
	}
	return tensor.FromSlice(v, shape...)
}

func TestParseConfigDefaultsAndErrors(t *testing.T) {
	c, err := ParseConfig([]byte(`{"adapter_type": "light_adapter", "channels": [320, 640, 1280]}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.InChannels != 3 || c.NumResBlocks != 2 || c.DownscaleFactor != 8 || c.AdapterType != LightAdapter {
		t.Errorf("defaults not applied: %+v", c)
	}
	for _, bad := range []string{
		`{"adapter_type": "mega_adapter"}`,
		`{"channels": []}`,
		`{"downscale_factor": 0}`,
		`{"in_channels": 0}`,
		`{"adapter_type": "full_adapter_xl", "channels": [8, 16, 16, 32]}`,
		`{"adapter_type": "light_adapter", "channels": [2]}`,
		`{"channels": "x"}`,
		`{"num_res_blocks": null}`,
		`{"in_channels": null}`,
	} {
		if _, err := ParseConfig([]byte(bad)); err == nil {
			t.Errorf("ParseConfig(%s) accepted a bad config", bad)
		}
	}
}

func TestParamNames(t *testing.T) {
	for _, kind := range []string{FullAdapter, FullAdapterXL, LightAdapter} {
		m, err := New(smallConfig(kind))
		if err != nil {
			t.Fatal(err)
		}
		var ps nn.Params
		m.Params("", &ps)
		names := map[string]bool{}
		for _, p := range ps.List() {
			if !strings.HasPrefix(p.Name, "adapter.") {
				t.Errorf("%s: parameter %q lacks the adapter. prefix", kind, p.Name)
			}
			names[p.Name] = true
		}
		if kind == LightAdapter {
			if names["adapter.conv_in.weight"] || !names["adapter.body.3.out_conv.weight"] {
				t.Errorf("light adapter names wrong: %v", names)
			}
		} else if !names["adapter.conv_in.weight"] || !names["adapter.body.1.in_conv.weight"] {
			t.Errorf("%s names wrong: %v", kind, names)
		}
	}
}

func TestForwardShapes(t *testing.T) {
	for _, tc := range []struct {
		kind  string
		shape [][]int
		total int
	}{
		{FullAdapter, [][]int{{1, 8, 8, 8}, {1, 16, 4, 4}, {1, 16, 2, 2}}, 8},
		{FullAdapterXL, [][]int{{1, 8, 8, 8}, {1, 16, 8, 8}, {1, 16, 4, 4}, {1, 16, 4, 4}}, 4},
		{LightAdapter, [][]int{{1, 8, 8, 8}, {1, 16, 4, 4}, {1, 16, 2, 2}, {1, 16, 1, 1}}, 16},
	} {
		m := newLoaded(t, smallConfig(tc.kind), 1)
		feats, err := m.Forward(ramp(1, 3, 16, 16))
		if err != nil {
			t.Fatal(err)
		}
		if len(feats) != len(tc.shape) || m.NumFeatures() != len(tc.shape) {
			t.Fatalf("%s: %d features, want %d", tc.kind, len(feats), len(tc.shape))
		}
		for i, f := range feats {
			if !tensor.SameShape(f.Shape(), tc.shape[i]) {
				t.Errorf("%s: feature %d shape %v, want %v", tc.kind, i, f.Shape(), tc.shape[i])
			}
		}
		if got := m.TotalDownscaleFactor(); got != tc.total {
			t.Errorf("%s: total downscale %d, want %d", tc.kind, got, tc.total)
		}
	}
}

func TestForwardBadInput(t *testing.T) {
	m := newLoaded(t, smallConfig(FullAdapter), 1)
	for _, x := range []*tensor.Tensor{
		nil,
		ramp(1, 1, 16, 16), // wrong channel count
		ramp(3, 16, 16),    // wrong rank
		ramp(1, 3, 15, 16), // height not divisible by 2
		ramp(1, 3, 16, 9),  // width not divisible by 2
	} {
		if _, err := m.Forward(x); err == nil {
			t.Errorf("Forward accepted a bad image %v", x)
		}
	}
	u, err := New(smallConfig(FullAdapter))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Forward(ramp(1, 3, 16, 16)); err == nil || !strings.Contains(err.Error(), "not loaded") {
		t.Errorf("Forward of an unloaded model: %v", err)
	}
}

// TestOddSizes checks ceil-mode pooling: a 2×2 window sticking out of the
// input averages only the values inside it.
func TestOddSizes(t *testing.T) {
	x := ramp(2, 3, 5, 7)
	y := avgPool2Ceil(x)
	if !tensor.SameShape(y.Shape(), []int{2, 3, 3, 4}) {
		t.Fatalf("shape %v", y.Shape())
	}
	for b := 0; b < 2; b++ {
		for c := 0; c < 3; c++ {
			for r := 0; r < 3; r++ {
				for q := 0; q < 4; q++ {
					var s float64
					n := 0
					for dy := 0; dy < 2; dy++ {
						for dx := 0; dx < 2; dx++ {
							if 2*r+dy < 5 && 2*q+dx < 7 {
								s += float64(x.At(b, c, 2*r+dy, 2*q+dx))
								n++
							}
						}
					}
					if got, want := float64(y.At(b, c, r, q)), s/float64(n); math.Abs(got-want) > 1e-6 {
						t.Errorf("pool[%d,%d,%d,%d] = %g, want %g", b, c, r, q, got, want)
					}
				}
			}
		}
	}
	// A whole adapter on an image whose unshuffled size is odd.
	m := newLoaded(t, smallConfig(FullAdapter), 2)
	feats, err := m.Forward(ramp(1, 3, 10, 6))
	if err != nil {
		t.Fatal(err)
	}
	if !tensor.SameShape(feats[2].Shape(), []int{1, 16, 2, 1}) {
		t.Errorf("odd-size feature shape %v", feats[2].Shape())
	}
}

func TestMulti(t *testing.T) {
	a := newLoaded(t, smallConfig(FullAdapter), 1)
	b := newLoaded(t, smallConfig(FullAdapter), 2)
	x1, x2 := ramp(1, 3, 16, 16), tensor.Scale(ramp(1, 3, 16, 16), -0.5)
	f1, err := a.Forward(x1)
	if err != nil {
		t.Fatal(err)
	}
	f2, err := b.Forward(x2)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range [][]float32{{0.6, 0.4}, nil} {
		got, err := Multi{Adapters: []*Model{a, b}, Weights: w}.Forward([]*tensor.Tensor{x1, x2})
		if err != nil {
			t.Fatal(err)
		}
		w0, w1 := float32(0.5), float32(0.5)
		if w != nil {
			w0, w1 = w[0], w[1]
		}
		for k := range got {
			want := tensor.Add(tensor.Scale(f1[k], w0), tensor.Scale(f2[k], w1))
			if d := tensor.MaxAbsDiff(got[k], want); d > 0 {
				t.Errorf("weights %v level %d: max diff %g", w, k, d)
			}
		}
	}
	light := newLoaded(t, smallConfig(LightAdapter), 3)
	bad := []struct {
		name string
		m    Multi
		x    []*tensor.Tensor
	}{
		{"no adapters", Multi{}, nil},
		{"image count", Multi{Adapters: []*Model{a, b}}, []*tensor.Tensor{x1}},
		{"weight count", Multi{Adapters: []*Model{a, b}, Weights: []float32{1}}, []*tensor.Tensor{x1, x2}},
		{"downscale mismatch", Multi{Adapters: []*Model{a, light}}, []*tensor.Tensor{x1, x2}},
		{"bad image", Multi{Adapters: []*Model{a, b}}, []*tensor.Tensor{x1, ramp(1, 1, 16, 16)}},
	}
	for _, tc := range bad {
		if _, err := tc.m.Forward(tc.x); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

func TestScale(t *testing.T) {
	f := []*tensor.Tensor{ramp(1, 2, 2, 2)}
	s := Scale(f, 0.8)
	if d := tensor.MaxAbsDiff(s[0], tensor.Scale(f[0], 0.8)); d != 0 {
		t.Errorf("Scale differs by %g", d)
	}
}
