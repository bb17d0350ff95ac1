package main

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/diffuse-go/diffuse/model/dit"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
	cliptok "github.com/diffuse-go/diffuse/tokenizer/clip"
)

// cacheBench is what `bench -only cache` measures: whole generations with
// and without a step cache, same seed, at each step count.
type cacheBench struct {
	steps []int
	cache pipeline.StepCache
	// forwards is the number of full and of cached forwards timed side by
	// side (interleaved) on a fixed input before the generations.
	forwards int
	// repeat is how many uncached and cached generations run at each step
	// count, alternating (0: 1); medians are reported.
	repeat int
}

// parseSteps reads a comma list of step counts.
func parseSteps(s string) ([]int, error) {
	var out []int
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	for _, part := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n < 1 || n > pipeline.MaxSteps {
			return nil, fmt.Errorf("bench: step count %q must be in [1, %d]", part, pipeline.MaxSteps)
		}
		out = append(out, n)
	}
	return out, nil
}

// cacheRun is one timed generation: its images, its time in all, in the
// denoising loop and on the CPU, and its forward counts.
type cacheRun struct {
	images           *tensor.Tensor
	total, loop, cpu time.Duration
	stats            pipeline.CacheStats
}

// cacheGen generates with step cache sc, reporting its loop time through
// progress.
type cacheGen func(sc pipeline.StepCache, progress func(step, total int, elapsed time.Duration)) (*tensor.Tensor, pipeline.CacheStats, error)

// timedRun times gen with step cache sc.
func timedRun(gen cacheGen, sc pipeline.StepCache) (cacheRun, error) {
	var r cacheRun
	t0, c0 := time.Now(), cpuTime()
	img, stats, err := gen(sc, func(_, _ int, elapsed time.Duration) { r.loop = elapsed })
	r.total, r.cpu, r.images, r.stats = time.Since(t0), cpuTime()-c0, img, stats
	return r, err
}

// compareCache runs gen uncached and with step cache c, repeat times each,
// alternating in the order ABBA… so that a drift of the machine's load
// weighs on both alike, and reports the medians.
func compareCache(what string, repeat int, c pipeline.StepCache, gen cacheGen) error {
	if repeat < 1 {
		repeat = 1
	}
	var off, on []cacheRun
	for r := range repeat {
		order := []bool{false, true}
		if r%2 == 1 {
			order = []bool{true, false}
		}
		for _, cached := range order {
			sc, runs := pipeline.StepCache{}, &off
			if cached {
				sc, runs = c, &on
			}
			run, err := timedRun(gen, sc)
			if err != nil {
				return err
			}
			*runs = append(*runs, run)
		}
	}
	reportCache(what, off, on)
	return nil
}

// medianRun is the runs' first images and stats with the median of each
// time.
func medianRun(rs []cacheRun) cacheRun {
	pick := func(f func(cacheRun) time.Duration) time.Duration {
		ds := make([]time.Duration, len(rs))
		for i, r := range rs {
			ds[i] = f(r)
		}
		return median(ds)
	}
	m := rs[0]
	m.total = pick(func(r cacheRun) time.Duration { return r.total })
	m.loop = pick(func(r cacheRun) time.Duration { return r.loop })
	m.cpu = pick(func(r cacheRun) time.Duration { return r.cpu })
	return m
}

// reportCache prints the cached runs against the uncached ones: medians of
// the times, and the image error of the first pair (a generation is
// deterministic; a later pair that differs is reported).
func reportCache(what string, offs, ons []cacheRun) {
	off, on := medianRun(offs), medianRun(ons)
	fmt.Printf("%s (median of %d each, alternating)\n"+
		"  uncached %8.1f s (loop %.1f s, CPU %.1f s)\n  cached   %8.1f s (loop %.1f s, CPU %.1f s), %d full + %d cached forwards\n"+
		"  speed-up %.2fx whole generation, %.2fx denoising loop, %.2fx CPU time; PSNR %.1f dB, max abs diff %.1f/255 against uncached\n",
		what, len(offs), off.total.Seconds(), off.loop.Seconds(), off.cpu.Seconds(), on.total.Seconds(), on.loop.Seconds(), on.cpu.Seconds(),
		on.stats.Full, on.stats.Cached, off.total.Seconds()/on.total.Seconds(), off.loop.Seconds()/on.loop.Seconds(),
		off.cpu.Seconds()/on.cpu.Seconds(), psnr(off.images.Data(), on.images.Data()), 255*maxAbsDiff(off.images.Data(), on.images.Data()))
	for i := 1; i < len(offs); i++ {
		if psnr(offs[0].images.Data(), offs[i].images.Data()) != math.Inf(1) || psnr(ons[0].images.Data(), ons[i].images.Data()) != math.Inf(1) {
			fmt.Printf("  warning: repeat %d gave different images\n", i+1)
		}
	}
}

// maxAbsDiff is the largest absolute difference of two equal-length slices.
func maxAbsDiff(a, b []float32) float64 {
	var m float64
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return m
}

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

// benchCacheSD generates with the SD pipeline on the bench models (SD
// 1.x layout), without and with DeepCache, at each step count.
func benchCacheSD(ctx context.Context, bm benchModels, px int, cb cacheBench) error {
	if len(bm.text) != 1 || bm.unet == nil || bm.vae == nil {
		return fmt.Errorf("bench: -only cache times SD 1.x/2.x generations (a text encoder, a UNet and a VAE)")
	}
	tok, err := cliptok.New(cliptok.Options{Pad: cliptok.PadEOS})
	if err != nil {
		return err
	}
	cfg, err := scheduler.ParseConfig([]byte(pipeline.SD15SchedulerConfig))
	if err != nil {
		return err
	}
	p := &pipeline.SD{TextEncoder: bm.text[0], Tokenizer: tok, UNet: bm.unet, VAE: bm.vae}
	c := cb.cache
	c.Mode = pipeline.CacheDeep
	iv := c.Interval
	if iv == 0 {
		iv = pipeline.DefaultCacheInterval
	}
	if cb.forwards > 0 {
		lat := px / 8
		x := tensor.Full(0.1, 2, bm.unet.Cfg.InChannels, lat, lat)
		cond := unet.Cond{EncoderHiddenStates: tensor.Full(0.01, 2, 77, bm.ctxDim)}
		uc := &unet.Cache{Branch: c.Branch}
		full := func() error { _, err := bm.unet.ForwardCached(x, []float32{999}, cond, uc, true); return err }
		cached := func() error { _, err := bm.unet.ForwardCached(x, []float32{999}, cond, uc, false); return err }
		if err := sideBySide(fmt.Sprintf("unet %dpx (CFG batch 2), deepcache branch %d", px, c.Branch), cb, iv, full, cached); err != nil {
			return err
		}
	}
	if len(cb.steps) > 0 {
		// A first generation packs the weights for the GEMM, untimed.
		s, err := scheduler.New("euler", cfg)
		if err != nil {
			return err
		}
		if _, err := p.Generate(ctx, pipeline.Request{Prompts: []string{"warm-up"}, Width: px, Height: px, Steps: 1, Guidance: 7,
			Scheduler: s, Noise: rng.New(1), SkipDecode: true}); err != nil {
			return err
		}
	}
	for _, n := range cb.steps {
		gen := func(sc pipeline.StepCache, progress func(int, int, time.Duration)) (*tensor.Tensor, pipeline.CacheStats, error) {
			s, err := scheduler.New("euler", cfg)
			if err != nil {
				return nil, pipeline.CacheStats{}, err
			}
			res, err := p.Generate(ctx, pipeline.Request{Prompts: []string{"a photograph of an astronaut riding a horse"},
				Width: px, Height: px, Steps: n, Guidance: 7, Scheduler: s, Noise: rng.New(42), Cache: sc, Progress: progress})
			if err != nil {
				return nil, pipeline.CacheStats{}, err
			}
			return res.Images, res.Cache, nil
		}
		if err := compareCache(fmt.Sprintf("sd %dpx, euler, %d steps, CFG 7, deepcache interval %d branch %d:", px, n, iv, c.Branch),
			cb.repeat, c, gen); err != nil {
			return err
		}
	}
	return nil
}

// benchDiTXL2 is DiT-XL/2 at 256² (facebook/DiT-XL-2-256's transformer).
func benchDiTXL2() dit.Config {
	return dit.Config{NumAttentionHeads: 16, AttentionHeadDim: 72, InChannels: 4, OutChannels: 8, NumLayers: 28,
		AttentionBias: true, SampleSize: 32, PatchSize: 2, ActivationFn: "gelu-approximate", NumEmbedsAdaNorm: 1000,
		NormType: "ada_norm_zero", NormEps: 1e-5}
}

// benchCacheDiT generates with a random DiT-XL/2-256 and the SD VAE,
// without and with the first-block cache, at each step count.
func benchCacheDiT(ctx context.Context, dt tensor.DType, cb cacheBench) error {
	t0 := time.Now()
	m, err := dit.New(benchDiTXL2())
	if err != nil {
		return err
	}
	nn.Init(m, 5, dt)
	v, err := vae.New(vae.SD())
	if err != nil {
		return err
	}
	nn.Init(v, 2, dt)
	fmt.Printf("diffuse bench: random DiT-XL/2-256 and SD VAE, %s weights (built in %.1fs)\n", dt, time.Since(t0).Seconds())
	cfg, err := scheduler.ParseConfig([]byte(pipeline.DiTSchedulerConfig))
	if err != nil {
		return err
	}
	p := &pipeline.DiT{Transformer: m, VAE: v}
	c := cb.cache
	c.Mode = pipeline.CacheFirstBlock
	if cb.forwards > 0 {
		x := tensor.Full(0.1, 2, 4, 32, 32)
		ts, labels := []float32{999, 999}, []int64{207, 1000}
		bc := &nn.BlockCache{Threshold: 1} // the same input: every forward after the first reuses
		full := func() error { _, err := m.Forward(x, ts, labels); return err }
		cached := func() error { _, err := m.ForwardCached(x, ts, labels, bc); return err }
		if err := cached(); err != nil {
			return err
		}
		// The interval of a fixed schedule, for the projection: fbcache
		// decides per step, so the projection is what every other step
		// reused would give.
		if err := sideBySide("dit-xl/2 256px (CFG batch 2), fbcache step with the other blocks reused", cb, 2, full, cached); err != nil {
			return err
		}
	}
	if len(cb.steps) > 0 {
		s, err := scheduler.New("dpm++2m", cfg)
		if err != nil {
			return err
		}
		if _, err := p.Generate(ctx, pipeline.DiTRequest{ClassLabels: []int64{1}, Steps: 1, Scheduler: s, Noise: rng.New(1),
			SkipDecode: true}); err != nil {
			return err
		}
	}
	th := c.Threshold
	if th == 0 {
		th = pipeline.DefaultCacheThreshold
	}
	for _, n := range cb.steps {
		gen := func(sc pipeline.StepCache, progress func(int, int, time.Duration)) (*tensor.Tensor, pipeline.CacheStats, error) {
			s, err := scheduler.New("dpm++2m", cfg)
			if err != nil {
				return nil, pipeline.CacheStats{}, err
			}
			res, err := p.Generate(ctx, pipeline.DiTRequest{ClassLabels: []int64{207}, Steps: n, Guidance: 4, Scheduler: s,
				Noise: rng.New(42), Cache: sc, Progress: progress})
			if err != nil {
				return nil, pipeline.CacheStats{}, err
			}
			return res.Images, res.Cache, nil
		}
		if err := compareCache(fmt.Sprintf("dit-xl/2 256px, dpm++2m, %d steps, CFG 4, fbcache threshold %g:", n, th), cb.repeat, c, gen); err != nil {
			return err
		}
	}
	return nil
}

// sideBySide times cb.forwards full and cached forwards, interleaved so
// that the machine's load weighs on both alike (the first full one warms
// up, untimed), and projects the denoising loop's speed-up at each step
// count with a full forward every interval steps.
func sideBySide(what string, cb cacheBench, interval int, full, cached func() error) error {
	if err := full(); err != nil {
		return err
	}
	var fs, cs []time.Duration
	for range cb.forwards {
		for _, f := range []struct {
			run func() error
			ds  *[]time.Duration
		}{{full, &fs}, {cached, &cs}} {
			t0 := time.Now()
			if err := f.run(); err != nil {
				return err
			}
			*f.ds = append(*f.ds, time.Since(t0))
		}
	}
	f, c := median(fs).Seconds(), median(cs).Seconds()
	fmt.Printf("%s: full forward %.2f s, cached forward %.2f s (median of %d each, interleaved): %.1fx\n", what, f, c, cb.forwards, f/c)
	for _, n := range []int{20, 30} {
		nf := (n + interval - 1) / interval
		fmt.Printf("  projected loop speed-up at %d steps, a full forward every %d: %.2fx\n", n, interval, float64(n)*f/(float64(nf)*f+float64(n-nf)*c))
	}
	return nil
}
