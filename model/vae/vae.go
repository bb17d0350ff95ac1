// Package vae is diffusers' AutoencoderKL: the image encoder/decoder that
// maps pixels to the latent space diffusion runs in.
package vae

import (
	"encoding/json"
	"fmt"

	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// Config is diffusers' AutoencoderKL config.
type Config struct {
	InChannels           int      `json:"in_channels"`
	OutChannels          int      `json:"out_channels"`
	DownBlockTypes       []string `json:"down_block_types"`
	UpBlockTypes         []string `json:"up_block_types"`
	BlockOutChannels     []int    `json:"block_out_channels"`
	LayersPerBlock       int      `json:"layers_per_block"`
	ActFn                string   `json:"act_fn"`
	LatentChannels       int      `json:"latent_channels"`
	NormNumGroups        int      `json:"norm_num_groups"`
	SampleSize           int      `json:"sample_size"`
	ScalingFactor        float32  `json:"scaling_factor"`
	ShiftFactor          *float32 `json:"shift_factor"`
	ForceUpcast          bool     `json:"force_upcast"`
	UseQuantConv         bool     `json:"use_quant_conv"`
	UsePostQuantConv     bool     `json:"use_post_quant_conv"`
	MidBlockAddAttention bool     `json:"mid_block_add_attention"`
}

// Defaults are AutoencoderKL's constructor defaults.
func Defaults() Config {
	return Config{InChannels: 3, OutChannels: 3, BlockOutChannels: []int{64}, LayersPerBlock: 1, ActFn: "silu",
		LatentChannels: 4, NormNumGroups: 32, SampleSize: 32, ScalingFactor: 0.18215, ForceUpcast: true,
		UseQuantConv: true, UsePostQuantConv: true, MidBlockAddAttention: true,
		DownBlockTypes: []string{"DownEncoderBlock2D"}, UpBlockTypes: []string{"UpDecoderBlock2D"}}
}

// SD is the VAE of Stable Diffusion 1.x/2.x (and, with scaling 0.13025, SDXL).
func SD() Config {
	c := Defaults()
	c.BlockOutChannels = []int{128, 256, 512, 512}
	c.LayersPerBlock = 2
	c.SampleSize = 512
	c.DownBlockTypes = []string{"DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"}
	c.UpBlockTypes = []string{"UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"}
	return c
}

// SDXL is the SDXL VAE.
func SDXL() Config {
	c := SD()
	c.ScalingFactor = 0.13025
	c.SampleSize = 1024
	return c
}

// ParseConfig decodes a diffusers vae/config.json.
func ParseConfig(b []byte) (Config, error) {
	c := Defaults()
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("vae: config: %w", err)
	}
	if err := nn.RefuseNulls(b, "in_channels", "out_channels", "down_block_types", "up_block_types", "block_out_channels",
		"layers_per_block", "act_fn", "latent_channels", "norm_num_groups", "sample_size", "scaling_factor",
		"force_upcast", "use_quant_conv", "use_post_quant_conv", "mid_block_add_attention"); err != nil {
		return c, fmt.Errorf("vae: config: %w", err)
	}
	return c, c.Validate()
}

// Validate checks every config value AutoencoderKL builds from, refusing
// what this package does not implement with an error naming the field.
func (c Config) Validate() error {
	n := len(c.BlockOutChannels)
	if n == 0 || len(c.DownBlockTypes) != n || len(c.UpBlockTypes) != n {
		return fmt.Errorf("vae: %d block_out_channels for %d down_block_types / %d up_block_types", n, len(c.DownBlockTypes), len(c.UpBlockTypes))
	}
	for _, t := range c.DownBlockTypes {
		if t != "DownEncoderBlock2D" {
			return fmt.Errorf("vae: down_block_types %q not supported (want DownEncoderBlock2D)", t)
		}
	}
	for _, t := range c.UpBlockTypes {
		if t != "UpDecoderBlock2D" {
			return fmt.Errorf("vae: up_block_types %q not supported (want UpDecoderBlock2D)", t)
		}
	}
	for field, v := range map[string]int{"in_channels": c.InChannels, "out_channels": c.OutChannels, "latent_channels": c.LatentChannels} {
		if v <= 0 {
			return fmt.Errorf("vae: %s %d", field, v)
		}
	}
	if c.LayersPerBlock < 0 {
		return fmt.Errorf("vae: layers_per_block %d", c.LayersPerBlock)
	}
	for i, ch := range c.BlockOutChannels {
		if err := nn.CheckGroups("norm_num_groups", c.NormNumGroups, ch); err != nil {
			return fmt.Errorf("vae: block_out_channels[%d]: %w", i, err)
		}
	}
	if err := nn.CheckActivation("act_fn", c.ActFn); err != nil {
		return fmt.Errorf("vae: %w", err)
	}
	return nil
}

type midBlock struct {
	resnets []*nn.ResnetBlock2D
	attn    *nn.Attention
}

func newMid(c Config, ch int) *midBlock {
	r := func() *nn.ResnetBlock2D {
		return nn.NewResnetBlock2D(nn.ResnetConfig{In: ch, Out: ch, Groups: c.NormNumGroups, Eps: 1e-6, Act: c.ActFn})
	}
	m := &midBlock{resnets: []*nn.ResnetBlock2D{r(), r()}}
	if c.MidBlockAddAttention {
		// One head of the full width (attention_head_dim = channels).
		a := nn.NewAttention(ch, 0, 1, ch, true, true)
		a.GroupNorm = nn.NewGroupNorm(c.NormNumGroups, ch, 1e-6)
		a.ResidualConnection = true
		m.attn = a
	}
	return m
}

func (m *midBlock) params(prefix string, p *nn.Params) {
	for i, r := range m.resnets {
		r.Params(nn.Join(prefix+"resnets.", i), p)
	}
	if m.attn != nil {
		m.attn.Params(prefix+"attentions.0.", p)
	}
}

func (m *midBlock) forward(x *tensor.Tensor) *tensor.Tensor {
	x = m.resnets[0].Forward(x, nil)
	if m.attn != nil {
		x = m.attn.Forward(x, nil, nil)
	}
	return m.resnets[1].Forward(x, nil)
}

type coderBlock struct {
	resnets []*nn.ResnetBlock2D
	down    *nn.Downsample2D
	up      *nn.Upsample2D
}

// Model is an AutoencoderKL.
type Model struct {
	Cfg              Config
	encIn, encOut    *nn.Conv2d
	encDown          []*coderBlock
	encMid           *midBlock
	encNorm          *nn.GroupNorm
	quant, postQuant *nn.Conv2d
	decIn, decOut    *nn.Conv2d
	decMid           *midBlock
	decUp            []*coderBlock
	decNorm          *nn.GroupNorm
}

// New builds an unloaded VAE.
func New(c Config) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	n := len(c.BlockOutChannels)
	boc := c.BlockOutChannels
	lat := c.LatentChannels
	m := &Model{Cfg: c}
	res := func(in, out int) *nn.ResnetBlock2D {
		return nn.NewResnetBlock2D(nn.ResnetConfig{In: in, Out: out, Groups: c.NormNumGroups, Eps: 1e-6, Act: c.ActFn})
	}
	m.encIn = nn.NewConv2d(c.InChannels, boc[0], 3, 1, 1, true)
	out := boc[0]
	for i := 0; i < n; i++ {
		in := out
		out = boc[i]
		b := &coderBlock{}
		for j := 0; j < c.LayersPerBlock; j++ {
			rin := out
			if j == 0 {
				rin = in
			}
			b.resnets = append(b.resnets, res(rin, out))
		}
		if i < n-1 {
			b.down = nn.NewDownsample2D(out, out, 0)
		}
		m.encDown = append(m.encDown, b)
	}
	m.encMid = newMid(c, boc[n-1])
	m.encNorm = nn.NewGroupNorm(c.NormNumGroups, boc[n-1], 1e-6)
	m.encOut = nn.NewConv2d(boc[n-1], 2*lat, 3, 1, 1, true)
	if c.UseQuantConv {
		m.quant = nn.NewConv2d(2*lat, 2*lat, 1, 1, 0, true)
	}
	if c.UsePostQuantConv {
		m.postQuant = nn.NewConv2d(lat, lat, 1, 1, 0, true)
	}
	m.decIn = nn.NewConv2d(lat, boc[n-1], 3, 1, 1, true)
	m.decMid = newMid(c, boc[n-1])
	out = boc[n-1]
	for i := 0; i < n; i++ {
		prev := out
		out = boc[n-1-i]
		b := &coderBlock{}
		for j := 0; j < c.LayersPerBlock+1; j++ {
			rin := out
			if j == 0 {
				rin = prev
			}
			b.resnets = append(b.resnets, res(rin, out))
		}
		if i < n-1 {
			b.up = nn.NewUpsample2D(out, out)
		}
		m.decUp = append(m.decUp, b)
	}
	m.decNorm = nn.NewGroupNorm(c.NormNumGroups, boc[0], 1e-6)
	m.decOut = nn.NewConv2d(boc[0], c.OutChannels, 3, 1, 1, true)
	return m, nil
}

// Params registers the weights under diffusers' names.
func (m *Model) Params(prefix string, p *nn.Params) {
	m.encIn.Params(prefix+"encoder.conv_in.", p)
	for i, b := range m.encDown {
		bp := nn.Join(prefix+"encoder.down_blocks.", i)
		for j, r := range b.resnets {
			r.Params(nn.Join(bp+"resnets.", j), p)
		}
		if b.down != nil {
			b.down.Params(bp+"downsamplers.0.", p)
		}
	}
	m.encMid.params(prefix+"encoder.mid_block.", p)
	m.encNorm.Params(prefix+"encoder.conv_norm_out.", p)
	m.encOut.Params(prefix+"encoder.conv_out.", p)
	if m.quant != nil {
		m.quant.Params(prefix+"quant_conv.", p)
	}
	if m.postQuant != nil {
		m.postQuant.Params(prefix+"post_quant_conv.", p)
	}
	m.decIn.Params(prefix+"decoder.conv_in.", p)
	m.decMid.params(prefix+"decoder.mid_block.", p)
	for i, b := range m.decUp {
		bp := nn.Join(prefix+"decoder.up_blocks.", i)
		for j, r := range b.resnets {
			r.Params(nn.Join(bp+"resnets.", j), p)
		}
		if b.up != nil {
			b.up.Params(bp+"upsamplers.0.", p)
		}
	}
	m.decNorm.Params(prefix+"decoder.conv_norm_out.", p)
	m.decOut.Params(prefix+"decoder.conv_out.", p)
}

// Posterior is the diagonal Gaussian the encoder predicts.
type Posterior struct {
	Mean, LogVar, Std *tensor.Tensor
}

// Sample draws mean + std·noise (noise shaped like Mean).
func (p *Posterior) Sample(noise *tensor.Tensor) *tensor.Tensor {
	return tensor.Add(p.Mean, tensor.Mul(p.Std, noise))
}

// Encode maps images [B, 3, H, W] in [-1, 1] to the latent distribution.
func (m *Model) Encode(x *tensor.Tensor) (*Posterior, error) {
	if x.Rank() != 4 || x.Dim(1) != m.Cfg.InChannels {
		return nil, fmt.Errorf("vae: image shape %v, want [B, %d, H, W]", x.Shape(), m.Cfg.InChannels)
	}
	return posterior(m.moments(x)), nil
}

// moments runs the encoder and quant_conv: the [B, 2·latent, h, w] mean and
// log-variance, before clamping.
func (m *Model) moments(x *tensor.Tensor) *tensor.Tensor {
	h := m.encIn.Forward(x)
	for _, b := range m.encDown {
		for _, r := range b.resnets {
			h = r.Forward(h, nil)
		}
		if b.down != nil {
			h = b.down.Forward(h)
		}
	}
	h = m.encMid.forward(h)
	h = m.encOut.Forward(tensor.Activation(m.Cfg.ActFn, m.encNorm.Forward(h)))
	if m.quant != nil {
		h = m.quant.Forward(h)
	}
	return h
}

// posterior is diffusers' DiagonalGaussianDistribution of encoder moments.
func posterior(h *tensor.Tensor) *Posterior {
	parts := h.Chunk(2, 1)
	mean := parts[0].Contiguous()
	logvar := tensor.Clamp(parts[1], -30, 20)
	return &Posterior{Mean: mean, LogVar: logvar, Std: tensor.Exp(tensor.Scale(logvar, 0.5))}
}

// Decode maps raw latents [B, latent, h, w] (already divided by the
// scaling factor) to images in about [-1, 1].
func (m *Model) Decode(z *tensor.Tensor) (*tensor.Tensor, error) {
	if z.Rank() != 4 || z.Dim(1) != m.Cfg.LatentChannels {
		return nil, fmt.Errorf("vae: latents shape %v, want [B, %d, h, w]", z.Shape(), m.Cfg.LatentChannels)
	}
	if m.postQuant != nil {
		z = m.postQuant.Forward(z)
	}
	h := m.decIn.Forward(z)
	h = m.decMid.forward(h)
	for _, b := range m.decUp {
		for _, r := range b.resnets {
			h = r.Forward(h, nil)
		}
		if b.up != nil {
			h = b.up.Forward(h, 0, 0)
		}
	}
	h = tensor.Activation(m.Cfg.ActFn, m.decNorm.Forward(h))
	return m.decOut.Forward(h), nil
}

// Normalize maps sampled VAE latents to the space the diffusion model works
// in: (z - shift_factor) * scaling_factor, the shift only where the config
// has one (SD3 and Flux).
func (m *Model) Normalize(z *tensor.Tensor) *tensor.Tensor {
	if m.Cfg.ShiftFactor != nil {
		z = tensor.AddScalar(z, -*m.Cfg.ShiftFactor)
	}
	return tensor.Scale(z, m.Cfg.ScalingFactor)
}

// Denormalize is the inverse of Normalize, applied before Decode:
// z / scaling_factor + shift_factor, divided as diffusers divides.
func (m *Model) Denormalize(z *tensor.Tensor) *tensor.Tensor {
	z = tensor.Div(z, tensor.Scalar(m.Cfg.ScalingFactor))
	if m.Cfg.ShiftFactor != nil {
		z = tensor.AddScalar(z, *m.Cfg.ShiftFactor)
	}
	return z
}
