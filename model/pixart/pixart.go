// Package pixart is diffusers' PixArtTransformer2DModel (PixArt-alpha): a
// text-conditioned diffusion transformer over latent patches with 2-D
// sin-cos positions, adaLN-single timestep modulation (one shared MLP plus
// a learned scale-shift table per block), a caption projection of the T5
// states, masked cross-attention to them, and optional resolution /
// aspect-ratio conditioning.
package pixart

import (
	"encoding/json"
	"fmt"

	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// Config is PixArtTransformer2DModel's config.
type Config struct {
	NumAttentionHeads     int      `json:"num_attention_heads"`
	AttentionHeadDim      int      `json:"attention_head_dim"`
	InChannels            int      `json:"in_channels"`
	OutChannels           int      `json:"out_channels"` // 0: in_channels
	NumLayers             int      `json:"num_layers"`
	CrossAttentionDim     int      `json:"cross_attention_dim"`
	AttentionBias         bool     `json:"attention_bias"`
	SampleSize            int      `json:"sample_size"`
	PatchSize             int      `json:"patch_size"`
	ActivationFn          string   `json:"activation_fn"`
	UpcastAttention       bool     `json:"upcast_attention"`
	NormType              string   `json:"norm_type"`
	NormElementwiseAffine bool     `json:"norm_elementwise_affine"`
	NormEps               float64  `json:"norm_eps"`
	InterpolationScale    *float64 `json:"interpolation_scale"` // nil: max(sample_size/64, 1)
	// UseAdditionalConditions enables the resolution and aspect-ratio
	// embedders; nil means sample_size == 128 (PixArt-alpha 1024px).
	UseAdditionalConditions *bool `json:"use_additional_conditions"`
	CaptionChannels         int   `json:"caption_channels"` // 0: no caption projection
	// NumEmbedsAdaNorm is only checked: diffusers refuses ada_norm_single
	// without it, although adaLN-single does not read it.
	NumEmbedsAdaNorm int `json:"num_embeds_ada_norm"`
	// AttentionType must be "default" (diffusers' only other value,
	// GLIGEN's "gated", is not implemented).
	AttentionType string `json:"attention_type"`
}

// ParseConfig decodes a diffusers config.json with the class defaults for
// absent fields.
func ParseConfig(b []byte) (Config, error) {
	c := Config{NumAttentionHeads: 16, AttentionHeadDim: 72, InChannels: 4, NumLayers: 28, AttentionBias: true,
		SampleSize: 128, PatchSize: 2, ActivationFn: "gelu-approximate", NormType: "ada_norm_single", NormEps: 1e-6,
		AttentionType: "default"}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("pixart: config: %w", err)
	}
	if err := nn.RefuseNulls(b, nonNullable...); err != nil {
		return c, fmt.Errorf("pixart: config: %w", err)
	}
	return c, c.validate()
}

func (c Config) validate() error {
	out := c.OutChannels
	if out == 0 {
		out = c.InChannels
	}
	if err := nn.CheckPositive(nn.Field{Name: "num_attention_heads", Value: c.NumAttentionHeads},
		nn.Field{Name: "attention_head_dim", Value: c.AttentionHeadDim}, nn.Field{Name: "in_channels", Value: c.InChannels},
		nn.Field{Name: "out_channels", Value: out}, nn.Field{Name: "num_layers", Value: c.NumLayers},
		nn.Field{Name: "sample_size", Value: c.SampleSize}, nn.Field{Name: "patch_size", Value: c.PatchSize}); err != nil {
		return fmt.Errorf("pixart: %w", err)
	}
	if c.CrossAttentionDim < 0 || c.CaptionChannels < 0 {
		return fmt.Errorf("pixart: cross_attention_dim %d, caption_channels %d", c.CrossAttentionDim, c.CaptionChannels)
	}
	if c.NormType != "ada_norm_single" {
		return fmt.Errorf("pixart: norm_type %q not supported (PixArtTransformer2DModel implements ada_norm_single only)", c.NormType)
	}
	if c.NumEmbedsAdaNorm <= 0 {
		return fmt.Errorf("pixart: norm_type ada_norm_single needs num_embeds_ada_norm (got %d)", c.NumEmbedsAdaNorm)
	}
	if c.AttentionType != "default" && c.AttentionType != "" {
		return fmt.Errorf("pixart: attention_type %q not supported (want default)", c.AttentionType)
	}
	if c.InterpolationScale != nil && !(*c.InterpolationScale > 0) {
		return fmt.Errorf("pixart: interpolation_scale %v", *c.InterpolationScale)
	}
	if err := nn.CheckFeedForwardActivation(c.ActivationFn); err != nil {
		return fmt.Errorf("pixart: %w", err)
	}
	return nil
}

// nonNullable are the config keys whose upstream default is a value.
var nonNullable = []string{"num_attention_heads", "attention_head_dim", "in_channels", "num_layers", "attention_bias",
	"sample_size", "patch_size", "activation_fn", "upcast_attention", "norm_type", "norm_elementwise_affine",
	"norm_eps", "attention_type"}

// AdditionalConditions reports whether the model embeds resolution and
// aspect ratio.
func (c Config) AdditionalConditions() bool {
	if c.UseAdditionalConditions != nil {
		return *c.UseAdditionalConditions
	}
	return c.SampleSize == 128
}

func (c Config) interpolationScale() float64 {
	if c.InterpolationScale != nil {
		return *c.InterpolationScale
	}
	return float64(max(c.SampleSize/64, 1))
}

// Model is a PixArt-alpha transformer.
type Model struct {
	Cfg               Config
	PosEmbed          *nn.PatchEmbed
	AdaLNSingle       *nn.AdaLayerNormSingle
	CaptionProjection [2]*nn.Linear // linear_1, gelu-tanh, linear_2; nil without caption_channels
	Blocks            []*nn.BasicTransformerBlock
	NormOut           *nn.LayerNorm
	ScaleShiftTable   *tensor.Tensor // [2, D]
	ProjOut           *nn.Linear
}

// New builds an unloaded model from its config.
func New(c Config) (*Model, error) {
	if c.OutChannels == 0 {
		c.OutChannels = c.InChannels
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	d := c.NumAttentionHeads * c.AttentionHeadDim
	m := &Model{Cfg: c,
		PosEmbed:    nn.NewPatchEmbed(c.SampleSize, c.PatchSize, c.InChannels, d, c.interpolationScale()),
		AdaLNSingle: nn.NewAdaLayerNormSingle(d, c.AdditionalConditions()),
		NormOut:     nn.NewLayerNorm(d, 1e-6),
		ProjOut:     nn.NewLinear(d, c.PatchSize*c.PatchSize*c.OutChannels, true)}
	m.NormOut.Affine = false
	if c.CaptionChannels > 0 {
		m.CaptionProjection = [2]*nn.Linear{nn.NewLinear(c.CaptionChannels, d, true), nn.NewLinear(d, d, true)}
	}
	for i := 0; i < c.NumLayers; i++ {
		b, err := nn.NewBasicTransformerBlock(nn.BlockConfig{Dim: d, Heads: c.NumAttentionHeads, HeadDim: c.AttentionHeadDim,
			CrossAttentionDim: c.CrossAttentionDim, AttentionBias: c.AttentionBias, ActivationFn: c.ActivationFn,
			NormType: c.NormType, NormEps: c.NormEps, NormAffine: c.NormElementwiseAffine})
		if err != nil {
			return nil, fmt.Errorf("pixart: %w", err)
		}
		m.Blocks = append(m.Blocks, b)
	}
	return m, nil
}

// Params registers the weights under diffusers' names.
func (m *Model) Params(prefix string, p *nn.Params) {
	m.PosEmbed.Params(prefix+"pos_embed.", p)
	m.AdaLNSingle.Params(prefix+"adaln_single.", p)
	if m.CaptionProjection[0] != nil {
		m.CaptionProjection[0].Params(prefix+"caption_projection.linear_1.", p)
		m.CaptionProjection[1].Params(prefix+"caption_projection.linear_2.", p)
	}
	for i, b := range m.Blocks {
		b.Params(nn.Join(prefix+"transformer_blocks.", i), p)
	}
	p.Add(prefix+"scale_shift_table", []int{2, m.Blocks[0].Cfg.Dim}, &m.ScaleShiftTable)
	m.ProjOut.Params(prefix+"proj_out.", p)
}

// Cond is the conditioning of one forward pass.
type Cond struct {
	// EncoderHiddenStates [B, S, caption_channels] are the text encoder's
	// states; EncoderMask (may be nil) holds B·S values, 1 for tokens to
	// attend to and 0 for padding.
	EncoderHiddenStates *tensor.Tensor
	EncoderMask         []int64
	// Timesteps holds one timestep per sample.
	Timesteps []float32
	// Resolution (h, w per sample) and AspectRatio (one per sample) are
	// read only with additional conditions.
	Resolution, AspectRatio []float32
	// Cache, when set, is the generation's first-block residual cache:
	// the blocks after the first are skipped when it says so.
	Cache *nn.BlockCache
}

// maskedBias is the additive bias diffusers gives masked caption tokens.
const maskedBias = -10000

// Forward predicts from x [B, C, H, W]; the result is [B, OutChannels, H, W].
func (m *Model) Forward(x *tensor.Tensor, cond Cond) (*tensor.Tensor, error) {
	c := m.Cfg
	if x.Rank() != 4 || x.Dim(1) != c.InChannels {
		return nil, fmt.Errorf("pixart: input %v, want [B, %d, H, W]", x.Shape(), c.InChannels)
	}
	b, p := x.Dim(0), c.PatchSize
	if x.Dim(2)%p != 0 || x.Dim(3)%p != 0 {
		return nil, fmt.Errorf("pixart: input %v not divisible into %d×%d patches", x.Shape(), p, p)
	}
	if len(cond.Timesteps) != b {
		return nil, fmt.Errorf("pixart: %d timesteps for batch %d", len(cond.Timesteps), b)
	}
	ehs := cond.EncoderHiddenStates
	if ehs == nil || ehs.Rank() != 3 || ehs.Dim(0) != b {
		return nil, fmt.Errorf("pixart: encoder hidden states must be [%d, S, D]", b)
	}
	s := ehs.Dim(1)
	var mask *tensor.Tensor
	if cond.EncoderMask != nil {
		if len(cond.EncoderMask) != b*s {
			return nil, fmt.Errorf("pixart: %d mask values for %d×%d caption tokens", len(cond.EncoderMask), b, s)
		}
		mask = tensor.Zeros(b, 1, 1, s)
		md := mask.Data()
		for i, v := range cond.EncoderMask {
			md[i] = (1 - float32(v)) * maskedBias
		}
	}
	h, w := x.Dim(2)/p, x.Dim(3)/p
	hs := m.PosEmbed.Forward(x)
	mod, embedded, err := m.AdaLNSingle.Forward(cond.Timesteps, cond.Resolution, cond.AspectRatio)
	if err != nil {
		return nil, fmt.Errorf("pixart: %w", err)
	}
	if m.CaptionProjection[0] != nil {
		ehs = m.CaptionProjection[1].Forward(tensor.GELUTanh(m.CaptionProjection[0].Forward(ehs)))
	}
	bc := nn.BlockCond{Modulation: mod}
	blocks := func(from, to int) func(*tensor.Tensor) (*tensor.Tensor, error) {
		return func(hs *tensor.Tensor) (*tensor.Tensor, error) {
			for _, blk := range m.Blocks[from:to] {
				var err error
				if hs, err = blk.ForwardCond(hs, ehs, mask, bc); err != nil {
					return nil, fmt.Errorf("pixart: %w", err)
				}
			}
			return hs, nil
		}
	}
	if hs, err = cond.Cache.Run(hs, blocks(0, 1), blocks(1, len(m.Blocks))); err != nil {
		return nil, err
	}
	ss := tensor.Add(m.ScaleShiftTable.Unsqueeze(0), embedded.Unsqueeze(1)).Chunk(2, 1)
	hs = m.NormOut.Forward(hs)
	hs = tensor.Add(tensor.Mul(hs, tensor.AddScalar(ss[1], 1)), ss[0])
	hs = m.ProjOut.Forward(hs)
	return nn.Unpatchify(hs, h, w, p, c.OutChannels), nil
}
