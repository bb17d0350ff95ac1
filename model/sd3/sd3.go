// Package sd3 is diffusers' SD3Transformer2DModel (v0.30.3, and v0.31's
// SD3.5 options): the MMDiT of Stable Diffusion 3 and 3.5. Image patches
// and text tokens keep separate weights but attend jointly (image tokens
// first, then text); every block is modulated by adaLN-Zero from one
// conditioning vector (timestep embedding plus the pooled text
// projection); the last block drops the text stream (context_pre_only)
// and an AdaLayerNormContinuous output layer precedes unpatchify.
// Positions are a fixed sin-cos table of pos_embed_max_size² entries (a
// weights-file buffer) from which the image's grid is cropped around the
// centre.
//
// SD3.5 (diffusers >= 0.31) adds two options: qk_norm "rms_norm" puts a
// learned RMSNorm on every head's queries and keys (SD3.5 Large and
// Medium), and dual_attention_layers gives the listed blocks a second,
// image-only self-attention modulated by three more adaLN chunks (SD3.5
// Medium's MMDiT-X).
package sd3

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// Config is SD3Transformer2DModel's config.
type Config struct {
	SampleSize           int `json:"sample_size"`
	PatchSize            int `json:"patch_size"`
	InChannels           int `json:"in_channels"`
	NumLayers            int `json:"num_layers"`
	AttentionHeadDim     int `json:"attention_head_dim"`
	NumAttentionHeads    int `json:"num_attention_heads"`
	JointAttentionDim    int `json:"joint_attention_dim"`
	CaptionProjectionDim int `json:"caption_projection_dim"`
	PooledProjectionDim  int `json:"pooled_projection_dim"`
	OutChannels          int `json:"out_channels"`
	// PosEmbedMaxSize is the side of the stored position table; 0 (null)
	// computes the positions of the image's own grid instead.
	PosEmbedMaxSize int `json:"pos_embed_max_size"`

	// DualAttentionLayers lists the blocks with a second, image-only
	// self-attention (attn2) and SD35AdaLayerNormZeroX as their image norm
	// (SD3.5 Medium: 0..12); empty for SD3 and SD3.5 Large.
	DualAttentionLayers []int `json:"dual_attention_layers,omitempty"`
	// QKNorm is the per-head query/key normalisation: nil (null) for SD3,
	// "rms_norm" for SD3.5.
	QKNorm *string `json:"qk_norm"`
}

// QKNormRMS is the qk_norm value of SD3.5, the one this package implements.
const QKNormRMS = "rms_norm"

// HasQKNorm reports whether the attentions normalise their heads' queries
// and keys (qk_norm "rms_norm").
func (c Config) HasQKNorm() bool { return c.QKNorm != nil }

// DualAttention reports whether block i has the second self-attention.
func (c Config) DualAttention(i int) bool { return slices.Contains(c.DualAttentionLayers, i) }

// Defaults are the constructor defaults (the SD3 medium model).
func Defaults() Config {
	return Config{SampleSize: 128, PatchSize: 2, InChannels: 16, NumLayers: 18, AttentionHeadDim: 64,
		NumAttentionHeads: 18, JointAttentionDim: 4096, CaptionProjectionDim: 1152, PooledProjectionDim: 2048,
		OutChannels: 16, PosEmbedMaxSize: 96}
}

// ParseConfig decodes a diffusers transformer/config.json, with the class
// defaults for absent keys, and validates it.
func ParseConfig(b []byte) (Config, error) {
	c := Defaults()
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("sd3: config: %w", err)
	}
	// Explicit nulls decode as zero: out_channels null means in_channels.
	if c.OutChannels == 0 {
		c.OutChannels = c.InChannels
	}
	return c, c.Validate()
}

// InnerDim is the model width, heads × head dim.
func (c Config) InnerDim() int { return c.NumAttentionHeads * c.AttentionHeadDim }

// Validate reports a config this package cannot build.
func (c Config) Validate() error {
	for _, v := range []struct {
		name string
		n    int
	}{{"sample_size", c.SampleSize}, {"patch_size", c.PatchSize}, {"in_channels", c.InChannels},
		{"num_layers", c.NumLayers}, {"attention_head_dim", c.AttentionHeadDim},
		{"num_attention_heads", c.NumAttentionHeads}, {"joint_attention_dim", c.JointAttentionDim},
		{"pooled_projection_dim", c.PooledProjectionDim}, {"out_channels", c.OutChannels}} {
		if v.n <= 0 {
			return fmt.Errorf("sd3: config %s must be positive, got %d", v.name, v.n)
		}
	}
	if c.PosEmbedMaxSize < 0 {
		return fmt.Errorf("sd3: config pos_embed_max_size must not be negative, got %d", c.PosEmbedMaxSize)
	}
	if c.CaptionProjectionDim != c.InnerDim() {
		return fmt.Errorf("sd3: caption_projection_dim %d must equal num_attention_heads × attention_head_dim = %d (the text stream shares the model width)",
			c.CaptionProjectionDim, c.InnerDim())
	}
	return c.validateSD35()
}

// validateSD35 checks the SD3.5 keys: qk_norm null or "rms_norm" (the
// other norms diffusers' Attention knows are used by no SD3 model), and
// dual attention layers that are blocks of the model.
func (c Config) validateSD35() error {
	if c.QKNorm != nil && *c.QKNorm != QKNormRMS {
		return fmt.Errorf("sd3: config qk_norm %q is not supported (want null or %q)", *c.QKNorm, QKNormRMS)
	}
	for _, l := range c.DualAttentionLayers {
		if l < 0 || l >= c.NumLayers {
			return fmt.Errorf("sd3: config dual_attention_layers %v: layer %d is not one of the %d blocks (0..%d)",
				c.DualAttentionLayers, l, c.NumLayers, c.NumLayers-1)
		}
	}
	return nil
}

// Model is an SD3Transformer2DModel.
type Model struct {
	Cfg Config
	// Patch is pos_embed: the patch projection (and, without
	// pos_embed_max_size, the computed positions).
	Patch *nn.PatchEmbed
	// PosTable is the persistent buffer pos_embed.pos_embed
	// [1, M·M, D] (nil without pos_embed_max_size).
	PosTable *tensor.Tensor

	TimestepEmbedder *nn.TimestepEmbedding // time_text_embed.timestep_embedder
	TextEmbedder     *nn.TimestepEmbedding // time_text_embed.text_embedder (same layout)
	ContextEmbedder  *nn.Linear
	Blocks           []*JointBlock
	NormOut          *AdaLayerNormContinuous
	ProjOut          *nn.Linear
}

// timestepChannels is the width of CombinedTimestepTextProjEmbeddings'
// sinusoidal timestep projection.
const timestepChannels = 256

// New builds an unloaded model.
func New(c Config) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	d := c.InnerDim()
	m := &Model{Cfg: c,
		Patch:            nn.NewPatchEmbed(c.SampleSize, c.PatchSize, c.InChannels, d, 1),
		TimestepEmbedder: nn.NewTimestepEmbedding(timestepChannels, d, 0, 0, "silu"),
		TextEmbedder:     nn.NewTimestepEmbedding(c.PooledProjectionDim, d, 0, 0, "silu"),
		ContextEmbedder:  nn.NewLinear(c.JointAttentionDim, c.CaptionProjectionDim, true),
		NormOut:          NewAdaLayerNormContinuous(d),
		ProjOut:          nn.NewLinear(d, c.PatchSize*c.PatchSize*c.OutChannels, true),
	}
	m.Patch.NoPositions = c.PosEmbedMaxSize > 0
	for i := 0; i < c.NumLayers; i++ {
		m.Blocks = append(m.Blocks, NewJointBlock(d, c.NumAttentionHeads, BlockOptions{ContextPreOnly: i == c.NumLayers-1,
			QKNorm: c.HasQKNorm(), DualAttention: c.DualAttention(i)}))
	}
	return m, nil
}

// Params registers the weights under diffusers' state_dict names.
func (m *Model) Params(prefix string, p *nn.Params) {
	m.Patch.Params(prefix+"pos_embed.", p)
	if n := m.Cfg.PosEmbedMaxSize; n > 0 {
		p.Add(prefix+"pos_embed.pos_embed", []int{1, n * n, m.Cfg.InnerDim()}, &m.PosTable)
	}
	m.TimestepEmbedder.Params(prefix+"time_text_embed.timestep_embedder.", p)
	m.TextEmbedder.Params(prefix+"time_text_embed.text_embedder.", p)
	m.ContextEmbedder.Params(prefix+"context_embedder.", p)
	for i, b := range m.Blocks {
		b.Params(nn.Join(prefix+"transformer_blocks.", i), p)
	}
	m.NormOut.Params(prefix+"norm_out.", p)
	m.ProjOut.Params(prefix+"proj_out.", p)
}

// CroppedPosEmbed is PatchEmbed.cropped_pos_embed for a latent of h×w
// pixels: the (h/p)×(w/p) centre of the position table, [1, N, D], top
// row (M - h/p)/2 and left column (M - w/p)/2 (rounded down).
func (m *Model) CroppedPosEmbed(h, w int) (*tensor.Tensor, error) {
	M, p, d := m.Cfg.PosEmbedMaxSize, m.Cfg.PatchSize, m.Cfg.InnerDim()
	if M <= 0 {
		return nil, fmt.Errorf("sd3: cropping positions needs pos_embed_max_size")
	}
	if m.PosTable == nil {
		return nil, fmt.Errorf("sd3: position table pos_embed.pos_embed is not loaded")
	}
	gh, gw := h/p, w/p
	if gh > M || gw > M {
		return nil, fmt.Errorf("sd3: a %dx%d latent has a %dx%d patch grid, larger than pos_embed_max_size %d", h, w, gh, gw, M)
	}
	top, left := (M-gh)/2, (M-gw)/2
	grid := m.PosTable.Reshape(M, M, d).Narrow(0, top, gh).Narrow(1, left, gw)
	return grid.Float32().Contiguous().Reshape(1, gh*gw, d), nil
}

// TimeTextEmbed is time_text_embed: the conditioning [B, D] =
// timestep_embedder(sinusoid(t)) + text_embedder(pooled), for timesteps in
// [0, num_train_timesteps] and pooled projections [B, pooled_projection_dim].
func (m *Model) TimeTextEmbed(timesteps []float32, pooled *tensor.Tensor) (*tensor.Tensor, error) {
	if pooled.Rank() != 2 || pooled.Dim(0) != len(timesteps) || pooled.Dim(1) != m.Cfg.PooledProjectionDim {
		return nil, fmt.Errorf("sd3: pooled projections %v for %d timesteps, want [%d, %d]",
			pooled.Shape(), len(timesteps), len(timesteps), m.Cfg.PooledProjectionDim)
	}
	proj := tensor.TimestepEmbedding(timesteps, timestepChannels, true, 0, 1, 10000)
	return tensor.Add(m.TimestepEmbedder.Forward(proj, nil), m.TextEmbedder.Forward(pooled, nil)), nil
}

// Forward predicts the flow velocity for latents x [B, C, H, W] given the
// text states context [B, L, joint_attention_dim], pooled projections
// [B, pooled_projection_dim] and one timestep per sample (in
// [0, num_train_timesteps]); the result is [B, out_channels, H, W].
func (m *Model) Forward(x, context, pooled *tensor.Tensor, timesteps []float32) (*tensor.Tensor, error) {
	c := m.Cfg
	if x.Rank() != 4 || x.Dim(1) != c.InChannels {
		return nil, fmt.Errorf("sd3: latents %v, want [B, %d, H, W]", x.Shape(), c.InChannels)
	}
	b, h, w, p := x.Dim(0), x.Dim(2), x.Dim(3), c.PatchSize
	if h%p != 0 || w%p != 0 {
		return nil, fmt.Errorf("sd3: latents %v not divisible into %d×%d patches", x.Shape(), p, p)
	}
	if context.Rank() != 3 || context.Dim(0) != b || context.Dim(2) != c.JointAttentionDim {
		return nil, fmt.Errorf("sd3: text states %v, want [%d, L, %d]", context.Shape(), b, c.JointAttentionDim)
	}
	temb, err := m.TimeTextEmbed(timesteps, pooled)
	if err != nil {
		return nil, err
	}
	hs, err := m.embedPatches(x)
	if err != nil {
		return nil, err
	}
	ctx := m.ContextEmbedder.Forward(context)
	for _, blk := range m.Blocks {
		ctx, hs = blk.Forward(hs, ctx, temb)
	}
	hs = m.ProjOut.Forward(m.NormOut.Forward(hs, temb))
	return nn.Unpatchify(hs, h/p, w/p, p, c.OutChannels), nil
}

// embedPatches is pos_embed's forward: patch tokens [B, N, D] plus the
// cropped (or computed) positions.
func (m *Model) embedPatches(x *tensor.Tensor) (*tensor.Tensor, error) {
	hs := m.Patch.Forward(x)
	if m.Cfg.PosEmbedMaxSize <= 0 {
		return hs, nil
	}
	pos, err := m.CroppedPosEmbed(x.Dim(2), x.Dim(3))
	if err != nil {
		return nil, err
	}
	return tensor.Add(hs, pos), nil
}
