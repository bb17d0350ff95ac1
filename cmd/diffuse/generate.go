package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"image"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/scheduler"
)

// genFlags are the generate options, named as stable-diffusion.cpp and
// A1111 users know them, plus what parsing resolves from them.
type genFlags struct {
	model, prompt, negative, sampler, sched, output string
	prompt2, negative2                              string
	initImg, mask, loraDir                          string
	loras                                           multiFlag
	steps, width, height, batchCount, clipSkip      int
	threads                                         int
	cfgScale, strength, guidanceRescale             float64
	noiseLevel                                      int
	seed                                            int64
	dtype                                           string
	quiet, bf16, int8                               bool
	upscale                                         int

	// SDXL micro-conditioning ("WxH" and "T,L" strings) and the refiner.
	originalSize, cropTopLeft, targetSize          string
	negOriginalSize, negCropTopLeft, negTargetSize string
	refiner                                        string
	refinerStart                                   float64
	aesthetic, negAesthetic                        float64

	// ControlNet.
	controlNets, controlImages                multiFlag
	controlStrength, controlStart, controlEnd floatList
	guessMode, canny                          bool
	cannyLow, cannyHigh                       float64

	// T2I-Adapter.
	adapters, adapterImages multiFlag
	adapterScale            floatList
	adapterFactor           float64

	// DiT.
	classLabels multiFlag

	// Hunyuan-DiT.
	noBinning bool

	// DeepFloyd IF: later stages, "PATH[:steps[:cfg[:noise]]]".
	stages multiFlag

	// SD3 / FLUX components given apart from a transformer-only file; the
	// VAE of SD 1.x/2.x and SDXL too.
	components       multiFlag
	keepTextEncoders bool

	// Step cache.
	cacheMode                  string
	cacheInterval, cacheBranch int
	cacheThreshold             float64

	// Resolved by parseGenFlags.
	set         map[string]bool // flags given on the command line
	samplerName string          // with the schedule suffix
	info        scheduler.Info
	xl          xlSizes
	// Per ControlNet / adapter, broadcast from the flags.
	cnImages                []string
	cnScale, cnStart, cnEnd []float64
	adImages                []string
	adScale                 []float64
}

// xlSizes are the parsed SDXL micro-conditioning flags (nil: not given).
type xlSizes struct {
	original, crop, target          *pipeline.Size
	negOriginal, negCrop, negTarget *pipeline.Size
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// floatList is a repeatable flag of numbers, each value also a comma list.
type floatList []float64

func (l *floatList) String() string {
	s := make([]string, len(*l))
	for i, v := range *l {
		s[i] = strconv.FormatFloat(v, 'g', -1, 64)
	}
	return strings.Join(s, ",")
}

func (l *floatList) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		x, err := strconv.ParseFloat(strings.TrimSpace(part), 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", part)
		}
		*l = append(*l, x)
	}
	return nil
}

// errHelp reports that -h was given (the usage is already printed).
var errHelp = flag.ErrHelp

// newGenFlagSet registers every generate flag on a FlagSet writing to out.
func newGenFlagSet(f *genFlags, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&f.model, "m", "", "model: a .safetensors checkpoint (SD 1.x LDM, SDXL, SD3 or FLUX layout, fp8 kept fp8), a diffusers folder, or an SD3/FLUX transformer .gguf (kept quantised; give the other parts with --component) (default: the built-in 32×32 toy model of shapes)")
	fs.StringVar(&f.model, "model", "", "same as -m")
	fs.StringVar(&f.prompt, "p", "", "prompt (may contain <lora:name:weight>)")
	fs.StringVar(&f.prompt, "prompt", "", "same as -p")
	fs.StringVar(&f.negative, "n", "", "negative prompt")
	fs.StringVar(&f.negative, "negative-prompt", "", "same as -n")
	fs.IntVar(&f.steps, "steps", 0, "sampling steps (0: the model's default, 20 for SD 1.x/2.x and SDXL)")
	fs.Float64Var(&f.cfgScale, "cfg-scale", 0, "classifier-free guidance scale (1 disables; 0: the model's default, 7 for SD 1.x/2.x and SDXL)")
	fs.Float64Var(&f.guidanceRescale, "guidance-rescale", 0, "diffusers guidance_rescale (0 = off)")
	fs.StringVar(&f.sampler, "sampler", "", "sampler (see the list below; default: the model's, euler_a for SD 1.x/2.x and SDXL)")
	fs.StringVar(&f.sampler, "sampling-method", "", "same as --sampler")
	fs.StringVar(&f.sched, "scheduler", "", "sigma schedule: default/discrete or karras")
	fs.Int64Var(&f.seed, "seed", 42, "seed (-1 for a random one)")
	fs.Int64Var(&f.seed, "s", 42, "same as --seed")
	fs.IntVar(&f.width, "W", 0, "image width (default 512 for SD 1.x, 1024 for SDXL)")
	fs.IntVar(&f.width, "width", 0, "same as -W")
	fs.IntVar(&f.height, "H", 0, "image height (default 512 for SD 1.x, 1024 for SDXL)")
	fs.IntVar(&f.height, "height", 0, "same as -H")
	fs.StringVar(&f.initImg, "init-img", "", "initial image for image-to-image or inpainting; for an upscaler (SD x4) the image to upscale")
	fs.IntVar(&f.noiseLevel, "noise-level", 0, "upscaler: noise added to the --init-img image, as a timestep (0: the model's default, 20 for SD x4)")
	fs.StringVar(&f.initImg, "i", "", "same as --init-img")
	fs.Float64Var(&f.strength, "strength", 0.75, "img2img strength: how much of the init image is re-noised (1 = all)")
	fs.StringVar(&f.mask, "mask", "", "inpainting mask (white = repaint); needs --init-img")
	fs.IntVar(&f.batchCount, "batch-count", 1, "images to generate (seed, seed+1, ...)")
	fs.IntVar(&f.batchCount, "b", 1, "same as --batch-count")
	fs.IntVar(&f.clipSkip, "clip-skip", -1, "skip the last N-1 CLIP layers (2 = penultimate); <= 0: model default (SDXL: the penultimate, so only 3 and more change it)")
	fs.StringVar(&f.output, "o", "output.png", "output PNG (image N>1 gets _N before the extension)")
	fs.StringVar(&f.output, "output", "output.png", "same as -o")
	fs.Var(&f.loras, "lora", "LoRA file[:weight] (repeatable)")
	fs.StringVar(&f.loraDir, "lora-dir", "", "folder where <lora:name:weight> finds name.safetensors")
	fs.StringVar(&f.loraDir, "lora-model-dir", "", "same as --lora-dir")
	fs.IntVar(&f.threads, "t", 0, "threads (0 = all cores)")
	fs.IntVar(&f.threads, "threads", 0, "same as -t")
	fs.StringVar(&f.dtype, "type", "", "weight dtype in memory: f32, f16, bf16 (default: as stored)")
	fs.BoolVar(&f.quiet, "q", false, "no progress output")
	fs.IntVar(&f.upscale, "upscale", 1, "enlarge the written images N times (nearest neighbour), for viewing small ones (default 8 with the built-in model)")
	fs.BoolVar(&f.bf16, "bf16", false, "compute products in bfloat16 (AVX512_BF16 CPUs only; no effect elsewhere); also DIFFUSE_BF16=1")
	fs.BoolVar(&f.int8, "int8", false, "multiply Q8_0 (GGUF) weights by inputs quantised to 8 bits, with integer products, as stable-diffusion.cpp does (faster; slightly different images); also DIFFUSE_INT8=1")

	// SDXL.
	fs.StringVar(&f.prompt2, "prompt-2", "", "SDXL: prompt for the second text encoder (default: the prompt)")
	fs.StringVar(&f.negative2, "negative-prompt-2", "", "SDXL: negative prompt for the second text encoder (default: the negative prompt)")
	fs.StringVar(&f.originalSize, "original-size", "", "SDXL micro-conditioning original_size WxH (default: the output size)")
	fs.StringVar(&f.cropTopLeft, "crop-top-left", "", "SDXL crops_coords_top_left T,L (top, left; default 0,0)")
	fs.StringVar(&f.targetSize, "target-size", "", "SDXL target_size WxH (default: the output size)")
	fs.StringVar(&f.negOriginalSize, "negative-original-size", "", "SDXL negative_original_size WxH (base: needs --negative-target-size too)")
	fs.StringVar(&f.negCropTopLeft, "negative-crop-top-left", "", "SDXL negative_crops_coords_top_left T,L")
	fs.StringVar(&f.negTargetSize, "negative-target-size", "", "SDXL negative_target_size WxH")
	fs.StringVar(&f.refiner, "refiner", "", "SDXL refiner checkpoint or folder: the base stops at --refiner-start and the refiner finishes (ensemble of experts)")
	fs.Float64Var(&f.refinerStart, "refiner-start", 0.8, "fraction of the denoising done by the base before the refiner (denoising_end/denoising_start)")
	fs.Float64Var(&f.aesthetic, "aesthetic-score", 6, "SDXL refiner aesthetic_score")
	fs.Float64Var(&f.negAesthetic, "negative-aesthetic-score", 2.5, "SDXL refiner negative_aesthetic_score")

	// ControlNet.
	fs.Var(&f.controlNets, "control-net", "ControlNet: diffusers folder or .safetensors file (repeatable)")
	fs.Var(&f.controlImages, "control-image", "condition image, one per --control-net or one for all (repeatable)")
	fs.Var(&f.controlStrength, "control-strength", "ControlNet weight per net, comma list or repeated (default 1)")
	fs.Var(&f.controlStart, "control-start", "fraction of the steps where each ControlNet starts (default 0)")
	fs.Var(&f.controlEnd, "control-end", "fraction of the steps where each ControlNet ends (default 1)")
	fs.BoolVar(&f.guessMode, "guess-mode", false, "ControlNet guess mode: nets see the conditional rows only, residuals scaled 0.1 to 1")
	fs.BoolVar(&f.canny, "canny", false, "preprocess every control image with the Canny edge detector")
	fs.Float64Var(&f.cannyLow, "canny-low", 100, "Canny low threshold (OpenCV units)")
	fs.Float64Var(&f.cannyHigh, "canny-high", 200, "Canny high threshold (OpenCV units)")

	// T2I-Adapter.
	fs.Var(&f.adapters, "adapter", "T2I-Adapter: diffusers folder or .safetensors file (repeatable)")
	fs.Var(&f.adapterImages, "adapter-image", "adapter image, one per --adapter or one for all (repeatable)")
	fs.Var(&f.adapterScale, "adapter-scale", "T2I-Adapter weight per adapter, comma list or repeated (default 1)")
	fs.Var(&f.components, "component", "NAME=PATH: a component the -m file lacks (SD3/FLUX: transformer (.safetensors, fp8 or .gguf), text_encoder, text_encoder_2, text_encoder_3, tokenizer_2, tokenizer_3, vae; repeatable); vae=PATH also replaces an SD 1.x/2.x or SDXL model's VAE (an LDM .safetensors like vae-ft-mse-840000-ema-pruned, or a diffusers VAE folder)")
	fs.BoolVar(&f.keepTextEncoders, "keep-text-encoders", false, "SD3/FLUX: keep the text encoders loaded between requests")
	fs.BoolVar(&f.noBinning, "no-binning", false, "Hunyuan-DiT: generate at -W×-H as given instead of the nearest trained size")
	fs.Var(&f.stages, "stage", "DeepFloyd IF: a later stage's folder, PATH[:STEPS[:CFG[:NOISE_LEVEL]]] (repeatable, in order; -W/-H are the final size)")
	fs.Var(&f.classLabels, "class-label", "DiT: ImageNet class id or name (repeatable; one image each); without it the prompt is read as labels")
	fs.Float64Var(&f.adapterFactor, "adapter-factor", 1, "fraction of the steps the adapters act on (adapter_conditioning_factor)")

	// Step cache.
	fs.StringVar(&f.cacheMode, "cache-mode", "", "training-free step caching, faster for a small change of the image: deepcache (SD 1.x/2.x, SDXL) or fbcache (diffusion transformers); default off")
	fs.IntVar(&f.cacheInterval, "cache-interval", 0, "deepcache: run the whole UNet every N steps, the shallow layers only in between (0: 3)")
	fs.IntVar(&f.cacheBranch, "cache-branch", 0, "deepcache: skip branch whose deep features are reused (DeepCache's cache_branch_id; 0: the shallowest and fastest)")
	fs.Float64Var(&f.cacheThreshold, "cache-threshold", 0, "fbcache: relative change of the first block's residual under which the other blocks are skipped (0: 0.1)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: diffuse generate -m MODEL -p PROMPT [flags]\n\nSD 1.x and SDXL models are told apart automatically.\n\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprintf(fs.Output(), "\nSamplers (--sampler; A1111 and diffusers names work too, e.g. \"DPM++ 2M Karras\"):\n%s", scheduler.Help())
	}
	return fs
}

// parseGenFlags parses and checks the generate flags without touching any
// file. It returns errHelp after printing the usage for -h.
func parseGenFlags(args []string, out io.Writer) (*genFlags, error) {
	f := &genFlags{}
	fs := newGenFlagSet(f, out)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("generate: unexpected arguments %q", fs.Args())
	}
	f.set = map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	if f.model == "" {
		f.useDefaultModel()
	}
	return f, f.validate()
}

// validate checks the flags and resolves the sampler, sizes and per-unit
// settings.
func (f *genFlags) validate() error {
	errf := func(format string, a ...any) error { return fmt.Errorf("generate: "+format, a...) }
	if f.upscale < 1 || f.upscale > 64 {
		return errf("--upscale %d must be in [1, 64]", f.upscale)
	}
	if f.width != 0 && (f.width < 0 || f.width%8 != 0) {
		return errf("-W %d must be a positive multiple of 8", f.width)
	}
	if f.height != 0 && (f.height < 0 || f.height%8 != 0) {
		return errf("-H %d must be a positive multiple of 8", f.height)
	}
	if f.steps < 0 {
		return errf("--steps %d must be at least 1 (0: the model's default)", f.steps)
	}
	if math.IsNaN(f.cfgScale) || math.IsInf(f.cfgScale, 0) || f.cfgScale < 0 {
		return errf("--cfg-scale %v must be a non-negative number", f.cfgScale)
	}
	if f.batchCount < 1 {
		return errf("--batch-count must be at least 1")
	}
	if f.mask != "" && f.initImg == "" {
		return errf("--mask needs --init-img")
	}
	if f.initImg != "" && (f.strength <= 0 || f.strength > 1) {
		return errf("--strength %g must be in (0, 1]", f.strength)
	}
	f.samplerName = f.sampler
	switch strings.ToLower(f.sched) {
	case "", "default", "discrete":
	case "karras":
		if f.samplerName == "" {
			f.samplerName = "euler_a"
		}
		if !strings.Contains(strings.ToLower(f.samplerName), "karras") {
			f.samplerName += "_karras"
		}
	default:
		return errf("unknown --scheduler %q (discrete, karras)", f.sched)
	}
	var ok bool
	if f.info, ok = scheduler.Lookup(f.samplerName); f.samplerName != "" && !ok {
		return errf("unknown sampler %q; known: %s", f.samplerName, strings.Join(scheduler.Names(), ", "))
	}
	// SDXL sizes.
	for _, s := range []struct {
		flag, v string
		dst     **pipeline.Size
		crop    bool
	}{
		{"original-size", f.originalSize, &f.xl.original, false}, {"crop-top-left", f.cropTopLeft, &f.xl.crop, true},
		{"target-size", f.targetSize, &f.xl.target, false}, {"negative-original-size", f.negOriginalSize, &f.xl.negOriginal, false},
		{"negative-crop-top-left", f.negCropTopLeft, &f.xl.negCrop, true}, {"negative-target-size", f.negTargetSize, &f.xl.negTarget, false},
	} {
		if s.v == "" {
			continue
		}
		var sz pipeline.Size
		var err error
		if s.crop {
			sz, err = parseCrop(s.v)
		} else {
			sz, err = parseWxH(s.v)
		}
		if err != nil {
			return errf("--%s: %v", s.flag, err)
		}
		*s.dst = &sz
	}
	if f.refiner != "" && (f.refinerStart <= 0 || f.refinerStart >= 1) {
		return errf("--refiner-start %g must be in (0, 1)", f.refinerStart)
	}
	// ControlNets.
	n := len(f.controlNets)
	if n == 0 && (len(f.controlImages) > 0 || len(f.controlStrength) > 0 || len(f.controlStart) > 0 || len(f.controlEnd) > 0) {
		return errf("--control-image/--control-strength/--control-start/--control-end given without --control-net")
	}
	if n > 0 {
		var err error
		if f.cnImages, err = perUnit("--control-image", f.controlImages, n, "--control-net"); err != nil {
			return err
		}
		if f.cnScale, err = perUnitF("--control-strength", f.controlStrength, n, 1, "--control-net"); err != nil {
			return err
		}
		if f.cnStart, err = perUnitF("--control-start", f.controlStart, n, 0, "--control-net"); err != nil {
			return err
		}
		if f.cnEnd, err = perUnitF("--control-end", f.controlEnd, n, 1, "--control-net"); err != nil {
			return err
		}
		for i := range n {
			if f.cnStart[i] < 0 || f.cnEnd[i] > 1 || f.cnStart[i] >= f.cnEnd[i] {
				return errf("ControlNet %d: --control-start %g and --control-end %g must satisfy 0 <= start < end <= 1", i, f.cnStart[i], f.cnEnd[i])
			}
		}
	}
	if f.canny && n == 0 {
		return errf("--canny needs --control-net and --control-image")
	}
	// T2I-Adapters.
	m := len(f.adapters)
	if m == 0 && (len(f.adapterImages) > 0 || len(f.adapterScale) > 0) {
		return errf("--adapter-image/--adapter-scale given without --adapter")
	}
	if m > 0 {
		var err error
		if f.adImages, err = perUnit("--adapter-image", f.adapterImages, m, "--adapter"); err != nil {
			return err
		}
		if f.adScale, err = perUnitF("--adapter-scale", f.adapterScale, m, 1, "--adapter"); err != nil {
			return err
		}
		if f.adapterFactor <= 0 || f.adapterFactor > 1 {
			return errf("--adapter-factor %g must be in (0, 1]", f.adapterFactor)
		}
	}
	return nil
}

// useDefaultModel sets the flags the built-in model needs (no -m) and the
// user left unset: its sampler, steps, guidance and the viewing upscale.
func (f *genFlags) useDefaultModel() {
	if !f.set["sampler"] && !f.set["sampling-method"] {
		f.sampler = defaultModelSampler
	}
	if !f.set["steps"] {
		f.steps = defaultModelSteps
	}
	if !f.set["cfg-scale"] {
		f.cfgScale = defaultModelCFG
	}
	if !f.set["upscale"] {
		f.upscale = defaultModelUpscale
	}
}

// perUnit broadcasts one value to n units or takes exactly n.
func perUnit(name string, v []string, n int, unit string) ([]string, error) {
	switch len(v) {
	case n:
		return v, nil
	case 1:
		out := make([]string, n)
		for i := range out {
			out[i] = v[0]
		}
		return out, nil
	case 0:
		return nil, fmt.Errorf("generate: %d %s but no %s", n, unit, name)
	}
	return nil, fmt.Errorf("generate: %d %s values for %d %s (give one for all or one each)", len(v), name, n, unit)
}

// perUnitF is perUnit for numbers, with a default when none is given.
func perUnitF(name string, v []float64, n int, def float64, unit string) ([]float64, error) {
	switch len(v) {
	case n:
		return v, nil
	case 0, 1:
		x := def
		if len(v) == 1 {
			x = v[0]
		}
		out := make([]float64, n)
		for i := range out {
			out[i] = x
		}
		return out, nil
	}
	return nil, fmt.Errorf("generate: %d %s values for %d %s (give one for all or one each)", len(v), name, n, unit)
}

// parseWxH reads "WxH" as a diffusers (height, width) size.
func parseWxH(s string) (pipeline.Size, error) {
	w, h, ok := strings.Cut(strings.ToLower(s), "x")
	if !ok {
		return pipeline.Size{}, fmt.Errorf("%q is not WIDTHxHEIGHT", s)
	}
	wi, err1 := strconv.Atoi(strings.TrimSpace(w))
	hi, err2 := strconv.Atoi(strings.TrimSpace(h))
	if err1 != nil || err2 != nil || wi <= 0 || hi <= 0 {
		return pipeline.Size{}, fmt.Errorf("%q is not WIDTHxHEIGHT with positive integers", s)
	}
	return pipeline.Size{hi, wi}, nil
}

// parseCrop reads "T,L" as diffusers' (top, left).
func parseCrop(s string) (pipeline.Size, error) {
	t, l, ok := strings.Cut(s, ",")
	if !ok {
		return pipeline.Size{}, fmt.Errorf("%q is not TOP,LEFT", s)
	}
	ti, err1 := strconv.Atoi(strings.TrimSpace(t))
	li, err2 := strconv.Atoi(strings.TrimSpace(l))
	if err1 != nil || err2 != nil || ti < 0 || li < 0 {
		return pipeline.Size{}, fmt.Errorf("%q is not TOP,LEFT with non-negative integers", s)
	}
	return pipeline.Size{ti, li}, nil
}

func runGenerate(ctx context.Context, args []string) error {
	f, err := parseGenFlags(args, os.Stderr)
	if err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if note, err := configureBF16(f.bf16, f.set["bf16"]); err != nil {
		return fmt.Errorf("generate: %w", err)
	} else if note != "" {
		fmt.Fprintln(os.Stderr, note)
	}
	p, err := f.params()
	if err != nil {
		return err
	}
	if err := checkOutput(f.output); err != nil {
		return err
	}
	opt, err := envOptions(os.Getenv, systemMemory())
	if err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	setBF16Flag(&opt, f.bf16, f.set["bf16"])
	setInt8Flag(&opt, f.int8, f.set["int8"])
	opt.Threads, opt.MemoryLimit, opt.KeepTextEncoders = max(f.threads, 0), systemMemory(), f.keepTextEncoders
	for _, c := range f.components {
		name, path, ok := strings.Cut(c, "=")
		if !ok {
			return fmt.Errorf("generate: --component %q: want NAME=PATH", c)
		}
		if err := opt.Components.Set(name, path); err != nil {
			return fmt.Errorf("generate: --component: %w", err)
		}
	}
	if f.dtype != "" {
		dt, err := parseDType(f.dtype)
		if err != nil {
			return fmt.Errorf("generate: --type: %w", err)
		}
		opt.DType = &dt
	}
	pipeline.Version = version
	t0 := time.Now()
	path := f.model
	if path == "" {
		if path, err = defaultModelPath(); err != nil {
			return fmt.Errorf("generate: %w", err)
		}
	}
	m, err := pipeline.Open(ctx, path, opt)
	if err != nil {
		return fmt.Errorf("generate: -m: %w%s", err, componentHint(err))
	}
	defer m.Close()
	info := m.Info()
	logf(f.quiet, "loaded %s (%s) in %.1fs\n", info.Name, info.Kind, time.Since(t0).Seconds())
	if !f.quiet {
		p.OnProgress = progressBar()
	}
	out, err := m.Generate(ctx, p)
	if err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	for i, im := range out.Images {
		name := outputName(f.output, i)
		if err := imageio.WritePNG(name, upscaleNearest(im.Image, f.upscale), im.Text()); err != nil {
			return err
		}
		logf(f.quiet, "wrote %s\n", name)
	}
	return nil
}

// params maps the flags onto the library's request.
func (f *genFlags) params() (pipeline.Params, error) {
	p := pipeline.Params{Prompt: f.prompt, NegativePrompt: f.negative, HasNegative: f.set["n"] || f.set["negative-prompt"],
		Prompt2: f.prompt2, NegativePrompt2: f.negative2, Width: f.width, Height: f.height, Steps: f.steps,
		Guidance: f.cfgScale, GuidanceRescale: f.guidanceRescale, Sampler: f.samplerName, Seed: f.seed,
		Count: f.batchCount, ClipSkip: max(f.clipSkip, 0), LoRADir: f.loraDir, AdapterFactor: f.adapterFactor,
		OriginalSize: f.xl.original, CropsTopLeft: f.xl.crop, TargetSize: f.xl.target,
		NegativeOriginalSize: f.xl.negOriginal, NegativeCropsTopLeft: f.xl.negCrop, NegativeTargetSize: f.xl.negTarget,
		Refiner: f.refiner, ClassLabels: f.classLabels, NoResolutionBinning: f.noBinning,
		CacheMode: f.cacheMode, CacheInterval: f.cacheInterval, CacheBranch: f.cacheBranch, CacheThreshold: f.cacheThreshold}
	if f.adapterFactor == 0 {
		p.AdapterFactor = 1
	}
	for _, spec := range f.stages {
		st, err := parseStage(spec)
		if err != nil {
			return p, err
		}
		p.Stages = append(p.Stages, st)
	}
	if f.refiner != "" {
		p.RefinerStart = f.refinerStart
	}
	if f.set["aesthetic-score"] || f.set["negative-aesthetic-score"] || f.refiner != "" {
		p.AestheticScore, p.NegativeAestheticScore = f.aesthetic, f.negAesthetic
	}
	var err error
	if f.initImg != "" {
		if p.InitImage, err = imageio.Load(f.initImg); err != nil {
			return p, fmt.Errorf("generate: --init-img: %w", err)
		}
		if f.set["strength"] { // else the model's default (an upscaler takes none)
			p.Strength = f.strength
		}
	}
	p.NoiseLevel = f.noiseLevel
	if f.mask != "" {
		if p.Mask, err = imageio.Load(f.mask); err != nil {
			return p, fmt.Errorf("generate: --mask: %w", err)
		}
	}
	for _, spec := range f.loras {
		path, w := spec, 1.0
		if i := strings.LastIndex(spec, ":"); i > 0 {
			if x, err := strconv.ParseFloat(spec[i+1:], 64); err == nil {
				path, w = spec[:i], x
			}
		}
		p.LoRAs = append(p.LoRAs, pipeline.LoRA{Path: path, Weight: w})
	}
	images := map[string]image.Image{}
	load := func(flag, path string) (image.Image, error) {
		if img, ok := images[path]; ok {
			return img, nil
		}
		img, err := imageio.Load(path)
		if err != nil {
			return nil, fmt.Errorf("generate: %s: %w", flag, err)
		}
		images[path] = img
		return img, nil
	}
	for i, path := range f.controlNets {
		img, err := load("--control-image", f.cnImages[i])
		if err != nil {
			return p, err
		}
		p.ControlNets = append(p.ControlNets, pipeline.ControlNet{Path: path, Image: img, Canny: f.canny,
			CannyLow: f.cannyLow, CannyHigh: f.cannyHigh, Scale: f.cnScale[i], Start: f.cnStart[i], End: f.cnEnd[i],
			GuessMode: f.guessMode})
	}
	for i, path := range f.adapters {
		img, err := load("--adapter-image", f.adImages[i])
		if err != nil {
			return p, err
		}
		p.Adapters = append(p.Adapters, pipeline.Adapter{Path: path, Image: img, Scale: f.adScale[i]})
	}
	return p, nil
}

// parseStage reads --stage PATH[:STEPS[:CFG[:NOISE_LEVEL]]].
func parseStage(spec string) (pipeline.Stage, error) {
	parts := strings.Split(spec, ":")
	st := pipeline.Stage{Path: parts[0]}
	if len(parts) > 4 || st.Path == "" {
		return st, fmt.Errorf("generate: --stage %q: want PATH[:STEPS[:CFG[:NOISE_LEVEL]]]", spec)
	}
	var err error
	if len(parts) > 1 && parts[1] != "" {
		if st.Steps, err = strconv.Atoi(parts[1]); err != nil || st.Steps < 1 {
			return st, fmt.Errorf("generate: --stage %q: steps %q is not a positive integer", spec, parts[1])
		}
	}
	if len(parts) > 2 && parts[2] != "" {
		if st.Guidance, err = strconv.ParseFloat(parts[2], 64); err != nil || math.IsNaN(st.Guidance) || st.Guidance < 0 {
			return st, fmt.Errorf("generate: --stage %q: CFG %q is not a non-negative number", spec, parts[2])
		}
	}
	if len(parts) > 3 && parts[3] != "" {
		if st.NoiseLevel, err = strconv.Atoi(parts[3]); err != nil || st.NoiseLevel < 0 {
			return st, fmt.Errorf("generate: --stage %q: noise level %q is not a non-negative integer", spec, parts[3])
		}
	}
	return st, nil
}

// checkOutput fails early when the output cannot be written: its folder
// must exist and be writable, so a long generation does not end in an
// error.
func checkOutput(path string) error {
	if !strings.EqualFold(filepath.Ext(path), ".png") {
		return fmt.Errorf("generate: -o %s: the output is a PNG file (name it .png)", path)
	}
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("generate: -o: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("generate: -o: %s is not a folder", dir)
	}
	probe, err := os.CreateTemp(dir, ".diffuse-probe-*")
	if err != nil {
		return fmt.Errorf("generate: -o: cannot write in %s: %w", dir, err)
	}
	name := probe.Name()
	probe.Close()
	return os.Remove(name)
}

func logf(quiet bool, format string, a ...any) {
	if !quiet {
		fmt.Fprintf(os.Stderr, format, a...)
	}
}

// outputName gives image i its file name: the -o name for the first, then
// name_2.png, name_3.png, ...
func outputName(base string, i int) string {
	if i == 0 {
		return base
	}
	ext := filepath.Ext(base)
	return fmt.Sprintf("%s_%d%s", strings.TrimSuffix(base, ext), i+1, ext)
}

// progressBar prints "image i/n [stage] step/total [####....] s/it ETA" on stderr.
func progressBar() func(pipeline.Event) {
	return func(e pipeline.Event) {
		const width = 30
		label := fmt.Sprintf("image %d/%d", e.Image+1, e.Images)
		if e.Stage != "" {
			label += " " + e.Stage
		}
		done := width * e.Step / max(e.Steps, 1)
		per := e.Elapsed.Seconds() / float64(max(e.Step, 1))
		eta := time.Duration(per * float64(e.Steps-e.Step) * float64(time.Second)).Round(time.Second)
		fmt.Fprintf(os.Stderr, "\r%s %3d/%d [%s%s] %.2fs/it ETA %v ", label, e.Step, e.Steps,
			strings.Repeat("#", done), strings.Repeat(".", width-done), per, eta)
		if e.Step == e.Steps {
			fmt.Fprintln(os.Stderr)
		}
	}
}
