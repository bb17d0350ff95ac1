package pipeline

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/diffuse-go/diffuse/checkpoint"
	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// SDXLComponents are the loaded models of an SDXL base or refiner checkpoint.
type SDXLComponents struct {
	Name string
	// TextEncoder is CLIP ViT-L; nil for the refiner, which has none.
	TextEncoder *clip.Model
	// TextEncoder2 is OpenCLIP ViT-bigG with its projection (pooled embedding).
	TextEncoder2 *clip.Model
	UNet         *unet.Model
	VAE          *vae.Model
	// Scheduler is the scheduler config of a diffusers folder (nil for single files).
	Scheduler json.RawMessage
	// Refiner marks the refiner: conditioned on encoder 2 alone and on an
	// aesthetic score instead of the target size (5 time ids, not 6).
	Refiner  bool
	files    []*safetensors.File
	vaeFiles openFiles // a VAE given by Options.Components
}

// Close unmaps the checkpoint files, which the models read their weights
// from (see Components.Close): they must not be used afterwards. It is safe
// to call more than once.
func (c *SDXLComponents) Close() {
	for _, f := range c.files {
		f.Close()
	}
	c.files = nil
	c.vaeFiles.close()
}

// dropPages is Components.dropPages.
func (c *SDXLComponents) dropPages() {
	c.files = keepMapped(c.files)
}

// SDXLConfigs are the model configs an SDXL single-file checkpoint is built with.
type SDXLConfigs struct {
	// TextEncoder is nil for the refiner.
	TextEncoder  *clip.Config
	TextEncoder2 clip.Config
	UNet         unet.Config
	VAE          vae.Config
}

// LoadSDXL opens an SDXL base, refiner or inpainting model: a diffusers
// folder (model_index.json with text_encoder_2, unet and vae; text_encoder
// too except for the refiner) or a single-file .safetensors checkpoint in
// Stability AI's generative-models layout (conditioner.embedders.*).
func LoadSDXL(path string, opt LoadOptions) (*SDXLComponents, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return loadSDXLFolder(path, opt)
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".safetensors":
	case ".ckpt", ".pt", ".pth", ".bin":
		return nil, fmt.Errorf("%s: pickle checkpoints are refused because loading them can run arbitrary code; convert it to .safetensors first", path)
	default:
		return nil, fmt.Errorf("%s: unknown checkpoint type (want a .safetensors file or a diffusers folder)", path)
	}
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	m, err := checkpoint.DetectSDXL(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return loadSGM(f, m, opt)
}

// NewSDXLComponents builds the unloaded models of an SDXL single-file
// model from its configs and checks that they fit together.
func NewSDXLComponents(m checkpoint.Model) (*SDXLComponents, error) {
	if !m.SGM() {
		return nil, fmt.Errorf("%s is not an SDXL model (no second text encoder)", m.Name)
	}
	c := &SDXLComponents{Name: m.Name, Refiner: m.Refiner()}
	if err := c.build(SDXLConfigs{TextEncoder: m.TextEncoder, TextEncoder2: *m.TextEncoder2, UNet: m.UNet, VAE: m.VAE}); err != nil {
		return nil, err
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return c, nil
}

// loadSGM builds the models of m and loads them from an SGM-layout file.
// It takes ownership of f.
func loadSGM(f *safetensors.File, m checkpoint.Model, opt LoadOptions) (*SDXLComponents, error) {
	path := f.Path
	mp, err := checkpoint.Convert(f, m)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c, err := NewSDXLComponents(m)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.files = []*safetensors.File{f}
	for _, part := range c.parts() {
		if err := nn.Load(part.m, "", componentSource{newSTFile(f), mp.Component(part.name)}, opt.nnOpts()); err != nil {
			c.Close()
			return nil, fmt.Errorf("%s: %s: %w", path, part.name, err)
		}
		opt.convert(part.m)
	}
	c.dropPages()
	return c, nil
}

// build makes the unloaded models of cfgs; TextEncoder2 always has its projection.
func (c *SDXLComponents) build(cfgs SDXLConfigs) error {
	var err error
	if cfgs.TextEncoder != nil {
		if c.TextEncoder, err = clip.New(*cfgs.TextEncoder); err != nil {
			return fmt.Errorf("text_encoder: %w", err)
		}
	}
	te2 := cfgs.TextEncoder2
	te2.WithProjection = true
	if c.TextEncoder2, err = clip.New(te2); err != nil {
		return fmt.Errorf("text_encoder_2: %w", err)
	}
	if c.UNet, err = unet.New(cfgs.UNet); err != nil {
		return fmt.Errorf("unet: %w", err)
	}
	if c.VAE, err = vae.New(cfgs.VAE); err != nil {
		return fmt.Errorf("vae: %w", err)
	}
	return nil
}

type namedModule struct {
	name string
	m    nn.Module
}

// parts lists the models under their diffusers folder names.
func (c *SDXLComponents) parts() []namedModule {
	var out []namedModule
	if c.TextEncoder != nil {
		out = append(out, namedModule{"text_encoder", c.TextEncoder})
	}
	return append(out, namedModule{"text_encoder_2", c.TextEncoder2}, namedModule{"unet", c.UNet}, namedModule{"vae", c.VAE})
}

// check verifies that the models fit together: the UNet's cross-attention
// width is the encoders' concatenated width, and its text_time embedding
// takes the pooled embedding plus 6 time ids (base) or 5 (refiner).
func (c *SDXLComponents) check() error {
	u := c.UNet.Cfg
	width := c.TextEncoder2.Cfg.HiddenSize
	what := "text_encoder_2"
	if c.TextEncoder != nil {
		width += c.TextEncoder.Cfg.HiddenSize
		what = "text_encoder + text_encoder_2"
	}
	for _, d := range u.CrossAttentionDim {
		if d != width {
			return fmt.Errorf("unet cross_attention_dim %v does not match the width of %s (%d)", []int(u.CrossAttentionDim), what, width)
		}
	}
	if u.AdditionEmbedType != "text_time" {
		return fmt.Errorf("unet addition_embed_type is %q, SDXL needs \"text_time\"", u.AdditionEmbedType)
	}
	ids := 6
	if c.Refiner {
		ids = 5
	}
	if want := c.TextEncoder2.Cfg.ProjectionDim + ids*u.AdditionTimeEmbedDim; u.ProjectionClassEmbeddingsDim != want {
		kind := "base"
		if c.Refiner {
			kind = "refiner"
		}
		return fmt.Errorf("unet projection_class_embeddings_input_dim is %d; an SDXL %s model needs %d (projection_dim %d + %d time ids × addition_time_embed_dim %d)",
			u.ProjectionClassEmbeddingsDim, kind, want, c.TextEncoder2.Cfg.ProjectionDim, ids, u.AdditionTimeEmbedDim)
	}
	return nil
}

// folderSource reads a diffusers component file, hiding buffers that are
// not parameters (transformers' position_ids).
type folderSource struct{ nn.FileSource }

func (s folderSource) Names() []string {
	var out []string
	for _, n := range s.FileSource.Names() {
		if !checkpoint.Ignorable(n) && n != "text_model.embeddings.position_ids" {
			out = append(out, n)
		}
	}
	return out
}

// listed reports whether model_index.json names a component: its entry is
// a [library, class] pair without nulls.
func listed(index map[string]json.RawMessage, name string) bool {
	var pair []*string
	if err := json.Unmarshal(index[name], &pair); err != nil || len(pair) != 2 {
		return false
	}
	return pair[0] != nil && pair[1] != nil
}

func loadSDXLFolder(dir string, opt LoadOptions) (*SDXLComponents, error) {
	b, err := os.ReadFile(filepath.Join(dir, "model_index.json"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: not a diffusers folder (no model_index.json)", dir)
		}
		return nil, err
	}
	var index map[string]json.RawMessage
	if err := json.Unmarshal(b, &index); err != nil {
		return nil, fmt.Errorf("%s: model_index.json: %w", dir, err)
	}
	if !listed(index, "text_encoder_2") {
		var class string
		json.Unmarshal(index["_class_name"], &class)
		msg := fmt.Sprintf("%s: not an SDXL folder: model_index.json (%s) lists no text_encoder_2", dir, class)
		if listed(index, "text_encoder") {
			msg += "; an SD 1.x folder loads with pipeline.Load"
		}
		return nil, errors.New(msg)
	}
	var aesthetic bool
	if raw, ok := index["requires_aesthetics_score"]; ok {
		if err := json.Unmarshal(raw, &aesthetic); err != nil {
			return nil, fmt.Errorf("%s: model_index.json: requires_aesthetics_score: %w", dir, err)
		}
	}
	hasTE := listed(index, "text_encoder")
	c := &SDXLComponents{Name: filepath.Base(dir), Refiner: !hasTE || aesthetic}
	fail := func(err error) (*SDXLComponents, error) { c.Close(); return nil, err }
	read := func(sub string) ([]byte, *safetensors.File, error) {
		cfg, err := os.ReadFile(filepath.Join(dir, sub, "config.json"))
		if err != nil {
			return nil, nil, err
		}
		wp, err := weightFile(filepath.Join(dir, sub))
		if err != nil {
			return nil, nil, err
		}
		f, err := safetensors.Open(wp)
		if err != nil {
			return nil, nil, err
		}
		c.files = append(c.files, f)
		return cfg, f, nil
	}
	var cfgs SDXLConfigs
	files := map[string]*safetensors.File{}
	for _, sub := range []string{"text_encoder", "text_encoder_2", "unet", "vae"} {
		if sub == "text_encoder" && !hasTE {
			continue
		}
		cfg, f, err := read(sub)
		if err != nil {
			return fail(err)
		}
		files[sub] = f
		switch sub {
		case "text_encoder", "text_encoder_2":
			tc, err := clip.ParseConfig(cfg)
			if err != nil {
				return fail(fmt.Errorf("%s: %w", filepath.Join(dir, sub), err))
			}
			if sub == "text_encoder" {
				cfgs.TextEncoder = &tc
			} else {
				cfgs.TextEncoder2 = tc
			}
		case "unet":
			if cfgs.UNet, err = unet.ParseConfig(cfg); err != nil {
				return fail(fmt.Errorf("%s: %w", filepath.Join(dir, sub), err))
			}
		case "vae":
			if cfgs.VAE, err = vae.ParseConfig(cfg); err != nil {
				return fail(fmt.Errorf("%s: %w", filepath.Join(dir, sub), err))
			}
		}
	}
	if err := c.build(cfgs); err != nil {
		return fail(fmt.Errorf("%s: %w", dir, err))
	}
	for _, part := range c.parts() {
		f := files[part.name]
		if err := nn.Load(part.m, "", folderSource{nn.FileSource{F: f, InPlace: true}}, opt.nnOpts()); err != nil {
			return fail(fmt.Errorf("%s: %w", f.Path, err))
		}
		opt.convert(part.m)
	}
	if err := c.check(); err != nil {
		return fail(fmt.Errorf("%s: %w", dir, err))
	}
	if b, err := os.ReadFile(filepath.Join(dir, "scheduler", "scheduler_config.json")); err == nil {
		c.Scheduler = b
	} else if !errors.Is(err, os.ErrNotExist) {
		return fail(err)
	}
	c.dropPages()
	return c, nil
}

// WriteSGM writes the components as an SDXL single-file checkpoint in
// Stability AI's generative-models layout (what model sites distribute):
// OpenCLIP's q, k and v fused back into in_proj tensors and its projection
// transposed, with matrix weights stored as dtype (F32, F16 or BF16) and
// vectors as F32. The tensors are encoded one at a time, so memory stays
// near the models' own size. It is how the project makes full-size
// random-weight SDXL checkpoints for tests and benchmarks.
func WriteSGM(path string, m checkpoint.Model, c *SDXLComponents, dtype tensor.DType) error {
	if (c.TextEncoder == nil) != m.Refiner() {
		return fmt.Errorf("write checkpoint %s: the %s layout and the components disagree on the CLIP ViT-L text encoder", path, m.Name)
	}
	modules := map[string]nn.Module{}
	for _, p := range c.parts() {
		modules[p.name] = p.m
	}
	return writeSingleFile(path, m, modules, dtype)
}

// partTensors lists the checkpoint tensors of one component, each encoded
// when written.
func partTensors(cp checkpoint.ComponentParams, m nn.Module, dtype tensor.DType) ([]lazyTensor, error) {
	var ps nn.Params
	m.Params("", &ps)
	byName := map[string]*tensor.Tensor{}
	for _, p := range ps.List() {
		byName[p.Name] = *p.Ptr
	}
	// Parameters sharing a source (q, k, v of one in_proj) are written together.
	var order []string
	bySource := map[string][]checkpoint.Param{}
	for _, p := range cp.Params {
		t := byName[p.Name]
		if t == nil {
			return nil, fmt.Errorf("model has no loaded parameter %q", p.Name)
		}
		if !slices.Equal(t.Shape(), p.Shape) {
			return nil, fmt.Errorf("parameter %s has shape %v, the layout wants %v", p.Name, t.Shape(), p.Shape)
		}
		if _, ok := bySource[p.Source]; !ok {
			order = append(order, p.Source)
		}
		bySource[p.Source] = append(bySource[p.Source], p)
	}
	var out []lazyTensor
	for _, src := range order {
		group := bySource[src]
		shape := group[0].SourceShape
		dt := safetensors.F32
		if len(shape) >= 2 {
			dt = stDType(dtype)
		}
		lt := lazyTensor{name: cp.Prefix + src, dtype: dt, shape: shape}
		switch p := group[0]; {
		case p.Rows[1] > 0:
			lt.data = func() ([]byte, error) { return fuseRows(group, byName, shape, dt) }
		case p.Swap:
			t := byName[p.Name]
			lt.data = func() ([]byte, error) {
				v := t.Data()
				h := len(v) / 2
				return encodeF32(append(slices.Clone(v[h:]), v[:h]...), dt), nil
			}
		case p.Transpose:
			t := byName[p.Name]
			lt.data = func() ([]byte, error) {
				r, c := t.Dim(0), t.Dim(1)
				v := t.Data()
				tv := make([]float32, len(v))
				for i := range r {
					for j := range c {
						tv[j*r+i] = v[i*c+j]
					}
				}
				return encodeF32(tv, dt), nil
			}
		default:
			t := byName[p.Name]
			lt.data = func() ([]byte, error) { return encodeTensor(t, dt), nil }
		}
		out = append(out, lt)
	}
	return out, nil
}

// fuseRows assembles a fused tensor from the parameters holding its row
// ranges, which must cover it exactly.
func fuseRows(group []checkpoint.Param, byName map[string]*tensor.Tensor, shape []int, dt safetensors.DType) ([]byte, error) {
	n := 1
	for _, d := range shape {
		n *= d
	}
	row := n / shape[0]
	v := make([]float32, n)
	covered := 0
	for _, p := range group {
		if p.Rows[1] == 0 {
			return nil, fmt.Errorf("%s mixes sliced and whole parameters", p.Source)
		}
		d := byName[p.Name].Data()
		if len(d) != (p.Rows[1]-p.Rows[0])*row {
			return nil, fmt.Errorf("%s has %d values for rows [%d, %d) of %s %v", p.Name, len(d), p.Rows[0], p.Rows[1], p.Source, shape)
		}
		copy(v[p.Rows[0]*row:], d)
		covered += p.Rows[1] - p.Rows[0]
	}
	if covered != shape[0] {
		return nil, fmt.Errorf("the parameters cover %d of the %d rows of %s", covered, shape[0], group[0].Source)
	}
	return encodeF32(v, dt), nil
}

func stDType(d tensor.DType) safetensors.DType {
	switch d {
	case tensor.F16:
		return safetensors.F16
	case tensor.BF16:
		return safetensors.BF16
	}
	return safetensors.F32
}

// encodeTensor returns t's values as little-endian dt, copying 16-bit
// storage directly when it already has that dtype.
func encodeTensor(t *tensor.Tensor, dt safetensors.DType) []byte {
	if u := t.U16(); u != nil && stDType(t.DType()) == dt {
		b := make([]byte, 2*len(u))
		for i, x := range u {
			binary.LittleEndian.PutUint16(b[2*i:], x)
		}
		return b
	}
	return encodeF32(t.Data(), dt)
}

func encodeF32(v []float32, dt safetensors.DType) []byte {
	switch dt {
	case safetensors.F16:
		return safetensors.F16Tensor("", nil, v).Data
	case safetensors.BF16:
		return safetensors.BF16Tensor("", nil, v).Data
	}
	return safetensors.F32Tensor("", nil, v).Data
}

// lazyTensor is a tensor to write whose bytes are made when written.
type lazyTensor struct {
	name  string
	dtype safetensors.DType
	shape []int
	data  func() ([]byte, error)
}

// writeSafetensors writes tensors in the safetensors format (sorted by
// name, header padded to 8 bytes) to path atomically, encoding one tensor
// at a time. safetensors.WriteFile needs every tensor's bytes at once,
// which for a full-size SDXL doubles the memory in use.
func writeSafetensors(path string, ts []lazyTensor, meta map[string]string) (err error) {
	ts = slices.Clone(ts)
	sort.Slice(ts, func(i, j int) bool { return ts[i].name < ts[j].name })
	header := map[string]any{"__metadata__": meta}
	var off int64
	for i, t := range ts {
		if i > 0 && ts[i-1].name == t.name {
			return fmt.Errorf("write %s: duplicate tensor name %q", path, t.name)
		}
		n := int64(t.dtype.Size())
		for _, d := range t.shape {
			n *= int64(d)
		}
		shape := t.shape
		if shape == nil {
			shape = []int{}
		}
		header[t.name] = map[string]any{"dtype": t.dtype, "shape": shape, "data_offsets": [2]int64{off, off + n}}
		off += n
	}
	hdr, err := json.Marshal(header)
	if err != nil {
		return fmt.Errorf("write %s: encoding header: %w", path, err)
	}
	for len(hdr)%8 != 0 {
		hdr = append(hdr, ' ')
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	w := bufio.NewWriterSize(tmp, 1<<20)
	var lenb [8]byte
	binary.LittleEndian.PutUint64(lenb[:], uint64(len(hdr)))
	w.Write(lenb[:])
	w.Write(hdr)
	var start int64
	for _, t := range ts {
		b, err := t.data()
		if err != nil {
			return fmt.Errorf("write %s: %s: %w", path, t.name, err)
		}
		end := header[t.name].(map[string]any)["data_offsets"].([2]int64)[1]
		if int64(len(b)) != end-start {
			return fmt.Errorf("write %s: %s: %d bytes for shape %v of %s, want %d", path, t.name, len(b), t.shape, t.dtype, end-start)
		}
		start = end
		if _, err := w.Write(b); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// CreateTemp makes the file private; a checkpoint is an ordinary file.
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
