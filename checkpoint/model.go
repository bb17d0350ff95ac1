package checkpoint

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/nn"
)

// The prefixes under which single files store their models.
const (
	// UNetPrefix holds the UNet in LDM and SGM files.
	UNetPrefix = "model.diffusion_model."
	// VAEPrefix holds the VAE in LDM and SGM files.
	VAEPrefix = "first_stage_model."
	// TextEncoderPrefix holds SD 1.x's CLIP ViT-L, with transformers' names.
	TextEncoderPrefix = "cond_stage_model.transformer."
	// OpenCLIPPrefix holds SD 2.x's OpenCLIP ViT-H, with OpenCLIP's names.
	OpenCLIPPrefix = "cond_stage_model.model."
	// SGMTextEncoderPrefix holds SDXL base's CLIP ViT-L, with
	// transformers' names.
	SGMTextEncoderPrefix = "conditioner.embedders.0.transformer."
	// SGMOpenCLIPPrefix holds SDXL base's OpenCLIP ViT-bigG.
	SGMOpenCLIPPrefix = "conditioner.embedders.1.model."
	// SGMRefinerOpenCLIPPrefix holds the SDXL refiner's only text encoder,
	// OpenCLIP ViT-bigG.
	SGMRefinerOpenCLIPPrefix = "conditioner.embedders.0.model."
)

// Part is one model of a single-file checkpoint: its diffusers folder
// name, where the file keeps it and how it names its tensors.
type Part struct {
	// Name is "unet", "vae", "text_encoder" or "text_encoder_2".
	Name   string
	Prefix string
	Rules  Rules
	// Penultimate marks SD 2.x's OpenCLIP text encoder: SD 2.x conditions
	// on the output of its penultimate layer, so diffusers' text encoder
	// has one layer fewer than the file and no projection; files hold
	// both, and they are left unused (as single_file_utils'
	// SD_2_TEXT_ENCODER_KEYS_TO_IGNORE).
	Penultimate bool
}

// Model is what a single-file checkpoint holds: the diffusers configs of
// its models and where the file keeps each.
type Model struct {
	Name string
	UNet unet.Config
	VAE  vae.Config
	// TextEncoder is the first text encoder: CLIP ViT-L (SD 1.x, SDXL
	// base) or OpenCLIP ViT-H (SD 2.x); nil for the SDXL refiner.
	TextEncoder *clip.Config
	// TextEncoder2 is SDXL's OpenCLIP ViT-bigG with its projection; nil
	// for SD 1.x and 2.x.
	TextEncoder2 *clip.Config
	// Prediction is the scheduler's prediction_type the model was trained
	// for ("epsilon" or "v_prediction"), which a file does not record.
	Prediction string
	Parts      []Part
}

// SGM reports whether the model is an SDXL one (Stability AI's
// generative-models layout, conditioner.embedders.*).
func (m Model) SGM() bool { return m.TextEncoder2 != nil }

// Refiner reports whether the model is the SDXL refiner: OpenCLIP alone.
func (m Model) Refiner() bool { return m.SGM() && m.TextEncoder == nil }

// Module builds the unloaded diffusers model of the named part from its
// config.
func (m Model) Module(part string) (nn.Module, error) {
	switch part {
	case "unet":
		return unet.New(m.UNet)
	case "vae":
		return vae.New(m.VAE)
	case "text_encoder", "text_encoder_2":
		c := m.TextEncoder
		if part == "text_encoder_2" {
			c = m.TextEncoder2
		}
		if c == nil {
			return nil, fmt.Errorf("checkpoint: %s has no %s", m.Name, part)
		}
		return clip.New(*c)
	}
	return nil, fmt.Errorf("checkpoint: %s: unknown part %q", m.Name, part)
}

// ComponentParams is one model of a single-file checkpoint with its
// parameters: Part.Rules applied to the model built from its config.
type ComponentParams struct {
	Part
	Params []Param
	// Unused lists tensors (relative to Prefix) that files may hold but
	// the model does not use; a name ending in "." covers every tensor
	// under it.
	Unused []string
}

// unused reports whether rel (a name relative to the prefix) is one of
// the component's unused or buffer tensors.
func (c ComponentParams) unused(rel string) bool {
	if c.Rules.ignorable(rel) {
		return true
	}
	for _, u := range c.Unused {
		if rel == u || strings.HasSuffix(u, ".") && strings.HasPrefix(rel, u) {
			return true
		}
	}
	return false
}

// Components lists the parts of m with their parameters.
func (m Model) Components() ([]ComponentParams, error) {
	out := make([]ComponentParams, 0, len(m.Parts))
	for _, p := range m.Parts {
		mod, err := m.Module(p.Name)
		if err != nil {
			return nil, fmt.Errorf("checkpoint: %s: %s: %w", m.Name, p.Name, err)
		}
		ps, err := p.Rules.Names(mod)
		if err != nil {
			return nil, fmt.Errorf("checkpoint: %s: %s: %w", m.Name, p.Name, err)
		}
		cp := ComponentParams{Part: p, Params: ps}
		if te := m.TextEncoder; p.Penultimate && p.Name == "text_encoder" && te != nil {
			cp.Unused = []string{"transformer.resblocks." + strconv.Itoa(te.NumHiddenLayers) + ".", "text_projection"}
		}
		out = append(out, cp)
	}
	return out, nil
}

// ldmParts are where LDM files (SD 1.x, SD 2.x) keep their models.
func ldmParts(te Part) []Part {
	return []Part{{Name: "unet", Prefix: UNetPrefix, Rules: LDMUNet}, {Name: "vae", Prefix: VAEPrefix, Rules: LDMVAE}, te}
}

func ptr[T any](v T) *T { return &v }

// SD15 is Stable Diffusion 1.5 (also 1.1–1.4 and their fine-tunes).
func SD15() Model {
	return Model{Name: "SD 1.5", UNet: unet.SD15(4), VAE: vae.SD(), TextEncoder: ptr(clip.SD15()), Prediction: "epsilon",
		Parts: ldmParts(Part{Name: "text_encoder", Prefix: TextEncoderPrefix, Rules: CLIP})}
}

// SD15Inpainting is the SD 1.5 inpainting model: its UNet takes 9 input
// channels (latents, mask, masked-image latents).
func SD15Inpainting() Model {
	m := SD15()
	m.Name = "SD 1.5 inpainting"
	m.UNet = unet.SD15(9)
	return m
}

// SD21 is Stable Diffusion 2.x at 768×768 with v-prediction (2.0-v, 2.1
// and their fine-tunes), which diffusers' single-file loader assumes for
// SD 2.x files: the 512×512 epsilon models (2.0-base, 2.1-base) have the
// same tensors and cannot be told apart from the file.
func SD21() Model {
	te := clip.ViTH()
	v := vae.SD()
	v.SampleSize = 768
	return Model{Name: "SD 2.x (768, v-prediction)", UNet: unet.SD21(), VAE: v, TextEncoder: &te, Prediction: "v_prediction",
		Parts: ldmParts(Part{Name: "text_encoder", Prefix: OpenCLIPPrefix, Rules: OpenCLIP, Penultimate: true})}
}

// SD2Inpainting is stabilityai/stable-diffusion-2-inpainting: SD 2.x with
// a 9-channel UNet, 512×512, epsilon prediction.
func SD2Inpainting() Model {
	m := SD21()
	m.Name = "SD 2.x inpainting"
	m.UNet = unet.SD2Inpainting()
	m.VAE = vae.SD()
	m.Prediction = "epsilon"
	return m
}

// SDXLBase is SDXL 1.0 base (sd_xl_base.yaml): CLIP ViT-L and OpenCLIP
// ViT-bigG as embedders 0 and 1.
func SDXLBase() Model {
	return Model{Name: "SDXL base", UNet: unet.SDXL(), VAE: vae.SDXL(), TextEncoder: ptr(clip.SD15()), TextEncoder2: ptr(clip.BigG()),
		Prediction: "epsilon", Parts: []Part{
			{Name: "unet", Prefix: UNetPrefix, Rules: LDMUNet},
			{Name: "vae", Prefix: VAEPrefix, Rules: LDMVAE},
			{Name: "text_encoder", Prefix: SGMTextEncoderPrefix, Rules: CLIP},
			{Name: "text_encoder_2", Prefix: SGMOpenCLIPPrefix, Rules: OpenCLIP},
		}}
}

// SDXLInpainting is the SDXL inpainting model (diffusers' "xl_inpaint"):
// SDXL base whose UNet takes 9 input channels.
func SDXLInpainting() Model {
	m := SDXLBase()
	m.Name = "SDXL inpainting"
	m.UNet.InChannels = 9
	return m
}

// SDXLRefiner is the SDXL 1.0 refiner (sd_xl_refiner.yaml): OpenCLIP
// ViT-bigG alone, as embedder 0.
func SDXLRefiner() Model {
	return Model{Name: "SDXL refiner", UNet: unet.SDXLRefiner(), VAE: vae.SDXL(), TextEncoder2: ptr(clip.BigG()),
		Prediction: "epsilon", Parts: []Part{
			{Name: "unet", Prefix: UNetPrefix, Rules: LDMUNet},
			{Name: "vae", Prefix: VAEPrefix, Rules: LDMVAE},
			{Name: "text_encoder_2", Prefix: SGMRefinerOpenCLIPPrefix, Rules: OpenCLIP},
		}}
}

// scan notes which prefixes a checkpoint's tensors fall under.
type scan struct{ unet, clip, openCLIP, sgm, sgmCLIP, sgmOpenCLIP0, sgmOpenCLIP1 bool }

func scanNames(src Source) scan {
	var s scan
	for _, name := range src.Names() {
		switch {
		case strings.HasPrefix(name, UNetPrefix):
			s.unet = true
		case strings.HasPrefix(name, TextEncoderPrefix):
			s.clip = true
		case strings.HasPrefix(name, OpenCLIPPrefix):
			s.openCLIP = true
		case strings.HasPrefix(name, SGMTextEncoderPrefix):
			s.sgmCLIP = true
		case strings.HasPrefix(name, SGMRefinerOpenCLIPPrefix):
			s.sgmOpenCLIP0 = true
		case strings.HasPrefix(name, SGMOpenCLIPPrefix):
			s.sgmOpenCLIP1 = true
		}
		s.sgm = s.sgm || strings.HasPrefix(name, "conditioner.embedders.")
	}
	return s
}

// convIn is the UNet's conv_in, whose input channels tell the inpainting
// models apart.
const convIn = UNetPrefix + "input_blocks.0.0.weight"

// sd2Key is the tensor diffusers reads SD 2.x off (CHECKPOINT_KEY_NAMES
// "v2"): its cross-attention is 1024 wide (OpenCLIP ViT-H), SD 1.x's 768.
const sd2Key = UNetPrefix + "input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"

// pick returns the candidate whose conv_in shape the file has.
func pick(src Source, family string, candidates ...Model) (Model, error) {
	info, ok := src.Info(convIn)
	if !ok {
		return Model{}, fmt.Errorf("checkpoint: UNet conv_in %s is missing", convIn)
	}
	var want []string
	for _, c := range candidates {
		shape := []int{c.UNet.BlockOutChannels[0], c.UNet.InChannels, 3, 3}
		if slices.Equal(info.Shape, shape) {
			return c, nil
		}
		want = append(want, fmt.Sprintf("%v (%s)", shape, c.Name))
	}
	return Model{}, fmt.Errorf("checkpoint: UNet conv_in %s has shape %v; %s has %s", convIn, info.Shape, family, strings.Join(want, " or "))
}

// Detect tells which built-in SD 1.x or 2.x model an LDM checkpoint holds:
// SD 2.x by the 1024-wide cross-attention of its UNet (as diffusers'
// infer_diffusers_model_type), the inpainting models by the 9 input
// channels of conv_in. Other checkpoints get an error saying what they
// look like.
func Detect(src Source) (Model, error) {
	s := scanNames(src)
	switch {
	case s.sgm:
		return Model{}, fmt.Errorf("checkpoint: this looks like an SDXL checkpoint (conditioner.embedders.* tensors), not SD 1.x/2.x; load it with pipeline.LoadSDXL (checkpoint.ConvertSDXL)")
	case !s.unet:
		return Model{}, fmt.Errorf("checkpoint: not an LDM single-file checkpoint: no %s* tensors", UNetPrefix)
	}
	if info, ok := src.Info(sd2Key); ok && len(info.Shape) == 2 && info.Shape[1] == 1024 {
		return pick(src, "SD 2.x", SD21(), SD2Inpainting())
	}
	return pick(src, "SD 1.x", SD15(), SD15Inpainting())
}

// DetectSDXL tells which built-in SDXL model a checkpoint holds: the base
// model (CLIP ViT-L and OpenCLIP bigG as embedders 0 and 1), the refiner
// (OpenCLIP bigG alone as embedder 0) or the inpainting model (base with a
// 9-channel conv_in). Other checkpoints, SD 1.x/2.x ones included, get an
// error saying what they look like.
func DetectSDXL(src Source) (Model, error) {
	s := scanNames(src)
	switch {
	case !s.sgm && (s.clip || s.openCLIP):
		return Model{}, fmt.Errorf("checkpoint: this looks like an SD 1.x/2.x checkpoint (text encoder under cond_stage_model.*), not SDXL; load it with pipeline.Load (checkpoint.ConvertSD)")
	case !s.sgm:
		return Model{}, fmt.Errorf("checkpoint: not an SDXL single-file checkpoint: no conditioner.embedders.* tensors")
	case !s.unet:
		return Model{}, fmt.Errorf("checkpoint: not an SDXL single-file checkpoint: no %s* tensors", UNetPrefix)
	case s.sgmOpenCLIP1:
		return pick(src, "SDXL base", SDXLBase(), SDXLInpainting())
	case s.sgmOpenCLIP0 && !s.sgmCLIP:
		return pick(src, "the SDXL refiner", SDXLRefiner())
	}
	return Model{}, fmt.Errorf("checkpoint: SDXL text encoders not recognised: want OpenCLIP ViT-bigG under %s* (base, with CLIP ViT-L under %s*) or under %s* alone (refiner)",
		SGMOpenCLIPPrefix, SGMTextEncoderPrefix, SGMRefinerOpenCLIPPrefix)
}

// ConvertSD detects which SD 1.x/2.x model a checkpoint holds and maps it
// with Convert.
func ConvertSD(src Source) (*Mapping, error) {
	m, err := Detect(src)
	if err != nil {
		return nil, err
	}
	return Convert(src, m)
}

// ConvertSDXL detects which SDXL model a checkpoint holds and maps it with
// Convert.
func ConvertSDXL(src Source) (*Mapping, error) {
	m, err := DetectSDXL(src)
	if err != nil {
		return nil, err
	}
	return Convert(src, m)
}
