package toy

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
)

// Resolution is the toy model's image size in pixels.
const Resolution = 32

// The toy model's configs, in the JSON of diffusers / transformers so that
// the written folder loads in diffusers as a StableDiffusionPipeline: a
// 2-layer, 64-wide CLIP text encoder on the real CLIP vocabulary, a
// 3-level UNet2DConditionModel with cross-attention at its 8² and 4²
// levels (none at 16², where attention would cost most), and an
// AutoencoderKL that halves the side (32² RGB ↔ 16² × 4 latents).
//
// The UNet also pools the caption into its timestep embedding (as
// DeepFloyd IF's UNets do: addition_embed_type "text") and its resnets
// scale and shift their normalised features by that embedding
// (resnet_time_scale_shift "scale_shift"). Without the multiplicative
// path, a model trained within the hour learned colour, which a global
// bias conveys, but neither shape nor position: those need the caption to
// gate features that vary across the image.
const (
	TextEncoderConfig = `{
  "_name_or_path": "diffuse-toy", "architectures": ["CLIPTextModel"], "model_type": "clip_text_model",
  "vocab_size": 49408, "hidden_size": 64, "intermediate_size": 256, "projection_dim": 64,
  "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 77,
  "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05, "attention_dropout": 0.0, "dropout": 0.0,
  "initializer_factor": 1.0, "initializer_range": 0.02,
  "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "torch_dtype": "float32", "transformers_version": "4.42.4"
}`
	UNetConfig = `{
  "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.30.3",
  "sample_size": 16, "in_channels": 4, "out_channels": 4, "center_input_sample": false,
  "flip_sin_to_cos": true, "freq_shift": 0,
  "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
  "mid_block_type": "UNetMidBlock2DCrossAttn",
  "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
  "only_cross_attention": false, "block_out_channels": [32, 64, 64], "layers_per_block": 1,
  "downsample_padding": 1, "mid_block_scale_factor": 1, "act_fn": "silu", "norm_num_groups": 8,
  "norm_eps": 1e-05, "cross_attention_dim": 64, "attention_head_dim": 4, "use_linear_projection": false,
  "upcast_attention": false, "resnet_time_scale_shift": "scale_shift",
  "addition_embed_type": "text", "addition_embed_type_num_heads": 4
}`
	VAEConfig = `{
  "_class_name": "AutoencoderKL", "_diffusers_version": "0.30.3",
  "in_channels": 3, "out_channels": 3,
  "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
  "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
  "block_out_channels": [16, 32], "layers_per_block": 1, "act_fn": "silu", "latent_channels": 4,
  "norm_num_groups": 8, "sample_size": 32, "scaling_factor": %s, "force_upcast": false,
  "mid_block_add_attention": false
}`
	// SchedulerConfig is Stable Diffusion's noise schedule rescaled to a
	// zero terminal SNR, with v-prediction and DDIM sampling from the last
	// timestep (Lin et al., "Common Diffusion Noise Schedules and Sample
	// Steps are Flawed"). With SD's own schedule the noisiest training
	// input still shows where the shape lies (ᾱ = 0.0047 leaves a blob of
	// 30–60 latent pixels visible), so the model learned to read the
	// position from the noise instead of from the caption, and at
	// inference took it from the random starting noise.
	SchedulerConfig = `{
  "_class_name": "DDIMScheduler", "_diffusers_version": "0.30.3",
  "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "clip_sample": false,
  "num_train_timesteps": 1000, "prediction_type": "v_prediction", "rescale_betas_zero_snr": true,
  "set_alpha_to_one": false, "steps_offset": 0, "timestep_spacing": "trailing"
}`
	modelIndex = `{
  "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.3",
  "feature_extractor": [null, null], "image_encoder": [null, null], "requires_safety_checker": false,
  "safety_checker": [null, null], "scheduler": ["diffusers", "DDIMScheduler"],
  "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
  "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]
}`
	tokenizerConfig = `{"model_max_length": 77, "do_lower_case": true, "tokenizer_class": "CLIPTokenizer",
 "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}`
	specialTokens = `{"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}`
)

// vaeConfigJSON is VAEConfig with its scaling factor.
func vaeConfigJSON(scaling float32) string {
	return fmt.Sprintf(VAEConfig, fmt.Sprint(scaling))
}

// NewVAE builds the toy VAE with random weights (seeded) and the given
// scaling factor.
func NewVAE(seed uint64, scaling float32) (*vae.Model, error) {
	c, err := vae.ParseConfig([]byte(vaeConfigJSON(scaling)))
	if err != nil {
		return nil, err
	}
	m, err := vae.New(c)
	if err != nil {
		return nil, err
	}
	initModule(m, seed)
	return m, nil
}

// NewUNet builds the toy UNet with random weights.
func NewUNet(seed uint64) (*unet.Model, error) {
	c, err := unet.ParseConfig([]byte(UNetConfig))
	if err != nil {
		return nil, err
	}
	m, err := unet.New(c)
	if err != nil {
		return nil, err
	}
	initModule(m, seed)
	return m, nil
}

// NewTextEncoder builds the toy CLIP text encoder with random weights.
func NewTextEncoder(seed uint64) (*clip.Model, error) {
	c, err := clip.ParseConfig([]byte(TextEncoderConfig))
	if err != nil {
		return nil, err
	}
	m, err := clip.New(c)
	if err != nil {
		return nil, err
	}
	initModule(m, seed)
	return m, nil
}

// NewNoiseScheduler is the DDPM training scheduler of SchedulerConfig.
func NewNoiseScheduler() (*scheduler.DDPM, error) {
	c, err := scheduler.ParseConfig([]byte(SchedulerConfig))
	if err != nil {
		return nil, err
	}
	return scheduler.NewDDPM(c)
}

// initModule gives m PyTorch-like initial weights: normal-distributed
// matrices and kernels scaled by 1/sqrt(fan-in), norms' weights one and
// every bias zero (nn.Init draws uniform values for exercising loaders,
// too large to train from).
func initModule(m nn.Module, seed uint64) {
	var ps nn.Params
	m.Params("", &ps)
	g := newNormal(seed)
	for _, p := range ps.List() {
		n := 1
		for _, d := range p.Shape {
			n *= d
		}
		v := make([]float32, n)
		switch {
		case len(p.Shape) >= 2:
			fanIn := n / p.Shape[0]
			std := 1 / sqrtf(float64(fanIn))
			if isEmbedding(p.Name) {
				std = 0.02
			}
			for i := range v {
				v[i] = float32(g() * std)
			}
		case isNormWeight(p.Name):
			for i := range v {
				v[i] = 1
			}
		}
		*p.Ptr = tensor.FromSlice(v, p.Shape...)
	}
}

// SaveFolder writes the three models as a diffusers StableDiffusionPipeline
// folder: model_index.json, the scheduler config, the tokenizer's config
// (the vocabulary is built into diffuse; vocabDir, when not empty, holds
// CLIP's vocab.json and merges.txt to copy in for diffusers) and each
// model's config and float16 weights.
func SaveFolder(dir string, te *clip.Model, u *unet.Model, v *vae.Model, vocabDir string) error {
	files := map[string]string{
		"model_index.json":                  modelIndex,
		"scheduler/scheduler_config.json":   SchedulerConfig,
		"text_encoder/config.json":          TextEncoderConfig,
		"unet/config.json":                  UNetConfig,
		"vae/config.json":                   vaeConfigJSON(v.Cfg.ScalingFactor),
		"tokenizer/tokenizer_config.json":   tokenizerConfig,
		"tokenizer/special_tokens_map.json": specialTokens,
	}
	if vocabDir != "" {
		for _, name := range []string{"vocab.json", "merges.txt"} {
			b, err := os.ReadFile(filepath.Join(vocabDir, name))
			if err != nil {
				return fmt.Errorf("toy: tokenizer files: %w", err)
			}
			files["tokenizer/"+name] = string(b)
		}
	}
	for name, body := range files {
		if err := writeFile(filepath.Join(dir, name), []byte(body)); err != nil {
			return err
		}
	}
	for _, w := range []struct {
		path string
		m    nn.Module
	}{{"text_encoder/model.safetensors", te}, {"unet/diffusion_pytorch_model.safetensors", u},
		{"vae/diffusion_pytorch_model.safetensors", v}} {
		if err := saveF16(filepath.Join(dir, w.path), w.m); err != nil {
			return err
		}
	}
	return nil
}

// SaveModule writes m's weights in float32 (training checkpoints).
func SaveModule(path string, m nn.Module) error { return save(path, m, false) }

func saveF16(path string, m nn.Module) error { return save(path, m, true) }

func save(path string, m nn.Module, half bool) error {
	var ps nn.Params
	m.Params("", &ps)
	var ts []safetensors.Tensor
	for _, p := range ps.List() {
		if *p.Ptr == nil {
			return fmt.Errorf("toy: parameter %s is not set", p.Name)
		}
		v := (*p.Ptr).Float32().Contiguous().Data()
		if half {
			ts = append(ts, safetensors.F16Tensor(p.Name, p.Shape, v))
		} else {
			ts = append(ts, safetensors.F32Tensor(p.Name, p.Shape, v))
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("toy: %w", err)
	}
	if err := safetensors.WriteFile(path, ts, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("toy: %w", err)
	}
	return nil
}

// LoadModule reads weights written by SaveModule into m.
func LoadModule(path string, m nn.Module) error {
	f, err := safetensors.Open(path)
	if err != nil {
		return fmt.Errorf("toy: %w", err)
	}
	defer f.Close()
	return nn.Load(m, "", nn.FileSource{F: f}, nn.LoadOptions{})
}

// writeFile writes b to path atomically (a temporary file renamed over
// it), so that an interrupted run never leaves a half-written file.
func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("toy: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("toy: %w", err)
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("toy: %w", err)
	}
	return nil
}

// vaeScalePath is the file beside VAE weights that holds their scaling
// factor.
func vaeScalePath(weights string) string {
	return filepath.Join(filepath.Dir(weights), "vae_scaling_factor.txt")
}

// SaveVAE writes a trained VAE's weights to path and its scaling factor to
// vae_scaling_factor.txt beside it (the factor first, so that weights are
// never found without it).
func SaveVAE(path string, v *vae.Model) error {
	if err := writeFile(vaeScalePath(path), []byte(fmt.Sprint(v.Cfg.ScalingFactor))); err != nil {
		return err
	}
	return SaveModule(path, v)
}

// LoadVAE reads what SaveVAE wrote. A missing weights file gives an error
// that errors.Is os.ErrNotExist.
func LoadVAE(path string, seed uint64) (*vae.Model, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(vaeScalePath(path))
	if err != nil {
		return nil, fmt.Errorf("toy: %s without its scaling factor: %v", path, err)
	}
	var s float32
	if _, err := fmt.Sscan(string(b), &s); err != nil {
		return nil, fmt.Errorf("toy: %s: %w", vaeScalePath(path), err)
	}
	v, err := NewVAE(seed, s)
	if err != nil {
		return nil, err
	}
	return v, LoadModule(path, v)
}

// newNormal returns a seeded standard normal source.
func newNormal(seed uint64) func() float64 {
	r := rand.New(rand.NewPCG(seed, 0x70c5))
	return r.NormFloat64
}

func sqrtf(x float64) float64 { return math.Sqrt(x) }

func isEmbedding(name string) bool { return strings.HasSuffix(name, "embedding.weight") }

// isNormWeight tells the scales of group and layer norms (one-dimensional
// weights whose module name says norm).
func isNormWeight(name string) bool {
	return strings.HasSuffix(name, ".weight") && strings.Contains(name, "norm")
}
