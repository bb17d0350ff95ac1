// Package dit is diffusers' DiTTransformer2DModel: a class-conditional
// diffusion transformer over latent patches (patchify with 2-D sin-cos
// positions, adaLN-Zero blocks conditioned on timestep and class label, a
// modulated output layer, unpatchify). With learned sigma the output has
// twice the input channels: noise prediction first, variance values after.
package dit

import (
	"encoding/json"
	"fmt"

	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// Config is DiTTransformer2DModel's config.
type Config struct {
	NumAttentionHeads     int     `json:"num_attention_heads"`
	AttentionHeadDim      int     `json:"attention_head_dim"`
	InChannels            int     `json:"in_channels"`
	OutChannels           int     `json:"out_channels"` // 0: in_channels
	NumLayers             int     `json:"num_layers"`
	AttentionBias         bool    `json:"attention_bias"`
	SampleSize            int     `json:"sample_size"`
	PatchSize             int     `json:"patch_size"`
	ActivationFn          string  `json:"activation_fn"`
	NumEmbedsAdaNorm      int     `json:"num_embeds_ada_norm"`
	UpcastAttention       bool    `json:"upcast_attention"`
	NormType              string  `json:"norm_type"`
	NormElementwiseAffine bool    `json:"norm_elementwise_affine"`
	NormEps               float64 `json:"norm_eps"`
}

// ParseConfig decodes a diffusers config.json with the class defaults for
// absent fields.
func ParseConfig(b []byte) (Config, error) {
	c := Config{NumAttentionHeads: 16, AttentionHeadDim: 72, InChannels: 4, NumLayers: 28, AttentionBias: true,
		SampleSize: 32, PatchSize: 2, ActivationFn: "gelu-approximate", NumEmbedsAdaNorm: 1000,
		NormType: "ada_norm_zero", NormEps: 1e-5}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("dit: config: %w", err)
	}
	if err := nn.RefuseNulls(b, nonNullable...); err != nil {
		return c, fmt.Errorf("dit: config: %w", err)
	}
	if c.OutChannels == 0 {
		c.OutChannels = c.InChannels
	}
	return c, c.validate()
}

func (c Config) validate() error {
	if err := nn.CheckPositive(nn.Field{Name: "num_attention_heads", Value: c.NumAttentionHeads},
		nn.Field{Name: "attention_head_dim", Value: c.AttentionHeadDim}, nn.Field{Name: "in_channels", Value: c.InChannels},
		nn.Field{Name: "out_channels", Value: c.OutChannels}, nn.Field{Name: "num_layers", Value: c.NumLayers},
		nn.Field{Name: "sample_size", Value: c.SampleSize}, nn.Field{Name: "patch_size", Value: c.PatchSize}); err != nil {
		return fmt.Errorf("dit: %w", err)
	}
	if c.NormType != "ada_norm_zero" {
		return fmt.Errorf("dit: norm_type %q not supported (DiTTransformer2DModel implements ada_norm_zero only)", c.NormType)
	}
	if c.NumEmbedsAdaNorm <= 0 {
		return fmt.Errorf("dit: norm_type ada_norm_zero needs num_embeds_ada_norm (got %d)", c.NumEmbedsAdaNorm)
	}
	if err := nn.CheckFeedForwardActivation(c.ActivationFn); err != nil {
		return fmt.Errorf("dit: %w", err)
	}
	return nil
}

// nonNullable are the config keys whose upstream default is a value.
var nonNullable = []string{"num_attention_heads", "attention_head_dim", "in_channels", "num_layers", "attention_bias",
	"sample_size", "patch_size", "activation_fn", "num_embeds_ada_norm", "upcast_attention", "norm_type",
	"norm_elementwise_affine", "norm_eps"}

// Model is a DiT transformer.
type Model struct {
	Cfg      Config
	PosEmbed *nn.PatchEmbed
	Blocks   []*nn.BasicTransformerBlock
	NormOut  *nn.LayerNorm
	ProjOut1 *nn.Linear
	ProjOut2 *nn.Linear
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
	m := &Model{Cfg: c, PosEmbed: nn.NewPatchEmbed(c.SampleSize, c.PatchSize, c.InChannels, d, 1),
		NormOut: nn.NewLayerNorm(d, 1e-6), ProjOut1: nn.NewLinear(d, 2*d, true),
		ProjOut2: nn.NewLinear(d, c.PatchSize*c.PatchSize*c.OutChannels, true)}
	m.NormOut.Affine = false
	for i := 0; i < c.NumLayers; i++ {
		b, err := nn.NewBasicTransformerBlock(nn.BlockConfig{Dim: d, Heads: c.NumAttentionHeads, HeadDim: c.AttentionHeadDim,
			AttentionBias: c.AttentionBias, ActivationFn: c.ActivationFn, NormType: c.NormType, NormEps: c.NormEps,
			NormAffine: c.NormElementwiseAffine, NumEmbedsAdaNorm: c.NumEmbedsAdaNorm})
		if err != nil {
			return nil, fmt.Errorf("dit: %w", err)
		}
		m.Blocks = append(m.Blocks, b)
	}
	return m, nil
}

// Params registers the weights under diffusers' names.
func (m *Model) Params(prefix string, p *nn.Params) {
	m.PosEmbed.Params(prefix+"pos_embed.", p)
	for i, b := range m.Blocks {
		b.Params(nn.Join(prefix+"transformer_blocks.", i), p)
	}
	m.ProjOut1.Params(prefix+"proj_out_1.", p)
	m.ProjOut2.Params(prefix+"proj_out_2.", p)
}

// NullClass is the label of the unconditional (classifier-free guidance)
// embedding: the extra last row of the label table.
func (m *Model) NullClass() int64 { return int64(m.Cfg.NumEmbedsAdaNorm) }

// Forward predicts from x [B, C, H, W] at one timestep and one class label
// per sample; the result is [B, OutChannels, H, W].
func (m *Model) Forward(x *tensor.Tensor, timesteps []float32, labels []int64) (*tensor.Tensor, error) {
	return m.ForwardCached(x, timesteps, labels, nil)
}

// ForwardCached is Forward with a first-block residual cache: when cache
// says so, the blocks after the first are skipped and their residual of
// the last full step added. A nil cache is Forward.
func (m *Model) ForwardCached(x *tensor.Tensor, timesteps []float32, labels []int64, cache *nn.BlockCache) (*tensor.Tensor, error) {
	c := m.Cfg
	if x.Rank() != 4 || x.Dim(1) != c.InChannels {
		return nil, fmt.Errorf("dit: input %v, want [B, %d, H, W]", x.Shape(), c.InChannels)
	}
	b, p := x.Dim(0), c.PatchSize
	if x.Dim(2)%p != 0 || x.Dim(3)%p != 0 {
		return nil, fmt.Errorf("dit: input %v not divisible into %d×%d patches", x.Shape(), p, p)
	}
	if len(timesteps) != b || len(labels) != b {
		return nil, fmt.Errorf("dit: %d timesteps and %d labels for batch %d", len(timesteps), len(labels), b)
	}
	h, w := x.Dim(2)/p, x.Dim(3)/p
	hs := m.PosEmbed.Forward(x)
	cond := nn.BlockCond{Timesteps: timesteps, ClassLabels: labels}
	blocks := func(from, to int) func(*tensor.Tensor) (*tensor.Tensor, error) {
		return func(hs *tensor.Tensor) (*tensor.Tensor, error) {
			for _, blk := range m.Blocks[from:to] {
				var err error
				if hs, err = blk.ForwardCond(hs, nil, nil, cond); err != nil {
					return nil, fmt.Errorf("dit: %w", err)
				}
			}
			return hs, nil
		}
	}
	hs, err := cache.Run(hs, blocks(0, 1), blocks(1, len(m.Blocks)))
	if err != nil {
		return nil, err
	}
	// The output layer is conditioned by the first block's embedder.
	emb, err := m.Blocks[0].Norm1Zero.Emb.Forward(timesteps, labels)
	if err != nil {
		return nil, fmt.Errorf("dit: %w", err)
	}
	ss := m.ProjOut1.Forward(tensor.SiLU(emb)).Unsqueeze(1).Chunk(2, 2)
	hs = m.NormOut.Forward(hs)
	hs = tensor.Add(tensor.Mul(hs, tensor.AddScalar(ss[1], 1)), ss[0])
	hs = m.ProjOut2.Forward(hs)
	return nn.Unpatchify(hs, h, w, p, c.OutChannels), nil
}
