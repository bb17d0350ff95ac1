// Package checkpoint maps single-file Stable Diffusion checkpoints (the
// .safetensors files model sites distribute) onto diffusers' module names.
//
// LDM files (SD 1.x, 2.x; CompVis/Stability AI's latent-diffusion layout)
// hold the UNet under model.diffusion_model.*, the VAE under
// first_stage_model.* and the text encoder under cond_stage_model.*: CLIP
// ViT-L with transformers' names (SD 1.x) or OpenCLIP ViT-H with OpenCLIP's
// (SD 2.x). SDXL files (Stability AI's generative-models "SGM" layout) keep
// the UNet and VAE there and their text encoders under
// conditioner.embedders.*.
//
// A Model is the diffusers configs of a file's models plus where the file
// keeps each (its Parts). The names a file must hold are derived from the
// models themselves: each is built from its config (model/unet, model/vae,
// model/clip: the one description of the architecture), its parameter list
// taken, and every diffusers name renamed by the Rules of its part, the
// inverse of diffusers' single_file_utils conversions. A checkpoint is then
// checked against that list, so a file that does not match is rejected with
// the missing, unexpected and misshapen tensors named. Loading the data is
// left to the caller; the mapping (Ref) says where a tensor must be
// reshaped, cut to a range of rows (OpenCLIP's, SD3's and FLUX's fused q,
// k, v), transposed (OpenCLIP's text projection) or have its halves
// swapped (SD3's and FLUX's final adaLN modulation).
//
// The same Rules name the transformers of SD3 and FLUX original files
// (Stability AI's MMDiT under model.diffusion_model.*, Black Forest Labs'
// FLUX with no prefix or that one); the GGUF files of these models
// (ComfyUI-GGUF, stable-diffusion.cpp) keep the same original names.
package checkpoint

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/diffuse-go/diffuse/safetensors"
)

// Source is a checkpoint's table of contents: tensor names and shapes.
// *safetensors.File satisfies it.
type Source interface {
	Names() []string
	Info(name string) (safetensors.TensorInfo, bool)
}

// Ref says where a checkpoint keeps one diffusers parameter.
type Ref struct {
	// Source is the tensor's full name in the checkpoint.
	Source string
	// DType is the tensor's dtype in the checkpoint.
	DType safetensors.DType
	// SourceShape is its shape in the checkpoint.
	SourceShape []int
	// Shape is the shape diffusers expects.
	Shape []int
	// Reshape is set when SourceShape differs from Shape: the data must be
	// viewed with Shape (same elements, same order; for instance the VAE
	// attention's 1×1 convolution [C, C, 1, 1] loaded as a Linear [C, C]).
	Reshape bool
	// Rows, when Rows[1] > 0, selects rows [Rows[0], Rows[1]) of the source
	// tensor's first dimension (one of q, k, v in a fused in_proj tensor).
	Rows [2]int
	// Transpose says the 2-D source tensor must be transposed.
	Transpose bool
	// Swap says the two halves of the source's first dimension must be
	// exchanged (SD3's and FLUX's adaLN modulations order shift, scale;
	// diffusers scale, shift).
	Swap bool
}

// Sliced reports whether the parameter is a row range of its source tensor.
func (r Ref) Sliced() bool { return r.Rows[1] > 0 }

// Apply turns the source tensor's shape into the parameter's: it checks
// shape against SourceShape and returns what the row selection and the
// transposition give, before any Reshape. Loaders use it to validate what
// they read.
func (r Ref) Apply(shape []int) ([]int, error) {
	if !slices.Equal(shape, r.SourceShape) {
		return nil, fmt.Errorf("checkpoint: %s has shape %v, want %v", r.Source, shape, r.SourceShape)
	}
	out := slices.Clone(shape)
	if r.Sliced() {
		if len(out) == 0 || r.Rows[0] < 0 || r.Rows[0] >= r.Rows[1] || r.Rows[1] > out[0] {
			return nil, fmt.Errorf("checkpoint: rows [%d, %d) of %s %v are out of range", r.Rows[0], r.Rows[1], r.Source, shape)
		}
		out[0] = r.Rows[1] - r.Rows[0]
	}
	if r.Swap && (len(out) == 0 || out[0]%2 != 0) {
		return nil, fmt.Errorf("checkpoint: %s %v has no two equal halves to swap", r.Source, shape)
	}
	if r.Transpose {
		if len(out) != 2 {
			return nil, fmt.Errorf("checkpoint: %s %v is not 2-D and cannot be transposed", r.Source, shape)
		}
		out[0], out[1] = out[1], out[0]
	}
	return out, nil
}

// Component maps diffusers parameter names to their place in a checkpoint.
type Component map[string]Ref

// Mapping is a whole checkpoint mapped onto diffusers names.
type Mapping struct {
	// Model is what the checkpoint was matched against.
	Model Model
	// Parts maps each part's name ("unet", "vae", "text_encoder",
	// "text_encoder_2") to its parameters.
	Parts map[string]Component
	// Ignored lists, sorted, the checkpoint tensors that are not model
	// weights or that the models do not use: EMA copies, noise-schedule
	// buffers, position_ids, SD 2.x's last OpenCLIP layer.
	Ignored []string
}

// Component returns the named part's mapping (nil for a part the model
// does not have).
func (mp *Mapping) Component(name string) Component { return mp.Parts[name] }

// ShapeMismatch is a tensor whose shape is neither the LDM nor the diffusers
// shape of its parameter.
type ShapeMismatch struct {
	Source string // name in the checkpoint
	Name   string // diffusers name
	Got    []int
	Want   []int // the LDM shape (the diffusers shape is also accepted)
}

// LayoutError reports why a checkpoint does not match a layout. Every list
// holds checkpoint names and is sorted.
type LayoutError struct {
	// Layout names what was checked ("SD 1.5", "unet", ...).
	Layout string
	// Missing lists expected tensors the checkpoint lacks.
	Missing []string
	// Unexpected lists tensors under a component prefix that belong to no
	// parameter of the layout.
	Unexpected []string
	// Unknown lists tensors outside every component prefix that are not
	// known non-weight entries.
	Unknown []string
	// Shapes lists tensors with the wrong shape.
	Shapes []ShapeMismatch
}

// maxListed bounds how many names of each kind Error spells out.
const maxListed = 8

// Error lists the problems, naming up to a few tensors of each kind.
func (e *LayoutError) Error() string {
	var parts []string
	list := func(what string, names []string) {
		if len(names) == 0 {
			return
		}
		shown := names[:min(len(names), maxListed)]
		s := fmt.Sprintf("%d %s: %s", len(names), what, strings.Join(shown, ", "))
		if len(names) > len(shown) {
			s += fmt.Sprintf(" and %d more", len(names)-len(shown))
		}
		parts = append(parts, s)
	}
	list("missing", e.Missing)
	list("unexpected", e.Unexpected)
	list("unknown", e.Unknown)
	var shapes []string
	for _, m := range e.Shapes {
		shapes = append(shapes, fmt.Sprintf("%s is %v, want %v", m.Source, m.Got, m.Want))
	}
	list("with the wrong shape", shapes)
	return fmt.Sprintf("checkpoint: tensors do not match the %s layout: %s", e.Layout, strings.Join(parts, "; "))
}

func (e *LayoutError) empty() bool {
	return len(e.Missing) == 0 && len(e.Unexpected) == 0 && len(e.Unknown) == 0 && len(e.Shapes) == 0
}

// sort sorts the lists and drops repeated names (q, k and v of a fused
// in_proj tensor share one source and are reported once).
func (e *LayoutError) sort() {
	sort.Strings(e.Missing)
	e.Missing = slices.Compact(e.Missing)
	sort.Strings(e.Unexpected)
	sort.Strings(e.Unknown)
	sort.SliceStable(e.Shapes, func(i, j int) bool { return e.Shapes[i].Source < e.Shapes[j].Source })
	e.Shapes = slices.CompactFunc(e.Shapes, func(a, b ShapeMismatch) bool { return a.Source == b.Source })
}

// ldmBuffers are top-level tensors of LDM checkpoints that are not weights:
// the DDPM noise schedule and the loss weighting.
var ldmBuffers = map[string]bool{
	"betas": true, "alphas_cumprod": true, "alphas_cumprod_prev": true,
	"sqrt_alphas_cumprod": true, "sqrt_one_minus_alphas_cumprod": true,
	"log_one_minus_alphas_cumprod": true, "sqrt_recip_alphas_cumprod": true,
	"sqrt_recipm1_alphas_cumprod": true, "posterior_variance": true,
	"posterior_log_variance_clipped": true, "posterior_mean_coef1": true,
	"posterior_mean_coef2": true, "logvar": true,
}

// Ignorable reports whether a checkpoint tensor is a known non-weight entry
// outside the models: noise-schedule buffers, EMA copies ("model_ema.*",
// which duplicate the UNet under flattened names) and SDXL's
// denoiser.sigmas. Buffers inside a model (position_ids, logit_scale) are
// told by the Rules of its part.
func Ignorable(name string) bool {
	return ldmBuffers[name] || name == "denoiser.sigmas" || strings.HasPrefix(name, "model_ema.")
}

// MapComponent matches the tensors of src under prefix against params (as
// listed by Rules.Names). It returns the mapping, or a *LayoutError naming
// missing tensors, wrong shapes and tensors under prefix that no parameter
// claims. Tensors outside prefix are not looked at.
func MapComponent(src Source, prefix string, params []Param) (Component, error) {
	e := &LayoutError{Layout: prefix + "*"}
	c := mapComponent(src, prefix, params, e)
	for _, name := range src.Names() {
		if strings.HasPrefix(name, prefix) && !c.claims(name) && !Ignorable(name) {
			e.Unexpected = append(e.Unexpected, name)
		}
	}
	if !e.empty() {
		e.sort()
		return nil, e
	}
	return c.Component, nil
}

type claimed struct {
	Component
	used map[string]bool
}

func (c claimed) claims(name string) bool { return c.used[name] }

func mapComponent(src Source, prefix string, params []Param, e *LayoutError) claimed {
	c := claimed{Component: make(Component, len(params)), used: make(map[string]bool, len(params))}
	for _, p := range params {
		var info safetensors.TensorInfo
		found := false
		for _, s := range append([]string{p.Source}, p.Aliases...) {
			if info, found = src.Info(prefix + s); found {
				break
			}
		}
		if !found {
			e.Missing = append(e.Missing, prefix+p.Source)
			continue
		}
		c.used[info.Name] = true
		switch {
		case p.Rows[1] > 0 || p.Transpose || p.Swap:
			// A slice, a transposition or a swap: only the source layout is
			// valid.
			if !slices.Equal(info.Shape, p.SourceShape) {
				e.Shapes = append(e.Shapes, ShapeMismatch{Source: info.Name, Name: p.Name, Got: info.Shape, Want: p.SourceShape})
				continue
			}
			c.Component[p.Name] = Ref{
				Source:      info.Name,
				DType:       info.DType,
				SourceShape: info.Shape,
				Shape:       p.Shape,
				Rows:        p.Rows,
				Transpose:   p.Transpose,
				Swap:        p.Swap,
			}
		case slices.Equal(info.Shape, p.SourceShape), slices.Equal(info.Shape, p.Shape):
			c.Component[p.Name] = Ref{
				Source:      info.Name,
				DType:       info.DType,
				SourceShape: info.Shape,
				Shape:       p.Shape,
				Reshape:     !slices.Equal(info.Shape, p.Shape),
			}
		default:
			e.Shapes = append(e.Shapes, ShapeMismatch{Source: info.Name, Name: p.Name, Got: info.Shape, Want: p.SourceShape})
		}
	}
	return c
}

// Convert maps every tensor of a single-file checkpoint onto the diffusers
// names of m's models. The checkpoint must match m exactly: any missing
// tensor, tensor of the wrong shape, or tensor that is neither a parameter
// of m nor a known buffer or unused tensor gives a *LayoutError naming
// them.
func Convert(src Source, m Model) (*Mapping, error) {
	cps, err := m.Components()
	if err != nil {
		return nil, err
	}
	e := &LayoutError{Layout: m.Name}
	if e.Layout == "" {
		e.Layout = "given"
	}
	cs := make([]claimed, len(cps))
	for i, c := range cps {
		cs[i] = mapComponent(src, c.Prefix, c.Params, e)
	}
	var ignored []string
names:
	for _, name := range src.Names() {
		if Ignorable(name) {
			ignored = append(ignored, name)
			continue
		}
		for i, c := range cps {
			rel, ok := strings.CutPrefix(name, c.Prefix)
			switch {
			case !ok:
				continue
			case cs[i].claims(name):
			case c.unused(rel):
				ignored = append(ignored, name)
			default:
				e.Unexpected = append(e.Unexpected, name)
			}
			continue names
		}
		e.Unknown = append(e.Unknown, name)
	}
	if !e.empty() {
		e.sort()
		return nil, e
	}
	sort.Strings(ignored)
	mp := &Mapping{Model: m, Parts: make(map[string]Component, len(cps)), Ignored: ignored}
	for i, c := range cps {
		mp.Parts[c.Name] = cs[i].Component
	}
	return mp, nil
}
