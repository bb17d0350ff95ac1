package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/diffuse-go/diffuse/checkpoint"
	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/t5"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
	t5tok "github.com/diffuse-go/diffuse/tokenizer/t5"
)

// ErrMissingComponent is returned (wrapped) when a model lacks a component
// it needs and Options.Components does not give it.
var ErrMissingComponent = errors.New("missing component")

// ComponentPaths names, per diffusers component, a path to load it from:
// a component folder (config.json and weights), a diffusers model folder
// (its sub-folder of the component's name is used), a single .safetensors
// file (transformers or original names; fp8 weights stay fp8), a .gguf
// file (a transformer, its quantised weights kept quantised), or for a T5
// tokenizer its spiece.model. Empty fields leave the checkpoint's own.
type ComponentPaths struct {
	TextEncoder  string // text_encoder: CLIP-L
	TextEncoder2 string // text_encoder_2: SD3's CLIP-G, FLUX's T5
	TextEncoder3 string // text_encoder_3: SD3's T5
	Tokenizer2   string // tokenizer_2: FLUX's T5 spiece.model
	Tokenizer3   string // tokenizer_3: SD3's T5 spiece.model
	Transformer  string
	VAE          string
}

// slot is the field of the diffusers component name (nil: unknown).
func (c *ComponentPaths) slot(name string) *string {
	switch name {
	case "text_encoder":
		return &c.TextEncoder
	case "text_encoder_2":
		return &c.TextEncoder2
	case "text_encoder_3":
		return &c.TextEncoder3
	case "tokenizer_2":
		return &c.Tokenizer2
	case "tokenizer_3":
		return &c.Tokenizer3
	case "transformer":
		return &c.Transformer
	case "vae":
		return &c.VAE
	}
	return nil
}

// path is the path given for the diffusers component name.
func (c ComponentPaths) path(name string) string {
	if p := c.slot(name); p != nil {
		return *p
	}
	return ""
}

// Set gives the component of that diffusers name (text_encoder,
// text_encoder_2, text_encoder_3, tokenizer_2, tokenizer_3, transformer,
// vae) a path.
func (c *ComponentPaths) Set(name, path string) error {
	p := c.slot(name)
	if p == nil {
		return fmt.Errorf("pipeline: unknown component %q (text_encoder, text_encoder_2, text_encoder_3, tokenizer_2, tokenizer_3, transformer, vae)", name)
	}
	*p = path
	return nil
}

// compSource is where one component's weights are: a diffusers component folder
// (config.json and weights, possibly sharded) or the tensors of a single
// file under a prefix (the config then follows from their shapes).
type compSource struct {
	name   string // diffusers component name
	dir    string
	file   string
	prefix string
}

func (p compSource) String() string {
	if p.dir != "" {
		return p.dir
	}
	if p.prefix != "" {
		return p.file + " (" + p.prefix + "*)"
	}
	return p.file
}

// findPart resolves component name: Options.Components first, then the
// folder's sub-folder, then the single file's tensors under prefix (one of
// prefixes, the first found). ok is false when none has it.
func findPart(src *Source, opt Options, name string, prefixes ...string) (compSource, bool, error) {
	if path := opt.Components.path(name); path != "" {
		p, err := givenPart(name, path, prefixes)
		return p, err == nil, err
	}
	if src.Dir {
		dir := filepath.Join(src.Path, name)
		if st, err := os.Stat(dir); err == nil && st.IsDir() && src.Lists(name) {
			return compSource{name: name, dir: dir}, true, nil
		}
		return compSource{}, false, nil
	}
	for _, pre := range prefixes {
		if src.HasTensorPrefix(pre) {
			return compSource{name: name, file: src.Path, prefix: pre}, true, nil
		}
	}
	return compSource{}, false, nil
}

// givenPart is the path Options.Components gives for name: a diffusers model folder, a
// component folder or a single file (whose tensors may sit under one of
// prefixes, as in an all-in-one checkpoint, or at the top level).
func givenPart(name, path string, prefixes []string) (compSource, error) {
	st, err := os.Stat(path)
	if err != nil {
		return compSource{}, fmt.Errorf("component %s: %w", name, err)
	}
	if st.IsDir() {
		if _, err := os.Stat(filepath.Join(path, "model_index.json")); err == nil {
			path = filepath.Join(path, name)
		}
		return compSource{name: name, dir: path}, nil
	}
	if strings.HasPrefix(name, "tokenizer") {
		return compSource{name: name, file: path}, nil // a vocabulary file (spiece.model)
	}
	f, err := openWeights(path)
	if err != nil {
		return compSource{}, fmt.Errorf("component %s: %w", name, err)
	}
	defer f.Close()
	for _, pre := range prefixes {
		for _, n := range f.Names() {
			if strings.HasPrefix(n, pre) {
				return compSource{name: name, file: path, prefix: pre}, nil
			}
		}
	}
	return compSource{name: name, file: path}, nil
}

// partSpec is a component a model cannot run without and the prefixes a
// single file may hold it under.
type partSpec struct {
	name     string
	prefixes []string
}

// needParts resolves every spec (findPart), naming all the missing ones
// in one error, so that a file that lacks several components (a GGUF or
// BFL transformer-only file lacks all but one) says so at once.
func needParts(src *Source, opt Options, specs ...partSpec) ([]compSource, error) {
	out := make([]compSource, len(specs))
	var missing []string
	for i, s := range specs {
		p, ok, err := findPart(src, opt, s.name, s.prefixes...)
		if err != nil {
			return nil, err
		}
		if !ok {
			missing = append(missing, s.name+partHint[s.name])
		}
		out[i] = p
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s has no %s: %w (give them with Options.Components)", src.Path, strings.Join(missing, ", "), ErrMissingComponent)
	}
	return out, nil
}

// partHint says what a component is where its name does not.
var partHint = map[string]string{"tokenizer_2": " (T5's spiece.model)", "tokenizer_3": " (T5's spiece.model)"}

// openFiles are the open files a loaded component reads its weights from
// (see nn.ViewTensor, nn.GGUFTensor); close releases them.
type openFiles []weightsFile

func (fs *openFiles) close() {
	for _, f := range *fs {
		f.Close()
	}
	*fs = nil
}

// shapeFn is the table of contents of a component's tensors.
type shapeFn func(name string) ([]int, bool)

// open opens the part's weights: the single file, or the folder's weights
// (one file or the shards its *.safetensors.index.json lists).
func (p compSource) open() (openFiles, error) {
	if p.dir == "" {
		f, err := openWeights(p.file)
		if err != nil {
			return nil, err
		}
		return openFiles{f}, nil
	}
	paths, err := weightFiles(p.dir)
	if err != nil {
		return nil, err
	}
	var fs openFiles
	for _, path := range paths {
		f, err := safetensors.Open(path)
		if err != nil {
			fs.close()
			return nil, err
		}
		fs = append(fs, newSTFile(f))
	}
	return fs, nil
}

// weightFiles finds a component folder's weights: a single file, or the
// shards of an index.
func weightFiles(dir string) ([]string, error) {
	if p, err := weightFile(dir); err == nil {
		return []string{p}, nil
	}
	if index := shardIndex(dir); index != "" {
		return shardFiles(index)
	}
	_, err := weightFile(dir) // its error says what is missing
	return nil, err
}

// unionSource serves the tensors of several files (shards) under one
// prefix, hiding buffers that are not parameters.
type unionSource struct {
	fs     openFiles
	prefix string
}

func (u unionSource) Names() []string {
	var out []string
	for _, f := range u.fs {
		for _, n := range f.Names() {
			if strings.HasPrefix(n, u.prefix) && !ignorableTensor(n) {
				out = append(out, strings.TrimPrefix(n, u.prefix))
			}
		}
	}
	return out
}

func (u unionSource) Shape(name string) ([]int, bool) {
	for _, f := range u.fs {
		if info, ok := f.Info(u.prefix + name); ok {
			return info.Shape, true
		}
	}
	return nil, false
}

func (u unionSource) Tensor(name string) (*tensor.Tensor, error) {
	for _, f := range u.fs {
		if _, ok := f.Info(u.prefix + name); ok {
			return f.view(u.prefix + name)
		}
	}
	return nil, fmt.Errorf("no tensor %q", u.prefix+name)
}

// ignorableTensor reports buffers that text-encoder checkpoints carry and
// the models do not use.
func ignorableTensor(name string) bool {
	return strings.HasSuffix(name, "position_ids") || strings.HasSuffix(name, "logit_scale") || checkpoint.Ignorable(name)
}

// loadPart opens p's weights and loads them into m, converting to
// opt.DType; the returned files must stay open while m is used.
func loadPart(p compSource, m nn.Module, src nn.Source, fs openFiles, opt Options) (openFiles, error) {
	if err := nn.Load(m, "", src, LoadOptions{DType: opt.DType}.nnOpts()); err != nil {
		fs.close()
		return nil, fmt.Errorf("%s: %s: %w", p.name, p, err)
	}
	LoadOptions{DType: opt.DType}.convert(m)
	return keepOpen(fs), nil
}

// config reads a component folder's config.json.
func (p compSource) config() ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(p.dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("component %s: %w", p.name, err)
	}
	return b, nil
}

// shapesOf is the table of contents of fs under prefix.
func shapesOf(fs openFiles, prefix string) shapeFn {
	u := unionSource{fs: fs, prefix: prefix}
	return u.Shape
}

// loadCLIP loads a CLIP text encoder (with text_projection when proj).
func loadCLIP(p compSource, proj bool, opt Options) (*clip.Model, openFiles, error) {
	fs, err := p.open()
	if err != nil {
		return nil, nil, err
	}
	var cfg clip.Config
	if p.dir != "" {
		var b []byte
		if b, err = p.config(); err == nil {
			cfg, err = clip.ParseConfig(b)
		}
	} else {
		cfg, err = inferCLIP(shapesOf(fs, p.prefix))
	}
	if err != nil {
		fs.close()
		return nil, nil, fmt.Errorf("%s: %s: %w", p.name, p, err)
	}
	// CLIP-L files often carry text_projection even where the model
	// (FLUX's CLIPTextModel) does not use it: it is loaded, not used.
	_, hasProj := shapesOf(fs, p.prefix)("text_projection.weight")
	cfg.WithProjection = proj || hasProj
	m, err := clip.New(cfg)
	if err != nil {
		fs.close()
		return nil, nil, err
	}
	fs, err = loadPart(p, m, unionSource{fs: fs, prefix: p.prefix}, fs, opt)
	return m, fs, err
}

// loadT5 loads a T5 encoder.
func loadT5(p compSource, opt Options) (*t5.Model, openFiles, error) {
	fs, err := p.open()
	if err != nil {
		return nil, nil, err
	}
	var cfg t5.Config
	if p.dir != "" {
		var b []byte
		if b, err = p.config(); err == nil {
			cfg, err = t5.ParseConfig(b)
		}
	} else {
		cfg, err = inferT5(shapesOf(fs, p.prefix))
	}
	if err != nil {
		fs.close()
		return nil, nil, fmt.Errorf("%s: %s: %w", p.name, p, err)
	}
	m, err := t5.New(cfg)
	if err != nil {
		fs.close()
		return nil, nil, err
	}
	fs, err = loadPart(p, m, unionSource{fs: fs, prefix: p.prefix}, fs, opt)
	return m, fs, err
}

// loadVAE loads an AutoencoderKL: a folder, or a single file in the
// original (LDM) layout whose sizes follow from its shapes and whose
// latent factors are def's (the family's).
func loadVAE(p compSource, def vae.Config, opt Options) (*vae.Model, openFiles, error) {
	fs, err := p.open()
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*vae.Model, openFiles, error) {
		fs.close()
		return nil, nil, fmt.Errorf("%s: %s: %w", p.name, p, err)
	}
	if p.dir != "" {
		b, err := p.config()
		if err != nil {
			return fail(err)
		}
		cfg, err := vae.ParseConfig(b)
		if err != nil {
			return fail(err)
		}
		m, err := vae.New(cfg)
		if err != nil {
			return fail(err)
		}
		fs, err = loadPart(p, m, unionSource{fs: fs}, fs, opt)
		return m, fs, err
	}
	cfg, err := inferVAE(shapesOf(fs, p.prefix), def)
	if err != nil {
		return fail(err)
	}
	m, err := vae.New(cfg)
	if err != nil {
		return fail(err)
	}
	comp, err := ldmVAEMapping(fs[0], p.prefix, m)
	if err != nil {
		return fail(err)
	}
	fs, err = loadPart(p, m, componentSource{fs[0], comp}, fs, opt)
	return m, fs, err
}

// ldmVAEMapping maps an LDM-layout VAE onto the model's parameters by
// the checkpoint package's LDM VAE naming rules. The training leftovers
// of a bare VAE file (loss.*: the discriminator and logvar, which A1111
// drops too) are not looked at.
func ldmVAEMapping(f weightsFile, prefix string, m *vae.Model) (checkpoint.Component, error) {
	params, err := checkpoint.LDMVAE.Names(m)
	if err != nil {
		return nil, err
	}
	return checkpoint.MapComponent(withoutLoss{f}, prefix, params)
}

// withoutLoss hides a VAE file's loss.* tensors.
type withoutLoss struct{ checkpoint.Source }

func (s withoutLoss) Names() []string {
	var out []string
	for _, n := range s.Source.Names() {
		if !strings.HasPrefix(n, "loss.") {
			out = append(out, n)
		}
	}
	return out
}

// loadT5Tokenizer loads a T5 SentencePiece tokenizer: the spiece.model
// file given, or the one in a folder.
func loadT5Tokenizer(p compSource) (*t5tok.Tokenizer, error) {
	path := p.file
	if p.dir != "" {
		path = filepath.Join(p.dir, "spiece.model")
	}
	tok, err := t5tok.Load(path, t5tok.Options{})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.name, err)
	}
	return tok, nil
}

// countBlocks counts the consecutive indices i from 0 for which
// fmt.Sprintf(pattern, i) is a tensor.
func countBlocks(sh shapeFn, pattern string) int {
	n := 0
	for {
		if _, ok := sh(fmt.Sprintf(pattern, n)); !ok {
			return n
		}
		n++
	}
}

// errDiffusersNamed explains a single transformer file in diffusers'
// names: its config is in the folder it came from.
var errDiffusersNamed = errors.New("a transformer file with diffusers names (transformer_blocks.*): give its folder, with config.json, instead")

// diffusersNamed reports a single file in diffusers' names.
func diffusersNamed(sh shapeFn) bool {
	_, ok := sh("transformer_blocks.0.attn.to_q.weight")
	return ok
}

// needShape reads the shape of a tensor a config inference relies on.
func needShape(sh shapeFn, name string, rank int) ([]int, error) {
	s, ok := sh(name)
	if !ok {
		return nil, fmt.Errorf("no tensor %s to infer the config from", name)
	}
	if len(s) != rank {
		return nil, fmt.Errorf("%s has shape %v, want %d dimensions", name, s, rank)
	}
	return s, nil
}

// clipHeadDim is the attention head width of every CLIP text encoder
// diffusion models use (ViT-L/14, OpenCLIP ViT-H and ViT-bigG): the head
// count is not stored in a checkpoint.
const clipHeadDim = 64

// inferCLIP reads a CLIP text encoder's config from transformers-named
// tensors. Heads are 64 wide; the activation is quick_gelu for the
// 768-wide OpenAI ViT-L/14 and gelu for OpenCLIP's (as their configs say).
func inferCLIP(sh shapeFn) (clip.Config, error) {
	tok, err := needShape(sh, "text_model.embeddings.token_embedding.weight", 2)
	if err != nil {
		return clip.Config{}, err
	}
	pos, err := needShape(sh, "text_model.embeddings.position_embedding.weight", 2)
	if err != nil {
		return clip.Config{}, err
	}
	fc1, err := needShape(sh, "text_model.encoder.layers.0.mlp.fc1.weight", 2)
	if err != nil {
		return clip.Config{}, err
	}
	hidden := tok[1]
	if hidden%clipHeadDim != 0 {
		return clip.Config{}, fmt.Errorf("CLIP width %d is not a multiple of the %d-wide heads; give a folder with its config.json", hidden, clipHeadDim)
	}
	c := clip.Config{VocabSize: tok[0], HiddenSize: hidden, IntermediateSize: fc1[0], ProjectionDim: hidden,
		NumHiddenLayers: countBlocks(sh, "text_model.encoder.layers.%d.mlp.fc1.weight"), NumAttentionHeads: hidden / clipHeadDim,
		MaxPositionEmbeddings: pos[0], HiddenAct: "gelu", LayerNormEps: 1e-5, EOSTokenID: 2}
	if hidden == 768 {
		c.HiddenAct = "quick_gelu"
	}
	if p, ok := sh("text_projection.weight"); ok && len(p) == 2 {
		c.ProjectionDim = p[0]
	}
	return c, nil
}

// inferT5 reads a T5 encoder's config from transformers-named tensors
// (T5 v1.1: gated-gelu when wi_0/wi_1 are present).
func inferT5(sh shapeFn) (t5.Config, error) {
	emb, err := needShape(sh, "shared.weight", 2)
	if err != nil {
		if emb, err = needShape(sh, "encoder.embed_tokens.weight", 2); err != nil {
			return t5.Config{}, err
		}
	}
	rel, err := needShape(sh, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", 2)
	if err != nil {
		return t5.Config{}, err
	}
	q, err := needShape(sh, "encoder.block.0.layer.0.SelfAttention.q.weight", 2)
	if err != nil {
		return t5.Config{}, err
	}
	c := t5.Config{VocabSize: emb[0], DModel: emb[1], NumHeads: rel[1], DKV: q[0] / rel[1],
		NumLayers: countBlocks(sh, "encoder.block.%d.layer.0.SelfAttention.q.weight"), RelativeAttentionNumBuckets: rel[0],
		RelativeAttentionMaxDistance: 128, LayerNormEpsilon: 1e-6, FeedForwardProj: "gated-gelu"}
	ff, ok := sh("encoder.block.0.layer.1.DenseReluDense.wi_0.weight")
	if !ok {
		c.FeedForwardProj = "relu"
		if ff, err = needShape(sh, "encoder.block.0.layer.1.DenseReluDense.wi.weight", 2); err != nil {
			return t5.Config{}, err
		}
	}
	c.DFF = ff[0]
	return c, nil
}

// inferVAE reads an LDM-layout AutoencoderKL's sizes; the latent scaling
// and shift come from def.
func inferVAE(sh shapeFn, def vae.Config) (vae.Config, error) {
	c := def
	n := countBlocks(sh, "encoder.down.%d.block.0.conv1.weight")
	if _, ok := sh("encoder.down_blocks.0.resnets.0.conv1.weight"); n == 0 && ok {
		return c, errors.New("a VAE file with diffusers names (encoder.down_blocks.*): give its folder, with config.json, instead")
	}
	if n == 0 {
		return c, errors.New("no encoder.down.0.block.0.conv1.weight: not an LDM-layout VAE")
	}
	c.BlockOutChannels = make([]int, n)
	c.DownBlockTypes, c.UpBlockTypes = make([]string, n), make([]string, n)
	for i := range n {
		s, err := needShape(sh, fmt.Sprintf("encoder.down.%d.block.0.conv2.weight", i), 4)
		if err != nil {
			return c, err
		}
		c.BlockOutChannels[i] = s[0]
		c.DownBlockTypes[i], c.UpBlockTypes[i] = "DownEncoderBlock2D", "UpDecoderBlock2D"
	}
	c.LayersPerBlock = countBlocks(sh, "encoder.down.0.block.%d.conv1.weight")
	in, err := needShape(sh, "encoder.conv_in.weight", 4)
	if err != nil {
		return c, err
	}
	dec, err := needShape(sh, "decoder.conv_in.weight", 4)
	if err != nil {
		return c, err
	}
	out, err := needShape(sh, "decoder.conv_out.weight", 4)
	if err != nil {
		return c, err
	}
	c.InChannels, c.LatentChannels, c.OutChannels = in[1], dec[1], out[0]
	_, c.UseQuantConv = sh("quant_conv.weight")
	_, c.UsePostQuantConv = sh("post_quant_conv.weight")
	_, c.MidBlockAddAttention = sh("encoder.mid.attn_1.q.weight")
	return c, nil
}
