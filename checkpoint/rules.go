package checkpoint

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/diffuse-go/diffuse/nn"
)

// Param is one parameter of a diffusers model and where a single file keeps
// it.
type Param struct {
	// Name is the diffusers parameter name (its state-dict key).
	Name string
	// Source is the original name, relative to the component's prefix.
	Source string
	// Aliases are other original names (relative to the prefix) that some
	// checkpoints use for the same tensor; Source is preferred.
	Aliases []string
	// Shape is the diffusers shape.
	Shape []int
	// SourceShape is the shape single files store. Without Rows or
	// Transpose it differs from Shape only by size-1 dimensions (a reshape),
	// and a file may hold either shape. With Rows or Transpose it is the
	// shape of the whole source tensor, which the file must hold exactly.
	SourceShape []int
	// Rows, when Rows[1] > 0, says the parameter is rows [Rows[0], Rows[1])
	// of the source tensor's first dimension: OpenCLIP fuses the q, k and v
	// projections into one in_proj tensor, SD3 and FLUX into qkv, and
	// FLUX's single blocks the MLP input too (linear1).
	Rows [2]int
	// Transpose says the 2-D source tensor holds the parameter transposed
	// (OpenCLIP's text_projection is applied as x @ P, diffusers' as a
	// Linear with weight Pᵀ).
	Transpose bool
	// Swap says the source stores the two halves of the parameter's first
	// dimension in the other order (the reference AdaLayerNormContinuous
	// of SD3 and FLUX yields shift, scale where diffusers' yields scale,
	// shift); SourceShape is Shape.
	Swap bool
}

// Rules is a naming scheme of the original code bases: how a single file
// names the tensors of one diffusers model. Names maps a model's own
// parameter list through it, so the model built from its diffusers config
// is the one description of what a file must hold.
type Rules int

const (
	// LDMUNet is the UNet of CompVis' and Stability AI's openaimodel.py
	// (input_blocks, middle_block, output_blocks): SD 1.x, 2.x and SDXL.
	LDMUNet Rules = iota + 1
	// LDMVAE is the AutoencoderKL of the same code bases (encoder.down,
	// decoder.up counted from the top, mid.attn_1 with 1×1 convolutions).
	LDMVAE
	// CLIP is a transformers CLIPTextModel stored under its own names (SD
	// 1.x, SDXL's first encoder); files saved by old transformers versions
	// lack the "text_model." level.
	CLIP
	// OpenCLIP is OpenCLIP's text transformer (resblocks, fused in_proj,
	// text_projection applied as x @ P): SD 2.x and SDXL's ViT-bigG.
	OpenCLIP
	// LDMControlNet is cldm.py's ControlNet: the UNet encoder named as in
	// LDMUNet, input_hint_block, zero_convs and middle_block_out.
	LDMControlNet
	// SD3 is Stability AI's MMDiT (mmdit.py of the SD3 reference code:
	// joint_blocks.N.x_block and .context_block, fused qkv, adaLN
	// modulations): SD3 medium's transformer.
	SD3
	// Flux is Black Forest Labs' FLUX transformer (double_blocks,
	// single_blocks with linear1 fusing q, k, v and the MLP input):
	// flux1-dev and flux1-schnell.
	Flux
)

// String names the rules.
func (r Rules) String() string {
	switch r {
	case LDMUNet:
		return "LDM UNet"
	case LDMVAE:
		return "LDM VAE"
	case CLIP:
		return "CLIP"
	case OpenCLIP:
		return "OpenCLIP"
	case LDMControlNet:
		return "LDM ControlNet"
	case SD3:
		return "SD3 MMDiT"
	case Flux:
		return "FLUX"
	}
	return fmt.Sprintf("Rules(%d)", int(r))
}

// Names lists every parameter of m (a diffusers model, loaded or not) with
// its original name and shape under the rules. A parameter the rules have
// no name for is an error: the original code has no such module.
func (r Rules) Names(m nn.Module) ([]Param, error) {
	var ps nn.Params
	m.Params("", &ps)
	list := ps.List()
	var rename func(nn.Param) (Param, bool)
	switch r {
	case LDMUNet, LDMControlNet:
		rename = newUNetNamer(list, r == LDMControlNet).param
	case LDMVAE:
		rename = newVAENamer(list).param
	case CLIP:
		rename = clipParam
	case OpenCLIP:
		rename = openCLIPParam
	case SD3:
		rename = newPatternNamer(sd3Patterns, list).param
	case Flux:
		rename = newPatternNamer(fluxPatterns, list).param
	default:
		return nil, fmt.Errorf("checkpoint: unknown naming rules %d", int(r))
	}
	out := make([]Param, 0, len(list))
	seen := map[string]string{}
	for _, p := range list {
		q, ok := rename(p)
		if !ok {
			return nil, fmt.Errorf("checkpoint: the %s layout has no name for parameter %s %v", r, p.Name, p.Shape)
		}
		// Only the row ranges of one fused tensor share a source.
		if other, dup := seen[q.Source]; dup && q.Rows[1] == 0 {
			return nil, fmt.Errorf("checkpoint: %s: parameters %s and %s both map to %s", r, other, p.Name, q.Source)
		}
		seen[q.Source] = p.Name
		out = append(out, q)
	}
	return out, nil
}

// ignorable reports whether a tensor under a component of these rules
// (name relative to its prefix) is a buffer, not a weight: transformers'
// position_ids, OpenCLIP's contrastive logit_scale.
func (r Rules) ignorable(rel string) bool {
	switch r {
	case CLIP:
		return rel == "text_model.embeddings.position_ids" || rel == "embeddings.position_ids"
	case OpenCLIP:
		return rel == "logit_scale"
	}
	return false
}

// same is a parameter stored under source with its own shape.
func same(p nn.Param, source string) Param {
	return Param{Name: p.Name, Source: source, Shape: p.Shape, SourceShape: p.Shape}
}

// index reads the dot-separated segment i of name as an index.
func index(parts []string, i int) (int, bool) {
	if i >= len(parts) {
		return 0, false
	}
	n, err := strconv.Atoi(parts[i])
	return n, err == nil && n >= 0
}

// grow extends s so that s[i] exists.
func grow[T any](s []T, i int) []T {
	for len(s) <= i {
		var zero T
		s = append(s, zero)
	}
	return s
}

// unetNamer renames diffusers UNet (and ControlNet) parameters to
// openaimodel.py's. LDM numbers each path as one flat list:
// input_blocks.0 is conv_in, then every down block contributes one entry
// per resnet (holding the resnet at .0 and its attention, if any, at .1)
// and one for its downsampler (at .0.op); output_blocks has one entry per
// up-block resnet (resnet .0, attention .1), the last of each block also
// holding the upsampler (.1, or .2 after an attention). The counts come
// from the parameter list itself.
type unetNamer struct {
	downRes, upRes []int  // resnets per block
	downSample     []bool // whether a down block has a downsampler
	upAttn         []bool // whether an up block has attentions
	midAttn        bool
	hintBlocks     int // ControlNet condition embedding inner blocks
	controlNet     bool
}

func newUNetNamer(list []nn.Param, controlNet bool) *unetNamer {
	u := &unetNamer{controlNet: controlNet}
	for _, p := range list {
		f := strings.Split(p.Name, ".")
		i, ok := index(f, 1)
		j, okj := index(f, 3)
		switch {
		case f[0] == "down_blocks" && ok && len(f) > 2:
			u.downRes, u.downSample = grow(u.downRes, i), grow(u.downSample, i)
			if f[2] == "resnets" && okj {
				u.downRes[i] = max(u.downRes[i], j+1)
			}
			u.downSample[i] = u.downSample[i] || f[2] == "downsamplers"
		case f[0] == "up_blocks" && ok && len(f) > 2:
			u.upRes, u.upAttn = grow(u.upRes, i), grow(u.upAttn, i)
			if f[2] == "resnets" && okj {
				u.upRes[i] = max(u.upRes[i], j+1)
			}
			u.upAttn[i] = u.upAttn[i] || f[2] == "attentions"
		case f[0] == "mid_block" && len(f) > 1:
			u.midAttn = u.midAttn || f[1] == "attentions"
		case f[0] == "controlnet_cond_embedding" && len(f) > 2 && f[1] == "blocks":
			if k, ok := index(f, 2); ok {
				u.hintBlocks = max(u.hintBlocks, k+1)
			}
		}
	}
	return u
}

// unetModules are the UNet's single modules, diffusers path → LDM path.
var unetModules = [][2]string{
	{"conv_in.", "input_blocks.0.0."},
	{"time_embedding.linear_1.", "time_embed.0."},
	{"time_embedding.linear_2.", "time_embed.2."},
	{"add_embedding.linear_1.", "label_emb.0.0."},
	{"add_embedding.linear_2.", "label_emb.0.2."},
	{"class_embedding.linear_1.", "label_emb.0.0."},
	{"class_embedding.linear_2.", "label_emb.0.2."},
	{"conv_norm_out.", "out.0."},
	{"conv_out.", "out.2."},
}

// unetResnet are ResnetBlock2D's modules in openaimodel.py's ResBlock.
var unetResnet = [][2]string{
	{"norm1.", "in_layers.0."},
	{"conv1.", "in_layers.2."},
	{"time_emb_proj.", "emb_layers.1."},
	{"norm2.", "out_layers.0."},
	{"conv2.", "out_layers.3."},
	{"conv_shortcut.", "skip_connection."},
}

func renameModule(rest string, table [][2]string) (string, bool) {
	for _, r := range table {
		if tail, ok := strings.CutPrefix(rest, r[0]); ok {
			return r[1] + tail, true
		}
	}
	return "", false
}

func (u *unetNamer) param(p nn.Param) (Param, bool) {
	s, ok := u.name(p.Name)
	return same(p, s), ok
}

func (u *unetNamer) name(name string) (string, bool) {
	if s, ok := renameModule(name, unetModules); ok {
		return s, true
	}
	if u.controlNet {
		if s, ok := u.controlNetName(name); ok {
			return s, true
		}
	}
	f := strings.SplitN(name, ".", 5)
	if len(f) < 4 {
		return "", false
	}
	if f[0] == "mid_block" {
		return u.mid(f[1], f[2], strings.Join(f[3:], "."))
	}
	i, oki := index(f, 1)
	j, okj := index(f, 3)
	if !oki || !okj || len(f) < 5 {
		return "", false
	}
	switch f[0] {
	case "down_blocks":
		return u.down(i, f[2], j, f[4])
	case "up_blocks":
		return u.up(i, f[2], j, f[4])
	}
	return "", false
}

// mid renames mid_block.<kind>.<index>.<rest>: LDM's middle_block is
// ResBlock, SpatialTransformer, ResBlock (or two ResBlocks).
func (u *unetNamer) mid(kind, index, rest string) (string, bool) {
	j, err := strconv.Atoi(index)
	switch {
	case err != nil || j < 0:
	case kind == "resnets" && u.midAttn:
		return resnet("middle_block."+strconv.Itoa(2*j)+".", rest)
	case kind == "resnets":
		return resnet("middle_block."+strconv.Itoa(j)+".", rest)
	case kind == "attentions":
		return "middle_block." + strconv.Itoa(2*j+1) + "." + rest, true
	}
	return "", false
}

// down renames down_blocks.i.<kind>.j.<rest>.
func (u *unetNamer) down(i int, kind string, j int, rest string) (string, bool) {
	k := 1 // input_blocks.0 is conv_in
	for b := range i {
		k += u.downRes[b]
		if u.downSample[b] {
			k++
		}
	}
	switch kind {
	case "resnets":
		return resnet("input_blocks."+strconv.Itoa(k+j)+".0.", rest)
	case "attentions":
		return "input_blocks." + strconv.Itoa(k+j) + ".1." + rest, true
	case "downsamplers":
		if tail, ok := strings.CutPrefix(rest, "conv."); ok && j == 0 {
			return "input_blocks." + strconv.Itoa(k+u.downRes[i]) + ".0.op." + tail, true
		}
	}
	return "", false
}

// up renames up_blocks.i.<kind>.j.<rest>.
func (u *unetNamer) up(i int, kind string, j int, rest string) (string, bool) {
	k := 0
	for b := range i {
		k += u.upRes[b]
	}
	switch kind {
	case "resnets":
		return resnet("output_blocks."+strconv.Itoa(k+j)+".0.", rest)
	case "attentions":
		return "output_blocks." + strconv.Itoa(k+j) + ".1." + rest, true
	case "upsamplers":
		slot := ".1."
		if u.upAttn[i] {
			slot = ".2."
		}
		if tail, ok := strings.CutPrefix(rest, "conv."); ok && j == 0 {
			return "output_blocks." + strconv.Itoa(k+u.upRes[i]-1) + slot + "conv." + tail, true
		}
	}
	return "", false
}

// resnet renames a ResnetBlock2D's parameter under the LDM module path
// (input and output blocks hold it at .0 of their entry, the middle block
// directly).
func resnet(path, rest string) (string, bool) {
	s, ok := renameModule(rest, unetResnet)
	return path + s, ok
}

// controlNetName renames the ControlNet's own modules: the condition
// embedding is input_hint_block, a Sequential of convolutions with SiLUs
// between them (so at even indices), the zero convolutions zero_convs.N.0
// and the mid one middle_block_out.0.
func (u *unetNamer) controlNetName(name string) (string, bool) {
	if rest, ok := strings.CutPrefix(name, "controlnet_cond_embedding."); ok {
		switch {
		case strings.HasPrefix(rest, "conv_in."):
			return "input_hint_block.0." + strings.TrimPrefix(rest, "conv_in."), true
		case strings.HasPrefix(rest, "conv_out."):
			return "input_hint_block." + strconv.Itoa(2*u.hintBlocks+2) + "." + strings.TrimPrefix(rest, "conv_out."), true
		}
		f := strings.SplitN(rest, ".", 3)
		if k, ok := index(f, 1); ok && f[0] == "blocks" && len(f) == 3 {
			return "input_hint_block." + strconv.Itoa(2*k+2) + "." + f[2], true
		}
		return "", false
	}
	if rest, ok := strings.CutPrefix(name, "controlnet_down_blocks."); ok {
		f := strings.SplitN(rest, ".", 2)
		if _, ok := index(f, 0); ok && len(f) == 2 {
			return "zero_convs." + f[0] + ".0." + f[1], true
		}
		return "", false
	}
	if rest, ok := strings.CutPrefix(name, "controlnet_mid_block."); ok {
		return "middle_block_out.0." + rest, true
	}
	return "", false
}

// vaeNamer renames diffusers AutoencoderKL parameters to LDM's: the
// decoder's up blocks are numbered from the bottom in LDM (diffusers
// up_blocks.i is up.(n-1-i)), resnets are block.j with nin_shortcut, the
// mid block is block_1, attn_1, block_2, and the mid attention's q, k, v
// and proj_out are 1×1 convolutions where diffusers has Linear layers.
type vaeNamer struct{ up int }

func newVAENamer(list []nn.Param) *vaeNamer {
	v := &vaeNamer{}
	for _, p := range list {
		f := strings.Split(p.Name, ".")
		if i, ok := index(f, 2); ok && f[0] == "decoder" && f[1] == "up_blocks" {
			v.up = max(v.up, i+1)
		}
	}
	return v
}

// vaeAttention are the mid attention's modules.
var vaeAttention = [][2]string{{"group_norm.", "norm."}, {"to_q.", "q."}, {"to_k.", "k."}, {"to_v.", "v."}, {"to_out.0.", "proj_out."}}

func (v *vaeNamer) param(p nn.Param) (Param, bool) {
	f := strings.SplitN(p.Name, ".", 6)
	if len(f) < 3 || f[0] != "encoder" && f[0] != "decoder" {
		return same(p, p.Name), p.Name == "quant_conv.weight" || p.Name == "quant_conv.bias" ||
			p.Name == "post_quant_conv.weight" || p.Name == "post_quant_conv.bias"
	}
	part := f[0] + "."
	switch f[1] {
	case "conv_in", "conv_out":
		return same(p, p.Name), true
	case "conv_norm_out":
		return same(p, part+"norm_out."+f[2]), true
	case "mid_block":
		return v.mid(p, part, f)
	case "down_blocks", "up_blocks":
	default:
		return Param{}, false
	}
	i, oki := index(f, 2)
	j, okj := index(f, 4)
	if !oki || !okj || len(f) < 6 {
		return Param{}, false
	}
	block := part + "down." + f[2]
	if f[1] == "up_blocks" {
		block = part + "up." + strconv.Itoa(v.up-1-i)
	}
	switch {
	case f[3] == "resnets":
		return same(p, block+".block."+f[4]+"."+vaeResnet(f[5])), true
	case f[3] == "downsamplers" && f[1] == "down_blocks" && j == 0:
		return same(p, block+".downsample."+f[5]), true
	case f[3] == "upsamplers" && f[1] == "up_blocks" && j == 0:
		return same(p, block+".upsample."+f[5]), true
	}
	return Param{}, false
}

func vaeResnet(rest string) string {
	if tail, ok := strings.CutPrefix(rest, "conv_shortcut."); ok {
		return "nin_shortcut." + tail
	}
	return rest
}

// mid renames encoder/decoder.mid_block.*.
func (v *vaeNamer) mid(p nn.Param, part string, f []string) (Param, bool) {
	j, ok := index(f, 3)
	if !ok || len(f) < 5 {
		return Param{}, false
	}
	rest := strings.Join(f[4:], ".")
	switch f[2] {
	case "resnets":
		return same(p, part+"mid.block_"+strconv.Itoa(j+1)+"."+vaeResnet(rest)), true
	case "attentions":
		s, ok := renameModule(rest, vaeAttention)
		if !ok || j != 0 {
			return Param{}, false
		}
		q := same(p, part+"mid.attn_1."+s)
		if len(p.Shape) == 2 {
			// A Linear stored as a 1×1 convolution.
			q.SourceShape = append(slices.Clone(p.Shape), 1, 1)
		}
		return q, true
	}
	return Param{}, false
}

// clipParam keeps transformers' names; checkpoints saved by old
// transformers versions lack the "text_model." level.
func clipParam(p nn.Param) (Param, bool) {
	q := same(p, p.Name)
	if tail, ok := strings.CutPrefix(p.Name, "text_model."); ok {
		q.Aliases = []string{tail}
	}
	return q, true
}

// openCLIPModules are OpenCLIP's names for the text model's single modules.
var openCLIPModules = map[string]string{
	"text_model.embeddings.token_embedding.weight":    "token_embedding.weight",
	"text_model.embeddings.position_embedding.weight": "positional_embedding",
	"text_model.final_layer_norm.weight":              "ln_final.weight",
	"text_model.final_layer_norm.bias":                "ln_final.bias",
}

// openCLIPLayer are a residual block's modules.
var openCLIPLayer = [][2]string{
	{"layer_norm1.", "ln_1."},
	{"layer_norm2.", "ln_2."},
	{"mlp.fc1.", "mlp.c_fc."},
	{"mlp.fc2.", "mlp.c_proj."},
	{"self_attn.out_proj.", "attn.out_proj."},
}

// openCLIPParam renames a CLIPTextModel(WithProjection) parameter to
// OpenCLIP's: each layer's q, k and v are rows [0, h), [h, 2h), [2h, 3h)
// of attn.in_proj_weight [3h, h] and attn.in_proj_bias [3h], and
// text_projection [h, projection] is the transpose of transformers'
// text_projection.weight.
func openCLIPParam(p nn.Param) (Param, bool) {
	if s, ok := openCLIPModules[p.Name]; ok {
		return same(p, s), true
	}
	if p.Name == "text_projection.weight" && len(p.Shape) == 2 {
		return Param{Name: p.Name, Source: "text_projection", Shape: p.Shape,
			SourceShape: []int{p.Shape[1], p.Shape[0]}, Transpose: true}, true
	}
	rest, ok := strings.CutPrefix(p.Name, "text_model.encoder.layers.")
	if !ok {
		return Param{}, false
	}
	f := strings.SplitN(rest, ".", 2)
	if _, ok := index(f, 0); !ok || len(f) < 2 {
		return Param{}, false
	}
	block := "transformer.resblocks." + f[0] + "."
	if s, ok := renameModule(f[1], openCLIPLayer); ok {
		return same(p, block+s), true
	}
	for third, proj := range []string{"self_attn.q_proj.", "self_attn.k_proj.", "self_attn.v_proj."} {
		kind, ok := strings.CutPrefix(f[1], proj)
		if !ok || (kind != "weight" && kind != "bias") || len(p.Shape) == 0 {
			continue
		}
		h := p.Shape[0]
		shape := slices.Clone(p.Shape)
		shape[0] = 3 * h
		return Param{Name: p.Name, Source: block + "attn.in_proj_" + kind, Shape: p.Shape, SourceShape: shape,
			Rows: [2]int{third * h, (third + 1) * h}}, true
	}
	return Param{}, false
}
