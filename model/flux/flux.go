// Package flux is diffusers' FluxTransformer2DModel (FLUX.1): a rectified
// flow transformer over packed latent tokens (2×2 latent patches of 16
// channels = 64 features per token) and T5 text tokens. Double-stream
// blocks keep separate weights for text and image tokens around a joint
// attention; single-stream blocks process the concatenated sequence.
// Positions are 3-axis rotary embeddings of per-token ids; the
// conditioning is the timestep, the pooled CLIP embedding and, for the
// guidance-distilled FLUX.1-dev (guidance_embeds), the guidance scale.
package flux

import (
	"encoding/json"
	"fmt"

	"github.com/diffuse-go/diffuse/model/hunyuan"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// Config is FluxTransformer2DModel's config.
type Config struct {
	PatchSize           int   `json:"patch_size"`
	InChannels          int   `json:"in_channels"`
	OutChannels         int   `json:"out_channels"` // 0 (null): in_channels
	NumLayers           int   `json:"num_layers"`
	NumSingleLayers     int   `json:"num_single_layers"`
	AttentionHeadDim    int   `json:"attention_head_dim"`
	NumAttentionHeads   int   `json:"num_attention_heads"`
	JointAttentionDim   int   `json:"joint_attention_dim"`
	PooledProjectionDim int   `json:"pooled_projection_dim"`
	GuidanceEmbeds      bool  `json:"guidance_embeds"`
	AxesDimsRope        []int `json:"axes_dims_rope"`
}

// ParseConfig decodes a diffusers config.json with the class defaults (the
// FLUX.1 sizes) for absent fields.
func ParseConfig(b []byte) (Config, error) {
	c := Config{PatchSize: 1, InChannels: 64, NumLayers: 19, NumSingleLayers: 38, AttentionHeadDim: 128,
		NumAttentionHeads: 24, JointAttentionDim: 4096, PooledProjectionDim: 768, AxesDimsRope: []int{16, 56, 56}}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("flux: config: %w", err)
	}
	if c.OutChannels == 0 {
		c.OutChannels = c.InChannels
	}
	return c, c.validate()
}

func (c Config) validate() error {
	if c.PatchSize <= 0 || c.InChannels <= 0 || c.OutChannels <= 0 || c.NumLayers < 0 || c.NumSingleLayers < 0 ||
		c.AttentionHeadDim <= 0 || c.NumAttentionHeads <= 0 || c.JointAttentionDim <= 0 || c.PooledProjectionDim <= 0 {
		return fmt.Errorf("flux: config has a non-positive size: %+v", c)
	}
	sum := 0
	for _, d := range c.AxesDimsRope {
		if d <= 0 || d%2 != 0 {
			return fmt.Errorf("flux: axes_dims_rope %v: every axis width must be positive and even", c.AxesDimsRope)
		}
		sum += d
	}
	if sum != c.AttentionHeadDim {
		return fmt.Errorf("flux: axes_dims_rope %v sums to %d, attention_head_dim is %d", c.AxesDimsRope, sum, c.AttentionHeadDim)
	}
	return nil
}

// InnerDim is the transformer width, heads · head dim.
func (c Config) InnerDim() int { return c.NumAttentionHeads * c.AttentionHeadDim }

// Model is a Flux transformer.
type Model struct {
	Cfg             Config
	TimeTextEmbed   *TimeTextEmbed
	ContextEmbedder *nn.Linear
	XEmbedder       *nn.Linear
	Blocks          []*TransformerBlock
	SingleBlocks    []*SingleTransformerBlock
	NormOut         *hunyuan.AdaLayerNormContinuous
	ProjOut         *nn.Linear
}

// New builds an unloaded model from its config.
func New(c Config) (*Model, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	d, h, hd := c.InnerDim(), c.NumAttentionHeads, c.AttentionHeadDim
	m := &Model{Cfg: c,
		TimeTextEmbed:   NewTimeTextEmbed(d, c.PooledProjectionDim, c.GuidanceEmbeds),
		ContextEmbedder: nn.NewLinear(c.JointAttentionDim, d, true),
		XEmbedder:       nn.NewLinear(c.InChannels, d, true),
		NormOut:         hunyuan.NewAdaLayerNormContinuous(d, d, normEps),
		ProjOut:         nn.NewLinear(d, c.PatchSize*c.PatchSize*c.OutChannels, true)}
	for i := 0; i < c.NumLayers; i++ {
		m.Blocks = append(m.Blocks, NewTransformerBlock(d, h, hd))
	}
	for i := 0; i < c.NumSingleLayers; i++ {
		m.SingleBlocks = append(m.SingleBlocks, NewSingleTransformerBlock(d, h, hd))
	}
	return m, nil
}

// Params registers the weights under diffusers' names.
func (m *Model) Params(prefix string, p *nn.Params) {
	m.TimeTextEmbed.Params(prefix+"time_text_embed.", p)
	m.ContextEmbedder.Params(prefix+"context_embedder.", p)
	m.XEmbedder.Params(prefix+"x_embedder.", p)
	for i, b := range m.Blocks {
		b.Params(nn.Join(prefix+"transformer_blocks.", i), p)
	}
	for i, b := range m.SingleBlocks {
		b.Params(nn.Join(prefix+"single_transformer_blocks.", i), p)
	}
	m.NormOut.Params(prefix+"norm_out.", p)
	m.ProjOut.Params(prefix+"proj_out.", p)
}

// Cond is the conditioning of one forward pass.
type Cond struct {
	// EncoderHiddenStates [B, L, joint_attention_dim] are the T5 states.
	EncoderHiddenStates *tensor.Tensor
	// PooledProjections [B, pooled_projection_dim] is the pooled CLIP
	// embedding.
	PooledProjections *tensor.Tensor
	// Timesteps holds one sigma in [0, 1] per sample (the model scales it
	// by 1000).
	Timesteps []float32
	// Guidance holds the guidance scale per sample; read only with
	// guidance_embeds (scaled by 1000 as well).
	Guidance []float32
	// TxtIDs [B, L, 3] (or [L, 3]) and ImgIDs [B, N, 3] (or [N, 3]) are the
	// rotary position ids of the text and image tokens.
	TxtIDs, ImgIDs *tensor.Tensor
}

// scale1000 multiplies by 1000 in float32, as the model does.
func scale1000(v []float32) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = x * 1000
	}
	return out
}

// Embed returns the conditioning [B, D] (time_text_embed) for the given
// timesteps and guidance in the model's scale (already ×1000).
func (m *Model) Embed(timesteps, guidance []float32, pooled *tensor.Tensor) (*tensor.Tensor, error) {
	return m.TimeTextEmbed.Forward(timesteps, guidance, pooled)
}

// PosIDs concatenates text and image ids along the sequence ([B, L+N, n]
// or [L+N, n]), the input of RotaryTable.
func PosIDs(txt, img *tensor.Tensor) (*tensor.Tensor, error) {
	if txt == nil || img == nil || txt.Rank() != img.Rank() || (txt.Rank() != 2 && txt.Rank() != 3) ||
		txt.Dim(-1) != img.Dim(-1) || (txt.Rank() == 3 && txt.Dim(0) != img.Dim(0)) {
		return nil, fmt.Errorf("flux: text ids and image ids must both be [B, ·, n] or [·, n]")
	}
	return tensor.Concat(txt.Rank()-2, txt, img), nil
}

// checkInputs validates the shapes of x and cond against the config.
func (m *Model) checkInputs(x *tensor.Tensor, cond Cond) error {
	c := m.Cfg
	if x == nil || x.Rank() != 3 || x.Dim(2) != c.InChannels {
		return fmt.Errorf("flux: hidden states must be [B, N, %d] packed latents", c.InChannels)
	}
	b, n := x.Dim(0), x.Dim(1)
	ehs := cond.EncoderHiddenStates
	if ehs == nil || ehs.Rank() != 3 || ehs.Dim(0) != b || ehs.Dim(2) != c.JointAttentionDim {
		return fmt.Errorf("flux: encoder hidden states must be [%d, L, %d]", b, c.JointAttentionDim)
	}
	if len(cond.Timesteps) != b {
		return fmt.Errorf("flux: %d timesteps for batch %d", len(cond.Timesteps), b)
	}
	for _, ids := range []struct {
		name string
		t    *tensor.Tensor
		l    int
	}{{"text", cond.TxtIDs, ehs.Dim(1)}, {"image", cond.ImgIDs, n}} {
		if ids.t == nil || ids.t.Dim(-1) != len(c.AxesDimsRope) || ids.t.Dim(-2) != ids.l ||
			(ids.t.Rank() == 3 && ids.t.Dim(0) != b) || (ids.t.Rank() != 2 && ids.t.Rank() != 3) {
			return fmt.Errorf("flux: %s ids must be [%d, %d, %d] or [%d, %d]", ids.name, b, ids.l, len(c.AxesDimsRope), ids.l, len(c.AxesDimsRope))
		}
	}
	return nil
}

// Forward predicts the flow for the packed latents x [B, N, in_channels];
// the result is [B, N, patch²·out_channels].
func (m *Model) Forward(x *tensor.Tensor, cond Cond) (*tensor.Tensor, error) {
	if err := m.checkInputs(x, cond); err != nil {
		return nil, err
	}
	var guidance []float32
	if m.TimeTextEmbed.GuidanceEmbedder != nil {
		guidance = scale1000(cond.Guidance)
	}
	temb, err := m.Embed(scale1000(cond.Timesteps), guidance, cond.PooledProjections)
	if err != nil {
		return nil, err
	}
	ids, err := PosIDs(cond.TxtIDs, cond.ImgIDs)
	if err != nil {
		return nil, err
	}
	table, err := RotaryTable(ids, m.Cfg.AxesDimsRope)
	if err != nil {
		return nil, err
	}
	rot := rotaryFromTable(table)
	h := m.XEmbedder.Forward(x)
	c := m.ContextEmbedder.Forward(cond.EncoderHiddenStates)
	for _, b := range m.Blocks {
		h, c = b.Forward(h, c, temb, rot)
	}
	l, n := c.Dim(1), h.Dim(1)
	h = tensor.Concat(1, c, h)
	for _, b := range m.SingleBlocks {
		h = b.Forward(h, temb, rot)
	}
	h = h.Narrow(1, l, n)
	return m.ProjOut.Forward(m.NormOut.Forward(h, temb)), nil
}
