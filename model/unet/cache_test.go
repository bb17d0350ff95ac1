package unet

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/diffuse-go/diffuse/tensor"
)

// sdLike is a three-level UNet laid out as SD 1.5's (cross-attention down
// blocks, a plain deepest one, two resnets per down block, three per up
// block), small enough for a test: 9 skip connections.
func sdLike() Config {
	c := Defaults()
	c.BlockOutChannels = []int{8, 16, 16}
	c.DownBlockTypes = []string{"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"}
	c.UpBlockTypes = []string{"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"}
	c.LayersPerBlock = IntList{2}
	c.NormNumGroups = 4
	c.CrossAttentionDim = IntList{8}
	c.AttentionHeadDim = IntList{2}
	return c
}

// TestCacheFullStepIsForward checks that a full step with a cache is
// Forward bit for bit, for every branch.
func TestCacheFullStepIsForward(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	m := initTiny(t, sdLike())
	if got := m.Skips(); got != 9 {
		t.Fatalf("Skips() = %d, want 9 (conv_in, 2+1, 2+1, 2)", got)
	}
	x, cond := randT(r, 2, 4, 8, 8), Cond{EncoderHiddenStates: randT(r, 2, 3, 8)}
	want, err := m.Forward(x, []float32{500}, cond)
	if err != nil {
		t.Fatal(err)
	}
	for branch := range m.Skips() {
		c := &Cache{Branch: branch}
		got, err := m.ForwardCached(x, []float32{500}, cond, c, true)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Data(), want.Data()) {
			t.Errorf("branch %d: full step differs from Forward", branch)
		}
		if c.Full != 1 || c.Partial != 0 || c.feature == nil {
			t.Errorf("branch %d: counts %d full, %d partial, feature kept %v", branch, c.Full, c.Partial, c.feature != nil)
		}
	}
}

// TestCachePartialStepSameInput checks the cached step's plumbing: on the
// very input of the full step the cached deep features are the ones the
// full step would compute, so the cached step must give Forward's output
// bit for bit, for every branch and for sizes that make the upsamplers
// take their sizes from the skips.
func TestCachePartialStepSameInput(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, cfg := range []struct {
		name string
		c    Config
		h, w int
	}{{"sd-like 8x8", sdLike(), 8, 8}, {"sd-like 7x10", sdLike(), 7, 10}, {"two-level 6x6", tiny(), 6, 6}} {
		m := initTiny(t, cfg.c)
		x, cond := randT(r, 2, 4, cfg.h, cfg.w), Cond{EncoderHiddenStates: randT(r, 2, 3, 8)}
		ts := []float32{300}
		want, err := m.Forward(x, ts, cond)
		if err != nil {
			t.Fatal(err)
		}
		for branch := range m.Skips() {
			c := &Cache{Branch: branch}
			if _, err := m.ForwardCached(x, ts, cond, c, true); err != nil {
				t.Fatal(err)
			}
			got, err := m.ForwardCached(x, ts, cond, c, false)
			if err != nil {
				t.Fatalf("%s branch %d: %v", cfg.name, branch, err)
			}
			if !slices.Equal(got.Data(), want.Data()) {
				t.Errorf("%s branch %d: cached step on the full step's input differs from Forward", cfg.name, branch)
			}
			if c.Full != 1 || c.Partial != 1 {
				t.Errorf("%s branch %d: %d full, %d partial forwards, want 1 and 1", cfg.name, branch, c.Full, c.Partial)
			}
		}
	}
}

// TestCachePartialStepReuses checks that a cached step on a new input
// really reuses the old deep features (its output is not Forward's on that
// input, but close to it for a small change of the input), that a first
// step without a cached feature runs in full, and that a new input shape
// runs in full. The timestep stays: random weights make the time
// embedding's response to it chaotic, where trained ones are smooth.
func TestCachePartialStepReuses(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	m := initTiny(t, sdLike())
	cond := Cond{EncoderHiddenStates: randT(r, 1, 3, 8)}
	x0 := randT(r, 1, 4, 8, 8)
	x1 := tensor.Add(x0, tensor.Scale(randT(r, 1, 4, 8, 8), 0.01))
	c := &Cache{Branch: 3}
	if _, err := m.ForwardCached(x0, []float32{500}, cond, c, false); err != nil {
		t.Fatal(err)
	}
	if c.Full != 1 || c.Partial != 0 {
		t.Fatalf("a first step without a cached feature: %d full, %d partial, want a full one", c.Full, c.Partial)
	}
	got, err := m.ForwardCached(x1, []float32{500}, cond, c, false)
	if err != nil {
		t.Fatal(err)
	}
	want, err := m.Forward(x1, []float32{500}, cond)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(got.Data(), want.Data()) {
		t.Error("cached step on a new input equals the full forward: the cache is not used")
	}
	if d := maxAbsDiff(got.Data(), want.Data()); d > 0.05*maxAbs(want.Data()) {
		t.Errorf("cached step off by %g (output scale %g) for a 1%% input change", d, maxAbs(want.Data()))
	}
	if _, err := m.ForwardCached(randT(r, 1, 4, 16, 16), []float32{480}, cond, c, false); err != nil {
		t.Fatal(err)
	}
	if c.Full != 2 || c.Partial != 1 {
		t.Errorf("after a new input shape: %d full, %d partial, want 2 and 1", c.Full, c.Partial)
	}
}

// TestCacheRefusals checks the named errors: a branch outside the UNet's
// skips, and adapter residuals on a cached step.
func TestCacheRefusals(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	m := initTiny(t, sdLike())
	x, cond := randT(r, 1, 4, 8, 8), Cond{EncoderHiddenStates: randT(r, 1, 3, 8)}
	for _, b := range []int{-1, m.Skips()} {
		if _, err := m.ForwardCached(x, []float32{1}, cond, &Cache{Branch: b}, true); err == nil {
			t.Errorf("branch %d accepted", b)
		}
	}
	c := &Cache{}
	if _, err := m.ForwardCached(x, []float32{1}, cond, c, true); err != nil {
		t.Fatal(err)
	}
	// One T2I-Adapter residual per down block (their shapes are not read).
	cond.DownIntrablockAdditionalResidual = []*tensor.Tensor{tensor.Zeros(1), tensor.Zeros(1), tensor.Zeros(1)}
	if _, err := m.ForwardCached(x, []float32{1}, cond, c, false); !errors.Is(err, ErrCacheAdapters) {
		t.Errorf("adapter residuals on a cached step: %v, want ErrCacheAdapters", err)
	}
}

func maxAbsDiff(a, b []float32) float32 {
	var d float32
	for i := range a {
		d = max(d, abs32(a[i]-b[i]))
	}
	return d
}

func maxAbs(a []float32) float32 {
	var d float32
	for _, v := range a {
		d = max(d, abs32(v))
	}
	return d
}

func abs32(v float32) float32 {
	if v < 0 {
		return -v
	}
	return v
}
