package train

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/diffuse-go/diffuse/model/lora"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// LoRAConfig is peft's LoraConfig as the diffusers scripts build it.
type LoRAConfig struct {
	// Rank is r; Alpha is lora_alpha (the adapter output is scaled by
	// Alpha/Rank).
	Rank  int
	Alpha float64
	// TargetModules are matched as peft does: a module path equal to a
	// name, or ending in "." + name.
	TargetModules []string
	// InitWeights is init_lora_weights: "gaussian" (A ~ N(0, 1/r²)) or
	// "" / "true" (peft's default: A kaiming-uniform with a = √5), B
	// starting at zero either way; "false" keeps both layers' constructor
	// init (a non-zero B: the adapter changes the model from the start).
	InitWeights string
}

// DreamBoothTargets are the UNet target modules of train_dreambooth_lora.py.
var DreamBoothTargets = []string{"to_k", "to_q", "to_v", "to_out.0", "add_k_proj", "add_v_proj"}

// SDXLTargets are the UNet target modules of train_dreambooth_lora_sdxl.py.
var SDXLTargets = []string{"to_k", "to_q", "to_v", "to_out.0"}

// TextEncoderTargets are the text encoders' target modules of both scripts
// (--train_text_encoder): the CLIP self-attention projections.
var TextEncoderTargets = []string{"q_proj", "k_proj", "v_proj", "out_proj"}

// LoRANetwork is a set of trainable adapters attached to one component of
// a model; only its tensors require gradients.
type LoRANetwork struct {
	Config    LoRAConfig
	Component string
	// Modules are the adapted module paths in the model's parameter order
	// (torch's named_modules order, which is the optimizer's order).
	Modules []string
	// Down and Up are lora_A [r, in(, k, k)] and lora_B [out, r(, 1, 1)]
	// per module.
	Down, Up map[string]*tensor.Tensor
	applied  *lora.Applied
}

// AddLoRA attaches fresh adapters to every Linear or Conv2d of m that
// cfg.TargetModules names, initialised from g as peft does: for each module
// in order, the constructors of lora_A and lora_B each draw their default
// kaiming-uniform weights, then lora_A is re-drawn (gaussian or
// kaiming-uniform) and lora_B zeroed.
func AddLoRA(m nn.Module, component string, cfg LoRAConfig, g *rng.Generator) (*LoRANetwork, error) {
	if cfg.Rank <= 0 || cfg.Alpha <= 0 || math.IsNaN(cfg.Alpha) {
		return nil, fmt.Errorf("train: LoRA rank %d and alpha %g must be positive", cfg.Rank, cfg.Alpha)
	}
	if len(cfg.TargetModules) == 0 {
		return nil, fmt.Errorf("train: LoRA has no target modules")
	}
	mode := strings.ToLower(cfg.InitWeights)
	switch mode {
	case "gaussian", "true", "false":
	case "":
		mode = "true"
	default:
		return nil, fmt.Errorf("train: init_lora_weights %q not supported (want gaussian, true or false)", cfg.InitWeights)
	}
	shapes := moduleShapes(m)
	n := &LoRANetwork{Config: cfg, Component: component, Down: map[string]*tensor.Tensor{}, Up: map[string]*tensor.Tensor{}}
	f := &lora.File{Name: "train", Path: "<training>"}
	for _, mod := range shapes.order {
		if !targeted(mod, cfg.TargetModules) {
			continue
		}
		ws := shapes.weight[mod]
		down, up := newAdapter(ws, cfg.Rank, mode, g)
		n.Modules = append(n.Modules, mod)
		n.Down[mod], n.Up[mod] = down.SetRequiresGrad(true), up.SetRequiresGrad(true)
		f.Entries = append(f.Entries, &lora.Entry{Component: component, Module: mod, Down: down, Up: up,
			Alpha: float32(cfg.Alpha), HasAlpha: true, Keys: []string{peftName(mod, "A"), peftName(mod, "B")}})
	}
	if len(n.Modules) == 0 {
		return nil, fmt.Errorf("train: no module of the model matches LoRA target modules %v", cfg.TargetModules)
	}
	a, err := lora.Apply(m, f, component, 1)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	n.applied = a
	return n, nil
}

// moduleOrder is the adaptable modules of a model in parameter order.
type moduleOrder struct {
	order  []string
	weight map[string][]int
}

// moduleShapes lists m's Linear and Conv2d modules in nn.Params order with
// their weight shapes.
func moduleShapes(m nn.Module) moduleOrder {
	adaptable := map[string]bool{}
	for _, p := range lora.Modules(m) {
		adaptable[p] = true
	}
	var ps nn.Params
	m.Params("", &ps)
	out := moduleOrder{weight: map[string][]int{}}
	for _, p := range ps.List() {
		mod, ok := strings.CutSuffix(p.Name, ".weight")
		if ok && adaptable[mod] && out.weight[mod] == nil {
			out.order = append(out.order, mod)
			out.weight[mod] = p.Shape
		}
	}
	out.order = clipAttentionOrder(torchOrder(out.order))
	return out
}

// torchOrder reorders module paths of nn.Params order (a UNet registers
// down, mid, up) into torch's named_modules order, which diffusers'
// UNet2DConditionModel gives as down_blocks, up_blocks, mid_block (both
// ModuleLists are assigned before the mid block): the mid block's modules
// move to just after the last up block's.
func torchOrder(paths []string) []string {
	var mid, rest []string
	lastUp := -1
	for _, p := range paths {
		if strings.HasPrefix(p, "mid_block.") {
			mid = append(mid, p)
			continue
		}
		rest = append(rest, p)
		if strings.HasPrefix(p, "up_blocks.") {
			lastUp = len(rest) - 1
		}
	}
	if lastUp < 0 || len(mid) == 0 {
		return paths
	}
	out := append([]string{}, rest[:lastUp+1]...)
	out = append(out, mid...)
	return append(out, rest[lastUp+1:]...)
}

// clipAttention is the order in which transformers' CLIPAttention
// registers its projections (k_proj, v_proj, q_proj, out_proj), which is
// their order in named_modules and parameters().
var clipAttention = map[string]int{"k_proj": 0, "v_proj": 1, "q_proj": 2, "out_proj": 3}

// clipAttentionOrder reorders each run of one "self_attn" module's
// projections (registered here as q, k, v, out) into CLIPAttention's
// order; other paths keep their places.
func clipAttentionOrder(paths []string) []string {
	out := append([]string(nil), paths...)
	for i := 0; i < len(out); {
		dir, leaf := selfAttnProjection(out[i])
		j := i + 1
		for leaf != "" && j < len(out) {
			if d, l := selfAttnProjection(out[j]); l == "" || d != dir {
				break
			}
			j++
		}
		run := out[i:j]
		sort.SliceStable(run, func(a, b int) bool {
			_, la := selfAttnProjection(run[a])
			_, lb := selfAttnProjection(run[b])
			return clipAttention[la] < clipAttention[lb]
		})
		i = j
	}
	return out
}

// selfAttnProjection splits "<dir>.self_attn.<proj>" into its attention
// module and projection name; leaf is "" for any other path.
func selfAttnProjection(p string) (dir, leaf string) {
	i := strings.LastIndexByte(p, '.')
	if i < 0 || !strings.HasSuffix(p[:i], ".self_attn") {
		return "", ""
	}
	if _, ok := clipAttention[p[i+1:]]; !ok {
		return "", ""
	}
	return p[:i], p[i+1:]
}

// targeted is peft's check_target_module_exists for a list of names.
func targeted(mod string, targets []string) bool {
	for _, t := range targets {
		if mod == t || strings.HasSuffix(mod, "."+t) {
			return true
		}
	}
	return false
}

// newAdapter makes lora_A and lora_B for a layer of weight shape ws
// ([out, in] or [out, in, k, k]), drawing from g in peft's order; mode is
// "gaussian", "true" or "false".
func newAdapter(ws []int, r int, mode string, g *rng.Generator) (down, up *tensor.Tensor) {
	out, in := ws[0], ws[1]
	dShape, uShape := []int{r, in}, []int{out, r}
	fanIn := in
	if len(ws) == 4 {
		dShape, uShape = []int{r, in, ws[2], ws[3]}, []int{out, r, 1, 1}
		fanIn = in * ws[2] * ws[3]
	}
	down, up = tensor.Zeros(dShape...), tensor.Zeros(uShape...)
	// nn.Linear / nn.Conv2d constructors: kaiming_uniform_(a=√5) on both.
	kaimingUniform(g, down.Data(), fanIn)
	kaimingUniform(g, up.Data(), r)
	switch mode {
	case "false":
		return down, up
	case "gaussian":
		normalFill(g, down.Data(), 1/float64(r))
	default:
		kaimingUniform(g, down.Data(), fanIn)
	}
	clear(up.Data())
	return down, up
}

// kaimingUniform is nn.init.kaiming_uniform_(w, a=√5) for a fan-in: torch's
// default Linear/Conv2d weight init, U(−b, b) with b = √3·gain/√fan_in.
func kaimingUniform(g *rng.Generator, w []float32, fanIn int) {
	gain := math.Sqrt(2.0 / (1 + 5.0))
	std := gain / math.Sqrt(float64(fanIn))
	bound := math.Sqrt(3.0) * std
	g.Uniform(w, float32(-bound), float32(bound))
}

// normalFill is nn.init.normal_(w, std=std): under 16 values torch draws
// serially in double precision and scales there; from 16 on it uses the
// float32 block kernel, scaling each float32 draw.
func normalFill(g *rng.Generator, w []float32, std float64) {
	if len(w) < 16 {
		for i, v := range g.RandnF64(len(w)) {
			w[i] = float32(v * std)
		}
		return
	}
	g.FillRandn(w)
	s := float32(std)
	for i := range w {
		w[i] *= s
	}
}

// peftName is the state-dict name of a module's adapter matrix ("A" or "B")
// under peft's default adapter name.
func peftName(mod, ab string) string { return mod + ".lora_" + ab + ".default.weight" }

// Params returns the adapters' tensors in the optimizer's order (each
// module's lora_A then lora_B) under their peft names; a text encoder's
// names start with its component ("text_encoder.", "text_encoder_2."), so
// that the networks of one run never share a name.
func (n *LoRANetwork) Params() []Param {
	prefix := ""
	if n.Component != lora.UNet {
		prefix = n.Component + "."
	}
	out := make([]Param, 0, 2*len(n.Modules))
	for _, mod := range n.Modules {
		out = append(out, Param{prefix + peftName(mod, "A"), n.Down[mod]}, Param{prefix + peftName(mod, "B"), n.Up[mod]})
	}
	return out
}

// Remove detaches the adapters from the model.
func (n *LoRANetwork) Remove() { n.applied.Remove() }

// DiffusersTensors is what diffusers' save_lora_weights writes for the
// adapters (convert_state_dict_to_diffusers of the peft state dict):
// "<component>.<module>.lora.down.weight" (A) and ".lora.up.weight" (B)
// for the UNet, ".lora_linear_layer.down.weight" / ".up.weight" for a
// text encoder's projections (PEFT_TO_DIFFUSERS). The layout has no alpha:
// diffusers' loaders take alpha = rank (and ignore ".alpha" keys in it), so
// a network whose alpha is not its rank is written with Alpha/Rank folded
// into B, which every loader then applies as trained (kohya files keep
// their alpha).
func (n *LoRANetwork) DiffusersTensors() []safetensors.Tensor {
	layer := ".lora."
	if n.Component != lora.UNet {
		layer = ".lora_linear_layer."
	}
	scale := float32(n.Config.Alpha / float64(n.Config.Rank))
	var out []safetensors.Tensor
	for _, mod := range n.Modules {
		p := n.Component + "." + mod
		b := n.Up[mod]
		v := b.Detach().Contiguous().Data()
		if scale != 1 {
			v = append([]float32(nil), v...) // not the trained tensor's storage
			for i := range v {
				v[i] *= scale
			}
		}
		up := safetensors.F32Tensor(p+layer+"up.weight", append([]int(nil), b.Shape()...), v)
		out = append(out, f32(p+layer+"down.weight", n.Down[mod]), up)
	}
	return out
}

// KohyaTensors is the kohya / A1111 layout of the adapters:
// "lora_unet_<module with dots as underscores>.lora_down.weight",
// ".lora_up.weight" and a 0-d ".alpha" ("lora_te_" for an SD text encoder;
// a LoRASet with two text encoders writes SDXL's "lora_te1_" and
// "lora_te2_").
func (n *LoRANetwork) KohyaTensors() ([]safetensors.Tensor, error) {
	prefix, ok := map[string]string{lora.UNet: "lora_unet_", lora.TextEncoder: "lora_te_", lora.TextEncoder2: "lora_te2_"}[n.Component]
	if !ok {
		return nil, fmt.Errorf("train: no kohya prefix for component %q", n.Component)
	}
	return n.kohyaTensors(prefix), nil
}

func (n *LoRANetwork) kohyaTensors(prefix string) []safetensors.Tensor {
	var out []safetensors.Tensor
	for _, mod := range n.Modules {
		k := prefix + strings.ReplaceAll(mod, ".", "_")
		out = append(out, f32(k+".lora_down.weight", n.Down[mod]), f32(k+".lora_up.weight", n.Up[mod]),
			safetensors.F32Tensor(k+".alpha", []int{}, []float32{float32(n.Config.Alpha)}))
	}
	return out
}

// KohyaMetadata is the ss_* metadata kohya's trainer writes that loaders
// read: the network module, dim (rank), alpha and base model version
// ("sd_v1", "sd_v2", "sdxl_base_v1-0").
func (n *LoRANetwork) KohyaMetadata(baseModelVersion string) map[string]string {
	return map[string]string{
		"ss_network_module":     "networks.lora",
		"ss_network_dim":        strconv.Itoa(n.Config.Rank),
		"ss_network_alpha":      strconv.FormatFloat(n.Config.Alpha, 'g', -1, 64),
		"ss_base_model_version": baseModelVersion,
		"ss_v2":                 strconv.FormatBool(strings.HasPrefix(baseModelVersion, "sd_v2")),
		"ss_training_comment":   "trained with diffuse",
	}
}

// f32 turns a tensor into a float32 safetensors entry.
func f32(name string, t *tensor.Tensor) safetensors.Tensor {
	return safetensors.F32Tensor(name, append([]int(nil), t.Shape()...), t.Detach().Contiguous().Data())
}

// SaveDiffusers writes the adapters as pytorch_lora_weights.safetensors
// (diffusers' layout and metadata), atomically.
func (n *LoRANetwork) SaveDiffusers(path string) error { return LoRASet{n}.SaveDiffusers(path) }

// SaveKohya writes the adapters in the kohya / A1111 layout with its ss_*
// metadata, atomically.
func (n *LoRANetwork) SaveKohya(path, baseModelVersion string) error {
	return LoRASet{n}.SaveKohya(path, baseModelVersion)
}

// LoRASet is the adapters one run trains, saved into one file: the UNet's,
// then the text encoders' (--train_text_encoder), as save_lora_weights
// takes unet_lora_layers, text_encoder_lora_layers and
// text_encoder_2_lora_layers.
type LoRASet []*LoRANetwork

// Params are the networks' parameters in the optimizer's order.
func (s LoRASet) Params() []Param {
	var out []Param
	for _, n := range s {
		out = append(out, n.Params()...)
	}
	return out
}

// Remove detaches every network, the last attached first.
func (s LoRASet) Remove() {
	for i := len(s) - 1; i >= 0; i-- {
		s[i].Remove()
	}
}

// DiffusersTensors are all networks' tensors in diffusers' layout.
func (s LoRASet) DiffusersTensors() []safetensors.Tensor {
	var out []safetensors.Tensor
	for _, n := range s {
		out = append(out, n.DiffusersTensors()...)
	}
	return out
}

// KohyaTensors are all networks' tensors in the kohya layout; with a
// second text encoder (SDXL) the first one's prefix is "lora_te1_".
func (s LoRASet) KohyaTensors() ([]safetensors.Tensor, error) {
	sdxl := false
	for _, n := range s {
		sdxl = sdxl || n.Component == lora.TextEncoder2
	}
	var out []safetensors.Tensor
	for _, n := range s {
		if sdxl && n.Component == lora.TextEncoder {
			out = append(out, n.kohyaTensors("lora_te1_")...)
			continue
		}
		ts, err := n.KohyaTensors()
		if err != nil {
			return nil, err
		}
		out = append(out, ts...)
	}
	return out, nil
}

// SaveDiffusers writes the networks as one pytorch_lora_weights.safetensors
// (diffusers' layout and metadata), atomically.
func (s LoRASet) SaveDiffusers(path string) error {
	return safetensors.WriteFile(path, s.DiffusersTensors(), map[string]string{"format": "pt"})
}

// SaveKohya writes the networks as one kohya / A1111 file with the first
// network's ss_* metadata, atomically.
func (s LoRASet) SaveKohya(path, baseModelVersion string) error {
	if len(s) == 0 {
		return fmt.Errorf("train: no LoRA network to save")
	}
	ts, err := s.KohyaTensors()
	if err != nil {
		return err
	}
	return safetensors.WriteFile(path, ts, s[0].KohyaMetadata(baseModelVersion))
}
