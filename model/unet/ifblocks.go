package unet

import (
	"fmt"

	"github.com/diffuse-go/diffuse/nn"
)

// The UnCLIP / DeepFloyd IF block kinds: ResnetDownsampleBlock2D,
// SimpleCrossAttnDownBlock2D, UNetMidBlock2DSimpleCrossAttn,
// SimpleCrossAttnUpBlock2D and ResnetUpsampleBlock2D. Their attentions are
// added-KV attentions (nn.AddedKVAttention) whose attention_head_dim is the
// per-head width, and their down/upsamplers are resampling ResnetBlock2Ds
// (nn.ResampleResnet) that take the time embedding.

// Block type names.
const (
	resnetDownBlock      = "ResnetDownsampleBlock2D"
	simpleCrossDownBlock = "SimpleCrossAttnDownBlock2D"
	simpleCrossMidBlock  = "UNetMidBlock2DSimpleCrossAttn"
	simpleCrossUpBlock   = "SimpleCrossAttnUpBlock2D"
	resnetUpBlock        = "ResnetUpsampleBlock2D"
)

// resampledByResnet reports whether a block type's down/upsampler is a
// resampling ResnetBlock2D rather than a strided / nearest convolution.
func resampledByResnet(blockType string) bool {
	switch blockType {
	case resnetDownBlock, simpleCrossDownBlock, simpleCrossUpBlock, resnetUpBlock:
		return true
	}
	return false
}

// takesResnetOptions reports whether diffusers passes resnet_out_scale_factor
// and resnet_skip_time_act to the resnets of a block type (the mid block's
// output scale is mid_block_scale_factor whatever its type).
func takesResnetOptions(blockType string) bool {
	return resampledByResnet(blockType) || blockType == simpleCrossMidBlock
}

// usesAddedKV reports whether any block of the config has added-KV attention.
func (c Config) usesAddedKV() bool {
	for _, t := range append(append([]string{}, c.DownBlockTypes...), c.UpBlockTypes...) {
		if t == simpleCrossDownBlock || t == simpleCrossUpBlock {
			return true
		}
	}
	return c.MidBlockType != nil && *c.MidBlockType == simpleCrossMidBlock
}

// validateAddedKV checks the settings the added-KV blocks depend on.
func (c Config) validateAddedKV() error {
	if !c.usesAddedKV() {
		return nil
	}
	switch c.CrossAttentionNorm {
	case "", "group_norm":
	default:
		return fmt.Errorf("unet: cross_attention_norm %q not supported with SimpleCrossAttn blocks", c.CrossAttentionNorm)
	}
	n := len(c.BlockOutChannels)
	hd := c.headDims(n)
	for i, ch := range c.BlockOutChannels {
		// Only the levels with added-KV attention split into heads (IF-II-L's
		// 160-channel first level has resnets only, and heads of 64).
		attn := i < len(c.DownBlockTypes) && c.DownBlockTypes[i] == simpleCrossDownBlock ||
			n-1-i < len(c.UpBlockTypes) && c.UpBlockTypes[n-1-i] == simpleCrossUpBlock ||
			i == n-1 && c.MidBlockType != nil && *c.MidBlockType == simpleCrossMidBlock
		if attn && (hd[i] <= 0 || ch%hd[i] != 0) {
			return fmt.Errorf("unet: block %d: %d channels do not split into heads of attention_head_dim %d", i, ch, hd[i])
		}
	}
	if c.CrossAttentionNorm == "group_norm" {
		for _, d := range c.CrossAttentionDim.For(n) {
			if d%crossNormGroups != 0 {
				return fmt.Errorf("unet: cross_attention_dim %d does not split into %d norm_cross groups", d, crossNormGroups)
			}
		}
	}
	return nil
}

// crossNormGroups is diffusers' cross_attention_norm_num_groups default, which
// the UNet never overrides.
const crossNormGroups = 32

// headDims is attention_head_dim per block as the SimpleCrossAttn blocks
// read it: the width of one head (the block's channels when unset).
func (c Config) headDims(n int) []int {
	if len(c.AttentionHeadDim) == 0 {
		return append([]int(nil), c.BlockOutChannels...)
	}
	return c.AttentionHeadDim.For(n)
}

// midOnlyCross is mid_block_only_cross_attention, which defaults to
// only_cross_attention when that is a single bool.
func (c Config) midOnlyCross() bool {
	if c.MidBlockOnlyCrossAttention != nil {
		return *c.MidBlockOnlyCrossAttention
	}
	return len(c.OnlyCrossAttention) == 1 && c.OnlyCrossAttention[0]
}

// addedKV builds one SimpleCrossAttn attention over ch channels.
func (e *Encoder) addedKV(ch, headDim, crossDim int, only bool) *nn.AddedKVAttention {
	c := e.Cfg
	groups := 0
	if c.CrossAttentionNorm == "group_norm" {
		groups = crossNormGroups
	}
	return nn.NewAddedKVAttention(nn.AddedKVConfig{Channels: ch, HeadDim: headDim, AddedKVDim: crossDim,
		Groups: c.NormNumGroups, OnlyCross: only, CrossNormGroups: groups})
}

// resampleResnet builds a resnet-based downsampler (up false) or upsampler.
func (e *Encoder) resampleResnet(ch int, up bool) *nn.ResampleResnet {
	c := e.Cfg
	return nn.NewResampleResnet(nn.ResnetConfig{In: ch, Out: ch, TembChannels: e.timeDim, Groups: c.NormNumGroups,
		Eps: c.NormEps, Act: c.ActFn, TimeScaleShift: c.ResnetTimeScaleShift == "scale_shift",
		OutputScale: c.ResnetOutScaleFactor, SkipTimeAct: c.ResnetSkipTimeAct}, up)
}

// resampledUp reports whether any up block upsamples with a resnet (which
// always doubles, so cannot follow odd skip sizes).
func (m *Model) resampledUp() bool {
	for _, b := range m.up {
		if b.resampler != nil {
			return true
		}
	}
	return false
}
