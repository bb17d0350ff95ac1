package pipeline

import (
	"context"
	"fmt"
	"os"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/model/controlnet"
	"github.com/diffuse-go/diffuse/model/t2iadapter"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/tensor"
)

// adapterCache keeps the ControlNets and T2I-Adapters a model has loaded,
// by path, so that a server's next request does not load them again.
type adapterCache struct {
	nets     map[string]*controlnet.Model
	adapters map[string]*t2iadapter.Model
	closers  []func()
}

func (c *adapterCache) close() {
	for _, f := range c.closers {
		f()
	}
	*c = adapterCache{}
}

func (c *adapterCache) controlNet(path string, base unet.Config, opt LoadOptions) (*controlnet.Model, error) {
	if m, ok := c.nets[path]; ok {
		return m, nil
	}
	m, done, err := LoadControlNet(path, base, opt)
	if err != nil {
		return nil, err
	}
	if c.nets == nil {
		c.nets = map[string]*controlnet.Model{}
	}
	c.nets[path], c.closers = m, append(c.closers, done)
	return m, nil
}

func (c *adapterCache) t2iAdapter(path string, opt LoadOptions) (*t2iadapter.Model, error) {
	if m, ok := c.adapters[path]; ok {
		return m, nil
	}
	m, done, err := LoadT2IAdapter(path, opt)
	if err != nil {
		return nil, err
	}
	if c.adapters == nil {
		c.adapters = map[string]*t2iadapter.Model{}
	}
	c.adapters[path], c.closers = m, append(c.closers, done)
	return m, nil
}

// adapterSet holds a request's ControlNet units and T2I-Adapter
// features, and their PNG parameter entries.
type adapterSet struct {
	units    []ControlNetUnit
	features []*tensor.Tensor // T2I-Adapter features, already weighted
	factor   float64
	params   []imageio.KV
}

// hook returns the pipeline's step hook running every adapter (nil for none).
func (a *adapterSet) hook(cfg bool) AdapterFunc {
	var hooks []AdapterFunc
	if len(a.units) > 0 {
		hooks = append(hooks, ControlNets(a.units, cfg, nil))
	}
	if len(a.features) > 0 {
		hooks = append(hooks, T2IAdapter(a.features, a.factor))
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

func orOne(v float64) float64 {
	if v == 0 {
		return 1
	}
	return v
}

// adapters loads the request's ControlNets and T2I-Adapters and prepares
// their images at the output size.
func (m *unetModel) adapters(ctx context.Context, p *Params) (*adapterSet, error) {
	a := &adapterSet{factor: p.AdapterFactor}
	lo := LoadOptions{DType: m.opt.DType}
	base := m.v.unet().Cfg
	for i, u := range p.ControlNets {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		net, err := m.adapter.controlNet(u.Path, base, lo)
		if err != nil {
			return nil, fmt.Errorf("pipeline: ControlNet %s: %w", u.Path, err)
		}
		if net.Cfg.ConditioningChannels != 3 {
			return nil, fmt.Errorf("pipeline: ControlNet %s takes %d-channel condition images; only RGB (3) is supported", u.Path, net.Cfg.ConditioningChannels)
		}
		img, err := controlImage(u, p.Width, p.Height)
		if err != nil {
			return nil, fmt.Errorf("pipeline: ControlNet %d image: %w", i, err)
		}
		if u.Canny && u.CannyLow == 0 && u.CannyHigh == 0 {
			u.CannyLow, u.CannyHigh = 100, 200 // OpenCV's usual pair, the CLI's defaults
		}
		guess := u.GuessMode || net.Cfg.GlobalPoolConditions
		end := u.End
		if end == 0 {
			end = 1
		}
		a.units = append(a.units, ControlNetUnit{Net: net, Image: img, Scale: float32(orOne(u.Scale)),
			Start: u.Start, End: end, GuessMode: guess})
		a.params = append(a.params, imageio.KV{Key: fmt.Sprintf("ControlNet %d", i), Value: controlNetParam(u, end, guess)})
	}
	if err := a.t2i(m, p, lo); err != nil {
		return nil, err
	}
	return a, nil
}

// t2i loads the T2I-Adapters and computes their weighted features once.
func (a *adapterSet) t2i(m *unetModel, p *Params, lo LoadOptions) error {
	var models []*t2iadapter.Model
	var inputs []*tensor.Tensor
	weights := make([]float32, len(p.Adapters))
	for i, u := range p.Adapters {
		am, err := m.adapter.t2iAdapter(u.Path, lo)
		if err != nil {
			return fmt.Errorf("pipeline: T2I-Adapter %s: %w", u.Path, err)
		}
		if am.Cfg.InChannels != 1 && am.Cfg.InChannels != 3 {
			return fmt.Errorf("pipeline: T2I-Adapter %s takes %d-channel images; only 1 and 3 are supported", u.Path, am.Cfg.InChannels)
		}
		if d := am.TotalDownscaleFactor(); p.Width%d != 0 || p.Height%d != 0 {
			return fmt.Errorf("pipeline: T2I-Adapter %s needs width and height multiples of %d, got %dx%d", u.Path, d, p.Width, p.Height)
		}
		img, err := imageTensor(u.Image, p.Width, p.Height, am.Cfg.InChannels == 1)
		if err != nil {
			return fmt.Errorf("pipeline: T2I-Adapter %d image: %w", i, err)
		}
		models = append(models, am)
		inputs = append(inputs, img.Permute(0, 3, 1, 2).Contiguous())
		weights[i] = float32(orOne(u.Scale))
		a.params = append(a.params, imageio.KV{Key: fmt.Sprintf("ControlNet %d", len(p.ControlNets)+i),
			Value: fmt.Sprintf("Module: none, Model: %s, Weight: %s, Guidance Start: 0, Guidance End: %s",
				unitModelName(u.Path), formatNum(float64(weights[i])), formatNum(p.AdapterFactor))})
	}
	switch len(models) {
	case 0:
		return nil
	case 1:
		feats, err := models[0].Forward(inputs[0])
		if err != nil {
			return fmt.Errorf("pipeline: T2I-Adapter %s: %w", p.Adapters[0].Path, err)
		}
		a.features = t2iadapter.Scale(feats, weights[0])
	default:
		feats, err := t2iadapter.Multi{Adapters: models, Weights: weights}.Forward(inputs)
		if err != nil {
			return fmt.Errorf("pipeline: T2I-Adapter: %w", err)
		}
		a.features = feats
	}
	return nil
}

// controlImage prepares a ControlNet condition image as [1, h, w, 3] in
// [0, 1] at the output size, after the Canny detector when asked (run on
// the image as given, then resized, as the diffusers examples do).
func controlImage(u ControlNet, w, h int) (*tensor.Tensor, error) {
	src := u.Image
	if u.Canny {
		src = imageio.GrayToRGB(imageio.Canny(src, u.CannyLow, u.CannyHigh))
	}
	return imageTensor(src, w, h, false)
}

// controlNetParam is the sd-webui-controlnet style description of a unit.
func controlNetParam(u ControlNet, end float64, guess bool) string {
	module := "none"
	var extra string
	if u.Canny {
		module = "canny"
		extra = fmt.Sprintf(", Threshold A: %s, Threshold B: %s", formatNum(u.CannyLow), formatNum(u.CannyHigh))
	}
	mode := "Balanced"
	if guess {
		mode = "ControlNet is more important"
	}
	return fmt.Sprintf("Module: %s, Model: %s, Weight: %s, Guidance Start: %s, Guidance End: %s%s, Control Mode: %s",
		module, unitModelName(u.Path), formatNum(orOne(u.Scale)), formatNum(u.Start), formatNum(end), extra, mode)
}

// unitModelName is "name [hash]" for files (8 hex digits of the SHA-256,
// as sd-webui-controlnet shows them), the folder name for folders.
func unitModelName(path string) string {
	name := ModelName(path)
	if st, err := os.Stat(path); err == nil && !st.IsDir() {
		if h, err := imageio.ModelHash(path); err == nil {
			name += " [" + h[:8] + "]"
		}
	}
	return name
}
