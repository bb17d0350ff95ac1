package pipeline

import (
	"context"
	"errors"
	"fmt"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
	cliptok "github.com/diffuse-go/diffuse/tokenizer/clip"
)

// sdxlVariant is SDXL base, refiner or inpainting: two text encoders
// (the refiner has only the second), pooled text and micro-conditioning.
type sdxlVariant struct {
	c          *SDXLComponents
	tok1, tok2 Tokenizer
	opt        Options
	// refiner is the last --refiner model, kept for the next request.
	refiner     *sdxlVariant
	refinerPath string
	refSched    scheduler.Config
}

func openSDXL(_ context.Context, src *Source, opt Options) (Model, error) {
	v, sched, err := loadSDXLVariant(src, opt)
	if err != nil {
		return nil, err
	}
	kind := "SDXL"
	if v.c.Refiner {
		kind = "SDXL refiner"
	}
	m, err := newUNetModel(src, opt, v, sched, kind, "sdxl")
	if err != nil {
		return nil, err
	}
	if !v.c.Refiner {
		m.info.Accepts = append(m.info.Accepts, "refiner")
	}
	return m, nil
}

func loadSDXLVariant(src *Source, opt Options) (*sdxlVariant, []byte, error) {
	c, err := LoadSDXL(src.Path, LoadOptions{DType: opt.DType})
	if err != nil {
		return nil, nil, err
	}
	if c.VAE, c.vaeFiles, err = givenVAE(c.VAE, c.UNet.Cfg.OutChannels, opt); err != nil {
		c.Close()
		return nil, nil, err
	}
	v := &sdxlVariant{c: c, opt: opt}
	if v.tok1, err = folderCLIPTokenizer(src, "tokenizer", cliptok.PadEOS); err == nil {
		v.tok2, err = folderCLIPTokenizer(src, "tokenizer_2", cliptok.PadExclamation)
	}
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	sched := []byte(c.Scheduler)
	if sched == nil {
		sched = []byte(SDXLSchedulerConfig)
	}
	return v, sched, nil
}

func (v *sdxlVariant) unet() *unet.Model { return v.c.UNet }
func (v *sdxlVariant) vaeFactor() int    { return vaeFactor(v.c.VAE) }
func (v *sdxlVariant) vaeChannels() int  { return widest(v.c.VAE) }
func (v *sdxlVariant) decode(latents *tensor.Tensor) (*tensor.Tensor, error) {
	return DecodeLatents(v.c.VAE, latents)
}

func (v *sdxlVariant) close() {
	if v.refiner != nil {
		v.refiner.close()
		v.refiner = nil
	}
	v.c.Close()
}

func (v *sdxlVariant) loraParts() []loraPart {
	parts := []loraPart{{"unet", v.c.UNet}}
	if v.c.TextEncoder != nil {
		parts = append(parts, loraPart{"text_encoder", v.c.TextEncoder})
	}
	return append(parts, loraPart{"text_encoder_2", v.c.TextEncoder2})
}

// pipeline is the SDXL pipeline of the model; force_zeros_for_empty_prompt
// is true for the base and false for the refiner, as their configs say.
func (v *sdxlVariant) pipeline() *SDXL {
	c := v.c
	p := &SDXL{TextEncoder: c.TextEncoder, TextEncoder2: c.TextEncoder2, Tokenizer: v.tok1, Tokenizer2: v.tok2,
		UNet: c.UNet, VAE: c.VAE, ForceZerosForEmptyPrompt: !c.Refiner, RequiresAestheticsScore: c.Refiner}
	if c.TextEncoder == nil {
		p.Tokenizer = nil
	}
	return p
}

// xlRequest adds the SDXL parameters to a request.
func xlRequest(p *Params, req Request) XLRequest {
	xr := XLRequest{Request: req}
	if p.Prompt2 != "" {
		xr.Prompts2 = []string{p.Prompt2}
	}
	if p.NegativePrompt2 != "" {
		xr.NegativePrompts2 = []string{p.NegativePrompt2}
	}
	for _, s := range []struct {
		src *Size
		dst *Size
	}{{p.OriginalSize, &xr.OriginalSize}, {p.CropsTopLeft, &xr.CropsTopLeft}, {p.TargetSize, &xr.TargetSize}} {
		if s.src != nil {
			*s.dst = *s.src
		}
	}
	xr.NegativeOriginalSize, xr.NegativeCropsTopLeft, xr.NegativeTargetSize = p.NegativeOriginalSize, p.NegativeCropsTopLeft, p.NegativeTargetSize
	xr.AestheticScore, xr.NegativeAestheticScore = aesthetic(p)
	return xr
}

// aesthetic are the refiner's scores (diffusers' defaults 6 and 2.5).
func aesthetic(p *Params) (float64, float64) {
	a, n := p.AestheticScore, p.NegativeAestheticScore
	if a == 0 {
		a = 6
	}
	if n == 0 {
		n = 2.5
	}
	return a, n
}

func refinerStart(p *Params) float64 {
	if p.RefinerStart == 0 {
		return 0.8
	}
	return p.RefinerStart
}

// run generates with the base (and the refiner when asked), or with the
// refiner alone on an init image.
func (v *sdxlVariant) run(ctx context.Context, p *Params, req Request, cb func(string) Callbacks) (*tensor.Tensor, error) {
	if v.c.Refiner && req.InitImage == nil {
		return nil, errors.New("pipeline: an SDXL refiner needs an init image (or use it as the refiner of a base model)")
	}
	if p.Refiner == "" {
		xr := xlRequest(p, req)
		c := cb("")
		xr.Progress, xr.OnStep = c.Progress, c.OnStep
		res, err := v.pipeline().Generate(ctx, xr)
		if err != nil {
			return nil, err
		}
		return res.Images, nil
	}
	ref, err := v.loadRefiner(p.Refiner)
	if err != nil {
		return nil, err
	}
	start := refinerStart(p)
	xr := xlRequest(p, req)
	xr.DenoisingEnd, xr.SkipDecode = start, true
	c := cb("base")
	xr.Progress, xr.OnStep = c.Progress, c.OnStep
	res, err := v.pipeline().Generate(ctx, xr)
	if err != nil {
		return nil, err
	}
	s, err := scheduler.New(p.Sampler, v.refSched)
	if err != nil {
		return nil, fmt.Errorf("pipeline: refiner sampler: %w", err)
	}
	rreq := Request{Prompts: req.Prompts, NegativePrompts: req.NegativePrompts, Width: req.Width, Height: req.Height,
		Steps: req.Steps, Guidance: req.Guidance, GuidanceRescale: req.GuidanceRescale, Scheduler: s, Noise: req.Noise,
		InitLatents: res.Latents, DenoisingStart: start, Cache: req.Cache}
	rr := xlRequest(p, rreq)
	c = cb("refiner")
	rr.Progress, rr.OnStep = c.Progress, c.OnStep
	rres, err := ref.pipeline().Generate(ctx, rr)
	if err != nil {
		return nil, fmt.Errorf("refiner: %w", err)
	}
	return rres.Images, nil
}

// loadRefiner opens (or reuses) the refiner model at path.
func (v *sdxlVariant) loadRefiner(path string) (*sdxlVariant, error) {
	if v.refiner != nil && v.refinerPath == path {
		return v.refiner, nil
	}
	src, err := Probe(path)
	if err != nil {
		return nil, fmt.Errorf("pipeline: refiner: %w", err)
	}
	defer src.close()
	if !detectSDXL(src) {
		return nil, fmt.Errorf("pipeline: refiner %s is not an SDXL model", path)
	}
	ref, sched, err := loadSDXLVariant(src, v.opt)
	if err != nil {
		return nil, fmt.Errorf("pipeline: refiner: %w", err)
	}
	sc, err := scheduler.ParseConfig(sched)
	if err != nil {
		ref.close()
		return nil, fmt.Errorf("pipeline: refiner %s: scheduler config: %w", path, err)
	}
	if v.refiner != nil {
		v.refiner.close()
	}
	v.refiner, v.refinerPath, v.refSched = ref, path, sc
	return ref, nil
}

// extraParams are the SDXL settings for the PNG parameters: the second
// prompts, any micro-conditioning given, the refiner.
func (v *sdxlVariant) extraParams(p *Params) []imageio.KV {
	var out []imageio.KV
	add := func(k, val string) {
		if val != "" {
			out = append(out, imageio.KV{Key: k, Value: val})
		}
	}
	size := func(s *Size) string {
		if s == nil {
			return ""
		}
		return fmt.Sprintf("%dx%d", s[1], s[0])
	}
	crop := func(s *Size) string {
		if s == nil {
			return ""
		}
		return fmt.Sprintf("%d,%d", s[0], s[1])
	}
	add("Prompt 2", p.Prompt2)
	add("Negative prompt 2", p.NegativePrompt2)
	add("Original size", size(p.OriginalSize))
	add("Crop top left", crop(p.CropsTopLeft))
	add("Target size", size(p.TargetSize))
	add("Negative original size", size(p.NegativeOriginalSize))
	add("Negative crop top left", crop(p.NegativeCropsTopLeft))
	add("Negative target size", size(p.NegativeTargetSize))
	if v.c.Refiner || p.Refiner != "" {
		a, n := aesthetic(p)
		add("Aesthetic score", formatNum(a))
		add("Negative aesthetic score", formatNum(n))
	}
	if p.Refiner != "" {
		name := ModelName(p.Refiner)
		if h, err := imageio.ModelHash(p.Refiner); err == nil {
			name += " [" + h + "]"
		}
		add("Refiner", name)
		add("Refiner switch at", formatNum(refinerStart(p)))
	}
	return out
}
