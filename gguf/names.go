package gguf

import "strings"

// Tensor names in the GGUF files people download for SD3 and FLUX.
//
// Both tools that make them keep the names of the original (reference)
// checkpoints, not diffusers' names: FLUX "double_blocks.0.img_attn.qkv.weight",
// "single_blocks.3.linear1.weight", "img_in.weight"; SD3
// "joint_blocks.0.x_block.attn.qkv.weight",
// "joint_blocks.0.context_block.adaLN_modulation.1.weight", "x_embedder.proj.weight".
// Fused projections (qkv, linear1) stay fused; since every row is a whole
// number of blocks, a fused weight splits into q, k and v by rows without
// dequantising. With the prefix stripped, these are the names checkpoint.Flux and
// checkpoint.SD3 give the diffusers parameters (the same rules as the
// original safetensors files), which say the rows of each fused tensor.
//
//   - ComfyUI-GGUF (city96, tools/convert.py) writes the names of the
//     diffusion-model state dict as they are, with the prefix
//     "model.diffusion_model." (or "model.", or a uniform "net.") of a full
//     checkpoint stripped, and sets general.architecture ("flux", "sd3",
//     "sdxl", "sd1", …). It refuses diffusers-format FLUX/SD3 files. Small
//     and 1-D tensors stay F32 (or F16/BF16); a tensor whose last dimension
//     is not a multiple of 256 may be stored as rows of 256 with its
//     original shape under KeyOrigShape+name (SD1/SDXL only).
//   - stable-diffusion.cpp (sd-cli -M convert) writes its internal names:
//     the diffusion model under "model.diffusion_model.", the VAE under
//     "first_stage_model.", text encoders under "text_encoders.clip_l.transformer.",
//     "text_encoders.clip_g.transformer.", "text_encoders.t5xxl.transformer."
//     (SD3/FLUX) or "cond_stage_model.transformer." and
//     "cond_stage_model.1.transformer." (SD1/SDXL), and sets no
//     general.architecture. A diffusion-model-only file keeps the prefix.
//
// ComfyUI-GGUF's loader reads both: when any tensor name starts with
// "model.diffusion_model.", only those tensors are the diffusion model and
// the prefix is stripped (DiffusionModelNames does the same); without
// general.architecture it detects the architecture from the names
// (DetectArch).

// DiffusionModelPrefix is the prefix stable-diffusion.cpp (and full
// original-format checkpoints) put before diffusion-model tensor names.
const DiffusionModelPrefix = "model.diffusion_model."

// Component is the part of a full checkpoint a prefixed tensor belongs to.
type Component string

// The components StripPrefix recognises.
const (
	ComponentNone      Component = ""                // no known prefix
	ComponentDiffusion Component = "diffusion_model" // the UNet or transformer
	ComponentVAE       Component = "vae"
	ComponentCLIPL     Component = "clip_l"
	ComponentCLIPG     Component = "clip_g"
	ComponentT5XXL     Component = "t5xxl"
)

// knownPrefixes are stable-diffusion.cpp's component prefixes, longest
// first where one extends another.
var knownPrefixes = []struct {
	prefix string
	comp   Component
}{
	{DiffusionModelPrefix, ComponentDiffusion},
	{"first_stage_model.", ComponentVAE},
	{"text_encoders.clip_l.transformer.", ComponentCLIPL},
	{"text_encoders.clip_g.transformer.", ComponentCLIPG},
	{"text_encoders.t5xxl.transformer.", ComponentT5XXL},
	{"cond_stage_model.1.transformer.", ComponentCLIPG},
	{"cond_stage_model.transformer.", ComponentCLIPL},
}

// StripPrefix removes a known component prefix from a tensor name and says
// which component it names; a name without one is returned unchanged with
// ComponentNone (a ComfyUI-GGUF file holds one component, unprefixed).
func StripPrefix(name string) (string, Component) {
	for _, p := range knownPrefixes {
		if rest, ok := strings.CutPrefix(name, p.prefix); ok {
			return rest, p.comp
		}
	}
	return name, ComponentNone
}

// DiffusionModelNames maps the diffusion model's original checkpoint names
// to the names in the file, as ComfyUI-GGUF's loader does: when any name
// starts with DiffusionModelPrefix, only those tensors belong to it and
// the prefix is stripped; otherwise every tensor does, named as it is.
func DiffusionModelNames(names []string) map[string]string {
	prefixed := false
	for _, n := range names {
		if strings.HasPrefix(n, DiffusionModelPrefix) {
			prefixed = true
			break
		}
	}
	out := make(map[string]string, len(names))
	for _, n := range names {
		if !prefixed {
			out[n] = n
		} else if rest, ok := strings.CutPrefix(n, DiffusionModelPrefix); ok {
			out[rest] = n
		}
	}
	return out
}

// archKeys are the tensors (original checkpoint names, unprefixed) by which
// ComfyUI-GGUF's convert.py recognises an architecture; all of a set must
// be present. The first match wins, so FLUX and SD3 come before the UNets.
var archKeys = []struct {
	arch string
	keys []string
}{
	{"flux", []string{"double_blocks.0.img_attn.proj.weight"}},
	{"sd3", []string{"joint_blocks.0.x_block.attn.qkv.weight"}},
	{"sdxl", []string{"input_blocks.3.0.op.weight", "input_blocks.6.0.op.weight", "output_blocks.2.2.conv.weight", "output_blocks.5.2.conv.weight"}},
	{"sdxl", []string{"label_emb.0.0.weight"}},
	{"sd1", []string{"input_blocks.3.0.op.weight", "input_blocks.6.0.op.weight", "input_blocks.9.0.op.weight", "output_blocks.2.1.conv.weight", "output_blocks.5.2.conv.weight", "output_blocks.8.2.conv.weight"}},
}

// DetectArch names the diffusion model's architecture ("flux", "sd3",
// "sdxl", "sd1") from tensor names, prefixed or not, or returns "" when it
// recognises none. Prefer general.architecture (File.Architecture) when the
// file has it.
func DetectArch(names []string) string {
	have := DiffusionModelNames(names)
	for _, a := range archKeys {
		all := true
		for _, k := range a.keys {
			if _, ok := have[k]; !ok {
				all = false
				break
			}
		}
		if all {
			return a.arch
		}
	}
	return ""
}
