package pipeline

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/diffuse-go/diffuse/model/pixart"
	"github.com/diffuse-go/diffuse/model/t5"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
	t5tok "github.com/diffuse-go/diffuse/tokenizer/t5"
)

// PixArtSchedulerConfig is PixArt-alpha/PixArt-XL-2-1024-MS's
// scheduler_config.json, used for a folder that has none.
const PixArtSchedulerConfig = `{"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpmsolver++",
 "beta_end": 0.02, "beta_schedule": "linear", "beta_start": 0.0001, "dynamic_thresholding_ratio": 0.995,
 "euler_at_final": false, "lambda_min_clipped": "-inf", "lower_order_final": true, "num_train_timesteps": 1000,
 "prediction_type": "epsilon", "sample_max_value": 1.0, "solver_order": 2, "solver_type": "midpoint",
 "steps_offset": 0, "thresholding": false, "timestep_spacing": "linspace", "trained_betas": null,
 "use_karras_sigmas": false, "use_lu_lambdas": false, "variance_type": null}`

func init() {
	Register(Family{Name: "pixart", Detect: func(src *Source) bool { return src.ClassIs("PixArtAlphaPipeline") }, Open: openPixArt})
}

// pixartModel is a PixArtAlphaPipeline folder behind the front door.
// Prompts are not cleaned (clean_caption=False) and sizes are not binned
// to the trained aspect ratios (use_resolution_binning=False): the image
// has the size asked for.
type pixartModel struct {
	base
	f *folder
	p *PixArt
}

// folderT5 loads a folder's T5 tokenizer (tokenizer/spiece.model) and
// text encoder, 16-bit weights kept 16-bit unless Options.DType says.
func folderT5(f *folder) (*t5tok.Tokenizer, *t5.Model, error) {
	tok, err := t5tok.Load(filepath.Join(f.dir, "tokenizer", "spiece.model"), t5tok.Options{})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: tokenizer: %w", f.dir, err)
	}
	enc, _, err := component(f, "text_encoder", t5.ParseConfig, t5.New)
	if err != nil {
		return nil, nil, err
	}
	return tok, enc, nil
}

func openPixArt(_ context.Context, src *Source, opt Options) (Model, error) {
	f := &folder{dir: src.Path, opt: LoadOptions{DType: opt.DType}}
	fail := func(err error) (Model, error) { f.close(); return nil, err }
	tok, enc, err := folderT5(f)
	if err != nil {
		return fail(err)
	}
	tr, tc, err := component(f, "transformer", pixart.ParseConfig, pixart.New)
	if err != nil {
		return fail(err)
	}
	v, _, err := component(f, "vae", vae.ParseConfig, vae.New)
	if err != nil {
		return fail(err)
	}
	f.done()
	sched, err := f.scheduler(PixArtSchedulerConfig)
	if err != nil {
		return fail(err)
	}
	sc, err := scheduler.ParseConfig(sched)
	if err != nil {
		return fail(fmt.Errorf("scheduler config: %w", err))
	}
	size := tc.SampleSize * vaeFactor(v)
	info := Info{Family: "pixart", Kind: "PixArt-α", Name: ModelName(src.Path), Path: src.Path, Width: size, Height: size,
		Steps: 20, Guidance: 4.5, Sampler: defaultSampler(sc, "DPMSolverMultistepScheduler"), Accepts: []string{"negative-prompt", CacheFirstBlock}}
	return &pixartModel{base: base{info: info, opt: opt, sched: sc}, f: f,
		p: &PixArt{Tokenizer: tok, TextEncoder: enc, Transformer: tr, VAE: v}}, nil
}

func (m *pixartModel) Close() error { return m.close(m.f.close) }

// Generate makes Count images of the prompt, image i from seed Seed+i.
func (m *pixartModel) Generate(ctx context.Context, p Params) (*Output, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := refuseFields(m.info, &p); err != nil {
		return nil, err
	}
	if err := m.ready(&p); err != nil {
		return nil, err
	}
	f := vaeFactor(m.p.VAE)
	if err := checkSize(p.Width, p.Height, f*m.p.Transformer.Cfg.PatchSize); err != nil {
		return nil, err
	}
	if err := checkMemory(activationBytes(p.Width, p.Height, 1, widest(m.p.VAE), f), m.opt.MemoryLimit); err != nil {
		return nil, err
	}
	var negs []string
	if p.NegativePrompt != "" || p.HasNegative {
		negs = []string{p.NegativePrompt}
	}
	return m.images(ctx, &p, nil, func(i int, s scheduler.Scheduler, g *rng.Generator) (*tensor.Tensor, error) {
		cb := p.progress(i, p.Count, "")
		res, err := m.p.Generate(ctx, PixArtRequest{Prompts: []string{p.Prompt}, NegativePrompts: negs, Width: p.Width,
			Height: p.Height, Steps: p.Steps, Guidance: p.Guidance, Scheduler: s, Noise: g,
			Progress: cb.Progress, OnModelInput: cb.OnModelInput, Cache: p.stepCache()})
		if err != nil {
			return nil, err
		}
		return res.Images, nil
	})
}
