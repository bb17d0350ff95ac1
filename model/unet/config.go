// Package unet is diffusers' UNet2DConditionModel, built from its config:
// the SD 1.x, SDXL (and refiner) and DeepFloyd IF layouts, with the hooks
// ControlNet and T2I-Adapter residuals plug into.
package unet

import (
	"encoding/json"
	"fmt"
)

// IntList is a config value that may be one int (applied to every block)
// or a list of ints.
type IntList []int

// UnmarshalJSON accepts null, an int or a list.
func (l *IntList) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*l = nil
		return nil
	}
	var one int
	if err := json.Unmarshal(b, &one); err == nil {
		*l = IntList{one}
		return nil
	}
	var many []int
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("want an int or a list of ints: %s", b)
	}
	*l = many
	return nil
}

// For expands the value to n blocks.
func (l IntList) For(n int) []int {
	if len(l) == 1 {
		out := make([]int, n)
		for i := range out {
			out[i] = l[0]
		}
		return out
	}
	return append([]int(nil), l...)
}

// BoolList is a config value that may be one bool or a list.
type BoolList []bool

// UnmarshalJSON accepts null, a bool or a list.
func (l *BoolList) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*l = nil
		return nil
	}
	var one bool
	if err := json.Unmarshal(b, &one); err == nil {
		*l = BoolList{one}
		return nil
	}
	var many []bool
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("want a bool or a list of bools: %s", b)
	}
	*l = many
	return nil
}

// For expands the value to n blocks (false when absent).
func (l BoolList) For(n int) []bool {
	out := make([]bool, n)
	for i := range out {
		if len(l) == 1 {
			out[i] = l[0]
		} else if i < len(l) {
			out[i] = l[i]
		}
	}
	return out
}

// Config is diffusers' UNet2DConditionModel config.
type Config struct {
	SampleSize                   IntList  `json:"sample_size"`
	InChannels                   int      `json:"in_channels"`
	OutChannels                  int      `json:"out_channels"`
	CenterInputSample            bool     `json:"center_input_sample"`
	FlipSinToCos                 bool     `json:"flip_sin_to_cos"`
	FreqShift                    float64  `json:"freq_shift"`
	DownBlockTypes               []string `json:"down_block_types"`
	MidBlockType                 *string  `json:"mid_block_type"`
	UpBlockTypes                 []string `json:"up_block_types"`
	OnlyCrossAttention           BoolList `json:"only_cross_attention"`
	BlockOutChannels             []int    `json:"block_out_channels"`
	LayersPerBlock               IntList  `json:"layers_per_block"`
	DownsamplePadding            int      `json:"downsample_padding"`
	MidBlockScaleFactor          float32  `json:"mid_block_scale_factor"`
	ActFn                        string   `json:"act_fn"`
	NormNumGroups                int      `json:"norm_num_groups"`
	NormEps                      float64  `json:"norm_eps"`
	CrossAttentionDim            IntList  `json:"cross_attention_dim"`
	TransformerLayersPerBlock    IntList  `json:"transformer_layers_per_block"`
	ReverseTransformerLayers     IntList  `json:"reverse_transformer_layers_per_block"`
	EncoderHidDim                int      `json:"encoder_hid_dim"`
	EncoderHidDimType            string   `json:"encoder_hid_dim_type"`
	AttentionHeadDim             IntList  `json:"attention_head_dim"`
	NumAttentionHeads            IntList  `json:"num_attention_heads"`
	DualCrossAttention           bool     `json:"dual_cross_attention"`
	UseLinearProjection          bool     `json:"use_linear_projection"`
	ClassEmbedType               string   `json:"class_embed_type"`
	AdditionEmbedType            string   `json:"addition_embed_type"`
	AdditionTimeEmbedDim         int      `json:"addition_time_embed_dim"`
	NumClassEmbeds               int      `json:"num_class_embeds"`
	UpcastAttention              bool     `json:"upcast_attention"`
	ResnetTimeScaleShift         string   `json:"resnet_time_scale_shift"`
	ResnetSkipTimeAct            bool     `json:"resnet_skip_time_act"`
	ResnetOutScaleFactor         float32  `json:"resnet_out_scale_factor"`
	TimeEmbeddingType            string   `json:"time_embedding_type"`
	TimeEmbeddingDim             int      `json:"time_embedding_dim"`
	TimeEmbeddingActFn           string   `json:"time_embedding_act_fn"`
	TimestepPostAct              string   `json:"timestep_post_act"`
	TimeCondProjDim              int      `json:"time_cond_proj_dim"`
	ConvInKernel                 int      `json:"conv_in_kernel"`
	ConvOutKernel                int      `json:"conv_out_kernel"`
	ProjectionClassEmbeddingsDim int      `json:"projection_class_embeddings_input_dim"`
	AttentionType                string   `json:"attention_type"`
	ClassEmbeddingsConcat        bool     `json:"class_embeddings_concat"`
	MidBlockOnlyCrossAttention   *bool    `json:"mid_block_only_cross_attention"`
	CrossAttentionNorm           string   `json:"cross_attention_norm"`
	AdditionEmbedTypeNumHeads    int      `json:"addition_embed_type_num_heads"`
}

// ParseConfig decodes a diffusers unet/config.json, applying diffusers' defaults.
func ParseConfig(b []byte) (Config, error) {
	c := Defaults()
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("unet: config: %w", err)
	}
	if err := RefuseNulls(b); err != nil {
		return c, fmt.Errorf("unet: config: %w", err)
	}
	return c, c.Validate()
}

// Defaults are UNet2DConditionModel's constructor defaults (the SD 1.x layout).
func Defaults() Config {
	mid := "UNetMidBlock2DCrossAttn"
	return Config{
		InChannels: 4, OutChannels: 4, FlipSinToCos: true,
		DownBlockTypes:      []string{"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"},
		MidBlockType:        &mid,
		UpBlockTypes:        []string{"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"},
		BlockOutChannels:    []int{320, 640, 1280, 1280},
		LayersPerBlock:      IntList{2},
		DownsamplePadding:   1,
		MidBlockScaleFactor: 1, ActFn: "silu", NormNumGroups: 32, NormEps: 1e-5,
		CrossAttentionDim: IntList{1280}, TransformerLayersPerBlock: IntList{1}, AttentionHeadDim: IntList{8},
		ResnetTimeScaleShift: "default", ResnetOutScaleFactor: 1, TimeEmbeddingType: "positional",
		ConvInKernel: 3, ConvOutKernel: 3, AttentionType: "default", AdditionEmbedTypeNumHeads: 64,
	}
}

// SD15 is Stable Diffusion 1.x's UNet (in 4 channels; 9 for inpainting).
func SD15(inChannels int) Config {
	c := Defaults()
	c.InChannels = inChannels
	c.SampleSize = IntList{64}
	c.CrossAttentionDim = IntList{768}
	return c
}

// SDXL is the SDXL base UNet.
func SDXL() Config {
	c := Defaults()
	c.SampleSize = IntList{128}
	c.DownBlockTypes = []string{"DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"}
	c.UpBlockTypes = []string{"CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"}
	c.BlockOutChannels = []int{320, 640, 1280}
	c.TransformerLayersPerBlock = IntList{1, 2, 10}
	c.AttentionHeadDim = IntList{5, 10, 20}
	c.CrossAttentionDim = IntList{2048}
	c.UseLinearProjection = true
	c.AdditionEmbedType = "text_time"
	c.AdditionTimeEmbedDim = 256
	c.ProjectionClassEmbeddingsDim = 2816
	return c
}

// SDXLRefiner is the SDXL refiner UNet.
func SDXLRefiner() Config {
	c := Defaults()
	c.SampleSize = IntList{128}
	c.DownBlockTypes = []string{"DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"}
	c.UpBlockTypes = []string{"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"}
	c.BlockOutChannels = []int{384, 768, 1536, 1536}
	c.TransformerLayersPerBlock = IntList{4}
	c.AttentionHeadDim = IntList{6, 12, 24, 24}
	c.CrossAttentionDim = IntList{1280}
	c.UseLinearProjection = true
	c.AdditionEmbedType = "text_time"
	c.AdditionTimeEmbedDim = 256
	c.ProjectionClassEmbeddingsDim = 2560
	return c
}

// SD21 is Stable Diffusion 2.1's UNet (stabilityai/stable-diffusion-2-1,
// 768×768, v-prediction): SD 1.x's layout with OpenCLIP ViT-H's 1024-wide
// context, Linear proj_in/proj_out, per-block head counts and attention
// upcast to float32.
func SD21() Config {
	c := Defaults()
	c.SampleSize = IntList{96}
	c.CrossAttentionDim = IntList{1024}
	c.AttentionHeadDim = IntList{5, 10, 20, 20}
	c.UseLinearProjection = true
	c.UpcastAttention = true
	return c
}

// SD2Inpainting is the UNet of stabilityai/stable-diffusion-2-inpainting
// (512×512, epsilon): SD21's layout with 9 input channels (latents, mask,
// masked-image latents), no attention upcast.
func SD2Inpainting() Config {
	c := SD21()
	c.InChannels = 9
	c.SampleSize = IntList{64}
	c.UpcastAttention = false
	return c
}
