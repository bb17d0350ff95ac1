package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/model/lora"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
	cliptok "github.com/diffuse-go/diffuse/tokenizer/clip"
)

// genFlags are the generate options, named as stable-diffusion.cpp names them.
type genFlags struct {
	model, prompt, negative, sampler, sched, output string
	initImg, mask, loraDir                          string
	loras                                           multiFlag
	steps, width, height, batchCount, clipSkip      int
	threads                                         int
	cfgScale, strength, guidanceRescale             float64
	seed                                            int64
	dtype                                           string
	quiet                                           bool
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func runGenerate(ctx context.Context, args []string) error {
	var f genFlags
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	fs.StringVar(&f.model, "m", "", "model: a .safetensors checkpoint (SD 1.x LDM layout) or a diffusers folder")
	fs.StringVar(&f.model, "model", "", "same as -m")
	fs.StringVar(&f.prompt, "p", "", "prompt (may contain <lora:name:weight>)")
	fs.StringVar(&f.prompt, "prompt", "", "same as -p")
	fs.StringVar(&f.negative, "n", "", "negative prompt")
	fs.StringVar(&f.negative, "negative-prompt", "", "same as -n")
	fs.IntVar(&f.steps, "steps", 20, "sampling steps")
	fs.Float64Var(&f.cfgScale, "cfg-scale", 7.0, "classifier-free guidance scale (1 disables)")
	fs.Float64Var(&f.guidanceRescale, "guidance-rescale", 0, "diffusers guidance_rescale (0 = off)")
	fs.StringVar(&f.sampler, "sampler", "euler_a", "sampler (see the list below)")
	fs.StringVar(&f.sampler, "sampling-method", "euler_a", "same as --sampler")
	fs.StringVar(&f.sched, "scheduler", "", "sigma schedule: default/discrete or karras")
	fs.Int64Var(&f.seed, "seed", 42, "seed (-1 for a random one)")
	fs.Int64Var(&f.seed, "s", 42, "same as --seed")
	fs.IntVar(&f.width, "W", 512, "image width")
	fs.IntVar(&f.width, "width", 512, "same as -W")
	fs.IntVar(&f.height, "H", 512, "image height")
	fs.IntVar(&f.height, "height", 512, "same as -H")
	fs.StringVar(&f.initImg, "init-img", "", "initial image for image-to-image or inpainting")
	fs.StringVar(&f.initImg, "i", "", "same as --init-img")
	fs.Float64Var(&f.strength, "strength", 0.75, "img2img strength: how much of the init image is re-noised (1 = all)")
	fs.StringVar(&f.mask, "mask", "", "inpainting mask (white = repaint)")
	fs.IntVar(&f.batchCount, "batch-count", 1, "images to generate (seed, seed+1, ...)")
	fs.IntVar(&f.batchCount, "b", 1, "same as --batch-count")
	fs.IntVar(&f.clipSkip, "clip-skip", -1, "skip the last N-1 CLIP layers (2 = penultimate); <= 0: model default")
	fs.StringVar(&f.output, "o", "output.png", "output PNG (image N>1 gets _N before the extension)")
	fs.StringVar(&f.output, "output", "output.png", "same as -o")
	fs.Var(&f.loras, "lora", "LoRA file[:weight] (repeatable)")
	fs.StringVar(&f.loraDir, "lora-dir", "", "folder where <lora:name:weight> finds name.safetensors")
	fs.StringVar(&f.loraDir, "lora-model-dir", "", "same as --lora-dir")
	fs.IntVar(&f.threads, "t", 0, "threads (0 = all cores)")
	fs.IntVar(&f.threads, "threads", 0, "same as -t")
	fs.StringVar(&f.dtype, "type", "", "weight dtype in memory: f32, f16, bf16 (default: as stored)")
	fs.BoolVar(&f.quiet, "q", false, "no progress output")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: diffuse generate -m MODEL -p PROMPT [flags]\n\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprintf(fs.Output(), "\nSamplers (--sampler; A1111 and diffusers names work too, e.g. \"DPM++ 2M Karras\"):\n%s", scheduler.Help())
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("generate: unexpected arguments %q", fs.Args())
	}
	if f.model == "" {
		return errors.New("generate: no model (-m)")
	}
	if f.threads > 0 {
		runtime.GOMAXPROCS(f.threads)
	}
	if f.width%8 != 0 || f.height%8 != 0 || f.width <= 0 || f.height <= 0 {
		return fmt.Errorf("generate: size %dx%d must be positive multiples of 8", f.width, f.height)
	}
	if f.batchCount < 1 {
		return fmt.Errorf("generate: --batch-count must be at least 1")
	}
	samplerName := f.sampler
	switch strings.ToLower(f.sched) {
	case "", "default", "discrete":
	case "karras":
		samplerName += "_karras"
	default:
		return fmt.Errorf("generate: unknown --scheduler %q (discrete, karras)", f.sched)
	}
	info, ok := scheduler.Lookup(samplerName)
	if !ok {
		return fmt.Errorf("generate: unknown sampler %q; known: %s", samplerName, strings.Join(scheduler.Names(), ", "))
	}
	// LoRA tags in the prompt.
	prompt, refs, err := lora.ParsePrompt(f.prompt)
	if err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	if len(refs) > 0 && f.loraDir == "" {
		return fmt.Errorf("generate: prompt uses <lora:%s> but no --lora-dir was given", refs[0].Name)
	}
	var opt pipeline.LoadOptions
	if f.dtype != "" {
		dt, err := parseDType(f.dtype)
		if err != nil {
			return err
		}
		opt.DType = &dt
	}
	t0 := time.Now()
	comps, err := pipeline.Load(f.model, opt)
	if err != nil {
		return err
	}
	defer comps.Close()
	logf(f.quiet, "loaded %s in %.1fs\n", comps.Name, time.Since(t0).Seconds())
	var loraNotes []string
	applyLoRA := func(path string, unetW, teW float32) error {
		lf, err := lora.Load(path)
		if err != nil {
			return err
		}
		has := map[string]bool{}
		for _, c := range lf.Components() {
			has[c] = true
		}
		applied := 0
		for _, part := range []struct {
			comp string
			m    nnModule
			w    float32
		}{{"unet", comps.UNet, unetW}, {"text_encoder", comps.TextEncoder, teW}} {
			if !has[part.comp] && !(part.comp == "unet" && has[""]) {
				continue
			}
			a, err := lora.Apply(part.m, lf, part.comp, part.w)
			if err != nil {
				return err
			}
			if warn := a.Warning(); warn != "" {
				fmt.Fprintln(os.Stderr, "warning:", warn)
			}
			applied++
		}
		if applied == 0 {
			return fmt.Errorf("%s: no LoRA weights for this model's UNet or text encoder (it has: %s)", path, strings.Join(lf.Components(), ", "))
		}
		loraNotes = append(loraNotes, fmt.Sprintf("%s: %g", strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)), unetW))
		return nil
	}
	for _, spec := range f.loras {
		path, w := spec, 1.0
		if i := strings.LastIndex(spec, ":"); i > 0 {
			if _, err := fmt.Sscanf(spec[i+1:], "%g", &w); err == nil {
				path = spec[:i]
			} else {
				w = 1
			}
		}
		if err := applyLoRA(path, float32(w), float32(w)); err != nil {
			return err
		}
	}
	for _, r := range refs {
		if f.loraDir == "" {
			return fmt.Errorf("generate: prompt uses <lora:%s> but no --lora-dir was given", r.Name)
		}
		path, err := lora.Find(f.loraDir, r.Name)
		if err != nil {
			return err
		}
		if err := applyLoRA(path, r.UNet, r.TextEncoder); err != nil {
			return err
		}
	}
	tok, err := newCLIPTokenizer()
	if err != nil {
		return err
	}
	p := &pipeline.SD{TextEncoder: comps.TextEncoder, Tokenizer: tok, UNet: comps.UNet, VAE: comps.VAE}
	schedCfg := comps.Scheduler
	if schedCfg == nil {
		schedCfg = []byte(pipeline.SD15SchedulerConfig)
	}
	cfg, err := scheduler.ParseConfig(schedCfg)
	if err != nil {
		return err
	}
	var initImg, mask *tensor.Tensor
	if f.initImg != "" {
		if initImg, err = loadImageNHWC(f.initImg, f.width, f.height, false); err != nil {
			return err
		}
	}
	if f.mask != "" {
		if initImg == nil {
			return errors.New("generate: --mask needs --init-img")
		}
		if mask, err = loadImageNHWC(f.mask, f.width, f.height, true); err != nil {
			return err
		}
	}
	modelHash, _ := imageio.ModelHash(f.model)
	seed := f.seed
	if seed < 0 {
		seed = rand.Int64N(1 << 32)
	}
	for i := 0; i < f.batchCount; i++ {
		s, err := scheduler.New(samplerName, cfg)
		if err != nil {
			return err
		}
		gen := rng.New(uint64(seed + int64(i)))
		req := pipeline.Request{Prompts: []string{prompt}, NegativePrompts: []string{f.negative},
			Width: f.width, Height: f.height, Steps: f.steps, Guidance: f.cfgScale, GuidanceRescale: f.guidanceRescale,
			ClipSkip: f.clipSkip, Scheduler: s, Noise: gen, InitImage: initImg, Mask: mask}
		if initImg != nil {
			req.Strength = f.strength
		}
		if !f.quiet {
			req.Progress = progressBar(fmt.Sprintf("image %d/%d", i+1, f.batchCount))
		}
		res, err := p.Generate(ctx, req)
		if err != nil {
			return err
		}
		img, err := imageio.FromNHWC(res.Images.Data(), f.width, f.height)
		if err != nil {
			return err
		}
		params := imageio.Params{Prompt: f.prompt, NegativePrompt: f.negative, Steps: f.steps, Sampler: a1111Sampler(info),
			CFGScale: f.cfgScale, Seed: seed + int64(i), Width: f.width, Height: f.height, ModelHash: modelHash,
			Model: strings.TrimSuffix(filepath.Base(f.model), filepath.Ext(f.model))}
		if strings.Contains(samplerName, "karras") {
			params.Scheduler = "Karras"
		}
		if f.clipSkip > 1 {
			params.ClipSkip = f.clipSkip
		}
		if initImg != nil {
			params.DenoisingStrength = f.strength
		}
		if len(loraNotes) > 0 {
			params.Extra = append(params.Extra, imageio.KV{Key: "Lora", Value: strings.Join(loraNotes, ", ")})
		}
		params.Extra = append(params.Extra, imageio.KV{Key: "Version", Value: "diffuse " + version})
		out := outputName(f.output, i)
		if err := imageio.WritePNG(out, img, []imageio.KV{{Key: imageio.ParametersKey, Value: params.String()}}); err != nil {
			return err
		}
		logf(f.quiet, "wrote %s\n", out)
	}
	return nil
}

type nnModule = nn.Module

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

// a1111Sampler is the sampler name A1111 writes into its metadata.
func a1111Sampler(in scheduler.Info) string {
	for _, a := range in.Aliases {
		if strings.ContainsAny(a, " ") || a == "DDIM" || a == "PLMS" || a == "Euler" || a == "Heun" || a == "LMS" || a == "UniPC" || a == "LCM" || a == "DPM++ 2M" {
			return strings.TrimSuffix(a, " Karras")
		}
	}
	return in.Name
}

// loadImageNHWC reads an image file, resizes it to w×h and returns
// [1, h, w, 3] (or [1, h, w, 1] for a mask) in [0, 1].
func loadImageNHWC(path string, w, h int, mask bool) (*tensor.Tensor, error) {
	img, err := imageio.Load(path)
	if err != nil {
		return nil, err
	}
	var chw []float32
	ch := 3
	if mask {
		chw, err = imageio.MaskToNCHW(img, w, h)
		ch = 1
	} else {
		chw, err = imageio.ToNCHW(img, w, h)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return tensor.FromSlice(chw, 1, ch, h, w).Permute(0, 2, 3, 1).Contiguous(), nil
}

// progressBar prints "label  step/total [####....] s/it ETA" on stderr.
func progressBar(label string) func(step, total int, elapsed time.Duration) {
	return func(step, total int, elapsed time.Duration) {
		const width = 30
		done := width * step / max(total, 1)
		per := elapsed.Seconds() / float64(max(step, 1))
		eta := time.Duration(per * float64(total-step) * float64(time.Second)).Round(time.Second)
		fmt.Fprintf(os.Stderr, "\r%s %3d/%d [%s%s] %.2fs/it ETA %v ", label, step, total,
			strings.Repeat("#", done), strings.Repeat(".", width-done), per, eta)
		if step == total {
			fmt.Fprintln(os.Stderr)
		}
	}
}

// newCLIPTokenizer is the SD 1.x tokenizer: CLIP BPE with the vocabulary
// built into the binary, padded with EOS to 77 tokens.
func newCLIPTokenizer() (pipeline.Tokenizer, error) {
	return cliptok.New(cliptok.Options{Pad: cliptok.PadEOS})
}
