package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/diffuse-go/diffuse/checkpoint"
	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/model/flux"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
	cliptok "github.com/diffuse-go/diffuse/tokenizer/clip"
)

func init() {
	Register(Family{Name: "flux", Detect: detectFlux, Open: openFlux})
}

// The prefixes of FLUX single files: BFL's transformer files have none;
// ComfyUI's all-in-one checkpoints put the transformer under
// model.diffusion_model. and the encoders and VAE beside it.
var (
	fluxFileTransformer = []string{"model.diffusion_model.", ""}
	fluxFileCLIP        = []string{"text_encoders.clip_l.transformer."}
	fluxFileT5          = []string{"text_encoders.t5xxl.transformer."}
	fluxFileVAE         = []string{"first_stage_model.", "vae."}
)

// The scheduler configs of FLUX.1 dev (resolution-dependent shift) and
// schnell, used for single files.
const (
	FluxDevSchedulerConfig = `{"_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": 0.5,
 "max_image_seq_len": 4096, "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": true}`
	FluxSchnellSchedulerConfig = `{"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 1.0,
 "use_dynamic_shifting": false}`
)

// FluxVAE is FLUX.1's VAE config (BFL's ae.safetensors).
func FluxVAE() vae.Config {
	c := SD3VAE()
	c.ScalingFactor, c.ShiftFactor = 0.3611, float32Ptr(float32(0.1159))
	return c
}

func detectFlux(src *Source) bool {
	return src.ClassIs("FluxPipeline") || src.HasTensorPrefix("double_blocks.") ||
		src.HasTensorPrefix("model.diffusion_model.double_blocks.")
}

// fluxModel is a FLUX.1 model behind the front door.
type fluxModel struct {
	base
	pipe   Flux
	enc    encoders
	fs     openFiles
	maxSeq int
}

func openFlux(_ context.Context, src *Source, opt Options) (Model, error) {
	m := &fluxModel{}
	if err := m.load(src, opt); err != nil {
		m.release()
		return nil, err
	}
	dev := m.pipe.Transformer.Cfg.GuidanceEmbeds
	kind, def, steps, guidance := "FLUX.1 schnell", FluxSchnellSchedulerConfig, 4, 0.0
	m.maxSeq = 256
	if dev {
		kind, def, steps, guidance = "FLUX.1 dev", FluxDevSchedulerConfig, 28, 3.5
		m.maxSeq = fluxDefaultMaxSequenceLength
	}
	sc, err := schedulerConfig(src, def)
	if err != nil {
		m.release()
		return nil, err
	}
	m.base = base{opt: opt, sched: sc, newScheduler: flowScheduler(sc), info: Info{Family: "flux", Kind: kind,
		Name: ModelName(src.Path), Path: src.Path, Width: fluxDefaultSize, Height: fluxDefaultSize, Steps: steps,
		Guidance: guidance, Sampler: "euler"}}
	return m, nil
}

// load finds and loads the transformer, VAE and tokenizers for good and
// the text encoders through m.enc (loaded now, to fail early).
func (m *fluxModel) load(src *Source, opt Options) error {
	tp, err := needPart(src, opt, "transformer", fluxFileTransformer...)
	if err != nil {
		return err
	}
	vp, err := needPart(src, opt, "vae", fluxFileVAE...)
	if err != nil {
		return err
	}
	cp, err := needPart(src, opt, "text_encoder", fluxFileCLIP...)
	if err != nil {
		return err
	}
	t5p, err := needPart(src, opt, "text_encoder_2", fluxFileT5...)
	if err != nil {
		return err
	}
	kp, err := needPart(src, opt, "tokenizer_2")
	if err != nil {
		return fmt.Errorf("%w: the T5 encoder needs its tokenizer (spiece.model)", err)
	}
	var fs openFiles
	if m.pipe.Transformer, fs, err = loadFluxTransformer(tp, opt); err != nil {
		return err
	}
	m.fs = append(m.fs, fs...)
	if m.pipe.VAE, fs, err = loadVAE(vp, FluxVAE(), opt); err != nil {
		return err
	}
	m.fs = append(m.fs, fs...)
	if m.pipe.Tokenizer, err = folderCLIPTokenizer(src, "tokenizer", cliptok.PadEOS); err != nil {
		return err
	}
	tok2, err := loadT5Tokenizer(kp)
	if err != nil {
		return err
	}
	m.pipe.Tokenizer2 = tok2
	p := &m.pipe
	m.enc = encoders{keep: opt.KeepTextEncoders,
		clear: func() { p.TextEncoder, p.TextEncoder2 = nil, nil },
		load: func() (openFiles, error) {
			var all, fs openFiles
			var err error
			if p.TextEncoder, fs, err = loadCLIP(cp, false, opt); err != nil {
				return nil, err
			}
			all = append(all, fs...)
			if p.TextEncoder2, fs, err = loadT5(t5p, opt); err != nil {
				all.close()
				return nil, err
			}
			return append(all, fs...), nil
		}}
	return m.enc.ready()
}

// loadFluxTransformer loads the transformer from a folder, a BFL file
// (names mapped by checkpoint.Flux, config read from its shapes) or a
// diffusers-named single file.
func loadFluxTransformer(p compSource, opt Options) (*flux.Model, openFiles, error) {
	fs, err := p.open()
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*flux.Model, openFiles, error) {
		fs.close()
		return nil, nil, fmt.Errorf("transformer: %s: %w", p, err)
	}
	var cfg flux.Config
	if p.dir != "" {
		b, err := p.config()
		if err != nil {
			return fail(err)
		}
		if cfg, err = flux.ParseConfig(b); err != nil {
			return fail(err)
		}
	} else if cfg, err = inferFlux(shapesOf(fs, p.prefix)); err != nil {
		return fail(err)
	}
	m, err := flux.New(cfg)
	if err != nil {
		return fail(err)
	}
	var src nn.Source = unionSource{fs: fs}
	if p.dir == "" {
		if src, err = mapOriginal(fs[0], p.prefix, m, checkpoint.Flux, otherParts(p.prefix)); err != nil {
			return fail(err)
		}
	}
	fs, err = loadPart(p, m, src, fs, opt)
	return m, fs, err
}

// otherParts ignores, when the transformer has no prefix, the tensors of
// the other components an all-in-one file may hold.
func otherParts(prefix string) func(string) bool {
	return func(n string) bool {
		if prefix != "" {
			return false
		}
		for _, pre := range append(append(append([]string{}, fluxFileCLIP...), fluxFileT5...), fluxFileVAE...) {
			if strings.HasPrefix(n, pre) {
				return true
			}
		}
		return false
	}
}

// inferFlux reads a BFL transformer's config from its tensors' shapes:
// the head width is the qk norms' length; the rotary axes split it as
// FLUX.1 does (16, 56, 56 of 128).
func inferFlux(sh shapeFn) (flux.Config, error) {
	var c flux.Config
	if diffusersNamed(sh) {
		return c, errDiffusersNamed
	}
	img, err := needShape(sh, "img_in.weight", 2)
	if err != nil {
		return c, err
	}
	txt, err := needShape(sh, "txt_in.weight", 2)
	if err != nil {
		return c, err
	}
	vec, err := needShape(sh, "vector_in.in_layer.weight", 2)
	if err != nil {
		return c, err
	}
	qn, err := needShape(sh, "double_blocks.0.img_attn.norm.query_norm.scale", 1)
	if err != nil {
		return c, err
	}
	fin, err := needShape(sh, "final_layer.linear.weight", 2)
	if err != nil {
		return c, err
	}
	hidden, hd := img[0], qn[0]
	if hd%16 != 0 || hidden%hd != 0 {
		return c, fmt.Errorf("head width %d does not divide width %d into FLUX rotary axes", hd, hidden)
	}
	_, guidance := sh("guidance_in.in_layer.weight")
	c = flux.Config{PatchSize: 1, InChannels: img[1], OutChannels: fin[0], NumLayers: countBlocks(sh, "double_blocks.%d.img_attn.qkv.weight"),
		NumSingleLayers: countBlocks(sh, "single_blocks.%d.linear1.weight"), AttentionHeadDim: hd, NumAttentionHeads: hidden / hd,
		JointAttentionDim: txt[1], PooledProjectionDim: vec[1], GuidanceEmbeds: guidance,
		AxesDimsRope: []int{hd / 8, hd * 7 / 16, hd * 7 / 16}}
	return c, nil
}

func (m *fluxModel) release() {
	m.enc.release()
	m.fs.close()
}

func (m *fluxModel) Close() error { return m.close(m.release) }

// errFluxNegative refuses negative prompts: FLUX.1 has no classifier-free
// guidance.
var errFluxNegative = fmt.Errorf("pipeline: FLUX.1 has no classifier-free guidance, so no negative prompt: %w", ErrUnsupported)

// request refuses what FLUX does not take, checks the size and memory,
// and maps p onto the pipeline's request.
func (m *fluxModel) request(p *Params) (FluxRequest, error) {
	if p.NegativePrompt != "" || p.NegativePrompt2 != "" {
		return FluxRequest{}, errFluxNegative
	}
	if err := checkFlowRequest(p, false); err != nil {
		return FluxRequest{}, err
	}
	f := m.pipe.VAEScaleFactor()
	if err := checkSize(p.Width, p.Height, f); err != nil {
		return FluxRequest{}, err
	}
	tokens := (p.Width/f)*(p.Height/f) + m.maxSeq
	if err := checkMemory(flowMemory(p.Width, p.Height, widest(m.pipe.VAE), f/2, tokens, m.pipe.Transformer.Cfg.InnerDim()), m.opt.MemoryLimit); err != nil {
		return FluxRequest{}, err
	}
	return FluxRequest{Prompts: []string{p.Prompt}, Prompts2: rows1(p.Prompt2), MaxSequenceLength: m.maxSeq,
		Width: p.Width, Height: p.Height, Steps: p.Steps, Guidance: p.Guidance}, nil
}

// Generate encodes the prompt once (then releases the text encoders unless
// kept) and samples Count images, one generator each.
func (m *fluxModel) Generate(ctx context.Context, p Params) (*Output, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.ready(&p); err != nil {
		return nil, err
	}
	req, err := m.request(&p)
	if err != nil {
		return nil, err
	}
	enc := &FluxResult{}
	if err := m.enc.ready(); err != nil {
		return nil, err
	}
	err = m.pipe.encodePrompts(req, m.maxSeq, enc)
	m.enc.done()
	if err != nil {
		return nil, err
	}
	var extra []imageio.KV
	if p.Prompt2 != "" {
		extra = append(extra, imageio.KV{Key: "Prompt 2", Value: p.Prompt2})
	}
	if m.pipe.Transformer.Cfg.GuidanceEmbeds {
		extra = append(extra, imageio.KV{Key: "Distilled CFG Scale", Value: formatNum(p.Guidance)})
	}
	return m.images(ctx, &p, extra, func(i int, s scheduler.Scheduler, g *rng.Generator) (*tensor.Tensor, error) {
		fm, ok := s.(*scheduler.FlowMatchEuler)
		if !ok {
			return nil, errors.New("pipeline: FLUX needs the flow-matching Euler scheduler")
		}
		r := req
		r.Scheduler, r.Noise = fm, g
		c := p.progress(i, p.Count, "")
		r.Progress = c.Progress
		if c.OnStep != nil {
			// Previews see the latents unpacked, as the other families'.
			f := m.pipe.VAEScaleFactor()
			h, w := 2*(p.Height/f), 2*(p.Width/f)
			r.OnStep = func(step int, st FluxStep) {
				if u, err := UnpackLatents(st.Latents, h, w); err == nil {
					c.OnStep(step, 0, u)
				}
			}
		}
		res := &FluxResult{PromptEmbeds: enc.PromptEmbeds, PooledPromptEmbeds: enc.PooledPromptEmbeds}
		if err := m.pipe.sample(ctx, r, res, p.Width, p.Height); err != nil {
			return nil, err
		}
		return res.Images, nil
	})
}
