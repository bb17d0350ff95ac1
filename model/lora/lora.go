// Package lora loads LoRA adapter files in the formats people share them in
// and attaches them to a model's Linear and Conv2d layers for inference:
// unfused (several adapters at once, each with its own weight, changed
// between generations without reloading the base), or fused into the
// weights and unfused back to the exact original tensors.
//
// Supported key layouts (one file may mix them):
//
//   - PEFT / diffusers with peft: "<module>.lora_A.weight" (down, [r, in]) and
//     "<module>.lora_B.weight" (up, [out, r]), optionally prefixed by a
//     component ("unet.", "text_encoder.", "text_encoder_2.", "transformer.")
//     or "base_model.model.";
//   - diffusers: "unet.<module>.lora.down.weight" / ".lora.up.weight", and
//     ".lora_linear_layer.down/up.weight" (text encoders);
//   - legacy diffusers attention processors: "<attn>.processor.to_q_lora.down.weight"
//     (to_q/to_k/to_v/to_out; q_proj/k_proj/v_proj/out_proj under self_attn);
//   - kohya / A1111: "lora_unet_<module with _>.lora_down.weight",
//     ".lora_up.weight" and ".alpha", with "lora_te_" / "lora_te1_" (first
//     text encoder) and "lora_te2_" (second); UNet names may be diffusers'
//     (down_blocks...) or SGM/LDM's (input_blocks, middle_block,
//     output_blocks). Convolution adapters (LoCon: down [r, in, k, k], up
//     [out, r, 1, 1]) are applied as convolutions.
//
// Scaling follows diffusers: a module's output gains
// weight · alpha/rank · up(down(x)), and a file that stores no alpha for a
// module means alpha = rank. Keys of adapter kinds this package does not
// apply (DoRA magnitudes, LoHa/LoKr, biases) are listed in
// File.Unsupported, never silently dropped.
package lora

import (
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strings"

	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// Component names used by the loaders (as in diffusers pipelines).
const (
	UNet         = "unet"
	TextEncoder  = "text_encoder"
	TextEncoder2 = "text_encoder_2"
)

// File is a parsed LoRA file: one Entry per adapted module.
type File struct {
	// Name is the adapter name: the file name without folder and extension.
	Name string
	// Path is the file read ("<memory>" for Read of a parsed buffer).
	Path string
	// Formats lists the key layouts found: "peft", "diffusers",
	// "diffusers-legacy", "kohya".
	Formats []string
	// Entries are sorted by component, then module.
	Entries []*Entry
	// Unsupported lists keys this package does not apply, each with the
	// reason ("key: reason").
	Unsupported []string
}

// Entry is the adapter of one module.
type Entry struct {
	// Component is "unet", "text_encoder", "text_encoder_2", another
	// component name found as a key prefix, or "" when the file does not say
	// (plain PEFT files): such entries are tried on any component.
	Component string
	// Module is the diffusers module path ("down_blocks.0.attentions.0.
	// transformer_blocks.0.attn1.to_q"), or for Kohya entries the name with
	// dots replaced by underscores, as stored ("down_blocks_0_..." or
	// "input_blocks_4_1_..."), resolved against the model by Apply.
	Module string
	Kohya  bool
	// Down is [r, in] or [r, in, kh, kw]; Up is [out, r] or [out, r, 1, 1].
	// Both are float32.
	Down, Up *tensor.Tensor
	// Alpha is the stored alpha; HasAlpha is false when the file has none
	// (then alpha = rank).
	Alpha    float32
	HasAlpha bool
	// Keys are the file keys of this entry.
	Keys []string
}

// Rank is the adapter's rank r.
func (e *Entry) Rank() int { return e.Down.Dim(0) }

// Scale is alpha/rank, as diffusers computes it: 1 when the file stores no
// alpha. A stored alpha of 0 also counts as alpha = rank, as kohya's
// trainer (which wrote it) treats it; diffusers would scale by 0.
func (e *Entry) Scale() float64 {
	if !e.HasAlpha || e.Alpha == 0 {
		return 1
	}
	return float64(e.Alpha) / float64(e.Rank())
}

// Components lists the components the file has adapters for ("" for
// entries without a component prefix).
func (f *File) Components() []string {
	seen := map[string]bool{}
	var out []string
	for _, e := range f.Entries {
		if !seen[e.Component] {
			seen[e.Component] = true
			out = append(out, e.Component)
		}
	}
	sort.Strings(out)
	return out
}

// Load reads a LoRA safetensors file.
func Load(path string) (*File, error) {
	sf, err := safetensors.Open(path)
	if err != nil {
		return nil, fmt.Errorf("lora: %w", err)
	}
	defer sf.Close()
	return Read(sf, adapterName(path))
}

// adapterName is the file name without folder and extension.
func adapterName(path string) string {
	base := filepath.Base(path)
	return strings.TrimSuffix(base, filepath.Ext(base))
}

// Read parses an open safetensors file (the tensors are copied, so sf may be
// closed afterwards). name is the adapter name ("" derives it from sf.Path).
func Read(sf *safetensors.File, name string) (*File, error) {
	if name == "" {
		name = adapterName(sf.Path)
	}
	f := &File{Name: name, Path: sf.Path}
	type group struct {
		e               *Entry
		down, up, alpha string
		format          string
	}
	groups := map[string]*group{}
	formats := map[string]bool{}
	for _, key := range sf.Names() {
		k, ok := parseKey(key)
		if !ok {
			f.Unsupported = append(f.Unsupported, key+": "+k.reason)
			continue
		}
		id := fmt.Sprintf("%s\x00%s\x00%v", k.component, k.module, k.kohya)
		g := groups[id]
		if g == nil {
			g = &group{e: &Entry{Component: k.component, Module: k.module, Kohya: k.kohya}, format: k.format}
			groups[id] = g
		}
		var slot *string
		switch k.part {
		case "down":
			slot = &g.down
		case "up":
			slot = &g.up
		default:
			slot = &g.alpha
		}
		if *slot != "" {
			return nil, fmt.Errorf("lora: %s: keys %q and %q are the same %s weight of module %q", sf.Path, *slot, key, k.part, k.module)
		}
		*slot = key
		if k.part != "alpha" {
			g.format = k.format
		}
	}
	var broken []string
	for _, g := range groups {
		e := g.e
		if g.down == "" && g.up == "" {
			f.Unsupported = append(f.Unsupported, g.alpha+": alpha without LoRA weights")
			continue
		}
		if g.down == "" || g.up == "" {
			have, miss := g.down, "up"
			if have == "" {
				have, miss = g.up, "down"
			}
			broken = append(broken, fmt.Sprintf("%s (no matching %s weight)", have, miss))
			continue
		}
		e.Keys = []string{g.down, g.up}
		var err error
		if e.Down, err = readFloat(sf, g.down); err != nil {
			return nil, fmt.Errorf("lora: %w", err)
		}
		if e.Up, err = readFloat(sf, g.up); err != nil {
			return nil, fmt.Errorf("lora: %w", err)
		}
		if msg := checkPair(e.Down.Shape(), e.Up.Shape()); msg != "" {
			broken = append(broken, fmt.Sprintf("%s %v / %s %v: %s", g.down, e.Down.Shape(), g.up, e.Up.Shape(), msg))
			continue
		}
		if g.alpha != "" {
			e.Keys = append(e.Keys, g.alpha)
			a, err := readFloat(sf, g.alpha)
			if err != nil {
				return nil, fmt.Errorf("lora: %w", err)
			}
			v := a.Data()
			if len(v) != 1 || math.IsNaN(float64(v[0])) || math.IsInf(float64(v[0]), 0) {
				broken = append(broken, fmt.Sprintf("%s: alpha must be one finite number, got shape %v", g.alpha, a.Shape()))
				continue
			}
			e.Alpha, e.HasAlpha = v[0], true
		}
		formats[g.format] = true
		f.Entries = append(f.Entries, e)
	}
	if len(broken) > 0 {
		sort.Strings(broken)
		return nil, fmt.Errorf("lora: %s: %d malformed adapter(s):%s", sf.Path, len(broken), listLines(broken, 20))
	}
	sort.Strings(f.Unsupported)
	if len(f.Entries) == 0 {
		if len(f.Unsupported) == 0 {
			return nil, fmt.Errorf("lora: %s: file holds no tensors", sf.Path)
		}
		return nil, fmt.Errorf("lora: %s: no LoRA weights recognised among %d keys:%s", sf.Path, len(f.Unsupported), listLines(f.Unsupported, 20))
	}
	sort.Slice(f.Entries, func(i, j int) bool {
		a, b := f.Entries[i], f.Entries[j]
		if a.Component != b.Component {
			return a.Component < b.Component
		}
		return a.Module < b.Module
	})
	for k := range formats {
		f.Formats = append(f.Formats, k)
	}
	sort.Strings(f.Formats)
	return f, nil
}

// readFloat reads a tensor as float32.
func readFloat(sf *safetensors.File, key string) (*tensor.Tensor, error) {
	info, _ := sf.Info(key)
	switch info.DType {
	case safetensors.F32, safetensors.F16, safetensors.BF16, safetensors.F64:
	default:
		return nil, fmt.Errorf("%s: tensor %q has dtype %s, want a float dtype", sf.Path, key, info.DType)
	}
	t, err := nn.ReadTensor(sf, key)
	if err != nil {
		return nil, err
	}
	return t.Float32(), nil
}

// checkPair validates the shapes of a down/up pair; "" when they fit.
func checkPair(down, up []int) string {
	if len(down) != 2 && len(down) != 4 {
		return "down weight must be 2-D or 4-D"
	}
	if len(up) != 2 && len(up) != 4 {
		return "up weight must be 2-D or 4-D"
	}
	if down[0] != up[1] {
		return fmt.Sprintf("ranks differ (%d rows down, %d columns up)", down[0], up[1])
	}
	if down[0] == 0 {
		return "rank 0"
	}
	if len(up) == 4 && (up[2] != 1 || up[3] != 1) {
		return "4-D up weight must be 1×1"
	}
	return ""
}

// listLines formats up to max items, one per line.
func listLines(items []string, max int) string {
	var b strings.Builder
	for i, s := range items {
		if i == max {
			fmt.Fprintf(&b, "\n  ... and %d more", len(items)-max)
			break
		}
		b.WriteString("\n  " + s)
	}
	return b.String()
}

// parsedKey is what parseKey makes of one file key.
type parsedKey struct {
	component, module string
	kohya             bool
	part              string // "down", "up", "alpha"
	format            string
	reason            string // why the key is not used (when !ok)
}

// knownComponents are the key prefixes taken as component names.
var knownComponents = []string{TextEncoder2, TextEncoder, UNet, "transformer", "prior"}

// kohyaPrefixes map kohya name prefixes to components.
var kohyaPrefixes = []struct{ prefix, component string }{
	{"lora_unet_", UNet}, {"lora_te1_", TextEncoder}, {"lora_te2_", TextEncoder2}, {"lora_te_", TextEncoder},
}

// legacyProj maps the legacy attention-processor names to module names,
// for diffusers attention (to_*) and CLIP self-attention (*_proj).
var legacyProj = map[string][2]string{
	"to_q_lora":   {"to_q", "q_proj"},
	"to_k_lora":   {"to_k", "k_proj"},
	"to_v_lora":   {"to_v", "v_proj"},
	"to_out_lora": {"to_out.0", "out_proj"},
}

// parseKey classifies one key of a LoRA file.
func parseKey(key string) (parsedKey, bool) {
	for _, kp := range kohyaPrefixes {
		if !strings.HasPrefix(key, kp.prefix) {
			continue
		}
		name, suffix, _ := strings.Cut(key, ".")
		k := parsedKey{component: kp.component, module: strings.TrimPrefix(name, kp.prefix), kohya: true, format: "kohya"}
		switch suffix {
		case "lora_down.weight":
			k.part = "down"
		case "lora_up.weight":
			k.part = "up"
		case "alpha":
			k.part = "alpha"
		default:
			return parsedKey{reason: unsupportedReason(suffix)}, false
		}
		if k.module == "" {
			return parsedKey{reason: "empty module name"}, false
		}
		return k, true
	}
	rest := strings.TrimPrefix(key, "base_model.model.")
	k := parsedKey{}
	for _, c := range knownComponents {
		if strings.HasPrefix(rest, c+".") {
			k.component, rest = c, strings.TrimPrefix(rest, c+".")
			break
		}
	}
	seg := strings.Split(rest, ".")
	n := len(seg)
	mod := func(end int) string { return strings.Join(seg[:end], ".") }
	switch {
	case n >= 2 && seg[n-1] == "alpha":
		k.module, k.part, k.format = mod(n-1), "alpha", "diffusers"
	case n >= 3 && seg[n-1] == "weight" && (seg[n-2] == "lora_A" || seg[n-2] == "lora_B"):
		k.module, k.part, k.format = mod(n-2), map[string]string{"lora_A": "down", "lora_B": "up"}[seg[n-2]], "peft"
	case n >= 4 && seg[n-1] == "weight" && (seg[n-3] == "lora_A" || seg[n-3] == "lora_B"):
		// PEFT with the adapter name kept: "<module>.lora_A.<adapter>.weight".
		k.module, k.part, k.format = mod(n-3), map[string]string{"lora_A": "down", "lora_B": "up"}[seg[n-3]], "peft"
	case n >= 4 && seg[n-1] == "weight" && (seg[n-2] == "down" || seg[n-2] == "up") && (seg[n-3] == "lora" || seg[n-3] == "lora_linear_layer"):
		k.module, k.part, k.format = mod(n-3), seg[n-2], "diffusers"
	case n >= 3 && (seg[n-1] == "weight") && (seg[n-2] == "lora_down" || seg[n-2] == "lora_up"):
		k.module, k.part, k.format = mod(n-2), strings.TrimPrefix(seg[n-2], "lora_"), "diffusers"
	case n >= 4 && seg[n-1] == "weight" && (seg[n-2] == "down" || seg[n-2] == "up") && legacyProj[seg[n-3]] != [2]string{}:
		base := seg[:n-3]
		if len(base) > 0 && base[len(base)-1] == "processor" {
			base = base[:len(base)-1]
		}
		names := legacyProj[seg[n-3]]
		proj := names[0]
		if len(base) > 0 && base[len(base)-1] == "self_attn" {
			proj = names[1]
		}
		k.module, k.part, k.format = strings.Join(append(append([]string{}, base...), proj), "."), seg[n-2], "diffusers-legacy"
	default:
		return parsedKey{reason: unsupportedReason(rest)}, false
	}
	if k.module == "" {
		return parsedKey{reason: "empty module name"}, false
	}
	return k, true
}

// unsupportedReason explains why a key is not applied.
func unsupportedReason(s string) string {
	switch {
	case strings.Contains(s, "dora_scale") || strings.Contains(s, "lora_magnitude_vector"):
		return "DoRA magnitude (DoRA adapters are not supported)"
	case strings.Contains(s, "hada_") || strings.Contains(s, "lokr_"):
		return "LyCORIS LoHa/LoKr weight (not supported)"
	case strings.Contains(s, "lora_mid"):
		return "LoCon Tucker mid weight (not supported)"
	case strings.HasSuffix(s, ".bias"):
		return "LoRA bias (not supported)"
	}
	return "not a LoRA key this loader knows"
}
