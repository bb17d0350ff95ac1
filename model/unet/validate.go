package unet

import (
	"fmt"
	"sort"
	"strings"

	"github.com/diffuse-go/diffuse/nn"
)

// Every config value UNet2DConditionModel (diffusers v0.30.3) reads is
// either implemented or refused here, when the model is built, with an
// error naming the field and its value: a config that diffusers would build
// into something else must not load weights and then compute wrongly or
// panic.

// nonNullable are the config keys whose upstream default is not None: JSON
// null there would leave Go's default in place where diffusers would get
// None (and fail, or skip a layer), so it is refused. (mid_block_type may be
// null: no mid block.)
var nonNullable = []string{
	"in_channels", "out_channels", "center_input_sample", "flip_sin_to_cos", "freq_shift",
	"down_block_types", "up_block_types", "only_cross_attention", "block_out_channels",
	"layers_per_block", "downsample_padding", "mid_block_scale_factor", "act_fn",
	"norm_num_groups", "norm_eps", "cross_attention_dim", "transformer_layers_per_block",
	"attention_head_dim", "dual_cross_attention", "use_linear_projection", "upcast_attention",
	"resnet_time_scale_shift", "resnet_skip_time_act", "resnet_out_scale_factor",
	"time_embedding_type", "conv_in_kernel", "conv_out_kernel", "attention_type",
	"class_embeddings_concat", "addition_embed_type_num_heads",
}

// RefuseNulls reports, as an error naming them, the keys of config JSON b
// that are null where diffusers' default is a value (norm_num_groups null,
// for one, would make diffusers drop the output norm, which this package
// does not implement).
func RefuseNulls(b []byte) error { return nn.RefuseNulls(b, nonNullable...) }

// canonical returns c with diffusers' legacy block type names
// ("UNetResDownBlock2D", ...) as get_down_block / get_up_block read them:
// without the "UNetRes" prefix.
func (c Config) canonical() Config {
	strip := func(types []string) []string {
		out := make([]string, len(types))
		for i, t := range types {
			out[i] = strings.TrimPrefix(t, "UNetRes")
		}
		return out
	}
	c.DownBlockTypes, c.UpBlockTypes = strip(c.DownBlockTypes), strip(c.UpBlockTypes)
	return c
}

// Validate checks the config for what this implementation supports.
func (c Config) Validate() error {
	c = c.canonical()
	if len(c.UpBlockTypes) != len(c.BlockOutChannels) {
		return fmt.Errorf("unet: %d block_out_channels but %d up_block_types", len(c.BlockOutChannels), len(c.UpBlockTypes))
	}
	for _, t := range c.UpBlockTypes {
		switch t {
		case "CrossAttnUpBlock2D", "UpBlock2D", simpleCrossUpBlock, resnetUpBlock:
		default:
			return fmt.Errorf("unet: up_block_types %q not supported", t)
		}
	}
	if c.OutChannels <= 0 {
		return fmt.Errorf("unet: out_channels %d", c.OutChannels)
	}
	if _, err := c.crossWidth(true); err != nil {
		return err
	}
	if c.ConvOutKernel <= 0 {
		return fmt.Errorf("unet: conv_out_kernel %d", c.ConvOutKernel)
	}
	return c.validateEncoder()
}

// validateEncoder checks everything but the up blocks.
func (c Config) validateEncoder() error {
	c = c.canonical()
	for _, check := range []func() error{c.validateLayout, c.validateBlocks, c.validateActivations,
		c.validateEmbeddings, c.validateAddedKV, c.validateUnsupported} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// validateLayout checks the channel counts and the per-block lists.
func (c Config) validateLayout() error {
	n := len(c.BlockOutChannels)
	if n == 0 || len(c.DownBlockTypes) != n {
		return fmt.Errorf("unet: %d block_out_channels but %d down_block_types", n, len(c.DownBlockTypes))
	}
	if c.InChannels <= 0 {
		return fmt.Errorf("unet: in_channels %d", c.InChannels)
	}
	if c.ConvInKernel <= 0 || c.ConvInKernel%2 == 0 {
		// An even kernel shrinks the sample by one, which the skip sizes
		// of the up path then do not match (in diffusers as well).
		return fmt.Errorf("unet: conv_in_kernel %d: want an odd size", c.ConvInKernel)
	}
	for i, ch := range c.BlockOutChannels {
		if err := nn.CheckGroups("norm_num_groups", c.NormNumGroups, ch); err != nil {
			return fmt.Errorf("unet: block_out_channels[%d]: %w", i, err)
		}
	}
	lists := map[string]IntList{"layers_per_block": c.LayersPerBlock, "attention_head_dim": c.AttentionHeadDim,
		"cross_attention_dim": c.CrossAttentionDim, "transformer_layers_per_block": c.TransformerLayersPerBlock}
	if c.NumAttentionHeads != nil {
		lists["num_attention_heads"] = c.NumAttentionHeads
	}
	if c.ReverseTransformerLayers != nil {
		lists["reverse_transformer_layers_per_block"] = c.ReverseTransformerLayers
	}
	for _, name := range sortedKeys(lists) {
		l := lists[name]
		if len(l) != 1 && len(l) != n {
			return fmt.Errorf("unet: %s has %d entries for %d blocks", name, len(l), n)
		}
		for _, v := range l {
			if v < 0 {
				return fmt.Errorf("unet: %s %v", name, []int(l))
			}
		}
	}
	for _, v := range c.LayersPerBlock {
		// A block without resnets cannot change its channel count, which
		// its downsampler and the next block expect changed.
		if v == 0 {
			return fmt.Errorf("unet: layers_per_block %v: want at least 1", []int(c.LayersPerBlock))
		}
	}
	if len(c.OnlyCrossAttention) > 1 && len(c.OnlyCrossAttention) != n {
		return fmt.Errorf("unet: only_cross_attention has %d entries for %d blocks", len(c.OnlyCrossAttention), n)
	}
	if c.DownsamplePadding < 0 {
		return fmt.Errorf("unet: downsample_padding %d", c.DownsamplePadding)
	}
	return nil
}

func sortedKeys(m map[string]IntList) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// validateBlocks checks the block types and the attention geometry of the
// blocks that have spatial transformers.
func (c Config) validateBlocks() error {
	for _, t := range c.DownBlockTypes {
		switch t {
		case "CrossAttnDownBlock2D", "DownBlock2D", resnetDownBlock, simpleCrossDownBlock:
		default:
			return fmt.Errorf("unet: down_block_types %q not supported", t)
		}
	}
	if m := c.MidBlockType; m != nil && *m != "UNetMidBlock2DCrossAttn" && *m != "UNetMidBlock2D" && *m != simpleCrossMidBlock {
		return fmt.Errorf("unet: mid_block_type %q not supported", *m)
	}
	_, err := c.crossWidth(false)
	return err
}

// attnBlock is a block that attends to the encoder states.
type attnBlock struct {
	where       string
	i           int  // index into the per-block lists
	transformer bool // a spatial transformer (else added-KV attention)
}

// attentionBlocks lists the blocks that attend to the encoder states: those
// of the encoder (down and mid), and with up those of the up path too.
func (c Config) attentionBlocks(up bool) []attnBlock {
	n := len(c.BlockOutChannels)
	var out []attnBlock
	for i, t := range c.DownBlockTypes {
		if t == "CrossAttnDownBlock2D" || t == simpleCrossDownBlock {
			out = append(out, attnBlock{fmt.Sprintf("down block %d", i), i, t == "CrossAttnDownBlock2D"})
		}
	}
	if m := c.MidBlockType; m != nil && (*m == "UNetMidBlock2DCrossAttn" || *m == simpleCrossMidBlock) {
		out = append(out, attnBlock{"mid block", n - 1, *m == "UNetMidBlock2DCrossAttn"})
	}
	for i, t := range c.UpBlockTypes {
		if up && i < n && (t == "CrossAttnUpBlock2D" || t == simpleCrossUpBlock) {
			out = append(out, attnBlock{fmt.Sprintf("up block %d", i), n - 1 - i, t == "CrossAttnUpBlock2D"})
		}
	}
	return out
}

// crossWidth checks the attention geometry of the blocks that attend to
// the encoder states and returns the width they read (0 when none does):
// one encoder_hidden_states tensor feeds them all, so their
// cross_attention_dim must agree.
func (c Config) crossWidth(up bool) (int, error) {
	n := len(c.BlockOutChannels)
	heads, cross := c.heads(n), c.CrossAttentionDim.For(n)
	width := 0
	for _, b := range c.attentionBlocks(up) {
		ch := c.BlockOutChannels[b.i]
		if b.transformer && (heads[b.i] <= 0 || heads[b.i] > ch) {
			return 0, fmt.Errorf("unet: %s: %d attention heads (attention_head_dim/num_attention_heads) for %d channels", b.where, heads[b.i], ch)
		}
		if cross[b.i] <= 0 || width != 0 && cross[b.i] != width {
			return 0, fmt.Errorf("unet: %s: cross_attention_dim %v: the blocks that attend to the encoder states need one positive width",
				b.where, []int(c.CrossAttentionDim))
		}
		width = cross[b.i]
	}
	return width, nil
}

// validateActivations checks act_fn, time_embedding_act_fn and
// timestep_post_act against diffusers' get_activation, and
// resnet_time_scale_shift.
func (c Config) validateActivations() error {
	if err := nn.CheckActivation("act_fn", c.ActFn); err != nil {
		return fmt.Errorf("unet: %w", err)
	}
	for field, a := range map[string]string{"time_embedding_act_fn": c.TimeEmbeddingActFn, "timestep_post_act": c.TimestepPostAct} {
		if a == "" {
			continue
		}
		if err := nn.CheckActivation(field, a); err != nil {
			return fmt.Errorf("unet: %w", err)
		}
	}
	switch c.ResnetTimeScaleShift {
	case "default", "", "scale_shift":
	default:
		// "ada_group" and "spatial" need ResnetBlockCondNorm2D, which
		// these blocks do not build (diffusers' ResnetBlock2D refuses them).
		return fmt.Errorf("unet: resnet_time_scale_shift %q not supported (want default or scale_shift)", c.ResnetTimeScaleShift)
	}
	return nil
}

// validateEmbeddings checks the time, class and addition embeddings and the
// encoder projection (diffusers' _set_time_proj, _set_class_embedding,
// _set_add_embedding, _set_encoder_hid_proj).
func (c Config) validateEmbeddings() error {
	if c.TimeEmbeddingType != "positional" {
		return fmt.Errorf("unet: time_embedding_type %q not supported (want positional)", c.TimeEmbeddingType)
	}
	for field, v := range map[string]int{"time_embedding_dim": c.TimeEmbeddingDim, "time_cond_proj_dim": c.TimeCondProjDim,
		"num_class_embeds": c.NumClassEmbeds, "projection_class_embeddings_input_dim": c.ProjectionClassEmbeddingsDim,
		"addition_time_embed_dim": c.AdditionTimeEmbedDim, "encoder_hid_dim": c.EncoderHidDim} {
		if v < 0 {
			return fmt.Errorf("unet: %s %d", field, v)
		}
	}
	switch c.ClassEmbedType {
	case "", "timestep", "identity":
	case "projection", "simple_projection":
		if c.ProjectionClassEmbeddingsDim == 0 {
			return fmt.Errorf("unet: class_embed_type %q needs projection_class_embeddings_input_dim", c.ClassEmbedType)
		}
	default:
		return fmt.Errorf("unet: class_embed_type %q not supported (want timestep, identity, projection or simple_projection)", c.ClassEmbedType)
	}
	switch c.AdditionEmbedType {
	case "":
	case "text":
		// TextTimeEmbedding pools the encoder states (encoder_hid_dim wide
		// when given, else cross_attention_dim) with this many heads.
		from := c.EncoderHidDim
		if from == 0 && len(c.CrossAttentionDim) > 0 {
			from = c.CrossAttentionDim[0]
		}
		if h := c.AdditionEmbedTypeNumHeads; h <= 0 || from%h != 0 {
			return fmt.Errorf("unet: addition_embed_type_num_heads %d does not split %d encoder features", h, from)
		}
	case "text_time":
		if c.AdditionTimeEmbedDim == 0 || c.ProjectionClassEmbeddingsDim == 0 {
			return fmt.Errorf("unet: addition_embed_type text_time needs addition_time_embed_dim and projection_class_embeddings_input_dim")
		}
	default:
		return fmt.Errorf("unet: addition_embed_type %q not supported (want text or text_time)", c.AdditionEmbedType)
	}
	// diffusers hands cross_attention_dim as given to the layers that
	// read the encoder states' width: a per-block list fails there.
	if (c.encoderHidProj() || c.AdditionEmbedType == "text" && c.EncoderHidDim == 0) && len(c.CrossAttentionDim) > 1 {
		return fmt.Errorf("unet: cross_attention_dim %v: encoder_hid_proj / addition_embed_type text need one int", []int(c.CrossAttentionDim))
	}
	switch c.EncoderHidDimType {
	case "":
	case "text_proj":
		if c.EncoderHidDim == 0 {
			return fmt.Errorf("unet: encoder_hid_dim_type %q needs encoder_hid_dim", c.EncoderHidDimType)
		}
	default:
		return fmt.Errorf("unet: encoder_hid_dim_type %q not supported (want text_proj)", c.EncoderHidDimType)
	}
	return nil
}

// validateUnsupported refuses the options this package does not build.
func (c Config) validateUnsupported() error {
	if c.DualCrossAttention {
		return fmt.Errorf("unet: dual_cross_attention true not supported")
	}
	if c.ClassEmbeddingsConcat {
		return fmt.Errorf("unet: class_embeddings_concat true not supported")
	}
	if c.AttentionType != "default" && c.AttentionType != "" {
		// "gated" / "gated-text-image" are GLIGEN's fuser layers.
		return fmt.Errorf("unet: attention_type %q not supported (want default)", c.AttentionType)
	}
	return nil
}

// encoderHidProj reports whether the model projects the encoder states
// (encoder_hid_proj): diffusers sets encoder_hid_dim_type to text_proj when
// only encoder_hid_dim is given.
func (c Config) encoderHidProj() bool {
	return c.EncoderHidDimType == "text_proj" || c.EncoderHidDimType == "" && c.EncoderHidDim > 0
}
