// Package controlnet is diffusers' ControlNetModel: a trainable copy of a
// UNet's encoder that reads a condition image and returns residuals for the
// UNet's skip connections and mid block, through zero-initialised convolutions.
package controlnet

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// Config is ControlNetModel's config: the UNet encoder's fields plus the
// condition embedding.
type Config struct {
	unet.Config
	ConditioningChannels             int    `json:"conditioning_channels"`
	ConditioningEmbeddingOutChannels []int  `json:"conditioning_embedding_out_channels"`
	ChannelOrder                     string `json:"controlnet_conditioning_channel_order"`
	GlobalPoolConditions             bool   `json:"global_pool_conditions"`
}

// ParseConfig decodes a diffusers controlnet/config.json.
func ParseConfig(b []byte) (Config, error) {
	c := Config{Config: unet.Defaults(), ConditioningChannels: 3,
		ConditioningEmbeddingOutChannels: []int{16, 32, 96, 256}, ChannelOrder: "rgb"}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("controlnet: config: %w", err)
	}
	if err := unet.RefuseNulls(b); err != nil {
		return c, fmt.Errorf("controlnet: config: %w", err)
	}
	return c, c.Validate()
}

// FromUNet is the config of a ControlNet made from a UNet config
// (ControlNetModel.from_unet).
func FromUNet(u unet.Config) Config {
	return Config{Config: u, ConditioningChannels: 3, ConditioningEmbeddingOutChannels: []int{16, 32, 96, 256}, ChannelOrder: "rgb"}
}

// EmbeddingChannels are the condition embedding's widths for latents
// factor times smaller than the image. Diffusers' default (16, 32, 96,
// 256) downsamples three times, for Stable Diffusion's 8× VAE; a VAE of
// factor 2 or 4 keeps its first log2(factor)+1 widths.
func EmbeddingChannels(factor int) ([]int, error) {
	def := []int{16, 32, 96, 256}
	for n := 1; n < len(def); n++ {
		if factor == 1<<n {
			return def[:n+1], nil
		}
	}
	return nil, fmt.Errorf("controlnet: no condition embedding for a VAE factor of %d (2, 4 or 8)", factor)
}

// condEmbedding is ControlNetConditioningEmbedding: a small conv net taking
// the pixel-space condition image down to latent resolution.
type condEmbedding struct {
	convIn  *nn.Conv2d
	blocks  []*nn.Conv2d
	convOut *nn.Conv2d
}

// Model is a ControlNetModel.
type Model struct {
	Cfg     Config
	Encoder *unet.Encoder
	cond    *condEmbedding
	down    []*nn.Conv2d // controlnet_down_blocks (zero convs)
	mid     *nn.Conv2d   // controlnet_mid_block
}

// Validate checks what ControlNetModel reads beyond the UNet encoder's
// fields, and the encoder fields it reads differently.
func (c Config) Validate() error {
	if m := c.MidBlockType; m == nil || *m != "UNetMidBlock2DCrossAttn" && *m != "UNetMidBlock2D" {
		return fmt.Errorf("controlnet: mid_block_type %s not supported (want UNetMidBlock2DCrossAttn or UNetMidBlock2D)", quoted(m))
	}
	// ControlNetModel takes these as one int for every block.
	for name, l := range map[string]unet.IntList{"layers_per_block": c.LayersPerBlock, "cross_attention_dim": c.CrossAttentionDim} {
		if len(l) != 1 {
			return fmt.Errorf("controlnet: %s %v: want one int", name, []int(l))
		}
	}
	switch c.ClassEmbedType {
	case "simple_projection":
		// ControlNetModel builds no class embedding for it (the UNet does).
		return fmt.Errorf("controlnet: class_embed_type %q not supported", c.ClassEmbedType)
	case "timestep":
		// ControlNetModel's timestep class embedding keeps TimestepEmbedding's
		// SiLU where the UNet's (which Encoder builds) uses act_fn.
		if c.ActFn != "silu" && c.ActFn != "swish" {
			return fmt.Errorf("controlnet: class_embed_type timestep with act_fn %q not supported", c.ActFn)
		}
	}
	if c.EncoderHidDim != 0 || c.EncoderHidDimType != "" {
		// ControlNetModel builds encoder_hid_proj but its forward never
		// applies it: its blocks would read the unprojected states.
		return fmt.Errorf("controlnet: encoder_hid_dim %d / encoder_hid_dim_type %q not supported", c.EncoderHidDim, c.EncoderHidDimType)
	}
	if c.ChannelOrder != "rgb" && c.ChannelOrder != "bgr" {
		return fmt.Errorf("controlnet: controlnet_conditioning_channel_order %q not supported (want rgb or bgr)", c.ChannelOrder)
	}
	if c.ConditioningChannels <= 0 {
		return fmt.Errorf("controlnet: conditioning_channels %d", c.ConditioningChannels)
	}
	if len(c.ConditioningEmbeddingOutChannels) == 0 {
		return fmt.Errorf("controlnet: empty conditioning_embedding_out_channels")
	}
	for _, ch := range c.ConditioningEmbeddingOutChannels {
		if ch <= 0 {
			return fmt.Errorf("controlnet: conditioning_embedding_out_channels %v", c.ConditioningEmbeddingOutChannels)
		}
	}
	return nil
}

func quoted(s *string) string {
	if s == nil {
		return "null"
	}
	return fmt.Sprintf("%q", *s)
}

// New builds an unloaded ControlNet.
func New(c Config) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	e, err := unet.NewEncoder(c.Config)
	if err != nil {
		return nil, fmt.Errorf("controlnet: %w", err)
	}
	m := &Model{Cfg: c, Encoder: e}
	ch := c.ConditioningEmbeddingOutChannels
	boc := c.BlockOutChannels
	ce := &condEmbedding{convIn: nn.NewConv2d(c.ConditioningChannels, ch[0], 3, 1, 1, true)}
	for i := 0; i < len(ch)-1; i++ {
		ce.blocks = append(ce.blocks, nn.NewConv2d(ch[i], ch[i], 3, 1, 1, true), nn.NewConv2d(ch[i], ch[i+1], 3, 2, 1, true))
	}
	ce.convOut = nn.NewConv2d(ch[len(ch)-1], boc[0], 3, 1, 1, true)
	m.cond = ce
	// One zero conv per skip: conv_in, each resnet, each downsampler.
	layers := c.LayersPerBlock.For(len(boc))
	m.down = append(m.down, nn.NewConv2d(boc[0], boc[0], 1, 1, 0, true))
	for i, ch := range boc {
		for j := 0; j < layers[i]; j++ {
			m.down = append(m.down, nn.NewConv2d(ch, ch, 1, 1, 0, true))
		}
		if i < len(boc)-1 {
			m.down = append(m.down, nn.NewConv2d(ch, ch, 1, 1, 0, true))
		}
	}
	last := boc[len(boc)-1]
	m.mid = nn.NewConv2d(last, last, 1, 1, 0, true)
	return m, nil
}

// Params registers the weights under diffusers' names.
func (m *Model) Params(prefix string, p *nn.Params) {
	m.Encoder.Params(prefix, p)
	cp := prefix + "controlnet_cond_embedding."
	m.cond.convIn.Params(cp+"conv_in.", p)
	for i, b := range m.cond.blocks {
		b.Params(nn.Join(cp+"blocks.", i), p)
	}
	m.cond.convOut.Params(cp+"conv_out.", p)
	for i, d := range m.down {
		d.Params(nn.Join(prefix+"controlnet_down_blocks.", i), p)
	}
	m.mid.Params(prefix+"controlnet_mid_block.", p)
}

// Residuals are what a ControlNet hands the UNet.
type Residuals struct {
	Down []*tensor.Tensor
	Mid  *tensor.Tensor
}

// Add sums residuals of several ControlNets (MultiControlNet). Residuals
// of another count or shape (ControlNets made for different UNets) are an
// error wrapping unet.ErrResidual, and leave r as it was.
func (r *Residuals) Add(o *Residuals) error {
	if r.Mid == nil {
		*r = *o
		return nil
	}
	if o.Mid == nil || len(o.Down) != len(r.Down) {
		return fmt.Errorf("controlnet: %w: adding %d down residuals (mid given: %v) to %d", unet.ErrResidual, len(o.Down), o.Mid != nil, len(r.Down))
	}
	for i := range r.Down {
		if !tensor.SameShape(r.Down[i].Shape(), shapeOf(o.Down[i])) {
			return fmt.Errorf("controlnet: %w: down residual %d of shape %v added to %v", unet.ErrResidual, i, shapeOf(o.Down[i]), r.Down[i].Shape())
		}
	}
	if !tensor.SameShape(r.Mid.Shape(), o.Mid.Shape()) {
		return fmt.Errorf("controlnet: %w: mid residual of shape %v added to %v", unet.ErrResidual, o.Mid.Shape(), r.Mid.Shape())
	}
	for i := range r.Down {
		r.Down[i] = tensor.Add(r.Down[i], o.Down[i])
	}
	r.Mid = tensor.Add(r.Mid, o.Mid)
	return nil
}

// Forward computes the residuals for sample [B, C, h, w] with the condition
// image [B, 3, 8h, 8w] in [0, 1], multiplied by scale. In guess mode the
// residuals are scaled from 0.1 (shallowest) to 1.0 (mid) instead.
func (m *Model) Forward(sample *tensor.Tensor, timesteps []float32, cond unet.Cond, image *tensor.Tensor, scale float32, guessMode bool) (*Residuals, error) {
	c := m.Cfg
	if sample.Rank() != 4 || sample.Dim(1) != c.InChannels {
		return nil, fmt.Errorf("controlnet: sample shape %v, want [B, %d, H, W]", sample.Shape(), c.InChannels)
	}
	if image == nil || image.Rank() != 4 || image.Dim(1) != c.ConditioningChannels || image.Dim(0) != sample.Dim(0) {
		return nil, fmt.Errorf("controlnet: condition image shape %v, want [%d, %d, H, W]", shapeOf(image), sample.Dim(0), c.ConditioningChannels)
	}
	if c.ChannelOrder == "bgr" {
		image = tensor.Concat(1, image.Narrow(1, 2, 1), image.Narrow(1, 1, 1), image.Narrow(1, 0, 1))
	}
	B := sample.Dim(0)
	emb, ehs, err := m.Encoder.Embed(B, timesteps, cond)
	if err != nil {
		return nil, fmt.Errorf("controlnet: %w", err)
	}
	h := m.Encoder.ConvIn(sample)
	ce := tensor.SiLU(m.cond.convIn.Forward(image))
	for _, b := range m.cond.blocks {
		ce = tensor.SiLU(b.Forward(ce))
	}
	ce = m.cond.convOut.Forward(ce)
	if !tensor.SameShape(ce.Shape(), h.Shape()) {
		return nil, fmt.Errorf("controlnet: condition image %v embeds to %v but the latents give %v (the image must be 8× the latent size)", image.Shape(), ce.Shape(), h.Shape())
	}
	h = tensor.Add(h, ce)
	h, skips, _, err := m.Encoder.Down(h, emb, ehs, cond.EncoderMask, nil)
	if err != nil {
		return nil, fmt.Errorf("controlnet: %w", err)
	}
	h = m.Encoder.Mid(h, emb, ehs, cond.EncoderMask)
	if len(skips) != len(m.down) {
		return nil, fmt.Errorf("controlnet: %d skips for %d zero convs", len(skips), len(m.down))
	}
	out := &Residuals{}
	n := len(skips) + 1
	for i, s := range skips {
		r := m.down[i].Forward(s)
		out.Down = append(out.Down, r)
	}
	out.Mid = m.mid.Forward(h)
	for i := range out.Down {
		s := scale
		// diffusers ramps the scales in guess mode only without global
		// pooling.
		if guessMode && !c.GlobalPoolConditions {
			// torch.logspace(-1, 0, n): 10^(-1 + i/(n-1)).
			s *= float32(math.Pow(10, -1+float64(i)/float64(n-1)))
		}
		out.Down[i] = tensor.Scale(out.Down[i], s)
	}
	// In guess mode the mid residual's factor is the last of the logspace, 10^0.
	out.Mid = tensor.Scale(out.Mid, scale)
	if c.GlobalPoolConditions {
		for i, d := range out.Down {
			out.Down[i] = tensor.MeanDim(tensor.MeanDim(d, 3, true), 2, true)
		}
		out.Mid = tensor.MeanDim(tensor.MeanDim(out.Mid, 3, true), 2, true)
	}
	return out, nil
}

func shapeOf(t *tensor.Tensor) []int {
	if t == nil {
		return nil
	}
	return t.Shape()
}
