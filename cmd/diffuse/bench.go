package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/controlnet"
	"github.com/diffuse-go/diffuse/model/lora"
	"github.com/diffuse-go/diffuse/model/t2iadapter"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/tensor"
)

// benchModels are the models a bench run times.
type benchModels struct {
	text []*clip.Model
	unet *unet.Model
	vae  *vae.Model
	// ctxDim is the cross-attention width; pooled the pooled text width (SDXL).
	ctxDim, pooled int
}

// runBench times text encoding, UNet steps (with CFG: batch 2), VAE decoding
// and the per-step cost of adapters, on random full-size weights or on a
// real checkpoint (-m).
func runBench(ctx context.Context, args []string) (err error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	arch := fs.String("arch", "sd15", "model family with random weights: sd15, sdxl, or dit (DiT-XL/2-256; -only cache)")
	model := fs.String("m", "", "time this checkpoint (SD 1.x or SDXL file or diffusers folder) instead of random weights; an SD3 or FLUX checkpoint (folder, single file, GGUF, fp8) is timed through whole generations")
	var comps multiFlag
	fs.Var(&comps, "component", "NAME=PATH: a component the -m SD3/FLUX file lacks, as generate takes it (repeatable)")
	sizes := fs.String("size", "", "image sizes, comma separated (default 512 for sd15, 1024 for sdxl)")
	dtype := fs.String("dtype", "f16", "weight storage dtype: f32, f16 or bf16 (random weights, or conversion of -m)")
	steps := fs.Int("steps", 2, "UNet steps to time (each with CFG, batch 2); the median is reported (-only bf16: steps of each mode, 0 for none)")
	only := fs.String("only", "text,unet,vae", "what to time: text, unet, vae, controlnet, lora, t2i, cache (whole generations without and with a step cache), or bf16 (UNet steps in float32 and bfloat16 side by side, and bf16's image error)")
	threads := fs.Int("threads", 0, "threads (0 = all cores)")
	int8 := fs.Bool("int8", false, "SD3/FLUX -m: multiply Q8_0 weights by inputs quantised to 8 bits, with integer products (see generate -int8); also DIFFUSE_INT8=1")
	bf16 := fs.Bool("bf16", false, "compute products in bfloat16 (AVX512_BF16 CPUs only; no effect elsewhere); also DIFFUSE_BF16=1")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the timed part of the run (after the models are built; the weight-packing first UNet step included; the whole run for an SD3 or FLUX -m) to this file, for go tool pprof")
	var cb cacheBench
	cacheSteps := fs.String("cache-steps", "20,30", "-only cache: step counts of the generations")
	fs.IntVar(&cb.cache.Interval, "cache-interval", 0, "-only cache: deepcache interval (0: 3)")
	fs.IntVar(&cb.cache.Branch, "cache-branch", 0, "-only cache: deepcache branch")
	fs.Float64Var(&cb.cache.Threshold, "cache-threshold", 0, "-only cache: fbcache threshold (0: 0.1)")
	fs.IntVar(&cb.repeat, "cache-repeat", 1, "-only cache: generations of each kind per step count, alternating; medians reported")
	fs.IntVar(&cb.forwards, "cache-forwards", 0, "-only cache: also time this many full and cached forwards side by side on a fixed input")
	var bb bf16Bench
	fs.IntVar(&bb.genSteps, "bf16-gen-steps", 4, "-only bf16: Euler steps of each image of the error measurement (0: no images)")
	trainMethod := fs.String("train", "", "time training steps instead: lora or controlnet (random SD 1.5, batch 1; --size, --steps, --dtype of the frozen weights)")
	gradCkpt := fs.String("gradient-checkpointing", "both", "with --train: time gradient checkpointing on, off or both")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *threads > 0 {
		runtime.GOMAXPROCS(*threads)
	}
	if *trainMethod != "" {
		return benchTrainFlags(ctx, *trainMethod, *model, *sizes, *gradCkpt, *dtype, *cpuprofile, *steps)
	}
	bf16Set, int8Set := false, false
	fs.Visit(func(f *flag.Flag) { bf16Set, int8Set = bf16Set || f.Name == "bf16", int8Set || f.Name == "int8" })
	bf16Note, err := configureBF16(*bf16, bf16Set)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	dt, err := parseDType(*dtype)
	if err != nil {
		return err
	}
	if *model != "" && isFlowBench(*model) {
		opt, err := envOptions(os.Getenv, systemMemory())
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		setBF16Flag(&opt, *bf16, bf16Set)
		setInt8Flag(&opt, *int8, int8Set)
		opt.Threads, opt.MemoryLimit = max(*threads, 0), systemMemory()
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "dtype" {
				opt.DType = &dt // else the weights stay as stored (GGUF, fp8)
			}
		})
		if err := componentOptions(&opt, comps); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		// Flow-matching files are timed through whole generations, so the
		// profile covers the whole run, loading included.
		return withCPUProfile(*cpuprofile, func() error { return benchFlow(ctx, *model, opt, *sizes, *steps) })
	}
	if int8Set {
		// The other benchmarks build f32/f16/bf16 weights, which integer
		// products do not touch: refuse rather than ignore the flag.
		return fmt.Errorf("bench: -int8 applies to Q8_0 weights: give an SD3 or FLUX file with -m")
	}
	want := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		want[strings.TrimSpace(s)] = true
	}
	if want["cache"] {
		if cb.steps, err = parseSteps(*cacheSteps); err != nil {
			return err
		}
		if *arch == "dit" {
			return benchCacheDiT(ctx, dt, cb)
		}
		want["text"], want["unet"], want["vae"] = true, true, true
	}
	if want["bf16"] {
		if bb.mode, err = bf16Mode(); err != nil {
			return err
		}
		bb.steps = *steps
		want["text"], want["unet"], want["vae"] = true, true, true
	}
	var bm benchModels
	t0 := time.Now()
	if *model != "" {
		if bm, *arch, err = loadBenchModels(*model, dt); err != nil {
			return err
		}
		fmt.Printf("diffuse bench: %s (%s), loaded in %.1fs, %d threads, %s\n", *model, *arch, time.Since(t0).Seconds(), runtime.GOMAXPROCS(0), runtime.GOARCH)
	} else {
		if bm, err = randomBenchModels(*arch, dt, want); err != nil {
			return err
		}
		fmt.Printf("diffuse bench: arch %s, random %s weights (built in %.1fs), %d threads, %s\n", *arch, dt, time.Since(t0).Seconds(), runtime.GOMAXPROCS(0), runtime.GOARCH)
	}
	if bf16Note != "" {
		fmt.Println(bf16Note)
	}
	if *cpuprofile != "" {
		stop, perr := startCPUProfile(*cpuprofile)
		if perr != nil {
			return perr
		}
		// err is the named result: a failed profile write fails the run
		// unless it already failed for another reason.
		defer func() {
			if perr := stop(); perr != nil && err == nil {
				err = perr
			}
		}()
	}
	if *sizes == "" {
		*sizes = "512"
		if *arch == "sdxl" {
			*sizes = "1024"
		}
	}
	if want["text"] && !want["cache"] && !want["bf16"] {
		for i, m := range bm.text {
			ids := make([]int64, 2*77)
			for j := range ids {
				ids[j] = int64(j % 49000)
			}
			t := time.Now()
			if _, err := m.Forward(ids, 2, 77); err != nil {
				return err
			}
			report(fmt.Sprintf("text encoder %d (2×77 tokens)", i+1), time.Since(t))
		}
	}
	for _, s := range strings.Split(*sizes, ",") {
		px, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || px%64 != 0 || px <= 0 {
			return fmt.Errorf("bench: size %q must be a positive multiple of 64", s)
		}
		switch {
		case want["cache"]:
			err = benchCacheSD(ctx, bm, px, cb)
		case want["bf16"]:
			err = benchBF16(ctx, bm, px, bb)
		default:
			err = benchSize(ctx, bm, px, *steps, want, dt)
		}
		if err != nil {
			return err
		}
	}
	if rss := peakRSS(); rss > 0 {
		fmt.Printf("peak RSS: %.2f GiB\n", float64(rss)/(1<<30))
	}
	return nil
}

// withCPUProfile runs f under a CPU profile written to path (no profile
// when path is empty); a failed profile write fails the run unless f
// already did.
func withCPUProfile(path string, f func() error) error {
	if path == "" {
		return f()
	}
	stop, err := startCPUProfile(path)
	if err != nil {
		return err
	}
	err = f()
	if perr := stop(); perr != nil && err == nil {
		err = perr
	}
	return err
}

// startCPUProfile starts a CPU profile written to path. The returned stop
// function ends profiling and closes the file; its error reports a failed
// write or close, since a truncated profile is useless to pprof.
func startCPUProfile(path string) (stop func() error, err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("bench: cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench: cpu profile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("bench: cpu profile: %w", err)
		}
		return nil
	}, nil
}

func randomBenchModels(arch string, dt tensor.DType, want map[string]bool) (benchModels, error) {
	var bm benchModels
	var ucfg unet.Config
	var vcfg vae.Config
	var tcfgs []clip.Config
	switch arch {
	case "sd15":
		ucfg, vcfg, tcfgs, bm.ctxDim = unet.SD15(4), vae.SD(), []clip.Config{clip.SD15()}, 768
	case "sdxl":
		ucfg, vcfg, tcfgs, bm.ctxDim, bm.pooled = unet.SDXL(), vae.SDXL(), []clip.Config{clip.SD15(), clip.BigG()}, 2048, 1280
	default:
		return bm, fmt.Errorf("bench: unknown -arch %q (sd15, sdxl)", arch)
	}
	if want["text"] {
		for i, tc := range tcfgs {
			m, err := clip.New(tc)
			if err != nil {
				return bm, err
			}
			nn.Init(m, uint64(10+i), dt)
			bm.text = append(bm.text, m)
		}
	}
	var err error
	if want["unet"] || want["controlnet"] || want["lora"] || want["t2i"] {
		if bm.unet, err = unet.New(ucfg); err != nil {
			return bm, err
		}
		nn.Init(bm.unet, 1, dt)
	}
	if want["vae"] {
		if bm.vae, err = vae.New(vcfg); err != nil {
			return bm, err
		}
		nn.Init(bm.vae, 2, dt)
	}
	return bm, nil
}

func loadBenchModels(path string, dt tensor.DType) (benchModels, string, error) {
	opt := pipeline.LoadOptions{DType: &dt}
	var bm benchModels
	if c, err := pipeline.Load(path, opt); err == nil {
		bm.text, bm.unet, bm.vae = []*clip.Model{c.TextEncoder}, c.UNet, c.VAE
		bm.ctxDim = c.UNet.Cfg.CrossAttentionDim[0]
		return bm, "sd15", nil
	} else if !strings.Contains(err.Error(), "SDXL") {
		return bm, "", err
	}
	c, err := pipeline.LoadSDXL(path, opt)
	if err != nil {
		return bm, "", err
	}
	if c.TextEncoder != nil {
		bm.text = append(bm.text, c.TextEncoder)
	}
	bm.text = append(bm.text, c.TextEncoder2)
	bm.unet, bm.vae = c.UNet, c.VAE
	bm.ctxDim, bm.pooled = c.UNet.Cfg.CrossAttentionDim[0], c.TextEncoder2.Cfg.ProjectionDim
	return bm, "sdxl", nil
}

// unetStep times one CFG step (batch 2) and returns its duration.
func unetStep(u *unet.Model, x *tensor.Tensor, cond unet.Cond, t float32) (time.Duration, error) {
	t0 := time.Now()
	_, err := u.Forward(x, []float32{t}, cond)
	return time.Since(t0), err
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func benchSize(ctx context.Context, bm benchModels, px, steps int, want map[string]bool, dt tensor.DType) error {
	lat := px / 8
	var base time.Duration
	var x *tensor.Tensor
	var cond unet.Cond
	if bm.unet != nil {
		x = tensor.Full(0.1, 2, bm.unet.Cfg.InChannels, lat, lat)
		cond = unet.Cond{EncoderHiddenStates: tensor.Full(0.01, 2, 77, bm.ctxDim)}
		if bm.unet.Cfg.AdditionEmbedType == "text_time" {
			n := (bm.unet.Cfg.ProjectionClassEmbeddingsDim - bm.pooled) / bm.unet.Cfg.AdditionTimeEmbedDim
			ids := make([]float32, 2*n)
			for i := range ids {
				ids[i] = float32(px)
			}
			cond.TextEmbeds = tensor.Full(0.01, 2, bm.pooled)
			cond.TimeIDs = tensor.FromSlice(ids, 2, n)
		}
	}
	if bm.unet != nil && (want["unet"] || want["controlnet"] || want["lora"] || want["t2i"]) {
		// The first step packs every weight into the GEMM's panel cache;
		// time it apart so the per-step figures are steady-state.
		d, err := unetStep(bm.unet, x, cond, 999)
		if err != nil {
			return err
		}
		report(fmt.Sprintf("unet first step %dpx (packs weights)", px), d)
	}
	if want["unet"] {
		var ds []time.Duration
		for i := 0; i < steps; i++ {
			d, err := unetStep(bm.unet, x, cond, 999-float32(i))
			if err != nil {
				return err
			}
			ds = append(ds, d)
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		base = median(ds)
		report(fmt.Sprintf("unet step %dpx (CFG batch 2, median of %d)", px, steps), base)
	}
	if want["controlnet"] {
		cn, err := controlnet.New(controlnet.FromUNet(bm.unet.Cfg))
		if err != nil {
			return err
		}
		nn.Init(cn, 3, dt)
		img := tensor.Full(0.5, 2, 3, px, px)
		if _, err := cn.Forward(x, []float32{999}, cond, img, 1, false); err != nil { // warm-up: packs its weights
			return err
		}
		var ds []time.Duration
		for i := 0; i < steps; i++ {
			t0 := time.Now()
			res, err := cn.Forward(x, []float32{999}, cond, img, 1, false)
			if err != nil {
				return err
			}
			c := cond
			c.DownBlockAdditionalResiduals, c.MidBlockAdditionalResidual = res.Down, res.Mid
			if _, err := bm.unet.Forward(x, []float32{999}, c); err != nil {
				return err
			}
			ds = append(ds, time.Since(t0))
		}
		reportExtra(fmt.Sprintf("unet+controlnet step %dpx", px), median(ds), base)
	}
	if want["lora"] {
		dir, err := os.MkdirTemp("", "diffuse-bench")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		path := filepath.Join(dir, "lora.safetensors")
		if err := writeRandomLoRA(path, bm.unet, 16, 7); err != nil {
			return err
		}
		lf, err := lora.Load(path)
		if err != nil {
			return err
		}
		a, err := lora.Apply(bm.unet, lf, "unet", 1)
		if err != nil {
			return err
		}
		var ds []time.Duration
		for i := 0; i < steps; i++ {
			d, err := unetStep(bm.unet, x, cond, 999)
			if err != nil {
				a.Remove()
				return err
			}
			ds = append(ds, d)
		}
		reportExtra(fmt.Sprintf("unet step %dpx + rank-16 LoRA (unfused)", px), median(ds), base)
		a.Fuse()
		d, err := unetStep(bm.unet, x, cond, 999)
		if err != nil {
			return err
		}
		reportExtra(fmt.Sprintf("unet step %dpx + LoRA fused", px), d, base)
		a.Remove()
	}
	if want["t2i"] {
		acfg := t2iadapter.Defaults()
		acfg.Channels = append([]int(nil), bm.unet.Cfg.BlockOutChannels...)
		if len(acfg.Channels) == 3 {
			acfg.AdapterType = t2iadapter.FullAdapterXL
			acfg.Channels = append(acfg.Channels, acfg.Channels[2])
			acfg.DownscaleFactor = 16
		}
		ad, err := t2iadapter.New(acfg)
		if err != nil {
			return err
		}
		nn.Init(ad, 4, dt)
		t0 := time.Now()
		feats, err := ad.Forward(tensor.Full(0.5, 1, 3, px, px))
		if err != nil {
			return err
		}
		report(fmt.Sprintf("t2i-adapter features %dpx (once per image)", px), time.Since(t0))
		hook := pipeline.T2IAdapter(feats, 1)
		var ds []time.Duration
		for i := 0; i < steps; i++ {
			c := cond
			if err := hook(0, 1, 999, x, &c); err != nil {
				return err
			}
			d, err := unetStep(bm.unet, x, c, 999)
			if err != nil {
				return err
			}
			ds = append(ds, d)
		}
		reportExtra(fmt.Sprintf("unet step %dpx + t2i residuals", px), median(ds), base)
	}
	if want["vae"] {
		t0 := time.Now()
		if _, err := bm.vae.DecodeAuto(tensor.Full(0.1, 1, bm.vae.Cfg.LatentChannels, lat, lat)); err != nil {
			return err
		}
		report(fmt.Sprintf("vae decode %dpx", px), time.Since(t0))
	}
	return nil
}

func report(what string, d time.Duration) {
	fmt.Printf("%-48s %8.3f s\n", what, d.Seconds())
}

func reportExtra(what string, d, base time.Duration) {
	if base > 0 {
		fmt.Printf("%-48s %8.3f s  (%+.3f s, %+.0f%% per step)\n", what, d.Seconds(), (d - base).Seconds(), 100*(d.Seconds()/base.Seconds()-1))
		return
	}
	report(what, d)
}

func parseDType(s string) (tensor.DType, error) {
	switch s {
	case "f32", "fp32", "float32":
		return tensor.F32, nil
	case "f16", "fp16", "float16":
		return tensor.F16, nil
	case "bf16", "bfloat16":
		return tensor.BF16, nil
	}
	return 0, fmt.Errorf("unknown dtype %q (f32, f16, bf16)", s)
}
