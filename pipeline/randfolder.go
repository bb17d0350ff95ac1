package pipeline

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/dit"
	"github.com/diffuse-go/diffuse/model/pixart"
	"github.com/diffuse-go/diffuse/model/t5"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// RandomFolder describes a diffusers folder to write with random weights:
// real configs and key names, no download. It is how the project makes
// real-size checkpoints of every family for tests and benchmarks.
type RandomFolder struct {
	Class string // model_index.json's _class_name
	// Index holds model_index.json's other entries (id2label, components
	// that are absent as [null, null], ...).
	Index      map[string]any
	Components []RandomComponent
}

// RandomComponent is one sub-folder of a RandomFolder.
type RandomComponent struct {
	Name           string // sub-folder and model_index.json key
	Library, Class string // model_index.json's ["diffusers", "AutoencoderKL"]
	// Config is written as config.json (scheduler_config.json for a
	// scheduler); nil writes none. Models are built from it.
	Config map[string]any
	// Files are other files written as they are (tokenizer files).
	Files map[string][]byte
	// Skip lists parameters not written (tied copies of others).
	Skip []string
}

// diffusersVersion is the version written into configs, as save_pretrained does.
const diffusersVersion = "0.30.3"

// randomModels builds a component's model from its config.json, by class.
var randomModels = map[string]func([]byte) (nn.Module, error){
	"DiTTransformer2DModel":    build(dit.ParseConfig, dit.New),
	"PixArtTransformer2DModel": build(pixart.ParseConfig, pixart.New),
	"UNet2DConditionModel":     build(unet.ParseConfig, unet.New),
	"AutoencoderKL":            build(vae.ParseConfig, vae.New),
	"T5EncoderModel":           build(t5.ParseConfig, t5.New),
	"CLIPTextModel":            build(clip.ParseConfig, clip.New),
}

func build[C any, M nn.Module](parse func([]byte) (C, error), mk func(C) (M, error)) func([]byte) (nn.Module, error) {
	return func(b []byte) (nn.Module, error) {
		c, err := parse(b)
		if err != nil {
			return nil, err
		}
		return mk(c)
	}
}

// WriteRandomFolder writes f into dir (created if needed) with weights
// drawn by nn.Random from seed, matrices stored as dtype and vectors as
// F32. Each weight file is written tensor by tensor, so the largest
// single tensor, not the model, bounds the memory used.
func WriteRandomFolder(dir string, f RandomFolder, seed uint64, dtype tensor.DType) error {
	if dtype != tensor.F32 && dtype != tensor.F16 && dtype != tensor.BF16 {
		return fmt.Errorf("random folder: dtype %v (f32, f16 or bf16)", dtype)
	}
	index := map[string]any{"_class_name": f.Class, "_diffusers_version": diffusersVersion}
	for k, v := range f.Index {
		index[k] = v
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i, c := range f.Components {
		index[c.Name] = []string{c.Library, c.Class}
		if err := writeRandomComponent(filepath.Join(dir, c.Name), c, seed+uint64(i), dtype); err != nil {
			return fmt.Errorf("random folder %s: %s: %w", dir, c.Name, err)
		}
	}
	return writeJSON(filepath.Join(dir, "model_index.json"), index)
}

func writeRandomComponent(dir string, c RandomComponent, seed uint64, dtype tensor.DType) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, b := range c.Files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	if c.Config == nil {
		return nil
	}
	cfg := map[string]any{}
	for k, v := range c.Config {
		cfg[k] = v
	}
	name := "config.json"
	switch {
	case strings.HasSuffix(c.Class, "Scheduler"):
		name = "scheduler_config.json"
		cfg["_class_name"], cfg["_diffusers_version"] = c.Class, diffusersVersion
	case c.Library == "diffusers":
		cfg["_class_name"], cfg["_diffusers_version"] = c.Class, diffusersVersion
	default: // transformers
		cfg["architectures"] = []string{c.Class}
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name), append(b, '\n'), 0o644); err != nil {
		return err
	}
	mk, ok := randomModels[c.Class]
	if !ok {
		return nil // a scheduler or tokenizer: no weights
	}
	m, err := mk(b)
	if err != nil {
		return err
	}
	weights := "diffusion_pytorch_model.safetensors"
	if c.Library == "transformers" {
		weights = "model.safetensors"
	}
	return writeRandomWeights(filepath.Join(dir, weights), m, c.Skip, seed, dtype)
}

// writeRandomWeights writes m's parameters (but skip) with random values,
// one tensor at a time.
func writeRandomWeights(path string, m nn.Module, skip []string, seed uint64, dtype tensor.DType) error {
	var ps nn.Params
	m.Params("", &ps)
	var infos []safetensors.TensorInfo
	for _, p := range ps.List() {
		if contains(skip, p.Name) {
			continue
		}
		dt := safetensors.F32
		if len(p.Shape) >= 2 && dtype == tensor.F16 {
			dt = safetensors.F16
		} else if len(p.Shape) >= 2 && dtype == tensor.BF16 {
			dt = safetensors.BF16
		}
		infos = append(infos, safetensors.TensorInfo{Name: p.Name, DType: dt, Shape: p.Shape})
	}
	r := nn.NewRandom(seed)
	return safetensors.WriteStream(path, infos, map[string]string{"format": "pt", "producer": "diffuse random-checkpoint"},
		func(t safetensors.TensorInfo, dst []byte) error {
			return safetensors.EncodeFloats(dst, r.Values(t.Name, t.Shape), t.DType)
		})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// absent is how model_index.json lists a component a pipeline was saved
// without (diffusers writes [null, null]).
var absent = []any{nil, nil}

// t5TokenizerFiles are a T5Tokenizer folder's files around the
// SentencePiece model spiece.
func t5TokenizerFiles(spiece []byte) map[string][]byte {
	return map[string][]byte{
		"spiece.model":            spiece,
		"special_tokens_map.json": []byte(`{"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}` + "\n"),
		"tokenizer_config.json":   []byte(`{"tokenizer_class": "T5Tokenizer", "extra_ids": 100, "model_max_length": 512, "legacy": true}` + "\n"),
	}
}

// DiTFolder is a DiTPipeline folder: transformer, VAE, scheduler and,
// when id2label is not nil, the ImageNet names model_index.json carries.
func DiTFolder(transformer, vae, sched map[string]any, id2label map[string]string) RandomFolder {
	f := RandomFolder{Class: "DiTPipeline", Components: []RandomComponent{
		{Name: "transformer", Library: "diffusers", Class: "DiTTransformer2DModel", Config: transformer},
		{Name: "vae", Library: "diffusers", Class: "AutoencoderKL", Config: vae},
		{Name: "scheduler", Library: "diffusers", Class: "DDIMScheduler", Config: sched},
	}}
	if id2label != nil {
		f.Index = map[string]any{"id2label": id2label}
	}
	return f
}

// PixArtFolder is a PixArtAlphaPipeline folder with a T5 text encoder
// and the SentencePiece model spiece as its tokenizer.
func PixArtFolder(textEncoder, transformer, vae, sched map[string]any, spiece []byte) RandomFolder {
	return RandomFolder{Class: "PixArtAlphaPipeline", Components: []RandomComponent{
		{Name: "tokenizer", Library: "transformers", Class: "T5Tokenizer", Files: t5TokenizerFiles(spiece)},
		{Name: "text_encoder", Library: "transformers", Class: "T5EncoderModel", Config: textEncoder, Skip: t5Tied},
		{Name: "transformer", Library: "diffusers", Class: "PixArtTransformer2DModel", Config: transformer},
		{Name: "vae", Library: "diffusers", Class: "AutoencoderKL", Config: vae},
		{Name: "scheduler", Library: "diffusers", Class: "DPMSolverMultistepScheduler", Config: sched},
	}}
}

// t5Tied is T5's tied copy of its token embeddings, which checkpoints
// store once (as shared.weight).
var t5Tied = []string{"encoder.embed_tokens.weight"}

// IFFolder is a DeepFloyd IF stage I folder (IFPipeline): T5 text
// encoder and tokenizer, the pixel-space UNet and its DDPM scheduler;
// the safety checker, feature extractor and watermarker are left out.
func IFFolder(textEncoder, unet, sched map[string]any, spiece []byte) RandomFolder {
	return RandomFolder{Class: "IFPipeline", Index: map[string]any{"safety_checker": absent, "feature_extractor": absent,
		"watermarker": absent, "requires_safety_checker": false}, Components: []RandomComponent{
		{Name: "tokenizer", Library: "transformers", Class: "T5Tokenizer", Files: t5TokenizerFiles(spiece)},
		{Name: "text_encoder", Library: "transformers", Class: "T5EncoderModel", Config: textEncoder, Skip: t5Tied},
		{Name: "unet", Library: "diffusers", Class: "UNet2DConditionModel", Config: unet},
		{Name: "scheduler", Library: "diffusers", Class: "DDPMScheduler", Config: sched},
	}}
}

// IFSuperResFolder is a DeepFloyd IF stage II folder
// (IFSuperResolutionPipeline) as DeepFloyd ships it: no text encoder (it
// takes stage I's text states), the UNet, its scheduler and the image
// noising scheduler.
func IFSuperResFolder(unet, sched, noising map[string]any, spiece []byte) RandomFolder {
	return RandomFolder{Class: "IFSuperResolutionPipeline", Index: map[string]any{"text_encoder": absent,
		"safety_checker": absent, "feature_extractor": absent, "watermarker": absent, "requires_safety_checker": false},
		Components: []RandomComponent{
			{Name: "tokenizer", Library: "transformers", Class: "T5Tokenizer", Files: t5TokenizerFiles(spiece)},
			{Name: "unet", Library: "diffusers", Class: "UNet2DConditionModel", Config: unet},
			{Name: "scheduler", Library: "diffusers", Class: "DDPMScheduler", Config: sched},
			{Name: "image_noising_scheduler", Library: "diffusers", Class: "DDPMScheduler", Config: noising},
		}}
}

// SDFolder is a StableDiffusionPipeline folder. tokenizer holds the
// CLIP tokenizer's files (special_tokens_map.json names the pad token:
// "!" for SD 2.x).
func SDFolder(textEncoder, unet, vae map[string]any, schedClass string, sched map[string]any, tokenizer map[string][]byte) RandomFolder {
	return RandomFolder{Class: "StableDiffusionPipeline", Index: map[string]any{"safety_checker": absent,
		"feature_extractor": absent, "image_encoder": absent, "requires_safety_checker": false}, Components: []RandomComponent{
		{Name: "tokenizer", Library: "transformers", Class: "CLIPTokenizer", Files: tokenizer},
		{Name: "text_encoder", Library: "transformers", Class: "CLIPTextModel", Config: textEncoder},
		{Name: "unet", Library: "diffusers", Class: "UNet2DConditionModel", Config: unet},
		{Name: "vae", Library: "diffusers", Class: "AutoencoderKL", Config: vae},
		{Name: "scheduler", Library: "diffusers", Class: schedClass, Config: sched},
	}}
}

// ParamCounts builds each component's model from its config (without
// weights) and counts its parameters, by component name: what a folder
// will hold before it is written.
func (f RandomFolder) ParamCounts() (map[string]int64, error) {
	out := map[string]int64{}
	for _, c := range f.Components {
		mk, ok := randomModels[c.Class]
		if !ok || c.Config == nil {
			continue
		}
		b, err := json.Marshal(c.Config)
		if err != nil {
			return nil, err
		}
		m, err := mk(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		var ps nn.Params
		m.Params("", &ps)
		for _, p := range ps.List() {
			if contains(c.Skip, p.Name) {
				continue
			}
			n := int64(1)
			for _, d := range p.Shape {
				n *= int64(d)
			}
			out[c.Name] += n
		}
	}
	return out, nil
}
