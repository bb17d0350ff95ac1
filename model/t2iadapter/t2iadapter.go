// Package t2iadapter is diffusers' T2IAdapter: a small convolutional network
// that turns a control image (sketch, depth, pose, ...) into one feature map
// per UNet down block. The features are added inside the UNet's down blocks
// (unet.Cond.DownIntrablockAdditionalResidual), usually after scaling them by
// an adapter conditioning scale. The three diffusers layouts are supported:
// "full_adapter" (SD 1.x/2.x), "full_adapter_xl" (SDXL) and "light_adapter";
// Multi combines several adapters with per-adapter weights like diffusers'
// MultiAdapter.
package t2iadapter

import (
	"encoding/json"
	"fmt"

	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// Adapter types (Config.AdapterType).
const (
	FullAdapter   = "full_adapter"
	FullAdapterXL = "full_adapter_xl"
	LightAdapter  = "light_adapter"
)

// Config is diffusers' T2IAdapter config.
type Config struct {
	// InChannels is the channel count of the control image (3 for RGB, 1
	// for greyscale).
	InChannels int `json:"in_channels"`
	// Channels is the output channel count of each block; one feature map
	// is produced per entry (light adapters produce one more).
	Channels []int `json:"channels"`
	// NumResBlocks is the number of residual blocks in each block.
	NumResBlocks int `json:"num_res_blocks"`
	// DownscaleFactor is the pixel-unshuffle factor applied first.
	DownscaleFactor int `json:"downscale_factor"`
	// AdapterType is FullAdapter, FullAdapterXL or LightAdapter.
	AdapterType string `json:"adapter_type"`
}

// Defaults are T2IAdapter's constructor defaults (an SD 1.x full adapter).
func Defaults() Config {
	return Config{InChannels: 3, Channels: []int{320, 640, 1280, 1280}, NumResBlocks: 2,
		DownscaleFactor: 8, AdapterType: FullAdapter}
}

// ParseConfig decodes a diffusers T2IAdapter config.json; fields it omits
// take the constructor defaults.
func ParseConfig(b []byte) (Config, error) {
	c := Defaults()
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("t2iadapter: config: %w", err)
	}
	if err := nn.RefuseNulls(b, "in_channels", "channels", "num_res_blocks", "downscale_factor", "adapter_type"); err != nil {
		return c, fmt.Errorf("t2iadapter: config: %w", err)
	}
	return c, c.validate()
}

func (c Config) validate() error {
	if c.InChannels < 1 {
		return fmt.Errorf("t2iadapter: in_channels %d must be positive", c.InChannels)
	}
	if len(c.Channels) == 0 {
		return fmt.Errorf("t2iadapter: channels is empty")
	}
	for i, ch := range c.Channels {
		if ch < 1 {
			return fmt.Errorf("t2iadapter: channels[%d] = %d must be positive", i, ch)
		}
	}
	if c.NumResBlocks < 0 {
		return fmt.Errorf("t2iadapter: num_res_blocks %d is negative", c.NumResBlocks)
	}
	if c.DownscaleFactor < 1 {
		return fmt.Errorf("t2iadapter: downscale_factor %d must be positive", c.DownscaleFactor)
	}
	switch c.AdapterType {
	case FullAdapter:
	case FullAdapterXL:
		// diffusers builds blocks 3.. as channels[i] -> channels[i] while
		// feeding them the previous block's output, so those channel counts
		// must repeat the previous one.
		for i := 3; i < len(c.Channels); i++ {
			if c.Channels[i] != c.Channels[i-1] {
				return fmt.Errorf("t2iadapter: full_adapter_xl needs channels[%d] = channels[%d], got %d and %d",
					i, i-1, c.Channels[i], c.Channels[i-1])
			}
		}
	case LightAdapter:
		for i, ch := range c.Channels {
			if ch/4 < 1 {
				return fmt.Errorf("t2iadapter: light_adapter channels[%d] = %d leaves no inner channels (channels/4)", i, ch)
			}
		}
	default:
		return fmt.Errorf("t2iadapter: unsupported adapter_type %q (want %q, %q or %q)",
			c.AdapterType, FullAdapter, FullAdapterXL, LightAdapter)
	}
	return nil
}

// resBlock is AdapterResnetBlock (block2 1×1) or LightAdapterResnetBlock
// (block2 3×3): x + block2(relu(block1(x))).
type resBlock struct {
	block1, block2 *nn.Conv2d
}

func newResBlock(ch int, light bool) *resBlock {
	k2, p2 := 1, 0
	if light {
		k2, p2 = 3, 1
	}
	return &resBlock{block1: nn.NewConv2d(ch, ch, 3, 1, 1, true), block2: nn.NewConv2d(ch, ch, k2, 1, p2, true)}
}

func (r *resBlock) params(prefix string, p *nn.Params) {
	r.block1.Params(prefix+"block1.", p)
	r.block2.Params(prefix+"block2.", p)
}

func (r *resBlock) forward(x *tensor.Tensor) *tensor.Tensor {
	h := r.block2.Forward(tensor.ReLU(r.block1.Forward(x)))
	return tensor.Add(h, x)
}

// block is AdapterBlock (inConv optional, no outConv) or LightAdapterBlock
// (inConv and outConv always present): optional 2×2 average pooling, then
// the convolutions and residual blocks.
type block struct {
	down    bool
	inConv  *nn.Conv2d
	resnets []*resBlock
	outConv *nn.Conv2d
}

func newFullBlock(in, out, numRes int, down bool) *block {
	b := &block{down: down}
	if in != out {
		b.inConv = nn.NewConv2d(in, out, 1, 1, 0, true)
	}
	for i := 0; i < numRes; i++ {
		b.resnets = append(b.resnets, newResBlock(out, false))
	}
	return b
}

func newLightBlock(in, out, numRes int, down bool) *block {
	mid := out / 4
	b := &block{down: down, inConv: nn.NewConv2d(in, mid, 1, 1, 0, true), outConv: nn.NewConv2d(mid, out, 1, 1, 0, true)}
	for i := 0; i < numRes; i++ {
		b.resnets = append(b.resnets, newResBlock(mid, true))
	}
	return b
}

func (b *block) params(prefix string, p *nn.Params) {
	if b.inConv != nil {
		b.inConv.Params(prefix+"in_conv.", p)
	}
	for i, r := range b.resnets {
		r.params(nn.Join(prefix+"resnets.", i), p)
	}
	if b.outConv != nil {
		b.outConv.Params(prefix+"out_conv.", p)
	}
}

func (b *block) forward(x *tensor.Tensor) *tensor.Tensor {
	if b.down {
		x = avgPool2Ceil(x)
	}
	if b.inConv != nil {
		x = b.inConv.Forward(x)
	}
	for _, r := range b.resnets {
		x = r.forward(x)
	}
	if b.outConv != nil {
		x = b.outConv.Forward(x)
	}
	return x
}

// avgPool2Ceil is torch's AvgPool2d(kernel_size=2, stride=2, ceil_mode=True)
// (no padding): on an odd height or width the last window covers a single
// row or column and averages only the values inside the input. It zero-pads
// to even sizes, pools, and doubles the edge windows that saw one valid row
// or column; the factors are powers of two, so the result is exact.
func avgPool2Ceil(x *tensor.Tensor) *tensor.Tensor {
	n, c, h, w := x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3)
	if h%2 == 0 && w%2 == 0 {
		return tensor.AvgPool2d(x, 2, 2)
	}
	if h%2 == 1 {
		x = tensor.Concat(2, x, tensor.Zeros(n, c, 1, w))
	}
	if w%2 == 1 {
		x = tensor.Concat(3, x, tensor.Zeros(n, c, x.Dim(2), 1))
	}
	y := tensor.AvgPool2d(x, 2, 2)
	oh, ow := y.Dim(2), y.Dim(3)
	fix := make([]float32, oh*ow)
	for i := range fix {
		fix[i] = 1
	}
	for r := 0; r < oh; r++ {
		for q := 0; q < ow; q++ {
			if h%2 == 1 && r == oh-1 {
				fix[r*ow+q] *= 2
			}
			if w%2 == 1 && q == ow-1 {
				fix[r*ow+q] *= 2
			}
		}
	}
	return tensor.Mul(y, tensor.FromSlice(fix, 1, 1, oh, ow))
}

// Model is a T2IAdapter.
type Model struct {
	Cfg    Config
	convIn *nn.Conv2d // nil for light adapters
	body   []*block
}

// New builds an unloaded adapter; load its weights with nn.Load (diffusers
// state_dict names, "adapter.conv_in.weight", "adapter.body.0...").
func New(c Config) (*Model, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	ch := c.Channels
	in := c.InChannels * c.DownscaleFactor * c.DownscaleFactor
	m := &Model{Cfg: c}
	switch c.AdapterType {
	case FullAdapter:
		m.convIn = nn.NewConv2d(in, ch[0], 3, 1, 1, true)
		m.body = append(m.body, newFullBlock(ch[0], ch[0], c.NumResBlocks, false))
		for i := 1; i < len(ch); i++ {
			m.body = append(m.body, newFullBlock(ch[i-1], ch[i], c.NumResBlocks, true))
		}
	case FullAdapterXL:
		// One downsampling block only (the third); the first keeps
		// channels[0] and the second changes channels at full resolution.
		m.convIn = nn.NewConv2d(in, ch[0], 3, 1, 1, true)
		for i := range ch {
			switch i {
			case 0:
				m.body = append(m.body, newFullBlock(ch[0], ch[0], c.NumResBlocks, false))
			case 1:
				m.body = append(m.body, newFullBlock(ch[0], ch[1], c.NumResBlocks, false))
			case 2:
				m.body = append(m.body, newFullBlock(ch[1], ch[2], c.NumResBlocks, true))
			default:
				m.body = append(m.body, newFullBlock(ch[i], ch[i], c.NumResBlocks, false))
			}
		}
	case LightAdapter:
		// No conv_in; one block per channel entry plus a final downsampling
		// block that keeps the last channel count.
		m.body = append(m.body, newLightBlock(in, ch[0], c.NumResBlocks, false))
		for i := 0; i+1 < len(ch); i++ {
			m.body = append(m.body, newLightBlock(ch[i], ch[i+1], c.NumResBlocks, true))
		}
		last := ch[len(ch)-1]
		m.body = append(m.body, newLightBlock(last, last, c.NumResBlocks, true))
	}
	return m, nil
}

// Params registers the weights under diffusers' names.
func (m *Model) Params(prefix string, p *nn.Params) {
	if m.convIn != nil {
		m.convIn.Params(prefix+"adapter.conv_in.", p)
	}
	for i, b := range m.body {
		b.params(nn.Join(prefix+"adapter.body.", i), p)
	}
}

// NumFeatures is the number of feature maps Forward returns.
func (m *Model) NumFeatures() int { return len(m.body) }

// DownscaleFactor is the pixel-unshuffle factor: image height and width
// must be multiples of it.
func (m *Model) DownscaleFactor() int { return m.Cfg.DownscaleFactor }

// TotalDownscaleFactor is the ratio of the image size to the size of the
// last feature map (for sizes that divide evenly).
func (m *Model) TotalDownscaleFactor() int {
	f := m.Cfg.DownscaleFactor
	for _, b := range m.body {
		if b.down {
			f *= 2
		}
	}
	return f
}

// loaded reports the first parameter that has no tensor yet.
func (m *Model) loaded() error {
	var ps nn.Params
	m.Params("", &ps)
	for _, p := range ps.List() {
		if *p.Ptr == nil {
			return fmt.Errorf("t2iadapter: weights not loaded (%s is missing)", p.Name)
		}
	}
	return nil
}

// Forward computes the feature maps of a control image batch [B, C, H, W]
// (values in [0, 1], C = in_channels, H and W multiples of the downscale
// factor), one per block, in UNet down-block order. Downsampling averages
// 2×2 windows with torch's ceil_mode, so odd intermediate sizes are allowed
// as in diffusers; the UNet itself needs feature sizes matching its blocks.
func (m *Model) Forward(image *tensor.Tensor) ([]*tensor.Tensor, error) {
	c := m.Cfg
	if image == nil || image.Rank() != 4 || image.Dim(1) != c.InChannels {
		var shape []int
		if image != nil {
			shape = image.Shape()
		}
		return nil, fmt.Errorf("t2iadapter: image shape %v, want [B, %d, H, W]", shape, c.InChannels)
	}
	f := c.DownscaleFactor
	if h, w := image.Dim(2), image.Dim(3); h == 0 || w == 0 || h%f != 0 || w%f != 0 || image.Dim(0) == 0 {
		return nil, fmt.Errorf("t2iadapter: image size %dx%d (batch %d) is not a non-empty multiple of the downscale factor %d",
			h, w, image.Dim(0), f)
	}
	if err := m.loaded(); err != nil {
		return nil, err
	}
	x := tensor.PixelUnshuffle(image, f)
	if m.convIn != nil {
		x = m.convIn.Forward(x)
	}
	feats := make([]*tensor.Tensor, 0, len(m.body))
	for _, b := range m.body {
		x = b.forward(x)
		feats = append(feats, x)
	}
	return feats, nil
}

// Scale returns every feature multiplied by s (the pipelines'
// adapter_conditioning_scale), ready for
// unet.Cond.DownIntrablockAdditionalResidual.
func Scale(features []*tensor.Tensor, s float32) []*tensor.Tensor {
	out := make([]*tensor.Tensor, len(features))
	for i, f := range features {
		out[i] = tensor.Scale(f, s)
	}
	return out
}

// Multi is diffusers' MultiAdapter: several adapters, each fed its own
// control image, whose features are summed level by level with per-adapter
// weights.
type Multi struct {
	Adapters []*Model
	// Weights holds one weight per adapter; nil means 1/len(Adapters) each
	// (diffusers' default).
	Weights []float32
}

// Forward runs adapter i on images[i] and returns, per level k,
// Σ_i Weights[i]·features_i[k] (accumulated in adapter order, as diffusers
// does). Every adapter must use the same downscale factors and produce
// feature maps of the same shapes.
func (mu Multi) Forward(images []*tensor.Tensor) ([]*tensor.Tensor, error) {
	n := len(mu.Adapters)
	if n == 0 {
		return nil, fmt.Errorf("t2iadapter: Multi has no adapters")
	}
	if len(images) != n {
		return nil, fmt.Errorf("t2iadapter: %d images for %d adapters", len(images), n)
	}
	w := mu.Weights
	if w == nil {
		w = make([]float32, n)
		for i := range w {
			w[i] = 1 / float32(n)
		}
	}
	if len(w) != n {
		return nil, fmt.Errorf("t2iadapter: %d weights for %d adapters", len(w), n)
	}
	for i, a := range mu.Adapters {
		if a == nil {
			return nil, fmt.Errorf("t2iadapter: adapter %d is nil", i)
		}
		if a.DownscaleFactor() != mu.Adapters[0].DownscaleFactor() || a.TotalDownscaleFactor() != mu.Adapters[0].TotalDownscaleFactor() {
			return nil, fmt.Errorf("t2iadapter: adapter %d downscales by %d (total %d), adapter 0 by %d (total %d)",
				i, a.DownscaleFactor(), a.TotalDownscaleFactor(), mu.Adapters[0].DownscaleFactor(), mu.Adapters[0].TotalDownscaleFactor())
		}
	}
	var acc []*tensor.Tensor
	for i, a := range mu.Adapters {
		feats, err := a.Forward(images[i])
		if err != nil {
			return nil, fmt.Errorf("adapter %d: %w", i, err)
		}
		if acc == nil {
			acc = Scale(feats, w[i])
			continue
		}
		if len(feats) != len(acc) {
			return nil, fmt.Errorf("t2iadapter: adapter %d gives %d features, adapter 0 gives %d", i, len(feats), len(acc))
		}
		for k, f := range feats {
			if !tensor.SameShape(f.Shape(), acc[k].Shape()) {
				return nil, fmt.Errorf("t2iadapter: adapter %d feature %d has shape %v, adapter 0's has %v",
					i, k, f.Shape(), acc[k].Shape())
			}
			acc[k] = tensor.Add(acc[k], tensor.Scale(f, w[i]))
		}
	}
	return acc, nil
}
