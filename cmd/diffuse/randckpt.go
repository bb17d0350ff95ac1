package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/diffuse-go/diffuse/checkpoint"
	"github.com/diffuse-go/diffuse/model/controlnet"
	"github.com/diffuse-go/diffuse/model/lora"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/quant"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// runRandomCheckpoint writes full-size models with random weights in the
// layouts users download: real sizes and key names, without downloading
// anything. They exercise loading, memory and speed, not image quality.
func runRandomCheckpoint(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("random-checkpoint", flag.ContinueOnError)
	kind := fs.String("kind", "sd15", "what to write: sd15, sd15-inpainting, sdxl, sdxl-refiner, sd3, sd3-no-t5, sd35-large, sd35-medium, flux-dev, flux-schnell (single files; FLUX with its clip_l, t5xxl and ae files beside; -tiny for test sizes), controlnet (SD 1.5 diffusers folder), lora (SD 1.5 UNet LoRA file), dit (DiT-XL/2 256), pixart (PixArt-α XL-2 1024 with T5-XXL: 11 GB in f16), if (DeepFloyd IF-I-XL and IF-II-L folders: 20 GB in f16), sd2 (SD 2.1 768 v-prediction), sd-x4-upscaler (Stable Diffusion x4 upscaler, also IF's stage III) (diffusers folders)")
	spiece := fs.String("spiece", "tokenizer/t5/testdata/t5_test_sentencepiece.model", "SentencePiece model written as the T5 tokenizer (kinds pixart, if)")
	out := fs.String("o", "", "output file or folder (default: <kind>-random.safetensors, or a folder for controlnet)")
	dtype := fs.String("dtype", "f16", "weight dtype: f32, f16 or bf16; for sd3/flux kinds also a GGUF type (q8_0, q4_k, …; the FLUX transformer or the whole SD3 file as .gguf) or fp8/fp8-scaled")
	rank := fs.Int("rank", 16, "LoRA rank (kind lora)")
	seed := fs.Uint64("seed", 1, "seed for the weights")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dt, qt, err := randomDType(*dtype, *kind)
	if err != nil {
		return err
	}
	if *out == "" {
		*out = *kind + "-random.safetensors"
		if qt != nil && !qt.FP8 {
			*out = *kind + "-random-" + strings.ToUpper(qt.Name) + ".gguf"
		}
		switch *kind {
		case "controlnet", "dit", "pixart", "if", "sd2":
			*out = *kind + "-random"
		}
	}
	t0 := time.Now()
	switch *kind {
	case "sd15", "sd15-inpainting":
		m := checkpoint.SD15()
		if *kind == "sd15-inpainting" {
			m = checkpoint.SD15Inpainting()
		}
		c, cerr := pipeline.NewComponents(m)
		if cerr != nil {
			return cerr
		}
		nn.Init(c.TextEncoder, *seed, dt)
		nn.Init(c.UNet, *seed+1, dt)
		nn.Init(c.VAE, *seed+2, dt)
		if err := ctx.Err(); err != nil {
			return err
		}
		err = pipeline.WriteLDM(*out, m, c, dt)
	case "sdxl", "sdxl-refiner":
		m := checkpoint.SDXLBase()
		if *kind == "sdxl-refiner" {
			m = checkpoint.SDXLRefiner()
		}
		c, cerr := pipeline.NewSDXLComponents(m)
		if cerr != nil {
			return cerr
		}
		if c.TextEncoder != nil {
			nn.Init(c.TextEncoder, *seed, dt)
		}
		nn.Init(c.TextEncoder2, *seed+1, dt)
		nn.Init(c.UNet, *seed+2, dt)
		nn.Init(c.VAE, *seed+3, dt)
		if err := ctx.Err(); err != nil {
			return err
		}
		err = pipeline.WriteSGM(*out, m, c, dt)
	case "hunyuan":
		err = runRandomHunyuan(out, *seed, dt)
	case "controlnet":
		err = writeRandomControlNet(*out, *seed, dt)
	case "dit", "pixart", "if", "sd2", "sd-x4-upscaler":
		err = writeRandomFolders(*kind, *out, *spiece, *seed, dt)
	case "lora":
		u, uerr := unet.New(unet.SD15(4))
		if uerr != nil {
			return uerr
		}
		err = writeRandomLoRA(*out, u, *rank, *seed)
	default:
		if isMMDiTKind(*kind) {
			var files mmditFiles
			files, err = writeRandomMMDiT(ctx, *kind, *out, dt, qt, *seed)
			files.print()
			break
		}
		return fmt.Errorf("random-checkpoint: unknown -kind %q", *kind)
	}
	if err != nil {
		return err
	}
	what := dt.String()
	if qt != nil {
		what = qt.Name
	}
	fmt.Printf("wrote %s (%s, %s) in %.1fs\n", *out, *kind, what, time.Since(t0).Seconds())
	return nil
}

// randomDType reads --dtype: f32, f16 or bf16 for every kind; for the SD3
// and FLUX kinds also a GGUF type or fp8 (package quant), whose file's
// other components are then f16.
func randomDType(s, kind string) (tensor.DType, *quant.Type, error) {
	dt, err := parseDType(s)
	if err == nil {
		return dt, nil, nil
	}
	qt, qerr := quant.ParseType(s)
	if qerr != nil || !isMMDiTKind(kind) {
		return 0, nil, fmt.Errorf("random-checkpoint: --dtype %q: want f32, f16 or bf16 (sd3 and flux kinds also: %s)", s, strings.Join(quant.Types(), ", "))
	}
	return tensor.F16, &qt, nil
}

// writeRandomControlNet writes an SD 1.5 ControlNet as a diffusers folder.
func writeRandomControlNet(dir string, seed uint64, dt tensor.DType) error {
	cfg := controlnet.FromUNet(unet.SD15(4))
	m, err := controlnet.New(cfg)
	if err != nil {
		return err
	}
	nn.Init(m, seed, dt)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(controlNetConfigJSON(cfg), "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		return err
	}
	return writeModule(filepath.Join(dir, "diffusion_pytorch_model.safetensors"), m, dt)
}

// controlNetConfigJSON renders the fields diffusers' ControlNetModel config has.
func controlNetConfigJSON(c controlnet.Config) map[string]any {
	return map[string]any{
		"_class_name": "ControlNetModel", "in_channels": c.InChannels, "conditioning_channels": c.ConditioningChannels,
		"flip_sin_to_cos": c.FlipSinToCos, "freq_shift": c.FreqShift, "down_block_types": c.DownBlockTypes,
		"mid_block_type": *c.MidBlockType, "block_out_channels": c.BlockOutChannels, "layers_per_block": c.LayersPerBlock[0],
		"downsample_padding": c.DownsamplePadding, "mid_block_scale_factor": c.MidBlockScaleFactor, "act_fn": c.ActFn,
		"norm_num_groups": c.NormNumGroups, "norm_eps": c.NormEps, "cross_attention_dim": c.CrossAttentionDim[0],
		"attention_head_dim": c.AttentionHeadDim[0], "use_linear_projection": c.UseLinearProjection,
		"conditioning_embedding_out_channels":   c.ConditioningEmbeddingOutChannels,
		"controlnet_conditioning_channel_order": c.ChannelOrder,
	}
}

// writeModule saves a module's parameters under their diffusers names.
func writeModule(path string, m nn.Module, dt tensor.DType) error {
	var ps nn.Params
	m.Params("", &ps)
	var ts []safetensors.Tensor
	for _, p := range ps.List() {
		v := (*p.Ptr).Float32().Data()
		switch {
		case len(p.Shape) >= 2 && dt == tensor.F16:
			ts = append(ts, safetensors.F16Tensor(p.Name, p.Shape, v))
		case len(p.Shape) >= 2 && dt == tensor.BF16:
			ts = append(ts, safetensors.BF16Tensor(p.Name, p.Shape, v))
		default:
			ts = append(ts, safetensors.F32Tensor(p.Name, p.Shape, v))
		}
	}
	return safetensors.WriteFile(path, ts, nil)
}

// writeRandomLoRA writes a diffusers-format LoRA (unet.<module>.lora.down /
// .lora.up, alpha = rank) on every attention projection of u.
func writeRandomLoRA(path string, u *unet.Model, rank int, seed uint64) error {
	var ps nn.Params
	u.Params("", &ps)
	shapes := map[string][]int{}
	for _, p := range ps.List() {
		shapes[p.Name] = p.Shape
	}
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	randn := func(n int, std float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() * std)
		}
		return v
	}
	var ts []safetensors.Tensor
	for _, mod := range lora.Modules(u) {
		if !strings.Contains(mod, ".attn") || !(strings.HasSuffix(mod, "to_q") || strings.HasSuffix(mod, "to_k") ||
			strings.HasSuffix(mod, "to_v") || strings.HasSuffix(mod, "to_out.0")) {
			continue
		}
		s := shapes[mod+".weight"]
		if len(s) != 2 {
			continue
		}
		out, in := s[0], s[1]
		ts = append(ts,
			safetensors.F16Tensor("unet."+mod+".lora.down.weight", []int{rank, in}, randn(rank*in, 1/float64(rank))),
			safetensors.F16Tensor("unet."+mod+".lora.up.weight", []int{out, rank}, randn(out*rank, 0.01)))
	}
	if len(ts) == 0 {
		return fmt.Errorf("random LoRA: no attention projections found")
	}
	return safetensors.WriteFile(path, ts, nil)
}
