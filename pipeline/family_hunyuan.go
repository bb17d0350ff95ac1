package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/diffuse-go/diffuse/model/bert"
	"github.com/diffuse-go/diffuse/model/hunyuan"
	"github.com/diffuse-go/diffuse/model/t5"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
	berttok "github.com/diffuse-go/diffuse/tokenizer/bert"
	t5tok "github.com/diffuse-go/diffuse/tokenizer/t5"
)

// HunyuanSchedulerConfig is HunyuanDiT-v1.2-Diffusers'
// scheduler_config.json, used for a folder that has none.
const HunyuanSchedulerConfig = `{"_class_name": "DDPMScheduler", "beta_end": 0.03, "beta_schedule": "scaled_linear",
 "beta_start": 0.00085, "clip_sample": false, "clip_sample_range": 1.0, "dynamic_thresholding_ratio": 0.995,
 "num_train_timesteps": 1000, "prediction_type": "v_prediction", "rescale_betas_zero_snr": false,
 "sample_max_value": 1.0, "steps_offset": 1, "thresholding": false, "timestep_spacing": "leading",
 "trained_betas": null, "variance_type": "fixed_small"}`

func init() {
	Register(Family{Name: "hunyuan", Detect: func(src *Source) bool { return src.ClassIs("HunyuanDiTPipeline") }, Open: openHunyuan})
}

// hunyuanModel is a HunyuanDiTPipeline folder behind the front door. Sizes
// are binned to the trained ones unless the request says otherwise, as
// diffusers' use_resolution_binning=True does: the image then has the
// trained size, not the one asked for.
type hunyuanModel struct {
	base
	f *folder
	p *Hunyuan
}

func openHunyuan(_ context.Context, src *Source, opt Options) (Model, error) {
	f := &folder{dir: src.Path, opt: LoadOptions{DType: opt.DType}}
	fail := func(err error) (Model, error) { f.close(); return nil, err }
	p, err := loadHunyuan(f)
	if err != nil {
		return fail(err)
	}
	f.done()
	sched, err := f.scheduler(HunyuanSchedulerConfig)
	if err != nil {
		return fail(err)
	}
	sc, err := scheduler.ParseConfig(sched)
	if err != nil {
		return fail(fmt.Errorf("scheduler config: %w", err))
	}
	tc := p.Transformer.Cfg
	size := tc.SampleSize * vaeFactor(p.VAE)
	accepts := []string{"negative-prompt", "guidance-rescale"}
	if tc.UseStyleCondAndMetaSize {
		// v1.2 ignores the image-meta sizes (use_style_cond_and_image_meta_size
		// false); only earlier versions read them.
		accepts = append(accepts, "size-conditioning")
	}
	// HunyuanDiTPipeline's defaults: 50 steps, guidance 5.
	info := Info{Family: "hunyuan", Kind: "Hunyuan-DiT", Name: ModelName(src.Path), Path: src.Path, Width: size, Height: size,
		Steps: 50, Guidance: 5, Sampler: defaultSampler(sc, "DDPMScheduler"), Accepts: accepts}
	return &hunyuanModel{base: base{info: info, opt: opt, sched: sc}, f: f, p: p}, nil
}

// loadHunyuan loads the folder's tokenizers and models and checks that
// they fit together.
func loadHunyuan(f *folder) (*Hunyuan, error) {
	p := &Hunyuan{}
	var err error
	if p.Tokenizer, err = folderBERTTokenizer(filepath.Join(f.dir, "tokenizer")); err != nil {
		return nil, err
	}
	if p.TextEncoder, _, err = component(f, "text_encoder", bert.ParseConfig, bert.New); err != nil {
		return nil, err
	}
	if p.Tokenizer2, err = folderMT5Tokenizer(filepath.Join(f.dir, "tokenizer_2")); err != nil {
		return nil, err
	}
	if p.TextEncoder2, _, err = component(f, "text_encoder_2", t5.ParseConfig, t5.New); err != nil {
		return nil, err
	}
	if p.Transformer, _, err = component(f, "transformer", hunyuan.ParseConfig, hunyuan.New); err != nil {
		return nil, err
	}
	if p.VAE, _, err = component(f, "vae", vae.ParseConfig, vae.New); err != nil {
		return nil, err
	}
	if err := checkHunyuanParts(p); err != nil {
		return nil, fmt.Errorf("%s: %w", f.dir, err)
	}
	return p, nil
}

// vocabSizer is a tokenizer that knows its vocabulary size.
type vocabSizer interface{ VocabSize() int }

// checkHunyuanParts refuses components that do not fit together, so that
// a mismatched folder fails at open with a message, not mid-generation.
func checkHunyuanParts(p *Hunyuan) error {
	tc := p.Transformer.Cfg
	for _, c := range []struct {
		what      string
		got, want int
	}{
		{"text_encoder hidden_size (transformer cross_attention_dim)", p.TextEncoder.Cfg.HiddenSize, tc.CrossAttentionDim},
		{"text_encoder_2 d_model (transformer cross_attention_dim_t5)", p.TextEncoder2.Cfg.DModel, tc.CrossAttentionDimT5},
		{"vae latent_channels (transformer in_channels)", p.VAE.Cfg.LatentChannels, tc.InChannels},
		// The pipeline's rotary grid is size / 8 / patch.
		{"vae downsampling factor", vaeFactor(p.VAE), 8},
	} {
		if c.got != c.want {
			return fmt.Errorf("%s is %d, want %d", c.what, c.got, c.want)
		}
	}
	if p.TextEncoder.Cfg.MaxPositionEmbeddings < tc.TextLen {
		return fmt.Errorf("text_encoder max_position_embeddings %d is below the %d tokens the pipeline gives it",
			p.TextEncoder.Cfg.MaxPositionEmbeddings, tc.TextLen)
	}
	// The WordPiece vocabulary must fit the BERT table. The mT5 tokenizer
	// is not checked: T5Tokenizer's <extra_id_N> sentinels may lie past
	// mT5's table, reachable only by typing them, and the encoder refuses
	// an id out of range when it meets one.
	if s, ok := p.Tokenizer.(vocabSizer); ok && s.VocabSize() > p.TextEncoder.Cfg.VocabSize {
		return fmt.Errorf("tokenizer has %d tokens but text_encoder's vocab_size is %d", s.VocabSize(), p.TextEncoder.Cfg.VocabSize)
	}
	if tc.OutChannels() != 2*tc.InChannels {
		return fmt.Errorf("transformer needs learn_sigma (the pipeline drops the variance channels)")
	}
	return nil
}

// readTokenizerConfig decodes dir/tokenizer_config.json into v; a folder
// without one keeps v as it is.
func readTokenizerConfig(dir string, v any) error {
	b, err := os.ReadFile(filepath.Join(dir, "tokenizer_config.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s/tokenizer_config.json: %w", dir, err)
	}
	return nil
}

// folderBERTTokenizer loads a BertTokenizer folder: vocab.txt with the
// options its tokenizer_config.json sets (BertTokenizer's defaults else).
func folderBERTTokenizer(dir string) (*berttok.Tokenizer, error) {
	var cfg struct {
		DoLowerCase          *bool    `json:"do_lower_case"`
		TokenizeChineseChars *bool    `json:"tokenize_chinese_chars"`
		StripAccents         *bool    `json:"strip_accents"`
		NeverSplit           []string `json:"never_split"`
	}
	if err := readTokenizerConfig(dir, &cfg); err != nil {
		return nil, err
	}
	opts := berttok.DefaultOptions()
	if cfg.DoLowerCase != nil {
		opts.DoLowerCase = *cfg.DoLowerCase
	}
	if cfg.TokenizeChineseChars != nil {
		opts.TokenizeChineseChars = *cfg.TokenizeChineseChars
	}
	opts.StripAccents, opts.NeverSplit = cfg.StripAccents, cfg.NeverSplit
	tok, err := berttok.Load(filepath.Join(dir, "vocab.txt"), opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return tok, nil
}

// folderMT5Tokenizer loads a T5Tokenizer/MT5Tokenizer folder: spiece.model
// with the sentinel count of its tokenizer_config.json (extra_ids; mT5
// ships 0, T5Tokenizer's default is 100).
func folderMT5Tokenizer(dir string) (*t5tok.Tokenizer, error) {
	var cfg struct {
		ExtraIDs *int `json:"extra_ids"`
	}
	if err := readTokenizerConfig(dir, &cfg); err != nil {
		return nil, err
	}
	var opts t5tok.Options
	if cfg.ExtraIDs != nil {
		opts.ExtraIDs = *cfg.ExtraIDs
		if opts.ExtraIDs == 0 {
			opts.ExtraIDs = -1 // none (the package's 0 means the default)
		}
	}
	tok, err := t5tok.Load(filepath.Join(dir, "spiece.model"), opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return tok, nil
}

func (m *hunyuanModel) Close() error { return m.close(m.f.close) }

// Generate makes Count images of the prompt, image i from seed Seed+i.
func (m *hunyuanModel) Generate(ctx context.Context, p Params) (*Output, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p.NegativeOriginalSize != nil || p.NegativeCropsTopLeft != nil || p.NegativeTargetSize != nil {
		return nil, fmt.Errorf("pipeline: %s (%s) conditions both CFG halves on the same sizes; it takes no negative sizes",
			m.info.Name, m.info.Kind)
	}
	if err := refuseFields(m.info, &p); err != nil {
		return nil, err
	}
	if err := m.ready(&p); err != nil {
		return nil, err
	}
	req := HunyuanRequest{Width: p.Width, Height: p.Height, ResolutionBinning: !p.NoResolutionBinning}
	var err error
	// The image has the pipeline's size: rounded down to multiples of 16,
	// then binned; the metadata says so.
	if p.Width, p.Height, err = m.p.hunyuanSize(req); err != nil {
		return nil, err
	}
	rows := 1
	if p.Guidance > 1 {
		rows = 2
	}
	if err := checkMemory(hunyuanActivationBytes(m.p, p.Width, p.Height, rows), m.opt.MemoryLimit); err != nil {
		return nil, err
	}
	req = HunyuanRequest{Prompts: []string{p.Prompt}, NegativePrompts: []string{p.NegativePrompt},
		Width: p.Width, Height: p.Height, Steps: p.Steps, Guidance: p.Guidance, GuidanceRescale: p.GuidanceRescale}
	for _, s := range []struct {
		dst *[2]int
		src *Size
	}{{&req.OriginalSize, p.OriginalSize}, {&req.TargetSize, p.TargetSize}, {&req.CropsCoordsTopLeft, p.CropsTopLeft}} {
		if s.src != nil {
			*s.dst = *s.src
		}
	}
	return m.images(ctx, &p, nil, func(i int, s scheduler.Scheduler, g *rng.Generator) (*tensor.Tensor, error) {
		r := req
		r.Scheduler, r.Noise, r.Callbacks = s, g, p.progress(i, p.Count, "")
		res, err := m.p.Generate(ctx, r)
		if err != nil {
			return nil, err
		}
		return res.Images, nil
	})
}

// hunyuanActivationBytes estimates a generation's peak working memory:
// the VAE decoder's full-resolution stage, or the transformer's rows of
// image tokens (its feed-forward the widest) with attention in blocks.
func hunyuanActivationBytes(p *Hunyuan, w, h, rows int) int64 {
	tc := p.Transformer.Cfg
	tokens := int64(w/8/tc.PatchSize) * int64(h/8/tc.PatchSize)
	ff := int64(float64(tc.InnerDim()) * tc.MLPRatio)
	transformer := int64(rows) * tokens * (ff + 8*int64(tc.InnerDim())) * 4
	return max(activationBytes(w, h, 1, widest(p.VAE), vaeFactor(p.VAE)), transformer)
}
