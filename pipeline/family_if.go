package pipeline

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
)

// IFSchedulerConfig is the stage I scheduler of diffusers' convert_if.py
// (DDPM, learned-range variance, dynamic thresholding), used for a folder
// that has none.
const IFSchedulerConfig = `{"_class_name": "DDPMScheduler", "variance_type": "learned_range",
 "beta_schedule": "squaredcos_cap_v2", "prediction_type": "epsilon", "thresholding": true,
 "dynamic_thresholding_ratio": 0.95, "sample_max_value": 1.5}`

// IFSuperResolutionPipeline's defaults, which a Stage's zero values take
// (Params' steps, guidance and sampler are stage I's).
const (
	ifStage2Steps      = 50
	ifStage2Guidance   = 4.0
	ifStage2NoiseLevel = 250
)

func init() {
	Register(Family{Name: "if", Detect: func(src *Source) bool {
		return src.ClassIs("IFPipeline", "IFSuperResolutionPipeline")
	}, Open: openIF})
}

// ifModel is DeepFloyd IF behind the front door: the stage I folder
// (IFPipeline, 64² pixels) opened, the later stages named per request
// in Params.Stages (a stage II IFSuperResolutionPipeline folder, 64² →
// 256²) and kept loaded for the next request.
type ifModel struct {
	base
	f      *folder
	stage1 *IF
	// stages are the last request's later stages, by path.
	stages []*ifStage
}

// ifStage is a loaded stage II folder.
type ifStage struct {
	req        Stage // this request's settings, defaults filled in
	path, name string
	f          *folder
	p          *IFSuperResolution
	sched      scheduler.Config
	sampler    string
	factor     int // output size / input size
}

func openIF(_ context.Context, src *Source, opt Options) (Model, error) {
	if src.Class != "IFPipeline" {
		return nil, errors.New("this is a DeepFloyd IF stage II folder: open the stage I folder (IFPipeline) and name this one in Params.Stages")
	}
	f := &folder{dir: src.Path, opt: LoadOptions{DType: opt.DType}}
	fail := func(err error) (Model, error) { f.close(); return nil, err }
	tok, enc, err := folderT5(f)
	if err != nil {
		return fail(err)
	}
	u, uc, err := component(f, "unet", unet.ParseConfig, unet.New)
	if err != nil {
		return fail(err)
	}
	f.done()
	if uc.EncoderHidDim != 0 && uc.EncoderHidDim != enc.Cfg.DModel {
		return fail(fmt.Errorf("the UNet takes %d-wide text states, the T5 encoder gives %d", uc.EncoderHidDim, enc.Cfg.DModel))
	}
	sched, err := f.scheduler(IFSchedulerConfig)
	if err != nil {
		return fail(err)
	}
	sc, err := scheduler.ParseConfig(sched)
	if err != nil {
		return fail(fmt.Errorf("scheduler config: %w", err))
	}
	size := defaultSize(uc, 1)
	info := Info{Family: "if", Kind: "DeepFloyd IF", Name: ModelName(src.Path), Path: src.Path, Width: size, Height: size,
		Steps: 100, Guidance: 7, Sampler: defaultSampler(sc, "DDPMScheduler"), Accepts: []string{"negative-prompt", "stages"}}
	return &ifModel{base: base{info: info, opt: opt, sched: sc}, f: f, stage1: &IF{Tokenizer: tok, TextEncoder: enc, UNet: u}}, nil
}

func (m *ifModel) Close() error {
	return m.close(func() {
		m.closeStages()
		m.f.close()
	})
}

func (m *ifModel) closeStages() {
	for _, s := range m.stages {
		s.f.close()
	}
	m.stages = nil
}

// loadStages opens (or reuses) the later stages and sets their
// request settings.
func (m *ifModel) loadStages(stages []Stage) error {
	if !slices.EqualFunc(m.stages, stages, func(s *ifStage, r Stage) bool { return s.path == r.Path }) {
		m.closeStages()
		if len(stages) > 1 {
			return fmt.Errorf("pipeline: %d later stages given; DeepFloyd IF takes one (stage II): the ×4 upscaler stage is not supported yet", len(stages))
		}
		for _, r := range stages {
			s, err := m.loadStage(r.Path)
			if err != nil {
				m.closeStages()
				return fmt.Errorf("pipeline: stage %s: %w", r.Path, err)
			}
			m.stages = append(m.stages, s)
		}
	}
	for i, r := range stages {
		r.Steps = cmp.Or(r.Steps, ifStage2Steps)
		r.Guidance = cmp.Or(r.Guidance, ifStage2Guidance)
		r.NoiseLevel = cmp.Or(r.NoiseLevel, ifStage2NoiseLevel)
		m.stages[i].req = r
	}
	return nil
}

func (m *ifModel) loadStage(path string) (*ifStage, error) {
	src, err := Probe(path)
	if err != nil {
		return nil, err
	}
	src.close()
	switch {
	case src.ClassIs("StableDiffusionUpscalePipeline"):
		return nil, errors.New("the ×4 upscaler stage (StableDiffusionUpscalePipeline) is not supported yet")
	case !src.ClassIs("IFSuperResolutionPipeline"):
		return nil, fmt.Errorf("not a DeepFloyd IF stage II folder (model_index.json's _class_name is %q, want IFSuperResolutionPipeline)", src.Class)
	}
	f := &folder{dir: path, opt: m.f.opt}
	u, uc, err := component(f, "unet", unet.ParseConfig, unet.New)
	if err != nil {
		f.close()
		return nil, err
	}
	f.done()
	s := &ifStage{path: path, name: ModelName(path), f: f}
	if err := s.configure(m, uc); err != nil {
		f.close()
		return nil, err
	}
	s.p.UNet = u
	return s, nil
}

// configure reads the stage's schedulers and checks it fits stage I.
func (s *ifStage) configure(m *ifModel, uc unet.Config) error {
	if d := m.stage1.TextEncoder.Cfg.DModel; uc.EncoderHidDim != 0 && uc.EncoderHidDim != d {
		return fmt.Errorf("its UNet takes %d-wide text states, stage I's T5 gives %d", uc.EncoderHidDim, d)
	}
	if c := m.stage1.UNet.Cfg.OutChannels / 2; uc.InChannels != 2*c {
		return fmt.Errorf("its UNet takes %d channels, want %d (image and upscaled stage I image)", uc.InChannels, 2*c)
	}
	in, out := defaultSize(m.stage1.UNet.Cfg, 1), defaultSize(uc, 1)
	if out%in != 0 || out <= in {
		return fmt.Errorf("its sample size %d is no multiple of stage I's %d", out, in)
	}
	s.factor = out / in
	sched, err := s.f.scheduler(IFSchedulerConfig)
	if err != nil {
		return err
	}
	if s.sched, err = scheduler.ParseConfig(sched); err != nil {
		return fmt.Errorf("scheduler config: %w", err)
	}
	s.sampler = defaultSampler(s.sched, "DDPMScheduler")
	noising, err := readScheduler(s.f, "image_noising_scheduler")
	if err != nil {
		return err
	}
	s.p = &IFSuperResolution{NoisingScheduler: noising}
	return nil
}

// readScheduler builds the scheduler a folder's sub/scheduler_config.json describes.
func readScheduler(f *folder, sub string) (scheduler.Scheduler, error) {
	b, err := os.ReadFile(filepath.Join(f.dir, sub, "scheduler_config.json"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.dir, err)
	}
	s, err := scheduler.FromJSON(b)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", f.dir, sub, err)
	}
	return s, nil
}

// Generate makes Count images of the prompt, image i from seed Seed+i:
// stage I, then each later stage on its output with the same generator
// (as diffusers' IF examples pass one generator to every stage).
func (m *ifModel) Generate(ctx context.Context, p Params) (*Output, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := refuseFields(m.info, &p); err != nil {
		return nil, err
	}
	if m.closed {
		return nil, errClosed
	}
	if err := m.loadStages(p.Stages); err != nil {
		return nil, err
	}
	factor := 1
	for _, s := range m.stages {
		factor *= s.factor
	}
	if p.Width == 0 {
		p.Width = m.info.Width * factor
	}
	if p.Height == 0 {
		p.Height = m.info.Height * factor
	}
	if err := m.ready(&p); err != nil {
		return nil, err
	}
	uc := m.stage1.UNet.Cfg
	if err := checkSize(p.Width, p.Height, factor*(1<<max(len(uc.BlockOutChannels)-1, 0))); err != nil {
		return nil, fmt.Errorf("%w (stage I runs at 1/%d of it, on a UNet of %d levels)", err, factor, len(uc.BlockOutChannels))
	}
	if err := checkMemory(activationBytes(p.Width, p.Height, 1, uc.BlockOutChannels[0], 1), m.opt.MemoryLimit); err != nil {
		return nil, err
	}
	var negs []string
	if p.NegativePrompt != "" || p.HasNegative {
		negs = []string{p.NegativePrompt}
	}
	var extra []imageio.KV
	for i, s := range m.stages {
		extra = append(extra, imageio.KV{Key: fmt.Sprintf("Stage %d", i+2), Value: fmt.Sprintf(
			"%s, %d steps, CFG %s, noise level %d", s.name, s.req.Steps, formatNum(s.req.Guidance), s.req.NoiseLevel)})
	}
	return m.images(ctx, &p, extra, func(i int, s scheduler.Scheduler, g *rng.Generator) (*tensor.Tensor, error) {
		cb := p.progress(i, p.Count, "stage I")
		res, err := m.stage1.Generate(ctx, IFRequest{Prompts: []string{p.Prompt}, NegativePrompts: negs,
			Width: p.Width / factor, Height: p.Height / factor, Steps: p.Steps, Guidance: p.Guidance, Scheduler: s, Noise: g,
			Progress: cb.Progress, OnUNetInput: cb.OnModelInput, OnStep: cb.OnStep})
		if err != nil {
			return nil, err
		}
		x, width, height := res.Images, p.Width/factor, p.Height/factor
		for k, st := range m.stages {
			width, height = width*st.factor, height*st.factor
			if x, err = m.upscale(ctx, st, res, negs, x, width, height, g, p.progress(i, p.Count, fmt.Sprintf("stage %d", k+2))); err != nil {
				return nil, fmt.Errorf("stage %d: %w", k+2, err)
			}
		}
		return IFImages(x), nil
	})
}

// upscale runs stage II on stage I's images x with its text states (the
// negative ones encoded now when stage I ran without guidance).
func (m *ifModel) upscale(ctx context.Context, st *ifStage, res *IFResult, negs []string, x *tensor.Tensor, w, h int,
	g *rng.Generator, cb Callbacks) (*tensor.Tensor, error) {
	neg := res.NegativeEmbeds
	if neg == nil && st.req.Guidance > 1 {
		r := &IFResult{}
		if err := m.stage1.encodePrompts(IFRequest{PromptEmbeds: res.PromptEmbeds, NegativePrompts: negs}, true, r); err != nil {
			return nil, err
		}
		neg = r.NegativeEmbeds
	}
	s, err := scheduler.New(st.sampler, st.sched)
	if err != nil {
		return nil, fmt.Errorf("sampler: %w", err)
	}
	out, err := st.p.Generate(ctx, IFSuperResRequest{PromptEmbeds: res.PromptEmbeds, NegativeEmbeds: neg, Image: x,
		Width: w, Height: h, Steps: st.req.Steps, Guidance: st.req.Guidance, NoiseLevel: st.req.NoiseLevel,
		Scheduler: s, Noise: g, Progress: cb.Progress, OnUNetInput: cb.OnModelInput, OnStep: cb.OnStep})
	if err != nil {
		return nil, err
	}
	return out.Images, nil
}
