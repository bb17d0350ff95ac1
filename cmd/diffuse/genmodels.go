package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"io"
	"os"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/model/t2iadapter"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
)

// sdxlSchedulerConfig is SDXL base 1.0's scheduler_config.json, used for
// single-file SDXL checkpoints (which carry none).
const sdxlSchedulerConfig = `{"_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
 "beta_start": 0.00085, "clip_sample": false, "interpolation_type": "linear", "num_train_timesteps": 1000,
 "prediction_type": "epsilon", "sample_max_value": 1.0, "set_alpha_to_one": false, "skip_prk_steps": true,
 "steps_offset": 1, "timestep_spacing": "leading", "trained_betas": null, "use_karras_sigmas": false}`

// loadedModel is the -m model: SD 1.x or SDXL, with its tokenizers.
type loadedModel struct {
	name       string
	sd         *pipeline.Components
	xl         *pipeline.SDXLComponents
	tok1, tok2 pipeline.Tokenizer
}

// loadModel opens an SD 1.x or SDXL checkpoint or diffusers folder,
// telling them apart by the folder's model_index.json or the file's keys.
func loadModel(path string, opt pipeline.LoadOptions) (*loadedModel, error) {
	xl, err := pipeline.IsSDXL(path)
	if err != nil {
		return nil, fmt.Errorf("generate: -m: %w", err)
	}
	m := &loadedModel{name: modelName(path)}
	if m.tok1, err = newCLIPTokenizer(); err != nil {
		return nil, err
	}
	if xl {
		if m.xl, err = pipeline.LoadSDXL(path, opt); err != nil {
			return nil, err
		}
		if m.tok2, err = newCLIPTokenizer2(); err != nil {
			m.close()
			return nil, err
		}
		return m, nil
	}
	if m.sd, err = pipeline.Load(path, opt); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *loadedModel) isXL() bool { return m.xl != nil }

func (m *loadedModel) kind() string {
	switch {
	case m.xl != nil && m.xl.Refiner:
		return "SDXL refiner"
	case m.xl != nil:
		return "SDXL"
	}
	return "SD 1.x"
}

func (m *loadedModel) close() {
	if m.sd != nil {
		m.sd.Close()
	}
	if m.xl != nil {
		m.xl.Close()
	}
}

func (m *loadedModel) defaultSize() int {
	if m.isXL() {
		return 1024
	}
	return 512
}

func (m *loadedModel) unetConfig() unet.Config {
	if m.isXL() {
		return m.xl.UNet.Cfg
	}
	return m.sd.UNet.Cfg
}

func (m *loadedModel) schedulerConfig() []byte {
	switch {
	case m.isXL() && m.xl.Scheduler != nil:
		return m.xl.Scheduler
	case m.isXL():
		return []byte(sdxlSchedulerConfig)
	case m.sd.Scheduler != nil:
		return m.sd.Scheduler
	}
	return []byte(pipeline.SD15SchedulerConfig)
}

// loraPart is a model component LoRA files may adapt.
type loraPart struct {
	comp string
	m    nnModule
}

func (m *loadedModel) loraParts() []loraPart {
	if !m.isXL() {
		return []loraPart{{"unet", m.sd.UNet}, {"text_encoder", m.sd.TextEncoder}}
	}
	parts := []loraPart{{"unet", m.xl.UNet}}
	if m.xl.TextEncoder != nil {
		parts = append(parts, loraPart{"text_encoder", m.xl.TextEncoder})
	}
	return append(parts, loraPart{"text_encoder_2", m.xl.TextEncoder2})
}

// xlPipeline is the SDXL pipeline of the model; force_zeros_for_empty_prompt
// is true for the base and false for the refiner, as their configs say.
func (m *loadedModel) xlPipeline() *pipeline.SDXL {
	c := m.xl
	p := &pipeline.SDXL{TextEncoder: c.TextEncoder, TextEncoder2: c.TextEncoder2, Tokenizer: m.tok1, Tokenizer2: m.tok2,
		UNet: c.UNet, VAE: c.VAE, ForceZerosForEmptyPrompt: !c.Refiner, RequiresAestheticsScore: c.Refiner}
	if c.TextEncoder == nil {
		p.Tokenizer = nil
	}
	return p
}

// refinerModel is the --refiner model.
type refinerModel struct {
	*loadedModel
	sched scheduler.Config
	hash  string
}

// loadRefiner opens an SDXL model for the second stage of an ensemble.
func loadRefiner(path string, opt pipeline.LoadOptions) (*refinerModel, error) {
	xl, err := pipeline.IsSDXL(path)
	if err != nil {
		return nil, fmt.Errorf("generate: --refiner: %w", err)
	}
	if !xl {
		return nil, fmt.Errorf("generate: --refiner %s is not an SDXL model", path)
	}
	m, err := loadModel(path, opt)
	if err != nil {
		return nil, fmt.Errorf("generate: --refiner: %w", err)
	}
	cfg, err := scheduler.ParseConfig(m.schedulerConfig())
	if err != nil {
		m.close()
		return nil, fmt.Errorf("generate: --refiner %s: scheduler config: %w", path, err)
	}
	r := &refinerModel{loadedModel: m, sched: cfg}
	if h, err := imageio.ModelHash(path); err == nil {
		r.hash = h
	}
	return r, nil
}

func (r *refinerModel) pipeline() *pipeline.SDXL { return r.xlPipeline() }

// adapterSet holds the loaded ControlNets and T2I-Adapters, their
// prepared inputs and their PNG parameter entries.
type adapterSet struct {
	units    []pipeline.ControlNetUnit
	features []*tensor.Tensor // T2I-Adapter features, already weighted
	factor   float64
	params   []imageio.KV
	closers  []func()
}

func (a *adapterSet) close() {
	for _, c := range a.closers {
		c()
	}
}

// hook returns the pipeline's step hook running every adapter (nil for none).
func (a *adapterSet) hook(cfg bool) pipeline.AdapterFunc {
	var hooks []pipeline.AdapterFunc
	if len(a.units) > 0 {
		hooks = append(hooks, pipeline.ControlNets(a.units, cfg, nil))
	}
	if len(a.features) > 0 {
		hooks = append(hooks, pipeline.T2IAdapter(a.features, a.factor))
	}
	switch len(hooks) {
	case 0:
		return nil
	case 1:
		return hooks[0]
	}
	return func(step, total int, t float64, x *tensor.Tensor, cond *unet.Cond) error {
		for _, h := range hooks {
			if err := h(step, total, t, x, cond); err != nil {
				return err
			}
		}
		return nil
	}
}

// loadAdapters loads the --control-net and --adapter models and prepares
// their images at the output size.
func loadAdapters(ctx context.Context, f *genFlags, mdl *loadedModel, opt pipeline.LoadOptions) (*adapterSet, error) {
	a := &adapterSet{factor: f.adapterFactor}
	fail := func(err error) (*adapterSet, error) { a.close(); return nil, err }
	images := map[string]*tensor.Tensor{}
	for i, path := range f.controlNets {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		net, done, err := pipeline.LoadControlNet(path, mdl.unetConfig(), opt)
		if err != nil {
			return fail(fmt.Errorf("generate: --control-net %s: %w", path, err))
		}
		a.closers = append(a.closers, done)
		img := images[f.cnImages[i]]
		if img == nil {
			if img, err = controlImage(f.cnImages[i], f.width, f.height, f.canny, f.cannyLow, f.cannyHigh); err != nil {
				return fail(fmt.Errorf("generate: --control-image: %w", err))
			}
			images[f.cnImages[i]] = img
		}
		if net.Cfg.ConditioningChannels != 3 {
			return fail(fmt.Errorf("generate: --control-net %s takes %d-channel condition images; only RGB (3) is supported", path, net.Cfg.ConditioningChannels))
		}
		guess := f.guessMode || net.Cfg.GlobalPoolConditions
		a.units = append(a.units, pipeline.ControlNetUnit{Net: net, Image: img, Scale: float32(f.cnScale[i]),
			Start: f.cnStart[i], End: f.cnEnd[i], GuessMode: guess})
		a.params = append(a.params, imageio.KV{Key: fmt.Sprintf("ControlNet %d", i), Value: controlNetParam(f, i, path, guess)})
	}
	var models []*t2iadapter.Model
	var inputs []*tensor.Tensor
	for i, path := range f.adapters {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		m, done, err := pipeline.LoadT2IAdapter(path, opt)
		if err != nil {
			return fail(fmt.Errorf("generate: --adapter %s: %w", path, err))
		}
		a.closers = append(a.closers, done)
		img, err := loadImageNHWC(f.adImages[i], f.width, f.height, m.Cfg.InChannels == 1)
		if err != nil {
			return fail(fmt.Errorf("generate: --adapter-image: %w", err))
		}
		if m.Cfg.InChannels != 1 && m.Cfg.InChannels != 3 {
			return fail(fmt.Errorf("generate: --adapter %s takes %d-channel images; only 1 and 3 are supported", path, m.Cfg.InChannels))
		}
		if d := m.TotalDownscaleFactor(); f.width%d != 0 || f.height%d != 0 {
			return fail(fmt.Errorf("generate: --adapter %s needs -W and -H multiples of %d, got %dx%d", path, d, f.width, f.height))
		}
		models = append(models, m)
		inputs = append(inputs, img.Permute(0, 3, 1, 2).Contiguous())
		a.params = append(a.params, imageio.KV{Key: fmt.Sprintf("ControlNet %d", len(f.controlNets)+i),
			Value: fmt.Sprintf("Module: none, Model: %s, Weight: %s, Guidance Start: 0, Guidance End: %s",
				unitModelName(path), formatNum(f.adScale[i]), formatNum(f.adapterFactor))})
	}
	switch len(models) {
	case 0:
	case 1:
		feats, err := models[0].Forward(inputs[0])
		if err != nil {
			return fail(fmt.Errorf("generate: --adapter %s: %w", f.adapters[0], err))
		}
		a.features = t2iadapter.Scale(feats, float32(f.adScale[0]))
	default:
		w := make([]float32, len(models))
		for i := range w {
			w[i] = float32(f.adScale[i])
		}
		feats, err := t2iadapter.Multi{Adapters: models, Weights: w}.Forward(inputs)
		if err != nil {
			return fail(fmt.Errorf("generate: --adapter: %w", err))
		}
		a.features = feats
	}
	return a, nil
}

// controlNetParam is the sd-webui-controlnet style description of unit i.
func controlNetParam(f *genFlags, i int, path string, guess bool) string {
	module := "none"
	var extra string
	if f.canny {
		module = "canny"
		extra = fmt.Sprintf(", Threshold A: %s, Threshold B: %s", formatNum(f.cannyLow), formatNum(f.cannyHigh))
	}
	mode := "Balanced"
	if guess {
		mode = "ControlNet is more important"
	}
	return fmt.Sprintf("Module: %s, Model: %s, Weight: %s, Guidance Start: %s, Guidance End: %s%s, Control Mode: %s",
		module, unitModelName(path), formatNum(f.cnScale[i]), formatNum(f.cnStart[i]), formatNum(f.cnEnd[i]), extra, mode)
}

// unitModelName is "name [hash]" for files (8 hex digits of the SHA-256,
// as sd-webui-controlnet shows them), the folder name for folders.
func unitModelName(path string) string {
	name := modelName(path)
	if st, err := os.Stat(path); err == nil && !st.IsDir() {
		if h, err := imageio.ModelHash(path); err == nil {
			name += " [" + h[:8] + "]"
		}
	}
	return name
}

// controlImage loads a ControlNet condition image as [1, h, w, 3] in
// [0, 1] at the output size, after the Canny detector when asked (run on
// the image as loaded, then resized, as the diffusers examples do).
func controlImage(path string, w, h int, canny bool, low, high float64) (*tensor.Tensor, error) {
	img, err := imageio.Load(path)
	if err != nil {
		return nil, err
	}
	var src image.Image = img
	if canny {
		src = imageio.GrayToRGB(imageio.Canny(img, low, high))
	}
	chw, err := imageio.ToNCHW(src, w, h)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return tensor.FromSlice(chw, 1, 3, h, w).Permute(0, 2, 3, 1).Contiguous(), nil
}

// addnetHash is the short hash A1111 writes in "Lora hashes": the first
// 12 hex digits of the SHA-256 of a safetensors file's data, after its
// header (kohya's "addnet" hash, which ignores metadata edits).
func addnetHash(path string) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	var n uint64
	if err := binary.Read(fh, binary.LittleEndian, &n); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	st, err := fh.Stat()
	if err != nil {
		return "", err
	}
	if n > uint64(st.Size())-8 {
		return "", errors.New(path + ": bad safetensors header length")
	}
	if _, err := fh.Seek(int64(8+n), io.SeekStart); err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.CopyBuffer(h, fh, make([]byte, 1<<20)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}
