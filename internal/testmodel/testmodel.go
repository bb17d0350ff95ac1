// Package testmodel writes tiny diffusers folders from the golden cases'
// random-weight models (golden/unet_sd15, vae, clip_text, controlnet,
// t2i_full_adapter), for tests of the front door, the CLI and the server.
package testmodel

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/controlnet"
	"github.com/diffuse-go/diffuse/model/t2iadapter"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
)

// SD15SchedulerConfig is Stable Diffusion 1.5's scheduler_config.json.
const sd15Scheduler = `{"_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
 "beta_start": 0.00085, "clip_sample": false, "num_train_timesteps": 1000, "set_alpha_to_one": false,
 "skip_prk_steps": true, "steps_offset": 1, "trained_betas": null}`

// Folders are the paths Write made.
type Folders struct {
	SD, ControlNet, Adapter string
}

// Write writes a tiny SD 1.x pipeline folder (UNet, VAE, CLIP of the
// golden cases), a ControlNet folder and a full T2I-Adapter folder under
// dir.
func Write(dir string) (Folders, error) {
	f := Folders{SD: filepath.Join(dir, "tiny-sd"), ControlNet: filepath.Join(dir, "control-tiny"), Adapter: filepath.Join(dir, "t2i-tiny")}
	index := `{"_class_name": "StableDiffusionPipeline",
 "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
 "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", "PNDMScheduler"]}`
	steps := []struct {
		caseName, dir, file string
		build               func([]byte) (nn.Module, error)
	}{
		{"unet_sd15", filepath.Join(f.SD, "unet"), "diffusion_pytorch_model.safetensors", buildUNet},
		{"vae", filepath.Join(f.SD, "vae"), "diffusion_pytorch_model.safetensors", buildVAE},
		{"clip_text", filepath.Join(f.SD, "text_encoder"), "model.safetensors", buildCLIP},
		{"controlnet", f.ControlNet, "diffusion_pytorch_model.safetensors", buildControlNet},
		{"t2i_full_adapter", f.Adapter, "diffusion_pytorch_model.safetensors", buildAdapter},
	}
	for _, s := range steps {
		if err := component(s.caseName, s.dir, s.file, s.build); err != nil {
			return f, err
		}
	}
	if err := writeFile(filepath.Join(f.SD, "model_index.json"), []byte(index)); err != nil {
		return f, err
	}
	return f, writeFile(filepath.Join(f.SD, "scheduler", "scheduler_config.json"), []byte(sd15Scheduler))
}

// component loads a golden case's weights into its model and writes the
// model's config and weights into dir.
func component(caseName, dir, file string, build func([]byte) (nn.Module, error)) error {
	gc, err := golden.Load(filepath.Join(repoGolden(), caseName))
	if err != nil {
		return fmt.Errorf("testmodel: needs golden case %s: %w", caseName, err)
	}
	defer gc.Close()
	w, err := gc.Weights("")
	if err != nil {
		return err
	}
	m, err := build(gc.Config)
	if err != nil {
		return err
	}
	if err := nn.Load(m, "", nn.FileSource{F: w}, nn.LoadOptions{}); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "config.json"), gc.Config); err != nil {
		return err
	}
	return WriteModule(filepath.Join(dir, file), m)
}

// WriteModule writes a module's parameters as a float32 safetensors file.
func WriteModule(path string, m nn.Module) error {
	var ps nn.Params
	m.Params("", &ps)
	var ts []safetensors.Tensor
	for _, p := range ps.List() {
		v := (*p.Ptr).Float32()
		ts = append(ts, safetensors.F32Tensor(p.Name, v.Shape(), v.Data()))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return safetensors.WriteFile(path, ts, nil)
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

func buildUNet(b []byte) (nn.Module, error) {
	c, err := unet.ParseConfig(b)
	if err != nil {
		return nil, err
	}
	return unet.New(c)
}

func buildVAE(b []byte) (nn.Module, error) {
	c, err := vae.ParseConfig(b)
	if err != nil {
		return nil, err
	}
	return vae.New(c)
}

func buildCLIP(b []byte) (nn.Module, error) {
	c, err := clip.ParseConfig(b)
	if err != nil {
		return nil, err
	}
	return clip.New(c)
}

func buildControlNet(b []byte) (nn.Module, error) {
	c, err := controlnet.ParseConfig(b)
	if err != nil {
		return nil, err
	}
	return controlnet.New(c)
}

func buildAdapter(b []byte) (nn.Module, error) {
	c, err := t2iadapter.ParseConfig(b)
	if err != nil {
		return nil, err
	}
	return t2iadapter.New(c)
}

// repoGolden is the repository's golden/ folder: the tiny models always
// come from there, also when DIFFUSE_GOLDEN_DIR points the golden runners
// at other cases.
func repoGolden() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "golden")
}
