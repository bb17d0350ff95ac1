package pipeline

import (
	"context"
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/checkpoint"
	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/model/sd3"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
	cliptok "github.com/diffuse-go/diffuse/tokenizer/clip"
)

func init() {
	Register(Family{Name: "sd3", Detect: detectSD3, Open: openSD3})
}

// The prefixes of an original SD3 single file (Stability's and ComfyUI's
// "sd3_medium_incl_clips_t5xxlfp16.safetensors" layout, and
// stable-diffusion.cpp's GGUF files). A transformer-only file
// (ComfyUI-GGUF's) has no prefix: sd3FileTransformerBare.
const (
	sd3FileTransformer = "model.diffusion_model."
	sd3FileCLIPL       = "text_encoders.clip_l.transformer."
	sd3FileCLIPG       = "text_encoders.clip_g.transformer."
	sd3FileT5          = "text_encoders.t5xxl.transformer."
	sd3FileVAE         = "first_stage_model."

	sd3FileTransformerBare = ""
)

// SD3SchedulerConfig is SD3 medium's scheduler_config.json, used for
// single files (which carry none).
const SD3SchedulerConfig = `{"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0}`

// SD3VAE is SD3 medium's VAE config (16 latent channels, no quant
// convolutions, latents shifted and scaled).
func SD3VAE() vae.Config {
	c := vae.SD()
	c.LatentChannels, c.SampleSize = 16, 1024
	c.ScalingFactor, c.ShiftFactor = 1.5305, float32Ptr(float32(0.0609))
	c.UseQuantConv, c.UsePostQuantConv = false, false
	return c
}

func float32Ptr(v float32) *float32 { return &v }

func detectSD3(src *Source) bool {
	return src.ClassIs("StableDiffusion3Pipeline") || src.Arch == "sd3" || src.HasTensorPrefix(sd3FileTransformer+"joint_blocks.") ||
		src.HasTensorPrefix("joint_blocks.")
}

// sd3Model is an SD3 model behind the front door.
type sd3Model struct {
	base
	pipe SD3
	enc  encoders
	fs   openFiles // transformer and VAE
	// maxSeq is the T5 length (diffusers' max_sequence_length 256).
	maxSeq int
}

func openSD3(_ context.Context, src *Source, opt Options) (Model, error) {
	m := &sd3Model{maxSeq: 256}
	if err := m.load(src, opt); err != nil {
		m.release()
		return nil, err
	}
	sc, err := schedulerConfig(src, SD3SchedulerConfig)
	if err != nil {
		m.release()
		return nil, err
	}
	size := m.pipe.Transformer.Cfg.SampleSize * vaeFactor(m.pipe.VAE)
	kind := sd3Kind(m.pipe.Transformer.Cfg)
	if m.pipe.TextEncoder3 == nil {
		kind += " (without T5)"
	}
	m.base = base{opt: opt, sched: sc, newScheduler: flowScheduler(sc), info: Info{Family: "sd3", Kind: kind,
		Name: ModelName(src.Path), Path: src.Path, Width: size, Height: size, Steps: 28, Guidance: 7, Sampler: "euler",
		Accepts: []string{"negative-prompt", "img2img"}}}
	return m, nil
}

// load finds and loads the components: transformer and VAE for good, the
// text encoders through m.enc (loaded now, to fail early; released after
// the first request's encoding).
func (m *sd3Model) load(src *Source, opt Options) error {
	parts, err := needParts(src, opt, partSpec{"transformer", []string{sd3FileTransformer, sd3FileTransformerBare}},
		partSpec{"vae", []string{sd3FileVAE}}, partSpec{"text_encoder", []string{sd3FileCLIPL}},
		partSpec{"text_encoder_2", []string{sd3FileCLIPG}})
	if err != nil {
		return err
	}
	tp, vp := parts[0], parts[1]
	var fs openFiles
	if m.pipe.Transformer, fs, err = loadSD3Transformer(tp, opt); err != nil {
		return err
	}
	m.fs = append(m.fs, fs...)
	if m.pipe.VAE, fs, err = loadVAE(vp, SD3VAE(), opt); err != nil {
		return err
	}
	m.fs = append(m.fs, fs...)
	if m.pipe.Tokenizer, err = folderCLIPTokenizer(src, "tokenizer", cliptok.PadEOS); err != nil {
		return err
	}
	if m.pipe.Tokenizer2, err = folderCLIPTokenizer(src, "tokenizer_2", cliptok.PadExclamation); err != nil {
		return err
	}
	return m.textEncoders(src, opt, parts[2], parts[3])
}

// textEncoders sets up CLIP-L (lp), CLIP-G (gp) and the optional T5 (SD3
// runs without it, with zeros in its place, as diffusers allows).
func (m *sd3Model) textEncoders(src *Source, opt Options, lp, gp compSource) error {
	t5p, hasT5, err := findPart(src, opt, "text_encoder_3", sd3FileT5)
	if err != nil {
		return err
	}
	if hasT5 {
		parts, err := needParts(src, opt, partSpec{"tokenizer_3", nil})
		if err != nil {
			return err
		}
		kp := parts[0]
		if m.pipe.Tokenizer3, err = loadT5Tokenizer(kp); err != nil {
			return err
		}
	}
	p := &m.pipe
	m.enc = encoders{keep: opt.KeepTextEncoders,
		clear: func() { p.TextEncoder, p.TextEncoder2, p.TextEncoder3 = nil, nil, nil },
		load: func() (openFiles, error) {
			var all openFiles
			var fs openFiles
			var err error
			if p.TextEncoder, fs, err = loadCLIP(lp, true, opt); err != nil {
				return nil, err
			}
			all = append(all, fs...)
			if p.TextEncoder2, fs, err = loadCLIP(gp, true, opt); err != nil {
				all.close()
				return nil, err
			}
			all = append(all, fs...)
			if hasT5 {
				if p.TextEncoder3, fs, err = loadT5(t5p, opt); err != nil {
					all.close()
					return nil, err
				}
				all = append(all, fs...)
			}
			return all, nil
		}}
	return m.enc.ready()
}

// loadSD3Transformer loads the MMDiT from a folder or from an original
// single file (names mapped by checkpoint.SD3, config read from its shapes).
func loadSD3Transformer(p compSource, opt Options) (*sd3.Model, openFiles, error) {
	fs, err := p.open()
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*sd3.Model, openFiles, error) {
		fs.close()
		return nil, nil, fmt.Errorf("transformer: %s: %w", p, err)
	}
	var cfg sd3.Config
	if p.dir != "" {
		b, err := p.config()
		if err != nil {
			return fail(err)
		}
		if cfg, err = sd3.ParseConfig(b); err != nil {
			return fail(err)
		}
	} else if cfg, err = inferSD3(shapesOf(fs, p.prefix)); err != nil {
		return fail(err)
	}
	m, err := sd3.New(cfg)
	if err != nil {
		return fail(err)
	}
	var src nn.Source = unionSource{fs: fs}
	if p.dir == "" {
		if src, err = mapOriginal(fs[0], p.prefix, m, checkpoint.SD3, nil); err != nil {
			return fail(err)
		}
	}
	fs, err = loadPart(p, m, src, fs, opt)
	return m, fs, err
}

// sd3HeadDim is the MMDiT's head width (hidden size 64·depth, depth heads).
const sd3HeadDim = 64

// inferSD3 reads an original MMDiT's config from its tensors' shapes.
func inferSD3(sh shapeFn) (sd3.Config, error) {
	c := sd3.Defaults()
	if diffusersNamed(sh) {
		return c, errDiffusersNamed
	}
	x, err := needShape(sh, "x_embedder.proj.weight", 4)
	if err != nil {
		return c, err
	}
	pos, err := needShape(sh, "pos_embed", 3)
	if err != nil {
		return c, err
	}
	ctx, err := needShape(sh, "context_embedder.weight", 2)
	if err != nil {
		return c, err
	}
	y, err := needShape(sh, "y_embedder.mlp.0.weight", 2)
	if err != nil {
		return c, err
	}
	fin, err := needShape(sh, "final_layer.linear.weight", 2)
	if err != nil {
		return c, err
	}
	hidden, p := x[0], x[2]
	side := int(math.Round(math.Sqrt(float64(pos[1]))))
	if side*side != pos[1] || hidden%sd3HeadDim != 0 {
		return c, fmt.Errorf("pos_embed %v or width %d do not fit an MMDiT (square table, %d-wide heads)", pos, hidden, sd3HeadDim)
	}
	c.PatchSize, c.InChannels, c.NumLayers = p, x[1], countBlocks(sh, "joint_blocks.%d.x_block.attn.qkv.weight")
	c.AttentionHeadDim, c.NumAttentionHeads = sd3HeadDim, hidden/sd3HeadDim
	c.JointAttentionDim, c.CaptionProjectionDim, c.PooledProjectionDim = ctx[1], hidden, y[1]
	c.OutChannels, c.PosEmbedMaxSize, c.SampleSize = fin[0]/(p*p), side, min(128, side)
	inferSD35(sh, &c)
	return c, c.Validate()
}

// inferSD35 reads SD3.5's options from an original MMDiT's tensor names,
// as diffusers' single-file loader does: qk_norm "rms_norm" when the
// first block has ln_q, dual attention in the blocks with an attn2.
func inferSD35(sh shapeFn, c *sd3.Config) {
	if _, ok := sh("joint_blocks.0.x_block.attn.ln_q.weight"); ok {
		rms := sd3.QKNormRMS
		c.QKNorm = &rms
	}
	for i := 0; i < c.NumLayers; i++ {
		if _, ok := sh(fmt.Sprintf("joint_blocks.%d.x_block.attn2.qkv.weight", i)); ok {
			c.DualAttentionLayers = append(c.DualAttentionLayers, i)
		}
	}
}

// sd3Kind names the model a transformer config is: SD3, SD3.5 Medium
// (MMDiT-X dual attention) or SD3.5 Large (qk norms only).
func sd3Kind(c sd3.Config) string {
	switch {
	case len(c.DualAttentionLayers) > 0:
		return "SD3.5 Medium"
	case c.HasQKNorm():
		return "SD3.5 Large"
	}
	return "SD3"
}

func (m *sd3Model) release() {
	m.enc.release()
	m.fs.close()
}

func (m *sd3Model) Close() error { return m.close(m.release) }

// request maps p onto the pipeline's request and checks its size and
// memory.
func (m *sd3Model) request(p *Params) (SD3Request, error) {
	req := SD3Request{Prompts: []string{p.Prompt}, Prompts2: rows1(p.Prompt2), NegativePrompts: rows1(p.NegativePrompt),
		NegativePrompts2: rows1(p.NegativePrompt2), MaxSequenceLength: m.maxSeq, ClipSkip: p.ClipSkip,
		Width: p.Width, Height: p.Height, Steps: p.Steps, Guidance: p.Guidance}
	if p.InitImage != nil {
		img, err := imageTensor(p.InitImage, p.Width, p.Height, false)
		if err != nil {
			return req, fmt.Errorf("pipeline: init image: %w", err)
		}
		req.InitImage, req.Strength = img, p.Strength
	}
	if _, _, err := m.pipe.sd3Size(req); err != nil {
		return req, err
	}
	f, tc := vaeFactor(m.pipe.VAE), m.pipe.Transformer.Cfg
	tokens := (p.Width/f/tc.PatchSize)*(p.Height/f/tc.PatchSize) + clipLength + m.maxSeq
	if err := checkMemory(flowMemory(p.Width, p.Height, widest(m.pipe.VAE), f, tokens, tc.InnerDim()), m.opt.MemoryLimit); err != nil {
		return req, err
	}
	return req, nil
}

// Generate encodes the prompts once (then releases the text encoders
// unless kept) and samples Count images, one generator each.
func (m *sd3Model) Generate(ctx context.Context, p Params) (*Output, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.ready(&p); err != nil {
		return nil, err
	}
	if err := checkFlowRequest(&p, true); err != nil {
		return nil, err
	}
	req, err := m.request(&p)
	if err != nil {
		return nil, err
	}
	enc := &SD3Result{}
	if err := m.enc.ready(); err != nil {
		return nil, err
	}
	embeds, pooled, err := m.pipe.encodeAll(req, enc, req.Guidance > 1)
	m.enc.done()
	if err != nil {
		return nil, err
	}
	var extra []imageio.KV
	if p.Prompt2 != "" {
		extra = append(extra, imageio.KV{Key: "Prompt 2", Value: p.Prompt2})
	}
	return m.images(ctx, &p, extra, func(i int, s scheduler.Scheduler, g *rng.Generator) (*tensor.Tensor, error) {
		r := req
		r.Scheduler, r.Noise = s, g
		c := p.progress(i, p.Count, "")
		r.Progress, r.OnStep = c.Progress, c.OnStep
		res := &SD3Result{PromptEmbeds: embeds, PooledEmbeds: pooled}
		if err := m.pipe.sample(ctx, r, res); err != nil {
			return nil, err
		}
		return res.Images, nil
	})
}
