package pipeline_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/model/dit"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/tensor"
)

// psnr is the peak signal-to-noise ratio of two images in [0, 1], in dB.
func psnr(a, b []float32) float64 {
	var se float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		se += d * d
	}
	if se == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(float64(len(a))/se)
}

// sdCacheRun generates with the tiny SD pipeline and a step cache.
func sdCacheRun(t *testing.T, p *pipeline.SD, steps int, c pipeline.StepCache) *pipeline.Result {
	t.Helper()
	res, err := p.Generate(context.Background(), pipeline.Request{Prompts: []string{"a red cube"}, Width: 32, Height: 32,
		Steps: steps, Guidance: 5, Scheduler: euler(t), Noise: rng.New(7), Cache: c})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestDeepCacheSD checks DeepCache through the SD pipeline: interval 1
// runs every step in full and gives the uncached images bit for bit; the
// default interval runs a third of the UNet forwards in full and gives
// images close to the uncached ones.
func TestDeepCacheSD(t *testing.T) {
	p := tinySD(t)
	const steps = 9
	off := sdCacheRun(t, p, steps, pipeline.StepCache{})
	if off.Cache != (pipeline.CacheStats{}) {
		t.Errorf("no cache counted %+v", off.Cache)
	}
	all := sdCacheRun(t, p, steps, pipeline.StepCache{Mode: pipeline.CacheDeep, Interval: 1})
	if !slices.Equal(all.Images.Data(), off.Images.Data()) {
		t.Error("deepcache with interval 1 differs from no cache")
	}
	if all.Cache != (pipeline.CacheStats{Full: steps}) {
		t.Errorf("interval 1: %+v, want %d full forwards", all.Cache, steps)
	}
	for _, branch := range []int{0, 4} {
		on := sdCacheRun(t, p, steps, pipeline.StepCache{Mode: pipeline.CacheDeep, Branch: branch})
		if on.Cache != (pipeline.CacheStats{Full: 3, Cached: 6}) {
			t.Errorf("branch %d: %+v, want 3 full (steps 0, 3, 6) and 6 cached forwards", branch, on.Cache)
		}
		if slices.Equal(on.Images.Data(), off.Images.Data()) {
			t.Errorf("branch %d: cached images equal the uncached ones: the cache is not used", branch)
		}
		// The tiny model's random weights give noise images, which react
		// more to a changed step than trained models' images do.
		db := psnr(on.Images.Data(), off.Images.Data())
		t.Logf("branch %d: PSNR %.1f dB against no cache", branch, db)
		if db < 30 {
			t.Errorf("branch %d: PSNR %.1f dB against no cache, want >= 30", branch, db)
		}
	}
}

// TestStepCacheRefusals checks that every refusal wraps ErrCacheMode:
// modes a model cannot use, unknown modes, settings out of range, and
// DeepCache with adapters.
func TestStepCacheRefusals(t *testing.T) {
	p := tinySD(t)
	adapter := func(int, int, float64, *tensor.Tensor, *unet.Cond) error { return nil }
	for _, tc := range []struct {
		name string
		c    pipeline.StepCache
		edit func(r *pipeline.Request)
		want string
	}{
		{"fbcache on a UNet", pipeline.StepCache{Mode: pipeline.CacheFirstBlock}, nil, "fbcache"},
		{"unknown mode", pipeline.StepCache{Mode: "teacache"}, nil, "teacache"},
		{"negative interval", pipeline.StepCache{Mode: pipeline.CacheDeep, Interval: -1}, nil, "interval"},
		{"negative branch", pipeline.StepCache{Mode: pipeline.CacheDeep, Branch: -1}, nil, "branch"},
		{"branch beyond the skips", pipeline.StepCache{Mode: pipeline.CacheDeep, Branch: 99}, nil, "branch 99"},
		{"NaN threshold", pipeline.StepCache{Mode: pipeline.CacheDeep, Threshold: math.NaN()}, nil, "threshold"},
		{"adapters", pipeline.StepCache{Mode: pipeline.CacheDeep}, func(r *pipeline.Request) { r.Adapter = adapter }, "adapters"},
	} {
		r := pipeline.Request{Prompts: []string{"x"}, Width: 32, Height: 32, Steps: 2, Guidance: 5,
			Scheduler: euler(t), Noise: rng.New(1), Cache: tc.c}
		if tc.edit != nil {
			tc.edit(&r)
		}
		_, err := p.Generate(context.Background(), r)
		if !errors.Is(err, pipeline.ErrCacheMode) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrCacheMode naming %q", tc.name, err, tc.want)
		}
	}
}

// TestStepCacheFrontDoor checks Params.CacheMode: DeepCache runs and is
// written into the PNG parameters, a mode the model cannot use and
// DeepCache with a ControlNet are refused with ErrCacheMode.
func TestStepCacheFrontDoor(t *testing.T) {
	m := openTiny(t, pipeline.Options{})
	base := pipeline.Params{Prompt: "a cube", Steps: 6, Width: 64, Height: 64, Seed: 3}
	p := base
	p.CacheMode, p.CacheInterval = pipeline.CacheDeep, 2
	out, err := m.Generate(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	text := out.Images[0].Params.String()
	if !strings.Contains(text, "Cache: deepcache interval 2 branch 0") {
		t.Errorf("PNG parameters %q lack the cache", text)
	}
	plain, err := m.Generate(context.Background(), base)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(plain.Images[0].Params.String(), "Cache") {
		t.Errorf("uncached PNG parameters %q name a cache", plain.Images[0].Params.String())
	}
	p.CacheMode = pipeline.CacheFirstBlock
	if _, err := m.Generate(context.Background(), p); !errors.Is(err, pipeline.ErrCacheMode) || !strings.Contains(err.Error(), "tiny-sd") {
		t.Errorf("fbcache on SD: %v, want ErrCacheMode naming the model", err)
	}
	p.CacheMode = pipeline.CacheDeep
	p.ControlNets = []pipeline.ControlNet{{Path: tinyModels(t).ControlNet, Image: square(64, 64)}}
	if _, err := m.Generate(context.Background(), p); !errors.Is(err, pipeline.ErrCacheMode) {
		t.Errorf("deepcache with a ControlNet: %v, want ErrCacheMode", err)
	}
}

// tinyDiT is a random-weight DiT of four blocks on 8×8 latents.
func tinyDiT(t *testing.T) *pipeline.DiT {
	t.Helper()
	m, err := dit.New(dit.Config{NumAttentionHeads: 2, AttentionHeadDim: 8, InChannels: 4, OutChannels: 8, NumLayers: 4,
		AttentionBias: true, SampleSize: 8, PatchSize: 2, ActivationFn: "gelu-approximate", NumEmbedsAdaNorm: 10,
		NormType: "ada_norm_zero", NormEps: 1e-5})
	if err != nil {
		t.Fatal(err)
	}
	nn.Init(m, 3, tensor.F32)
	return &pipeline.DiT{Transformer: m}
}

func ditRun(t *testing.T, p *pipeline.DiT, c pipeline.StepCache) *pipeline.DiTResult {
	t.Helper()
	res, err := p.Generate(context.Background(), pipeline.DiTRequest{ClassLabels: []int64{3}, Steps: 12, Guidance: 4,
		Scheduler: euler(t), Noise: rng.New(5), SkipDecode: true, Cache: c})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestFBCacheDiT checks the first-block cache through the DiT pipeline: a
// threshold no step meets runs every step in full and gives the uncached
// latents bit for bit; a loose one reuses the blocks on some steps and
// stays close to the uncached latents; SD's DeepCache is refused. The
// random weights make the first block's residual swing with the timestep
// (trained models' change smoothly), hence the loose threshold.
func TestFBCacheDiT(t *testing.T) {
	p := tinyDiT(t)
	off := ditRun(t, p, pipeline.StepCache{})
	strict := ditRun(t, p, pipeline.StepCache{Mode: pipeline.CacheFirstBlock, Threshold: 1e-9})
	if !slices.Equal(strict.Latents.Data(), off.Latents.Data()) || strict.Cache != (pipeline.CacheStats{Full: 12}) {
		t.Errorf("threshold 1e-9: %+v, latents equal %v; want 12 full forwards and the uncached latents",
			strict.Cache, slices.Equal(strict.Latents.Data(), off.Latents.Data()))
	}
	loose := ditRun(t, p, pipeline.StepCache{Mode: pipeline.CacheFirstBlock, Threshold: 0.5})
	if loose.Cache.Cached == 0 || loose.Cache.Full+loose.Cache.Cached != 12 {
		t.Errorf("threshold 0.5: %+v, want some of the 12 forwards cached", loose.Cache)
	}
	var num, den float64
	for i, v := range off.Latents.Data() {
		d := float64(loose.Latents.Data()[i] - v)
		num, den = num+d*d, den+float64(v)*float64(v)
	}
	rel := math.Sqrt(num / den)
	t.Logf("threshold 0.5: %+v, relative latent error %.3g", loose.Cache, rel)
	if rel > 0.02 {
		t.Errorf("threshold 0.5: relative latent error %.3g, want <= 0.02", rel)
	}
	_, err := p.Generate(context.Background(), pipeline.DiTRequest{ClassLabels: []int64{3}, Steps: 2, Scheduler: euler(t),
		Noise: rng.New(5), SkipDecode: true, Cache: pipeline.StepCache{Mode: pipeline.CacheDeep}})
	if !errors.Is(err, pipeline.ErrCacheMode) {
		t.Errorf("deepcache on DiT: %v, want ErrCacheMode", err)
	}
}
