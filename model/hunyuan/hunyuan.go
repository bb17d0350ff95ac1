// Package hunyuan is diffusers' HunyuanDiT2DModel (Hunyuan-DiT): a
// diffusion transformer over latent patches conditioned on two text
// streams (CLIP/BERT-like states and mT5 states projected to the same
// width, concatenated, with masked positions replaced by learned padding
// rows), a timestep embedding combined with attention-pooled T5 states,
// image-meta sizes and a style id, 2-D rotary positions on the image
// tokens, query/key layer norms, and long skip connections from the first
// half of the blocks to the second.
package hunyuan

import (
	"encoding/json"
	"fmt"

	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// Config is HunyuanDiT2DModel's config.
type Config struct {
	NumAttentionHeads       int     `json:"num_attention_heads"`
	AttentionHeadDim        int     `json:"attention_head_dim"`
	InChannels              int     `json:"in_channels"`
	PatchSize               int     `json:"patch_size"`
	ActivationFn            string  `json:"activation_fn"`
	SampleSize              int     `json:"sample_size"`
	HiddenSize              int     `json:"hidden_size"`
	NumLayers               int     `json:"num_layers"`
	MLPRatio                float64 `json:"mlp_ratio"`
	LearnSigma              bool    `json:"learn_sigma"`
	CrossAttentionDim       int     `json:"cross_attention_dim"`
	NormType                string  `json:"norm_type"`
	CrossAttentionDimT5     int     `json:"cross_attention_dim_t5"`
	PooledProjectionDim     int     `json:"pooled_projection_dim"`
	TextLen                 int     `json:"text_len"`
	TextLenT5               int     `json:"text_len_t5"`
	UseStyleCondAndMetaSize bool    `json:"use_style_cond_and_image_meta_size"`
}

// ParseConfig decodes a diffusers config.json with the class defaults for
// absent fields.
func ParseConfig(b []byte) (Config, error) {
	c := Config{NumAttentionHeads: 16, AttentionHeadDim: 88, ActivationFn: "gelu-approximate", SampleSize: 32,
		HiddenSize: 1152, NumLayers: 28, MLPRatio: 4, LearnSigma: true, CrossAttentionDim: 1024, NormType: "layer_norm",
		CrossAttentionDimT5: 2048, PooledProjectionDim: 1024, TextLen: 77, TextLenT5: 256, UseStyleCondAndMetaSize: true}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("hunyuan: config: %w", err)
	}
	// in_channels and patch_size default to None upstream, which fails
	// there: here absent they stay 0, which validate refuses.
	if err := nn.RefuseNulls(b, "in_channels", "patch_size", "num_attention_heads", "attention_head_dim", "activation_fn", "sample_size", "hidden_size",
		"num_layers", "mlp_ratio", "learn_sigma", "cross_attention_dim", "norm_type", "cross_attention_dim_t5",
		"pooled_projection_dim", "text_len", "text_len_t5", "use_style_cond_and_image_meta_size"); err != nil {
		return c, fmt.Errorf("hunyuan: config: %w", err)
	}
	return c, c.validate()
}

func (c Config) validate() error {
	if err := nn.CheckPositive(nn.Field{Name: "num_attention_heads", Value: c.NumAttentionHeads},
		nn.Field{Name: "attention_head_dim", Value: c.AttentionHeadDim}, nn.Field{Name: "in_channels", Value: c.InChannels},
		nn.Field{Name: "patch_size", Value: c.PatchSize}, nn.Field{Name: "num_layers", Value: c.NumLayers},
		nn.Field{Name: "cross_attention_dim", Value: c.CrossAttentionDim}, nn.Field{Name: "cross_attention_dim_t5", Value: c.CrossAttentionDimT5},
		nn.Field{Name: "pooled_projection_dim", Value: c.PooledProjectionDim}, nn.Field{Name: "text_len_t5", Value: c.TextLenT5},
		nn.Field{Name: "sample_size", Value: c.SampleSize}); err != nil {
		return fmt.Errorf("hunyuan: %w", err)
	}
	if c.TextLen < 0 {
		return fmt.Errorf("hunyuan: text_len %d", c.TextLen)
	}
	if inner := int(float64(c.InnerDim()) * c.MLPRatio); inner <= 0 {
		return fmt.Errorf("hunyuan: mlp_ratio %v gives a feed-forward width of %d", c.MLPRatio, inner)
	}
	if err := nn.CheckFeedForwardActivation(c.ActivationFn); err != nil {
		return fmt.Errorf("hunyuan: %w", err)
	}
	if c.HiddenSize != c.InnerDim() {
		return fmt.Errorf("hunyuan: hidden_size %d must equal num_attention_heads·attention_head_dim = %d", c.HiddenSize, c.InnerDim())
	}
	if c.NumLayers%2 != 0 {
		return fmt.Errorf("hunyuan: num_layers %d must be even (long skips pair the two halves)", c.NumLayers)
	}
	if c.CrossAttentionDimT5%poolerHeads != 0 {
		return fmt.Errorf("hunyuan: cross_attention_dim_t5 %d not divisible by the pooler's %d heads", c.CrossAttentionDimT5, poolerHeads)
	}
	if c.NormType != "layer_norm" {
		return fmt.Errorf("hunyuan: norm_type %q not supported (want layer_norm)", c.NormType)
	}
	return nil
}

// InnerDim is the transformer width, heads · head dim.
func (c Config) InnerDim() int { return c.NumAttentionHeads * c.AttentionHeadDim }

// OutChannels is in_channels, doubled when the model learns sigma.
func (c Config) OutChannels() int {
	if c.LearnSigma {
		return 2 * c.InChannels
	}
	return c.InChannels
}

// Model is a Hunyuan-DiT transformer.
type Model struct {
	Cfg          Config
	TextEmbedder *TextProjection
	// TextEmbeddingPadding [text_len + text_len_t5, cross_attention_dim]
	// replaces the text states at masked positions.
	TextEmbeddingPadding *tensor.Tensor
	PosEmbed             *nn.PatchEmbed
	TimeExtraEmb         *TimestepTextSizeStyleEmbedding
	Blocks               []*nn.HunyuanDiTBlock
	NormOut              *AdaLayerNormContinuous
	ProjOut              *nn.Linear
}

// New builds an unloaded model from its config.
func New(c Config) (*Model, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	d := c.InnerDim()
	pe := nn.NewPatchEmbed(c.SampleSize, c.PatchSize, c.InChannels, c.HiddenSize, 1)
	pe.NoPositions = true
	m := &Model{Cfg: c,
		TextEmbedder: NewTextProjection(c.CrossAttentionDimT5, 4*c.CrossAttentionDimT5, c.CrossAttentionDim, "silu"),
		PosEmbed:     pe,
		TimeExtraEmb: NewTimestepTextSizeStyleEmbedding(c.HiddenSize, c.PooledProjectionDim, c.TextLenT5, c.CrossAttentionDimT5,
			c.UseStyleCondAndMetaSize),
		NormOut: NewAdaLayerNormContinuous(d, d, 1e-6),
		ProjOut: nn.NewLinear(d, c.PatchSize*c.PatchSize*c.OutChannels(), true)}
	for i := 0; i < c.NumLayers; i++ {
		b, err := nn.NewHunyuanDiTBlock(nn.HunyuanBlockConfig{Dim: d, Heads: c.NumAttentionHeads,
			CrossAttentionDim: c.CrossAttentionDim, ActivationFn: c.ActivationFn, NormAffine: true, NormEps: 1e-6,
			FFInnerDim: int(float64(d) * c.MLPRatio), Skip: m.takesSkip(i)})
		if err != nil {
			return nil, fmt.Errorf("hunyuan: %w", err)
		}
		m.Blocks = append(m.Blocks, b)
	}
	return m, nil
}

// takesSkip reports whether block i merges a long skip (the blocks after
// the middle one).
func (m *Model) takesSkip(i int) bool { return i > m.Cfg.NumLayers/2 }

// givesSkip reports whether block i's output is kept as a long skip.
func (m *Model) givesSkip(i int) bool { return i < m.Cfg.NumLayers/2-1 }

// Params registers the weights under diffusers' names.
func (m *Model) Params(prefix string, p *nn.Params) {
	c := m.Cfg
	m.TextEmbedder.Params(prefix+"text_embedder.", p)
	p.Add(prefix+"text_embedding_padding", []int{c.TextLen + c.TextLenT5, c.CrossAttentionDim}, &m.TextEmbeddingPadding)
	m.PosEmbed.Params(prefix+"pos_embed.", p)
	m.TimeExtraEmb.Params(prefix+"time_extra_emb.", p)
	for i, b := range m.Blocks {
		b.Params(nn.Join(prefix+"blocks.", i), p)
	}
	m.NormOut.Params(prefix+"norm_out.", p)
	m.ProjOut.Params(prefix+"proj_out.", p)
}

// Cond is the conditioning of one forward pass.
type Cond struct {
	// EncoderHiddenStates [B, text_len, cross_attention_dim] are the first
	// text encoder's states (CLIP/BERT), TextMask its B·text_len mask (1:
	// token, 0: padding; nil: all tokens).
	EncoderHiddenStates *tensor.Tensor
	TextMask            []int64
	// EncoderHiddenStatesT5 [B, text_len_t5, cross_attention_dim_t5] are the
	// mT5 states, TextMaskT5 their mask (nil: all tokens).
	EncoderHiddenStatesT5 *tensor.Tensor
	TextMaskT5            []int64
	// Timesteps holds one timestep per sample.
	Timesteps []float32
	// ImageMetaSize holds six sizes per sample (original h, w, target h,
	// w, crop top, left) and Style one style id per sample; both are read
	// only with use_style_cond_and_image_meta_size.
	ImageMetaSize []float32
	Style         []int64
	// Rotary is the rotary table of the image tokens; nil means the one
	// HunyuanDiTPipeline builds (PipelineRotary).
	Rotary *nn.Rotary
	// Cache, when set, is the generation's first-block residual cache:
	// the blocks after the first are skipped when it says so (the long
	// skips start from the first block's output, so they follow).
	Cache *nn.BlockCache
}

// textStates concatenates the two text streams and replaces masked
// positions by the learned padding rows.
func (m *Model) textStates(cond Cond, b int) (*tensor.Tensor, error) {
	c := m.Cfg
	ehs, t5 := cond.EncoderHiddenStates, cond.EncoderHiddenStatesT5
	if ehs == nil || ehs.Rank() != 3 || ehs.Dim(0) != b || ehs.Dim(1) != c.TextLen || ehs.Dim(2) != c.CrossAttentionDim {
		return nil, fmt.Errorf("hunyuan: encoder hidden states must be [%d, %d, %d]", b, c.TextLen, c.CrossAttentionDim)
	}
	if t5 == nil || t5.Rank() != 3 || t5.Dim(0) != b || t5.Dim(1) != c.TextLenT5 || t5.Dim(2) != c.CrossAttentionDimT5 {
		return nil, fmt.Errorf("hunyuan: T5 encoder hidden states must be [%d, %d, %d]", b, c.TextLenT5, c.CrossAttentionDimT5)
	}
	if cond.TextMask != nil && len(cond.TextMask) != b*c.TextLen {
		return nil, fmt.Errorf("hunyuan: %d text mask values for %d×%d tokens", len(cond.TextMask), b, c.TextLen)
	}
	if cond.TextMaskT5 != nil && len(cond.TextMaskT5) != b*c.TextLenT5 {
		return nil, fmt.Errorf("hunyuan: %d T5 mask values for %d×%d tokens", len(cond.TextMaskT5), b, c.TextLenT5)
	}
	all := tensor.Concat(1, ehs, m.TextEmbedder.Forward(t5)).Contiguous().Clone()
	s, d := c.TextLen+c.TextLenT5, c.CrossAttentionDim
	data, pad := all.Data(), m.TextEmbeddingPadding.Contiguous().Data()
	for i := 0; i < b; i++ {
		for j := 0; j < s; j++ {
			var keep int64 = 1
			if j < c.TextLen && cond.TextMask != nil {
				keep = cond.TextMask[i*c.TextLen+j]
			} else if j >= c.TextLen && cond.TextMaskT5 != nil {
				keep = cond.TextMaskT5[i*c.TextLenT5+j-c.TextLen]
			}
			if keep == 0 {
				copy(data[(i*s+j)*d:(i*s+j+1)*d], pad[j*d:(j+1)*d])
			}
		}
	}
	return all, nil
}

// Forward predicts from x [B, C, H, W]; the result is
// [B, OutChannels, H, W].
func (m *Model) Forward(x *tensor.Tensor, cond Cond) (*tensor.Tensor, error) {
	c := m.Cfg
	if x.Rank() != 4 || x.Dim(1) != c.InChannels {
		return nil, fmt.Errorf("hunyuan: input %v, want [B, %d, H, W]", x.Shape(), c.InChannels)
	}
	b, p := x.Dim(0), c.PatchSize
	if x.Dim(2)%p != 0 || x.Dim(3)%p != 0 {
		return nil, fmt.Errorf("hunyuan: input %v not divisible into %d×%d patches", x.Shape(), p, p)
	}
	if len(cond.Timesteps) != b {
		return nil, fmt.Errorf("hunyuan: %d timesteps for batch %d", len(cond.Timesteps), b)
	}
	h, w := x.Dim(2)/p, x.Dim(3)/p
	rot := cond.Rotary
	if rot == nil {
		var err error
		if rot, err = m.PipelineRotary(h, w); err != nil {
			return nil, err
		}
	}
	if rot.Cos == nil || rot.Sin == nil || !tensor.SameShape(rot.Cos.Shape(), []int{h * w, c.AttentionHeadDim}) ||
		!tensor.SameShape(rot.Sin.Shape(), rot.Cos.Shape()) {
		return nil, fmt.Errorf("hunyuan: rotary table must be two [%d, %d] tensors", h*w, c.AttentionHeadDim)
	}
	ehs, err := m.textStates(cond, b)
	if err != nil {
		return nil, err
	}
	temb, err := m.TimeExtraEmb.Forward(cond.Timesteps, cond.EncoderHiddenStatesT5, cond.ImageMetaSize, cond.Style)
	if err != nil {
		return nil, err
	}
	var skips []*tensor.Tensor
	blocks := func(from, to int) func(*tensor.Tensor) (*tensor.Tensor, error) {
		return func(hs *tensor.Tensor) (*tensor.Tensor, error) {
			for i := from; i < to; i++ {
				var skip *tensor.Tensor
				if m.takesSkip(i) {
					skip, skips = skips[len(skips)-1], skips[:len(skips)-1]
				}
				var err error
				if hs, err = m.Blocks[i].Forward(hs, ehs, temb, rot, skip); err != nil {
					return nil, fmt.Errorf("hunyuan: block %d: %w", i, err)
				}
				if m.givesSkip(i) {
					skips = append(skips, hs)
				}
			}
			return hs, nil
		}
	}
	hs, err := cond.Cache.Run(m.PosEmbed.Forward(x), blocks(0, 1), blocks(1, len(m.Blocks)))
	if err != nil {
		return nil, err
	}
	hs = m.ProjOut.Forward(m.NormOut.Forward(hs, temb))
	return nn.Unpatchify(hs, h, w, p, c.OutChannels()), nil
}
