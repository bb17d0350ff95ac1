package checkpoint

import (
	"fmt"
	"slices"
	"strings"
)

// The prefixes under which an SDXL single file (Stability AI's
// generative-models "SGM" layout) stores its text encoders; the UNet and
// the VAE sit under UNetPrefix and VAEPrefix as in LDM files.
const (
	// SGMTextEncoderPrefix holds the base model's CLIP ViT-L encoder, with
	// transformers' names (text_model.*).
	SGMTextEncoderPrefix = "conditioner.embedders.0.transformer."
	// SGMOpenCLIPPrefix holds the base model's OpenCLIP ViT-bigG encoder,
	// with OpenCLIP's names (see OpenCLIPParams).
	SGMOpenCLIPPrefix = "conditioner.embedders.1.model."
	// SGMRefinerOpenCLIPPrefix holds the refiner's only text encoder,
	// OpenCLIP ViT-bigG.
	SGMRefinerOpenCLIPPrefix = "conditioner.embedders.0.model."
)

// SDXLModel is the layout of an SDXL single-file checkpoint.
type SDXLModel struct {
	Name string
	UNet UNetLayout
	VAE  VAELayout
	// TextEncoder is the CLIP ViT-L encoder under SGMTextEncoderPrefix;
	// nil for the refiner, which has none.
	TextEncoder *TextEncoderLayout
	// TextEncoder2 is the OpenCLIP ViT-bigG encoder (with projection) under
	// SGMOpenCLIPPrefix, or SGMRefinerOpenCLIPPrefix for the refiner.
	TextEncoder2 TextEncoderLayout
}

// Refiner reports whether the layout is a refiner's: OpenCLIP only, as the
// first embedder.
func (m SDXLModel) Refiner() bool { return m.TextEncoder == nil }

// TextEncoder2Prefix is the prefix of the OpenCLIP encoder in the file.
func (m SDXLModel) TextEncoder2Prefix() string {
	if m.Refiner() {
		return SGMRefinerOpenCLIPPrefix
	}
	return SGMOpenCLIPPrefix
}

// ComponentParams is one model of a single-file checkpoint: its diffusers
// folder name, the prefix it is stored under and its parameters.
type ComponentParams struct {
	Name   string // "unet", "vae", "text_encoder" or "text_encoder_2"
	Prefix string
	Params []Param
}

// Components lists the models of the layout with their parameters: unet,
// vae, text_encoder (not for the refiner) and text_encoder_2.
func (m SDXLModel) Components() ([]ComponentParams, error) {
	unet, err := UNetParams(m.UNet)
	if err != nil {
		return nil, err
	}
	vae, err := VAEParams(m.VAE)
	if err != nil {
		return nil, err
	}
	out := []ComponentParams{{"unet", UNetPrefix, unet}, {"vae", VAEPrefix, vae}}
	if m.TextEncoder != nil {
		te, err := TextEncoderParams(*m.TextEncoder)
		if err != nil {
			return nil, err
		}
		out = append(out, ComponentParams{"text_encoder", SGMTextEncoderPrefix, te})
	}
	if !m.TextEncoder2.WithProjection {
		return nil, fmt.Errorf("checkpoint: %s: SDXL's second text encoder needs its projection (WithProjection)", m.Name)
	}
	te2, err := OpenCLIPParams(m.TextEncoder2)
	if err != nil {
		return nil, err
	}
	return append(out, ComponentParams{"text_encoder_2", m.TextEncoder2Prefix(), te2}), nil
}

// clipL is OpenAI CLIP ViT-L/14's text encoder, SDXL's first encoder.
func clipL() *TextEncoderLayout {
	l := SD15().TextEncoder
	return &l
}

// openCLIPBigG is OpenCLIP ViT-bigG/14's text encoder with its projection.
func openCLIPBigG() TextEncoderLayout {
	return TextEncoderLayout{
		VocabSize:             49408,
		HiddenSize:            1280,
		IntermediateSize:      5120,
		NumHiddenLayers:       32,
		NumAttentionHeads:     20,
		MaxPositionEmbeddings: 77,
		HiddenAct:             "gelu",
		ProjectionDim:         1280,
		WithProjection:        true,
	}
}

// SDXLBase is SDXL 1.0 base (sd_xl_base.yaml): CLIP ViT-L and OpenCLIP
// ViT-bigG (2048-wide context), a three-level UNet with text_time
// conditioning on the pooled bigG embedding and six size numbers
// (1280 + 6·256 = 2816), and the SDXL VAE.
func SDXLBase() SDXLModel {
	return SDXLModel{
		Name: "SDXL base",
		UNet: UNetLayout{
			InChannels:                        4,
			OutChannels:                       4,
			BlockOutChannels:                  []int{320, 640, 1280},
			LayersPerBlock:                    2,
			DownBlockTypes:                    []string{"DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"},
			UpBlockTypes:                      []string{"CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"},
			MidBlockType:                      "UNetMidBlock2DCrossAttn",
			CrossAttentionDim:                 2048,
			AttentionHeadDim:                  IntOrList{5, 10, 20},
			TransformerLayersPerBlock:         IntOrList{1, 2, 10},
			UseLinearProjection:               true,
			AdditionEmbedType:                 "text_time",
			ProjectionClassEmbeddingsInputDim: 2816,
		},
		VAE:          sdxlVAE(SD15().VAE),
		TextEncoder:  clipL(),
		TextEncoder2: openCLIPBigG(),
	}
}

// SDXLInpainting is the SDXL inpainting model (diffusers' "xl_inpaint"):
// SDXL base whose UNet takes 9 input channels.
func SDXLInpainting() SDXLModel {
	m := SDXLBase()
	m.Name = "SDXL inpainting"
	m.UNet.InChannels = 9
	return m
}

// SDXLRefiner is the SDXL 1.0 refiner (sd_xl_refiner.yaml): OpenCLIP
// ViT-bigG only (1280-wide context), a four-level UNet of 384 base channels
// with text_time conditioning on the pooled embedding and five numbers
// (1280 + 5·256 = 2560: size, crop and aesthetic score), and the SDXL VAE.
func SDXLRefiner() SDXLModel {
	return SDXLModel{
		Name: "SDXL refiner",
		UNet: UNetLayout{
			InChannels:                        4,
			OutChannels:                       4,
			BlockOutChannels:                  []int{384, 768, 1536, 1536},
			LayersPerBlock:                    2,
			DownBlockTypes:                    []string{"DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"},
			UpBlockTypes:                      []string{"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"},
			MidBlockType:                      "UNetMidBlock2DCrossAttn",
			CrossAttentionDim:                 1280,
			AttentionHeadDim:                  IntOrList{6, 12, 24, 24},
			TransformerLayersPerBlock:         IntOrList{4},
			UseLinearProjection:               true,
			AdditionEmbedType:                 "text_time",
			ProjectionClassEmbeddingsInputDim: 2560,
		},
		VAE:          sdxlVAE(SD15().VAE),
		TextEncoder2: openCLIPBigG(),
	}
}

// sdxlVAE is the SD VAE architecture with SDXL's latent scaling factor.
func sdxlVAE(l VAELayout) VAELayout {
	l.ScalingFactor = 0.13025
	return l
}

// SDXLMapping is a whole SDXL checkpoint mapped onto diffusers names.
type SDXLMapping struct {
	// Model is the layout the checkpoint was matched against.
	Model SDXLModel
	UNet  Component
	VAE   Component
	// TextEncoder is nil for the refiner.
	TextEncoder  Component
	TextEncoder2 Component
	// Ignored lists, sorted, the checkpoint tensors that are not model
	// weights (position_ids, logit_scale, ...).
	Ignored []string
}

// Component returns the named component's mapping ("unet", "vae",
// "text_encoder", "text_encoder_2"), or nil for another name.
func (mp *SDXLMapping) Component(name string) *Component {
	switch name {
	case "unet":
		return &mp.UNet
	case "vae":
		return &mp.VAE
	case "text_encoder":
		return &mp.TextEncoder
	case "text_encoder_2":
		return &mp.TextEncoder2
	}
	return nil
}

// ConvertSGM maps every tensor of an SDXL single-file checkpoint onto the
// diffusers names of model m's UNet, VAE and text encoders. As with
// ConvertLDM the checkpoint must match m exactly, or a *LayoutError names
// the missing, misshapen, unexpected and unknown tensors.
func ConvertSGM(src Source, m SDXLModel) (*SDXLMapping, error) {
	cps, err := m.Components()
	if err != nil {
		return nil, err
	}
	parts := make([]part, len(cps))
	for i, c := range cps {
		parts[i] = part{c.Prefix, c.Params}
	}
	comps, ignored, err := convertParts(src, m.Name, parts)
	if err != nil {
		return nil, err
	}
	out := &SDXLMapping{Model: m, Ignored: ignored}
	for i, c := range cps {
		*out.Component(c.Name) = comps[i]
	}
	return out, nil
}

// DetectSDXL tells which built-in SDXL layout a checkpoint has: the base
// model (CLIP ViT-L and OpenCLIP bigG as embedders 0 and 1), the refiner
// (OpenCLIP bigG alone as embedder 0) or the inpainting model (base with a
// 9-channel conv_in), checking the UNet's conv_in shape. Other checkpoints,
// SD 1.x ones included, get an error saying what they look like.
func DetectSDXL(src Source) (SDXLModel, error) {
	var hasUNet, hasCLIP, hasOpenCLIP0, hasOpenCLIP1, hasSD1, hasSD2, hasConditioner bool
	for _, name := range src.Names() {
		switch {
		case strings.HasPrefix(name, UNetPrefix):
			hasUNet = true
		case strings.HasPrefix(name, SGMTextEncoderPrefix):
			hasCLIP = true
		case strings.HasPrefix(name, SGMRefinerOpenCLIPPrefix):
			hasOpenCLIP0 = true
		case strings.HasPrefix(name, SGMOpenCLIPPrefix):
			hasOpenCLIP1 = true
		case strings.HasPrefix(name, TextEncoderPrefix):
			hasSD1 = true
		case strings.HasPrefix(name, "cond_stage_model.model."):
			hasSD2 = true
		}
		if strings.HasPrefix(name, "conditioner.embedders.") {
			hasConditioner = true
		}
	}
	var m SDXLModel
	switch {
	case !hasConditioner && hasSD1:
		return m, fmt.Errorf("checkpoint: this looks like an SD 1.x checkpoint (text encoder under %s*), not SDXL; load it with pipeline.Load (checkpoint.ConvertSD1)", TextEncoderPrefix)
	case !hasConditioner && hasSD2:
		return m, fmt.Errorf("checkpoint: this looks like an SD 2.x checkpoint (OpenCLIP text encoder under cond_stage_model.model.*); it is not supported")
	case !hasConditioner:
		return m, fmt.Errorf("checkpoint: not an SDXL single-file checkpoint: no conditioner.embedders.* tensors")
	case !hasUNet:
		return m, fmt.Errorf("checkpoint: not an SDXL single-file checkpoint: no %s* tensors", UNetPrefix)
	case hasOpenCLIP1:
		m = SDXLBase()
	case hasOpenCLIP0 && !hasCLIP:
		m = SDXLRefiner()
	default:
		return m, fmt.Errorf("checkpoint: SDXL text encoders not recognised: want OpenCLIP ViT-bigG under %s* (base, with CLIP ViT-L under %s*) or under %s* alone (refiner)",
			SGMOpenCLIPPrefix, SGMTextEncoderPrefix, SGMRefinerOpenCLIPPrefix)
	}
	const convIn = UNetPrefix + "input_blocks.0.0.weight"
	info, ok := src.Info(convIn)
	if !ok {
		return SDXLModel{}, fmt.Errorf("checkpoint: UNet conv_in %s is missing", convIn)
	}
	candidates := []SDXLModel{m}
	if !m.Refiner() {
		candidates = append(candidates, SDXLInpainting())
	}
	var want []string
	for _, c := range candidates {
		shape := []int{c.UNet.BlockOutChannels[0], c.UNet.InChannels, 3, 3}
		if slices.Equal(info.Shape, shape) {
			return c, nil
		}
		want = append(want, fmt.Sprintf("%v (%s)", shape, c.Name))
	}
	return SDXLModel{}, fmt.Errorf("checkpoint: UNet conv_in %s has shape %v; %s has %s", convIn, info.Shape, m.Name, strings.Join(want, " or "))
}

// ConvertSDXL detects which SDXL layout a checkpoint has and maps it with
// ConvertSGM.
func ConvertSDXL(src Source) (*SDXLMapping, error) {
	m, err := DetectSDXL(src)
	if err != nil {
		return nil, err
	}
	return ConvertSGM(src, m)
}
