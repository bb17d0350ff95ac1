package pipeline

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
	cliptok "github.com/diffuse-go/diffuse/tokenizer/clip"
)

// StableDiffusionUpscalePipeline's defaults.
const (
	upscaleSteps      = 75
	upscaleGuidance   = 9.0
	upscaleNoiseLevel = 20
	upscaleMaxNoise   = 350
)

func init() {
	Register(Family{Name: "sd-upscale", Detect: func(src *Source) bool {
		return src.ClassIs("StableDiffusionUpscalePipeline")
	}, Open: openUpscale})
}

// upscaler is a loaded ×4 upscaler folder.
type upscaler struct {
	f     *folder
	p     *SDUpscale
	sched scheduler.Config
}

// loadUpscaler opens a StableDiffusionUpscalePipeline folder.
func loadUpscaler(src *Source, opt LoadOptions) (*upscaler, error) {
	u := &upscaler{f: &folder{dir: src.Path, opt: opt}, p: &SDUpscale{MaxNoiseLevel: upscaleMaxNoise}}
	if err := u.load(src); err != nil {
		u.f.close()
		return nil, err
	}
	u.f.done()
	return u, nil
}

func (u *upscaler) load(src *Source) error {
	if raw, ok := src.Index["max_noise_level"]; ok {
		if err := json.Unmarshal(raw, &u.p.MaxNoiseLevel); err != nil || u.p.MaxNoiseLevel < 0 {
			return fmt.Errorf("model_index.json: max_noise_level %s is not a non-negative integer", raw)
		}
	}
	var err error
	if u.p.TextEncoder, _, err = component(u.f, "text_encoder", clip.ParseConfig, clip.New); err != nil {
		return err
	}
	pad := cliptok.PadEOS
	if u.p.TextEncoder.Cfg.HiddenAct == "gelu" {
		pad = cliptok.PadExclamation // OpenCLIP ViT-H, as SD 2.x
	}
	if u.p.Tokenizer, err = folderCLIPTokenizer(src, "tokenizer", pad); err != nil {
		return err
	}
	if u.p.UNet, _, err = component(u.f, "unet", unet.ParseConfig, unet.New); err != nil {
		return err
	}
	if u.p.VAE, _, err = component(u.f, "vae", vae.ParseConfig, vae.New); err != nil {
		return err
	}
	if want := u.p.VAE.Cfg.LatentChannels + 3; u.p.UNet.Cfg.InChannels != want {
		return fmt.Errorf("the UNet takes %d channels, want %d (latents and image)", u.p.UNet.Cfg.InChannels, want)
	}
	if u.p.NoisingScheduler, err = readScheduler(u.f, "low_res_scheduler"); err != nil {
		return err
	}
	b, err := u.f.scheduler("")
	if err != nil || len(b) == 0 {
		return fmt.Errorf("%s: no scheduler/scheduler_config.json", src.Path)
	}
	if u.sched, err = scheduler.ParseConfig(b); err != nil {
		return fmt.Errorf("scheduler config: %w", err)
	}
	return nil
}

// upscaleModel is the Stable Diffusion ×4 upscaler behind the front door:
// Params.InitImage is the image to upscale.
type upscaleModel struct {
	base
	u *upscaler
}

func openUpscale(_ context.Context, src *Source, opt Options) (Model, error) {
	u, err := loadUpscaler(src, LoadOptions{DType: opt.DType})
	if err != nil {
		return nil, err
	}
	f := u.p.Factor()
	size := defaultSize(u.p.UNet.Cfg, f)
	info := Info{Family: "sd-upscale", Kind: fmt.Sprintf("SD ×%d upscaler", f), Name: ModelName(src.Path), Path: src.Path,
		Width: size, Height: size, Steps: upscaleSteps, Guidance: upscaleGuidance, Sampler: defaultSampler(u.sched, "DDIMScheduler"),
		Accepts: []string{"upscale", "negative-prompt", "clip-skip"}}
	return &upscaleModel{base: base{info: info, opt: opt, sched: u.sched}, u: u}, nil
}

func (m *upscaleModel) Close() error { return m.close(m.u.f.close) }

// Generate upscales p.InitImage Count times, image i from seed Seed+i.
// The output size is the factor times the input's (its sides first cut to
// a multiple the UNet takes); a Width and Height given resize the input to
// their fraction.
func (m *upscaleModel) Generate(ctx context.Context, p Params) (*Output, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.upscaleSize(&p); err != nil {
		return nil, err
	}
	if err := refuseFields(m.info, &p); err != nil {
		return nil, err
	}
	if err := m.ready(&p); err != nil {
		return nil, err
	}
	f := m.u.p.Factor()
	if err := checkMemory(activationBytes(p.Width, p.Height, 1, widest(m.u.p.VAE), f), m.opt.MemoryLimit); err != nil {
		return nil, err
	}
	img, err := imageTensor(p.InitImage, p.Width/f, p.Height/f, false)
	if err != nil {
		return nil, err
	}
	x := tensor.AddScalar(tensor.Scale(img.Permute(0, 3, 1, 2).Contiguous(), 2), -1)
	level := cmp.Or(p.NoiseLevel, upscaleNoiseLevel)
	var negs []string
	if p.NegativePrompt != "" || p.HasNegative {
		negs = []string{p.NegativePrompt}
	}
	extra := []imageio.KV{{Key: "Noise level", Value: strconv.Itoa(level)}}
	return m.images(ctx, &p, extra, func(i int, s scheduler.Scheduler, g *rng.Generator) (*tensor.Tensor, error) {
		cb := p.progress(i, p.Count, "")
		out, err := m.u.p.Generate(ctx, UpscaleRequest{Prompts: []string{p.Prompt}, NegativePrompts: negs, ClipSkip: p.ClipSkip,
			Image: x, Steps: p.Steps, Guidance: p.Guidance, NoiseLevel: level, Scheduler: s, Noise: g,
			Progress: cb.Progress, OnUNetInput: cb.OnModelInput, OnStep: cb.OnStep})
		if err != nil {
			return nil, err
		}
		return IFImages(out), nil
	})
}

// upscaleSize checks the request's image and sets the output size.
func (m *upscaleModel) upscaleSize(p *Params) error {
	switch {
	case p.InitImage == nil:
		return errors.New("pipeline: the upscaler needs an image to upscale (Params.InitImage)")
	case p.Mask != nil:
		return errors.New("pipeline: the upscaler takes no mask")
	case p.Strength != 0:
		return errors.New("pipeline: the upscaler takes no strength (its input is kept by its noise level, Params.NoiseLevel)")
	}
	f := m.u.p.Factor()
	unit := 1 << max(len(m.u.p.UNet.Cfg.BlockOutChannels)-1, 0)
	if p.Width == 0 && p.Height == 0 {
		b := p.InitImage.Bounds()
		w, h := b.Dx()-b.Dx()%unit, b.Dy()-b.Dy()%unit
		if w == 0 || h == 0 {
			return fmt.Errorf("pipeline: the image to upscale is %dx%d; the upscaler takes at least %dx%d", b.Dx(), b.Dy(), unit, unit)
		}
		p.Width, p.Height = w*f, h*f
	}
	if err := checkSize(p.Width, p.Height, f*unit); err != nil {
		return fmt.Errorf("%w (the input, at 1/%d of it, must suit a UNet of %d levels)", err, f, len(m.u.p.UNet.Cfg.BlockOutChannels))
	}
	return nil
}
