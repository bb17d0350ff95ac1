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

// The prefixes under which an SD 1.x LDM checkpoint stores its models.
const (
	UNetPrefix        = "model.diffusion_model."
	VAEPrefix         = "first_stage_model."
	TextEncoderPrefix = "cond_stage_model.transformer."
)

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
	// Model is the layout the checkpoint was matched against.
	Model       Model
	UNet        Component
	VAE         Component
	TextEncoder Component
	// Ignored lists, sorted, the checkpoint tensors that are not model
	// weights: EMA copies, noise-schedule buffers, position_ids.
	Ignored []string
}

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

// sgmBuffers are non-weight tensors of SDXL (SGM) checkpoints: the CLIP
// encoder's position_ids, OpenCLIP's contrastive logit_scale and the
// denoiser's noise levels.
var sgmBuffers = map[string]bool{
	SGMTextEncoderPrefix + "text_model.embeddings.position_ids": true,
	SGMTextEncoderPrefix + "embeddings.position_ids":            true,
	SGMOpenCLIPPrefix + "logit_scale":                           true,
	SGMRefinerOpenCLIPPrefix + "logit_scale":                    true,
	"denoiser.sigmas":                                           true,
}

// Ignorable reports whether a checkpoint tensor is a known non-weight entry
// that loading skips: noise-schedule buffers, EMA copies ("model_ema.*",
// which duplicate the UNet under flattened names), the text encoders'
// position_ids buffers and, in SDXL files, OpenCLIP's logit_scale and
// denoiser.sigmas.
func Ignorable(name string) bool {
	if ldmBuffers[name] || sgmBuffers[name] || strings.HasPrefix(name, "model_ema.") {
		return true
	}
	return name == TextEncoderPrefix+"text_model.embeddings.position_ids" ||
		name == TextEncoderPrefix+"embeddings.position_ids"
}

// MapComponent matches the tensors of src under prefix against params (as
// listed by UNetParams, VAEParams or TextEncoderParams). It returns the
// mapping, or a *LayoutError naming missing tensors, wrong shapes and
// tensors under prefix that no parameter claims. Tensors outside prefix
// are not looked at.
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
		case p.Rows[1] > 0 || p.Transpose:
			// A slice or a transposition: only the source layout is valid.
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

// ConvertLDM maps every tensor of an LDM single-file checkpoint onto the
// diffusers names of model m's UNet, VAE and text encoder. The checkpoint
// must match m exactly: any missing tensor, tensor of the wrong shape, or
// tensor that is neither a parameter of m nor Ignorable gives a
// *LayoutError naming them.
func ConvertLDM(src Source, m Model) (*Mapping, error) {
	unet, err := UNetParams(m.UNet)
	if err != nil {
		return nil, err
	}
	vae, err := VAEParams(m.VAE)
	if err != nil {
		return nil, err
	}
	te, err := TextEncoderParams(m.TextEncoder)
	if err != nil {
		return nil, err
	}
	comps, ignored, err := convertParts(src, m.Name, []part{{UNetPrefix, unet}, {VAEPrefix, vae}, {TextEncoderPrefix, te}})
	if err != nil {
		return nil, err
	}
	return &Mapping{Model: m, UNet: comps[0], VAE: comps[1], TextEncoder: comps[2], Ignored: ignored}, nil
}

// part is one component of a single-file checkpoint: its prefix and the
// parameters it holds.
type part struct {
	prefix string
	params []Param
}

// convertParts maps every part of src, returning one Component per part
// and the sorted Ignorable names. Every tensor of src must be claimed by a
// part or be Ignorable; otherwise, and for missing or misshapen tensors, it
// returns a *LayoutError for layout.
func convertParts(src Source, layout string, parts []part) ([]Component, []string, error) {
	e := &LayoutError{Layout: layout}
	if e.Layout == "" {
		e.Layout = "given"
	}
	cs := make([]claimed, len(parts))
	for i, p := range parts {
		cs[i] = mapComponent(src, p.prefix, p.params, e)
	}
	var ignored []string
names:
	for _, name := range src.Names() {
		if Ignorable(name) {
			ignored = append(ignored, name)
			continue
		}
		for i, p := range parts {
			if strings.HasPrefix(name, p.prefix) {
				if !cs[i].claims(name) {
					e.Unexpected = append(e.Unexpected, name)
				}
				continue names
			}
		}
		e.Unknown = append(e.Unknown, name)
	}
	if !e.empty() {
		e.sort()
		return nil, nil, e
	}
	sort.Strings(ignored)
	out := make([]Component, len(parts))
	for i := range cs {
		out[i] = cs[i].Component
	}
	return out, ignored, nil
}

// Detect tells which built-in SD 1.x layout a checkpoint has, from the shape
// of the UNet's conv_in: [320, 4, 3, 3] is SD 1.5, [320, 9, 3, 3] the
// inpainting model. Other checkpoints get an error saying what they look
// like.
func Detect(src Source) (Model, error) {
	var hasUNet, hasCLIP, hasOpenCLIP, hasSDXL bool
	for _, name := range src.Names() {
		switch {
		case strings.HasPrefix(name, UNetPrefix):
			hasUNet = true
		case strings.HasPrefix(name, TextEncoderPrefix):
			hasCLIP = true
		case strings.HasPrefix(name, "cond_stage_model.model."):
			hasOpenCLIP = true
		case strings.HasPrefix(name, "conditioner.embedders."):
			hasSDXL = true
		}
	}
	switch {
	case hasSDXL:
		return Model{}, fmt.Errorf("checkpoint: this looks like an SDXL checkpoint (conditioner.embedders.* tensors), not SD 1.x; load it with pipeline.LoadSDXL (checkpoint.ConvertSDXL)")
	case hasOpenCLIP && !hasCLIP:
		return Model{}, fmt.Errorf("checkpoint: this looks like an SD 2.x checkpoint (OpenCLIP text encoder under cond_stage_model.model.*); only SD 1.x single files are supported")
	case !hasUNet:
		return Model{}, fmt.Errorf("checkpoint: not an LDM single-file checkpoint: no %s* tensors", UNetPrefix)
	}
	const convIn = UNetPrefix + "input_blocks.0.0.weight"
	info, ok := src.Info(convIn)
	if !ok {
		return Model{}, fmt.Errorf("checkpoint: UNet conv_in %s is missing", convIn)
	}
	for _, m := range []Model{SD15(), SD15Inpainting()} {
		if slices.Equal(info.Shape, []int{m.UNet.BlockOutChannels[0], m.UNet.InChannels, 3, 3}) {
			return m, nil
		}
	}
	return Model{}, fmt.Errorf("checkpoint: UNet conv_in %s has shape %v; SD 1.x has [320 4 3 3] (SD 1.5) or [320 9 3 3] (inpainting)", convIn, info.Shape)
}

// ConvertSD1 detects which SD 1.x layout a checkpoint has and maps it with
// ConvertLDM.
func ConvertSD1(src Source) (*Mapping, error) {
	m, err := Detect(src)
	if err != nil {
		return nil, err
	}
	return ConvertLDM(src, m)
}
