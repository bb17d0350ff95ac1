package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/diffuse-go/diffuse/checkpoint"
	"github.com/diffuse-go/diffuse/model/controlnet"
	"github.com/diffuse-go/diffuse/model/t2iadapter"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// ControlNetLDMPrefix is the prefix under which the original ControlNet
// releases (lllyasviel's control_*.safetensors, ControlNet 1.1) keep their
// weights.
const ControlNetLDMPrefix = "control_model."

// refusePickle rejects pickle checkpoints by extension.
func refusePickle(path string) error {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".safetensors":
		return nil
	case ".ckpt", ".pt", ".pth", ".bin":
		return fmt.Errorf("%s: pickle checkpoints are refused because loading them can run arbitrary code; convert it to .safetensors first", path)
	}
	return fmt.Errorf("%s: unknown file type (want a .safetensors file or a diffusers folder)", path)
}

// sidecarConfig finds the config of a single weights file: NAME.json next
// to NAME.safetensors, else config.json in the same folder.
func sidecarConfig(path string) ([]byte, string, error) {
	for _, p := range []string{strings.TrimSuffix(path, filepath.Ext(path)) + ".json", filepath.Join(filepath.Dir(path), "config.json")} {
		b, err := os.ReadFile(p)
		if err == nil {
			return b, p, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, p, err
		}
	}
	return nil, "", os.ErrNotExist
}

// LoadControlNet opens a ControlNet for a base model whose UNet has config
// base:
//
//   - a diffusers folder: config.json and diffusion_pytorch_model.safetensors;
//   - a single .safetensors file in the original layout (control_model.*
//     keys, or the same keys without the prefix), mapped as diffusers'
//     convert_controlnet_checkpoint does. Such files carry no config: the
//     encoder is the base UNet's, with the input and condition channels
//     read from the tensors (a ControlNet for another model family fails
//     with the mismatching tensors listed);
//   - a single .safetensors file with diffusers names, configured by a
//     sidecar NAME.json or config.json, else like the original layout.
//
// The returned function releases the mapped file; call it when the model
// is no longer used.
func LoadControlNet(path string, base unet.Config, opt LoadOptions) (*controlnet.Model, func(), error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	if st.IsDir() {
		cfgPath := filepath.Join(path, "config.json")
		b, err := os.ReadFile(cfgPath)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: not a diffusers ControlNet folder: %w", path, err)
		}
		cfg, err := controlnet.ParseConfig(b)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", cfgPath, err)
		}
		wp, err := weightFile(path)
		if err != nil {
			return nil, nil, err
		}
		f, err := safetensors.Open(wp)
		if err != nil {
			return nil, nil, err
		}
		m, err := controlnet.New(cfg)
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("%s: %w", cfgPath, err)
		}
		if err := loadInto(m, f, opt); err != nil {
			f.Close()
			return nil, nil, err
		}
		return m, func() { f.Close() }, nil
	}
	if err := refusePickle(path); err != nil {
		return nil, nil, err
	}
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, nil, err
	}
	m, err := loadControlNetFile(f, base, opt)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return m, func() { f.Close() }, nil
}

func loadControlNetFile(f *safetensors.File, base unet.Config, opt LoadOptions) (*controlnet.Model, error) {
	path := f.Path
	if f.Has("controlnet_cond_embedding.conv_in.weight") {
		// Diffusers names in one file.
		var cfg controlnet.Config
		if b, cp, err := sidecarConfig(path); err == nil {
			if cfg, err = controlnet.ParseConfig(b); err != nil {
				return nil, fmt.Errorf("%s: %w", cp, err)
			}
		} else if errors.Is(err, os.ErrNotExist) {
			if cfg, err = inferControlNetConfig(base, shapeLookup(f, ""), "conv_in.weight", "controlnet_cond_embedding.", diffusersCondNames); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
		} else {
			return nil, err
		}
		m, err := controlnet.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if err := loadInto(m, f, opt); err != nil {
			return nil, fmt.Errorf("%w (is this ControlNet made for the loaded base model?)", err)
		}
		return m, nil
	}
	prefix := ""
	for _, n := range f.Names() {
		if strings.HasPrefix(n, ControlNetLDMPrefix) {
			prefix = ControlNetLDMPrefix
			break
		}
	}
	if !f.Has(prefix+"input_hint_block.0.weight") || !f.Has(prefix+"time_embed.0.weight") {
		return nil, fmt.Errorf("%s: not a ControlNet: no %sinput_hint_block.0.weight/time_embed.0.weight (original layout) or controlnet_cond_embedding.* (diffusers names)", path, prefix)
	}
	cfg, err := inferControlNetConfig(base, shapeLookup(f, prefix), "input_blocks.0.0.weight", "input_hint_block.", ldmCondNames)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	params, err := ControlNetLDMParams(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	comp, err := checkpoint.MapComponent(f, prefix, params)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (is this ControlNet made for the loaded base model?)", path, err)
	}
	m, err := controlnet.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := nn.Load(m, "", componentSource{f, comp}, opt.nnOpts()); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	opt.convert(m)
	return m, nil
}

// shapeLookup reads tensor shapes under a prefix.
func shapeLookup(f *safetensors.File, prefix string) func(string) ([]int, bool) {
	return func(name string) ([]int, bool) {
		info, ok := f.Info(prefix + name)
		return info.Shape, ok
	}
}

// condNames gives the names of the condition embedding's convolutions:
// conv_in, the k-th inner block (0-based) and conv_out given the count.
type condNames struct {
	in    string
	block func(k int) string
	out   func(blocks int) string
}

var diffusersCondNames = condNames{
	in:    "conv_in",
	block: func(k int) string { return "blocks." + strconv.Itoa(k) },
	out:   func(int) string { return "conv_out" },
}

// ldmCondNames are the original layout's: input_hint_block is a Sequential
// of convolutions with SiLUs between them, so the convolutions sit at the
// even indices 0, 2, ..., 2·(blocks+1).
var ldmCondNames = condNames{
	in:    "0",
	block: func(k int) string { return strconv.Itoa(2*k + 2) },
	out:   func(blocks int) string { return strconv.Itoa(2*blocks + 2) },
}

// inferControlNetConfig is the base UNet's config with the input channels
// (from convIn) and the condition embedding (channels and widths) read from
// the file's shapes.
func inferControlNetConfig(base unet.Config, shape func(string) ([]int, bool), convIn, condPrefix string, names condNames) (controlnet.Config, error) {
	cfg := controlnet.FromUNet(base)
	s, ok := shape(convIn)
	if !ok || len(s) != 4 {
		return cfg, fmt.Errorf("ControlNet: %s missing or not a convolution (%v)", convIn, s)
	}
	cfg.InChannels = s[1]
	in, ok := shape(condPrefix + names.in + ".weight")
	if !ok || len(in) != 4 {
		return cfg, fmt.Errorf("ControlNet: %s%s.weight missing or not a convolution", condPrefix, names.in)
	}
	cfg.ConditioningChannels = in[1]
	blocks := 0
	for {
		if _, ok := shape(condPrefix + names.block(blocks) + ".weight"); !ok {
			break
		}
		blocks++
	}
	if blocks > 0 && names.block(blocks-1) == names.out(blocks-1) {
		// The original layout numbers conv_out right after the blocks.
		blocks--
	}
	if blocks%2 != 0 {
		return cfg, fmt.Errorf("ControlNet: odd number (%d) of condition embedding blocks under %s", blocks, condPrefix)
	}
	if _, ok := shape(condPrefix + names.out(blocks) + ".weight"); !ok {
		return cfg, fmt.Errorf("ControlNet: no condition embedding output %s%s.weight", condPrefix, names.out(blocks))
	}
	ch := []int{in[0]}
	for k := 1; k < blocks; k += 2 {
		b, _ := shape(condPrefix + names.block(k) + ".weight")
		if len(b) != 4 {
			return cfg, fmt.Errorf("ControlNet: %s%s.weight is %v, not a convolution", condPrefix, names.block(k), b)
		}
		ch = append(ch, b[0])
	}
	cfg.ConditioningEmbeddingOutChannels = ch
	return cfg, nil
}

// ControlNetLDMParams lists every parameter of a ControlNet with config c
// with its name in the original layout, relative to ControlNetLDMPrefix
// (checkpoint.LDMControlNet applied to the model built from c): the UNet
// encoder as in an LDM UNet (input_blocks, middle_block, time_embed,
// label_emb), input_hint_block.{0,2,...} for the condition embedding,
// zero_convs.N.0 for controlnet_down_blocks.N and middle_block_out.0 for
// controlnet_mid_block.
func ControlNetLDMParams(c controlnet.Config) ([]checkpoint.Param, error) {
	m, err := controlnet.New(c)
	if err != nil {
		return nil, err
	}
	return checkpoint.LDMControlNet.Names(m)
}

// LoadT2IAdapter opens a T2I-Adapter:
//
//   - a diffusers folder: config.json and diffusion_pytorch_model.safetensors;
//   - a .safetensors file with diffusers names (adapter.*) and a sidecar
//     NAME.json or config.json;
//   - a .safetensors file in TencentARC's original layout (conv_in, body.N),
//     full (SD 1.x, 8 body entries) or light adapters, mapped as diffusers'
//     scripts/convert_original_t2iadapter.py does.
//
// The returned function releases the mapped file.
func LoadT2IAdapter(path string, opt LoadOptions) (*t2iadapter.Model, func(), error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	var f *safetensors.File
	var cfgJSON []byte
	cfgPath := ""
	if st.IsDir() {
		cfgPath = filepath.Join(path, "config.json")
		if cfgJSON, err = os.ReadFile(cfgPath); err != nil {
			return nil, nil, fmt.Errorf("%s: not a diffusers T2I-Adapter folder: %w", path, err)
		}
		wp, err := weightFile(path)
		if err != nil {
			return nil, nil, err
		}
		if f, err = safetensors.Open(wp); err != nil {
			return nil, nil, err
		}
	} else {
		if err := refusePickle(path); err != nil {
			return nil, nil, err
		}
		if f, err = safetensors.Open(path); err != nil {
			return nil, nil, err
		}
	}
	m, err := loadT2IAdapterFile(f, cfgJSON, cfgPath, opt)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return m, func() { f.Close() }, nil
}

func loadT2IAdapterFile(f *safetensors.File, cfgJSON []byte, cfgPath string, opt LoadOptions) (*t2iadapter.Model, error) {
	path := f.Path
	var src nn.Source = nn.FileSource{F: f, InPlace: true}
	var cfg t2iadapter.Config
	switch {
	case cfgJSON != nil:
	case f.Has("adapter.body.0.resnets.0.block1.weight"):
		b, cp, err := sidecarConfig(path)
		if errors.Is(err, os.ErrNotExist) {
			stem := strings.TrimSuffix(path, filepath.Ext(path))
			return nil, fmt.Errorf("%s: a T2I-Adapter with diffusers names needs its config: put it in %s.json or config.json next to the file, or use the diffusers folder", path, stem)
		}
		if err != nil {
			return nil, err
		}
		cfgJSON, cfgPath = b, cp
	case f.Has("conv_in.weight") && f.Has("body.0.block1.weight"):
		var err error
		if cfg, src, err = tencentFullAdapter(f); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	case f.Has("body.0.in_conv.weight") && f.Has("body.0.body.0.block1.weight"):
		var err error
		if cfg, src, err = tencentLightAdapter(f); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	default:
		return nil, fmt.Errorf("%s: not a T2I-Adapter: neither diffusers names (adapter.body.*) nor TencentARC's original full (conv_in, body.N.block1) or light (body.N.body.M) layout", path)
	}
	if cfgJSON != nil {
		var err error
		if cfg, err = t2iadapter.ParseConfig(cfgJSON); err != nil {
			return nil, fmt.Errorf("%s: %w", cfgPath, err)
		}
	}
	m, err := t2iadapter.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := nn.Load(m, "", src, opt.nnOpts()); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	opt.convert(m)
	return m, nil
}

// renamedSource serves a file's tensors under other names (new → old).
type renamedSource struct {
	f     *safetensors.File
	names map[string]string
}

func (s renamedSource) Names() []string {
	out := make([]string, 0, len(s.names))
	for n := range s.names {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (s renamedSource) Shape(name string) ([]int, bool) {
	old, ok := s.names[name]
	if !ok {
		return nil, false
	}
	info, ok := s.f.Info(old)
	return info.Shape, ok
}

func (s renamedSource) Tensor(name string) (*tensor.Tensor, error) {
	old, ok := s.names[name]
	if !ok {
		return nil, fmt.Errorf("%s: no tensor for %q", s.f.Path, name)
	}
	return nn.ViewTensor(s.f, old)
}

// checkClaimed fails when the file holds tensors the renaming does not use.
func checkClaimed(f *safetensors.File, names map[string]string, layout string) error {
	used := map[string]bool{}
	for _, o := range names {
		used[o] = true
	}
	var extra []string
	for _, n := range f.Names() {
		if !used[n] {
			extra = append(extra, n)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return fmt.Errorf("%d tensors do not fit the %s layout: %s", len(extra), layout, strings.Join(extra[:min(len(extra), 8)], ", "))
	}
	return nil
}

// bodyCount counts the entries body.N of the original adapter layout.
func bodyCount(f *safetensors.File) int {
	n := 0
	for _, name := range f.Names() {
		rest, ok := strings.CutPrefix(name, "body.")
		if !ok {
			continue
		}
		head, _, _ := strings.Cut(rest, ".")
		if i, err := strconv.Atoi(head); err == nil && i+1 > n {
			n = i + 1
		}
	}
	return n
}

// tencentFullAdapter maps TencentARC's original full adapter: body is a
// flat list of 8 residual blocks, 2 per level, the first of a level
// holding the level's in_conv when the width changes.
func tencentFullAdapter(f *safetensors.File) (t2iadapter.Config, nn.Source, error) {
	cfg := t2iadapter.Defaults()
	const levels, perLevel = 4, 2
	if n := bodyCount(f); n != levels*perLevel {
		return cfg, nil, fmt.Errorf("original full T2I-Adapter with %d body entries; only the 8 of the SD 1.x release (4 levels × 2) are known", n)
	}
	in, _ := f.Info("conv_in.weight")
	ds := cfg.DownscaleFactor
	if len(in.Shape) != 4 || in.Shape[1]%(ds*ds) != 0 {
		return cfg, nil, fmt.Errorf("conv_in.weight %v does not take pixel-unshuffled input (factor %d)", in.Shape, ds)
	}
	cfg.InChannels = in.Shape[1] / (ds * ds)
	cfg.NumResBlocks = perLevel
	cfg.Channels = nil
	names := map[string]string{"adapter.conv_in.weight": "conv_in.weight", "adapter.conv_in.bias": "conv_in.bias"}
	for lv := range levels {
		b, ok := f.Info("body." + strconv.Itoa(lv*perLevel) + ".block1.weight")
		if !ok || len(b.Shape) != 4 {
			return cfg, nil, fmt.Errorf("body.%d.block1.weight missing or not a convolution", lv*perLevel)
		}
		cfg.Channels = append(cfg.Channels, b.Shape[0])
		for j := range perLevel {
			o := "body." + strconv.Itoa(lv*perLevel+j) + "."
			d := "adapter.body." + strconv.Itoa(lv) + "."
			for _, conv := range []string{"block1", "block2"} {
				for _, wb := range []string{".weight", ".bias"} {
					names[d+"resnets."+strconv.Itoa(j)+"."+conv+wb] = o + conv + wb
				}
			}
			if j == 0 && f.Has(o+"in_conv.weight") {
				names[d+"in_conv.weight"] = o + "in_conv.weight"
				names[d+"in_conv.bias"] = o + "in_conv.bias"
			}
		}
	}
	return cfg, renamedSource{f, names}, checkClaimed(f, names, "original full T2I-Adapter")
}

// tencentLightAdapter maps TencentARC's original light adapter: body.N
// holds in_conv, body.M residual blocks and out_conv; one level more than
// widths (the last repeats the last width).
func tencentLightAdapter(f *safetensors.File) (t2iadapter.Config, nn.Source, error) {
	cfg := t2iadapter.Defaults()
	cfg.AdapterType = t2iadapter.LightAdapter
	n := bodyCount(f)
	if n < 2 {
		return cfg, nil, fmt.Errorf("original light T2I-Adapter with %d body entries", n)
	}
	in, ok := f.Info("body.0.in_conv.weight")
	ds := cfg.DownscaleFactor
	if !ok || len(in.Shape) != 4 || in.Shape[1]%(ds*ds) != 0 {
		return cfg, nil, fmt.Errorf("body.0.in_conv.weight %v does not take pixel-unshuffled input (factor %d)", in.Shape, ds)
	}
	cfg.InChannels = in.Shape[1] / (ds * ds)
	cfg.NumResBlocks = 0
	for f.Has("body.0.body." + strconv.Itoa(cfg.NumResBlocks) + ".block1.weight") {
		cfg.NumResBlocks++
	}
	cfg.Channels = nil
	names := map[string]string{}
	for lv := range n {
		o := "body." + strconv.Itoa(lv) + "."
		d := "adapter.body." + strconv.Itoa(lv) + "."
		out, ok := f.Info(o + "out_conv.weight")
		if !ok || len(out.Shape) != 4 {
			return cfg, nil, fmt.Errorf("%sout_conv.weight missing or not a convolution", o)
		}
		if lv < n-1 {
			cfg.Channels = append(cfg.Channels, out.Shape[0])
		}
		for _, conv := range []string{"in_conv", "out_conv"} {
			for _, wb := range []string{".weight", ".bias"} {
				names[d+conv+wb] = o + conv + wb
			}
		}
		for j := range cfg.NumResBlocks {
			for _, conv := range []string{"block1", "block2"} {
				for _, wb := range []string{".weight", ".bias"} {
					names[d+"resnets."+strconv.Itoa(j)+"."+conv+wb] = o + "body." + strconv.Itoa(j) + "." + conv + wb
				}
			}
		}
	}
	return cfg, renamedSource{f, names}, checkClaimed(f, names, "original light T2I-Adapter")
}

// isSDXLFolder reports whether a diffusers folder is an SDXL pipeline:
// its model_index.json lists text_encoder_2.
func isSDXLFolder(dir string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, "model_index.json"))
	if errors.Is(err, os.ErrNotExist) {
		// Not a diffusers folder: Load says so.
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var index map[string]json.RawMessage
	if err := json.Unmarshal(b, &index); err != nil {
		return false, fmt.Errorf("%s: model_index.json: %w", dir, err)
	}
	return listed(index, "text_encoder_2"), nil
}

// IsSDXL reports whether path is an SDXL model (base, refiner or
// inpainting): a diffusers folder whose model_index.json lists
// text_encoder_2, or a .safetensors file in the SGM layout. It reads only
// the index or the file header.
func IsSDXL(path string) (bool, error) {
	st, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	if st.IsDir() {
		return isSDXLFolder(path)
	}
	if strings.ToLower(filepath.Ext(path)) != ".safetensors" {
		return false, nil
	}
	f, err := safetensors.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, n := range f.Names() {
		if strings.HasPrefix(n, "conditioner.embedders.") {
			return true, nil
		}
	}
	return false, nil
}
