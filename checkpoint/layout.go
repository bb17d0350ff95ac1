// Package checkpoint maps single-file Stable Diffusion checkpoints in the
// original CompVis/LDM layout (the .safetensors files model sites
// distribute) onto diffusers' module names.
//
// An LDM checkpoint holds three models under fixed prefixes:
//
//	model.diffusion_model.*          the UNet
//	first_stage_model.*              the VAE (AutoencoderKL)
//	cond_stage_model.transformer.*   the CLIP text encoder (SD 1.x)
//
// SDXL single files (Stability AI's generative-models "SGM" layout) keep the
// UNet and VAE there and their text encoders under conditioner.embedders.*:
// CLIP ViT-L with transformers' names and OpenCLIP ViT-bigG with OpenCLIP's
// (see ConvertSGM, DetectSDXL).
//
// The package works on names and shapes only: for a given model layout it
// enumerates every parameter diffusers expects together with the name it
// comes from, then checks a checkpoint against that list, so a file whose
// layout does not match is rejected with the missing, unexpected and
// misshapen tensors named. Loading the data is left to the caller; the
// mapping (Ref) says where a tensor must be reshaped, cut to a range of rows
// (OpenCLIP's fused q, k, v) or transposed (OpenCLIP's text projection).
package checkpoint

import (
	"encoding/json"
	"fmt"
)

// IntOrList is a diffusers config value that may be a single int (applied to
// every block) or one int per block.
type IntOrList []int

// UnmarshalJSON accepts null, an int or a list of ints.
func (l *IntOrList) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*l = nil
		return nil
	}
	var one int
	if err := json.Unmarshal(b, &one); err == nil {
		*l = IntOrList{one}
		return nil
	}
	var many []int
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("checkpoint: want an int or a list of ints, got %s", b)
	}
	*l = many
	return nil
}

// For expands the value to n blocks: a single value is repeated, an empty
// one gives def for every block. It reports an error when a list has the
// wrong length.
func (l IntOrList) For(n, def int) ([]int, error) {
	out := make([]int, n)
	switch len(l) {
	case 0:
		for i := range out {
			out[i] = def
		}
	case 1:
		for i := range out {
			out[i] = l[0]
		}
	case n:
		copy(out, l)
	default:
		return nil, fmt.Errorf("has %d values for %d blocks", len(l), n)
	}
	return out, nil
}

// UNetLayout is the part of a diffusers UNet2DConditionModel config that
// decides its parameter names and shapes. Its JSON tags are diffusers'
// config.json keys, so a config.json decodes into it directly.
type UNetLayout struct {
	InChannels        int      `json:"in_channels"`
	OutChannels       int      `json:"out_channels"`
	BlockOutChannels  []int    `json:"block_out_channels"`
	LayersPerBlock    int      `json:"layers_per_block"`
	DownBlockTypes    []string `json:"down_block_types"`
	UpBlockTypes      []string `json:"up_block_types"`
	MidBlockType      string   `json:"mid_block_type"` // "" means UNetMidBlock2DCrossAttn
	CrossAttentionDim int      `json:"cross_attention_dim"`
	// AttentionHeadDim is diffusers' legacy name for the number of heads
	// per attention block; it does not affect parameter shapes.
	AttentionHeadDim IntOrList `json:"attention_head_dim"`
	// TransformerLayersPerBlock is the transformer depth of each down
	// block's attentions (empty means 1); the mid block uses the last
	// value and up blocks the reversed list.
	TransformerLayersPerBlock IntOrList `json:"transformer_layers_per_block"`
	// UseLinearProjection selects Linear [C, C] proj_in/proj_out (SD 2.x,
	// SDXL) instead of 1×1 convolutions [C, C, 1, 1] (SD 1.x).
	UseLinearProjection bool `json:"use_linear_projection"`
	// AdditionEmbedType "text_time" (SDXL) adds add_embedding, fed by
	// ProjectionClassEmbeddingsInputDim features.
	AdditionEmbedType                 string `json:"addition_embed_type"`
	ProjectionClassEmbeddingsInputDim int    `json:"projection_class_embeddings_input_dim"`
}

// VAELayout is the part of a diffusers AutoencoderKL config that decides its
// parameter names and shapes, plus its latent scaling factor.
type VAELayout struct {
	InChannels       int      `json:"in_channels"`
	OutChannels      int      `json:"out_channels"`
	BlockOutChannels []int    `json:"block_out_channels"`
	LayersPerBlock   int      `json:"layers_per_block"`
	DownBlockTypes   []string `json:"down_block_types"`
	UpBlockTypes     []string `json:"up_block_types"`
	LatentChannels   int      `json:"latent_channels"`
	ScalingFactor    float64  `json:"scaling_factor"`
}

// TextEncoderLayout is the part of a transformers CLIPTextConfig that decides
// a CLIPTextModel's parameter names and shapes.
type TextEncoderLayout struct {
	VocabSize             int    `json:"vocab_size"`
	HiddenSize            int    `json:"hidden_size"`
	IntermediateSize      int    `json:"intermediate_size"`
	NumHiddenLayers       int    `json:"num_hidden_layers"`
	NumAttentionHeads     int    `json:"num_attention_heads"`
	MaxPositionEmbeddings int    `json:"max_position_embeddings"`
	HiddenAct             string `json:"hidden_act"`
	ProjectionDim         int    `json:"projection_dim"`
	// WithProjection adds text_projection.weight [ProjectionDim,
	// HiddenSize] (CLIPTextModelWithProjection). Every CLIPTextConfig has a
	// projection_dim, so a config.json does not set this.
	WithProjection bool `json:"-"`
}

// Model is the layout of a whole single-file checkpoint.
type Model struct {
	Name        string
	UNet        UNetLayout
	VAE         VAELayout
	TextEncoder TextEncoderLayout
}

// SD15 is Stable Diffusion 1.5 (also 1.1–1.4 and their fine-tunes): the
// v1-inference.yaml configuration in diffusers' terms.
func SD15() Model {
	return Model{
		Name: "SD 1.5",
		UNet: UNetLayout{
			InChannels:        4,
			OutChannels:       4,
			BlockOutChannels:  []int{320, 640, 1280, 1280},
			LayersPerBlock:    2,
			DownBlockTypes:    []string{"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"},
			UpBlockTypes:      []string{"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"},
			MidBlockType:      "UNetMidBlock2DCrossAttn",
			CrossAttentionDim: 768,
			AttentionHeadDim:  IntOrList{8},
		},
		VAE: VAELayout{
			InChannels:       3,
			OutChannels:      3,
			BlockOutChannels: []int{128, 256, 512, 512},
			LayersPerBlock:   2,
			DownBlockTypes:   []string{"DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"},
			UpBlockTypes:     []string{"UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"},
			LatentChannels:   4,
			ScalingFactor:    0.18215,
		},
		TextEncoder: TextEncoderLayout{
			VocabSize:             49408,
			HiddenSize:            768,
			IntermediateSize:      3072,
			NumHiddenLayers:       12,
			NumAttentionHeads:     12,
			MaxPositionEmbeddings: 77,
			HiddenAct:             "quick_gelu",
		},
	}
}

// SD15Inpainting is the SD 1.5 inpainting model: SD 1.5 whose UNet takes 9
// input channels (latents, mask, masked-image latents).
func SD15Inpainting() Model {
	m := SD15()
	m.Name = "SD 1.5 inpainting"
	m.UNet.InChannels = 9
	return m
}
