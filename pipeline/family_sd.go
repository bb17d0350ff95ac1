package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
	cliptok "github.com/diffuse-go/diffuse/tokenizer/clip"
)

// SDXLSchedulerConfig is SDXL base 1.0's scheduler_config.json, used for
// single-file SDXL checkpoints (which carry none).
const SDXLSchedulerConfig = `{"_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
 "beta_start": 0.00085, "clip_sample": false, "interpolation_type": "linear", "num_train_timesteps": 1000,
 "prediction_type": "epsilon", "sample_max_value": 1.0, "set_alpha_to_one": false, "skip_prk_steps": true,
 "steps_offset": 1, "timestep_spacing": "leading", "trained_betas": null, "use_karras_sigmas": false}`

// unetAccepts are the request features every UNet family takes.
var unetAccepts = []string{"img2img", "inpaint", "lora", "controlnet", "t2i-adapter", "negative-prompt", CacheDeep}

func init() {
	// SDXL first: its folders list text_encoder_2 and its single files
	// have conditioner.embedders, which SD 1.x/2.x lack.
	Register(Family{Name: "sdxl", Detect: detectSDXL, Open: openSDXL})
	Register(Family{Name: "sd", Detect: detectSD, Open: openSD})
}

// The UNet families read safetensors only: a GGUF SD 1.x/SDXL file (names
// under model.diffusion_model.input_blocks.) is refused by Open.

func detectSDXL(src *Source) bool {
	if src.GGUF {
		return false
	}
	return src.Lists("text_encoder_2") && src.Lists("unet") || src.HasTensorPrefix("conditioner.embedders.")
}

func detectSD(src *Source) bool {
	if src.GGUF {
		return false
	}
	if src.Dir {
		// The ×4 upscaler's folder lists the same components.
		return src.Lists("unet") && src.Lists("text_encoder") && !src.Lists("text_encoder_2") &&
			!src.ClassIs("StableDiffusionUpscalePipeline")
	}
	// A UNet's input_blocks: SD3's MMDiT files share the prefix.
	return src.HasTensorPrefix("model.diffusion_model.input_blocks.") && !src.HasTensorPrefix("conditioner.embedders.")
}

// newUNetModel finishes a UNet-family model: scheduler config, defaults.
func newUNetModel(src *Source, opt Options, v unetVariant, schedJSON []byte, kind, family string) (*unetModel, error) {
	sc, err := scheduler.ParseConfig(schedJSON)
	if err != nil {
		v.close()
		return nil, fmt.Errorf("scheduler config: %w", err)
	}
	size := defaultSize(v.unet().Cfg, v.vaeFactor())
	info := Info{Family: family, Kind: kind, Name: ModelName(src.Path), Path: src.Path, Width: size, Height: size,
		Steps: 20, Guidance: 7, Sampler: "euler_a", Accepts: append([]string(nil), unetAccepts...)}
	return &unetModel{base: base{info: info, opt: opt, sched: sc}, v: v}, nil
}

// defaultSize is the UNet's sample size in pixels (512 for SD 1.x, 768
// for SD 2.x at 768, 1024 for SDXL).
func defaultSize(c unet.Config, factor int) int {
	if len(c.SampleSize) > 0 {
		if s := c.SampleSize.For(2)[0] * factor; s > 0 {
			return s
		}
	}
	return 512
}

// sdVariant is SD 1.x/2.x: one CLIP text encoder.
type sdVariant struct {
	c   *Components
	tok Tokenizer
}

func openSD(_ context.Context, src *Source, opt Options) (Model, error) {
	c, err := Load(src.Path, LoadOptions{DType: opt.DType})
	if err != nil {
		return nil, err
	}
	if c.VAE, c.vaeFiles, err = givenVAE(c.VAE, c.UNet.Cfg.OutChannels, opt); err != nil {
		c.Close()
		return nil, err
	}
	// SD 2.x's OpenCLIP ViT-H (gelu, where SD 1.x's CLIP has quick_gelu)
	// pads with "!"; a folder's tokenizer files say so too.
	kind, pad := "SD 1.x", cliptok.PadEOS
	if c.TextEncoder.Cfg.HiddenAct == "gelu" {
		kind, pad = "SD 2.x", cliptok.PadExclamation
	}
	tok, err := folderCLIPTokenizer(src, "tokenizer", pad)
	if err != nil {
		c.Close()
		return nil, err
	}
	sched := []byte(c.Scheduler)
	if sched == nil {
		sched = []byte(SD15SchedulerConfig)
	}
	return newUNetModel(src, opt, &sdVariant{c: c, tok: tok}, sched, kind, "sd")
}

func (v *sdVariant) unet() *unet.Model { return v.c.UNet }
func (v *sdVariant) vaeFactor() int    { return vaeFactor(v.c.VAE) }
func (v *sdVariant) vaeChannels() int  { return widest(v.c.VAE) }
func (v *sdVariant) decode(latents *tensor.Tensor) (*tensor.Tensor, error) {
	return DecodeLatents(v.c.VAE, latents)
}
func (v *sdVariant) close() { v.c.Close() }
func (v *sdVariant) loraParts() []loraPart {
	return []loraPart{{"unet", v.c.UNet}, {"text_encoder", v.c.TextEncoder}}
}
func (v *sdVariant) extraParams(*Params) []imageio.KV { return nil }

func (v *sdVariant) run(ctx context.Context, _ *Params, req Request, cb func(string) Callbacks) (*tensor.Tensor, error) {
	c := cb("")
	req.Progress, req.OnStep = c.Progress, c.OnStep
	p := &SD{TextEncoder: v.c.TextEncoder, Tokenizer: v.tok, UNet: v.c.UNet, VAE: v.c.VAE}
	res, err := p.Generate(ctx, req)
	if err != nil {
		return nil, err
	}
	return res.Images, nil
}

// widest is the VAE decoder's widest channel count, which its
// full-resolution stage holds per pixel.
func widest(v *vae.Model) int {
	w := 0
	for _, c := range v.Cfg.BlockOutChannels {
		w = max(w, c)
	}
	return w
}

// folderCLIPTokenizer is the CLIP tokenizer of a model: the built-in
// vocabulary, padded as the folder's tokenizer says (SD 2.x and SDXL's
// second tokenizer pad with "!"), else with def.
func folderCLIPTokenizer(src *Source, sub string, def cliptok.PadStyle) (Tokenizer, error) {
	pad := def
	if src.Dir {
		b, err := os.ReadFile(filepath.Join(src.Path, sub, "special_tokens_map.json"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		if err == nil {
			p, err := padToken(b)
			if err != nil {
				return nil, fmt.Errorf("%s/%s/special_tokens_map.json: %w", src.Path, sub, err)
			}
			switch p {
			case "!":
				pad = cliptok.PadExclamation
			case "<|endoftext|>", "":
				pad = cliptok.PadEOS
			default:
				return nil, fmt.Errorf("%s/%s: pad token %q is not supported (\"<|endoftext|>\" or \"!\")", src.Path, sub, p)
			}
		}
	}
	return cliptok.New(cliptok.Options{Pad: pad})
}

// padToken reads pad_token from a special_tokens_map.json (a string or
// an AddedToken object).
func padToken(b []byte) (string, error) {
	var m struct {
		Pad json.RawMessage `json:"pad_token"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return "", err
	}
	if len(m.Pad) == 0 {
		return "", nil
	}
	var s string
	if json.Unmarshal(m.Pad, &s) == nil {
		return s, nil
	}
	var obj struct {
		Content string `json:"content"`
	}
	if err := json.Unmarshal(m.Pad, &obj); err != nil {
		return "", fmt.Errorf("pad_token: %w", err)
	}
	return obj.Content, nil
}
