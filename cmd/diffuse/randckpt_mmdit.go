package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/flux"
	"github.com/diffuse-go/diffuse/model/sd3"
	"github.com/diffuse-go/diffuse/model/t5"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/quant"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// isMMDiTKind reports the random-checkpoint kinds of the flow-matching
// transformers: sd3 (SD3 medium with CLIP-L, CLIP-G and T5-XXL), sd3-no-t5,
// sd35-large and sd35-medium (SD3.5's MMDiTs with the same encoders and
// VAE), flux-dev and flux-schnell; a "-tiny" suffix writes the same layout
// at test sizes.
func isMMDiTKind(kind string) bool {
	base := strings.TrimSuffix(kind, "-tiny")
	return isSD3Kind(base) || base == "flux-dev" || base == "flux-schnell"
}

// isSD3Kind reports the kinds (without -tiny) written as an SD3 single file.
func isSD3Kind(base string) bool {
	return slices.Contains([]string{"sd3", "sd3-no-t5", "sd35-large", "sd35-medium"}, base)
}

// mmditFiles are the files one kind writes: the checkpoint and, for FLUX,
// the separate text encoder and VAE files a transformer-only file needs
// (ComfyUI's clip_l, t5xxl and BFL's ae), by diffusers component name.
type mmditFiles struct {
	Checkpoint string
	Components pipeline.ComponentPaths
}

// print lists the component files written beside the checkpoint.
func (f mmditFiles) print() {
	for _, c := range []struct{ name, path string }{{"text_encoder", f.Components.TextEncoder},
		{"text_encoder_2", f.Components.TextEncoder2}, {"vae", f.Components.VAE}} {
		if c.path != "" {
			fmt.Printf("%s: %s\n", c.name, c.path)
		}
	}
}

// fluxSiblings names the FLUX component files written beside out.
func fluxSiblings(out string) pipeline.ComponentPaths {
	base := strings.TrimSuffix(out, filepath.Ext(out))
	return pipeline.ComponentPaths{TextEncoder: base + "-clip_l.safetensors", TextEncoder2: base + "-t5xxl.safetensors",
		VAE: base + "-ae.safetensors"}
}

// writeRandomMMDiT writes kind to out with random weights in the original
// single-file layout (names and shapes from the loader's own mapping), one
// tensor at a time so that memory stays low at full size. With qt the
// checkpoint is written as that GGUF or fp8 type (package quant's rules:
// SD3's whole file as stable-diffusion.cpp's GGUF files hold it, FLUX's
// transformer with its other components in dt beside it).
func writeRandomMMDiT(ctx context.Context, kind, out string, dt tensor.DType, qt *quant.Type, seed uint64) (mmditFiles, error) {
	tiny := strings.HasSuffix(kind, "-tiny")
	base := strings.TrimSuffix(kind, "-tiny")
	res := mmditFiles{Checkpoint: out}
	if isSD3Kind(base) {
		c := sd3Configs(tiny)
		switch base {
		case "sd3-no-t5":
			c.t5 = nil
		case "sd35-large", "sd35-medium":
			c.tr = sd35Transformer(base == "sd35-medium", tiny)
		}
		specs, err := pipeline.SD3FileLayout(c.tr, c.clipL, c.clipG, c.t5, c.vae)
		if err != nil {
			return res, err
		}
		return res, writeRandomFile(ctx, out, specs, dt, qt, seed)
	}
	c := fluxConfigs(base == "flux-dev", tiny)
	res.Components = fluxSiblings(out)
	tr, err := pipeline.FluxFileLayout(c.ftr)
	if err != nil {
		return res, err
	}
	cl, err := pipeline.CLIPFileLayout(c.clipL)
	if err != nil {
		return res, err
	}
	t5s, err := pipeline.T5FileLayout(*c.t5)
	if err != nil {
		return res, err
	}
	ae, err := pipeline.VAEFileLayout(c.vae, "")
	if err != nil {
		return res, err
	}
	for i, f := range []struct {
		path  string
		specs []pipeline.TensorSpec
	}{{out, tr}, {res.Components.TextEncoder, cl}, {res.Components.TextEncoder2, t5s}, {res.Components.VAE, ae}} {
		q := qt
		if i > 0 {
			q = nil
		}
		if err := writeRandomFile(ctx, f.path, f.specs, dt, q, seed+uint64(i)); err != nil {
			return res, err
		}
	}
	return res, nil
}

// mmditConfigs are the component configs of one kind.
type mmditConfigs struct {
	tr           sd3.Config  // SD3's transformer
	ftr          flux.Config // FLUX's transformer
	clipL, clipG clip.Config
	t5           *t5.Config
	vae          vae.Config
}

// mmditT5XXL is T5 v1.1 XXL's encoder (SD3's and FLUX's text_encoder_3/_2).
func mmditT5XXL() t5.Config {
	return t5.Config{VocabSize: 32128, DModel: 4096, DKV: 64, DFF: 10240, NumLayers: 24, NumHeads: 64,
		RelativeAttentionNumBuckets: 32, RelativeAttentionMaxDistance: 128, LayerNormEpsilon: 1e-6, FeedForwardProj: "gated-gelu"}
}

// mmditTinyCLIP, mmditTinyT5 and mmditTinyVAE are test sizes with the
// real layouts (the real vocabularies, 64-wide heads as the loader
// assumes).
func mmditTinyCLIP(proj int) clip.Config {
	c := clip.SD15()
	c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads, c.ProjectionDim = 64, 128, 2, 1, proj
	c.HiddenAct = "gelu" // what the loader reads for a CLIP that is not 768 wide
	return c
}

func mmditTinyT5() *t5.Config {
	c := mmditT5XXL()
	c.DModel, c.DFF, c.NumLayers, c.NumHeads = 128, 256, 2, 2
	return &c
}

func mmditTinyVAE(c vae.Config) vae.Config {
	c.BlockOutChannels, c.LayersPerBlock = []int{32, 32}, 1
	c.DownBlockTypes, c.UpBlockTypes = c.DownBlockTypes[:2], c.UpBlockTypes[:2]
	return c
}

// sd3Configs are SD3 medium's configs (24 joint blocks of width 1536, 24
// heads, patch 2, pos_embed_max_size 192; CLIP-L, CLIP-G, T5-XXL) or a
// tiny model of the same layout.
func sd3Configs(tiny bool) mmditConfigs {
	tr := sd3.Defaults()
	tr.NumLayers, tr.NumAttentionHeads, tr.CaptionProjectionDim, tr.PosEmbedMaxSize = 24, 24, 1536, 192
	l := clip.SD15()
	l.WithProjection = true
	t := mmditT5XXL()
	c := mmditConfigs{tr: tr, clipL: l, clipG: clip.BigG(), t5: &t, vae: pipeline.SD3VAE()}
	if tiny {
		c.tr.NumLayers, c.tr.NumAttentionHeads, c.tr.CaptionProjectionDim = 2, 1, 64
		c.tr.JointAttentionDim, c.tr.PooledProjectionDim, c.tr.PosEmbedMaxSize, c.tr.SampleSize = 128, 64, 16, 16
		c.clipL, c.clipG, c.t5, c.vae = mmditTinyCLIP(32), mmditTinyCLIP(32), mmditTinyT5(), mmditTinyVAE(c.vae)
	}
	return c
}

// sd35Transformer is SD3.5 Large's MMDiT (38 blocks of width 2432, 38
// heads, pos_embed_max_size 192, qk norms) or SD3.5 Medium's (24 blocks of
// width 1536, 24 heads, pos_embed_max_size 384, qk norms, dual attention in
// blocks 0..12), as their diffusers config.json files give them; tiny: the
// same layout with two blocks of width 64 (Large) or three of width 128 in
// two heads, the first two dual (Medium).
func sd35Transformer(medium, tiny bool) sd3.Config {
	c := sd3Configs(tiny).tr
	rms := sd3.QKNormRMS
	c.QKNorm = &rms
	switch {
	case medium && tiny:
		c.NumLayers, c.NumAttentionHeads, c.CaptionProjectionDim, c.DualAttentionLayers = 3, 2, 128, []int{0, 1}
	case medium:
		c.PosEmbedMaxSize = 384
		c.DualAttentionLayers = []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	case !tiny:
		c.NumLayers, c.NumAttentionHeads, c.CaptionProjectionDim = 38, 38, 2432
	}
	return c
}

// fluxConfigs are FLUX.1's configs (19 double and 38 single blocks of
// width 3072, 24 heads; CLIP-L, T5-XXL; dev embeds the guidance) or a tiny
// model of the same layout.
func fluxConfigs(dev, tiny bool) mmditConfigs {
	tr := flux.Config{PatchSize: 1, InChannels: 64, OutChannels: 64, NumLayers: 19, NumSingleLayers: 38, AttentionHeadDim: 128,
		NumAttentionHeads: 24, JointAttentionDim: 4096, PooledProjectionDim: 768, GuidanceEmbeds: dev, AxesDimsRope: []int{16, 56, 56}}
	t := mmditT5XXL()
	c := mmditConfigs{ftr: tr, clipL: clip.SD15(), t5: &t, vae: pipeline.FluxVAE()}
	if tiny {
		c.ftr.NumLayers, c.ftr.NumSingleLayers, c.ftr.AttentionHeadDim, c.ftr.NumAttentionHeads = 1, 2, 32, 2
		c.ftr.AxesDimsRope, c.ftr.JointAttentionDim, c.ftr.PooledProjectionDim = []int{4, 14, 14}, 128, 64
		c.clipL, c.t5, c.vae = mmditTinyCLIP(64), mmditTinyT5(), mmditTinyVAE(c.vae)
	}
	return c
}

// writeRandomFile writes specs with random values in dt (writeRandomSpecs)
// or, with qt, as that GGUF or fp8 type (writeRandomQuant).
func writeRandomFile(ctx context.Context, path string, specs []pipeline.TensorSpec, dt tensor.DType, qt *quant.Type, seed uint64) error {
	if qt == nil {
		return writeRandomSpecs(ctx, path, specs, dt, seed)
	}
	rep, err := writeRandomQuant(ctx, path, specs, *qt, seed)
	if err == nil {
		printReport(os.Stdout, path, *qt, rep, 0)
	}
	return err
}

// writeRandomQuant writes specs with random values (as writeRandomSpecs
// makes them, from a generator seeded per tensor) as typ through
// quant.Write, generating each tensor when the writer reaches it: memory
// holds one tensor's float32 values at a time (FLUX's largest, a single
// block's linear1, is 264 MB), never the model.
func writeRandomQuant(ctx context.Context, path string, specs []pipeline.TensorSpec, typ quant.Type, seed uint64) (quant.Report, error) {
	ts := make([]quant.Tensor, len(specs))
	for i, s := range specs {
		ts[i] = quant.Tensor{Name: s.Name, Shape: s.Shape, DType: safetensors.F16, Values: func() ([]float32, error) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			v := make([]float32, mmditNumel(s.Shape))
			state := (seed+uint64(i)+1)*0x9E3779B97F4A7C15 | 1
			fillRandom(v, mmditScale(s), len(s.Shape) >= 2, &state)
			return v, nil
		}}
	}
	return quant.Write(path, typ, ts)
}

// fillRandom fills vals with scale (a vector) or uniform values in
// [-scale, scale) (a matrix), advancing the xorshift state.
func fillRandom(vals []float32, scale float32, matrix bool, state *uint64) {
	s := *state
	for i := range vals {
		vals[i] = scale
		if matrix {
			s ^= s << 13
			s ^= s >> 7
			s ^= s << 17
			vals[i] *= float32(int64(s>>11))/float32(1<<52) - 1
		}
	}
	*state = s
}

// writeRandomSpecs writes a safetensors file of random tensors with the
// given names and shapes, generating and writing one chunk at a time.
// Matrices are uniform with the variance of 1/fan-in, biases zero and the
// other vectors (norm scales) one, so that the model runs to finite
// values.
func writeRandomSpecs(ctx context.Context, path string, specs []pipeline.TensorSpec, dt tensor.DType, seed uint64) error {
	size, name := 2, "F16"
	switch dt {
	case tensor.BF16:
		name = "BF16"
	case tensor.F32:
		size, name = 4, "F32"
	}
	header := map[string]any{"__metadata__": map[string]string{"format": "pt", "generator": "diffuse random-checkpoint"}}
	off := 0
	for _, s := range specs {
		n := size * mmditNumel(s.Shape)
		header[s.Name] = map[string]any{"dtype": name, "shape": s.Shape, "data_offsets": []int{off, off + n}}
		off += n
	}
	hb, err := json.Marshal(header)
	if err != nil {
		return err
	}
	for len(hb)%8 != 0 {
		hb = append(hb, ' ')
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 4<<20)
	if err := binary.Write(w, binary.LittleEndian, uint64(len(hb))); err != nil {
		f.Close()
		return err
	}
	w.Write(hb)
	state := seed*0x9E3779B97F4A7C15 + 1
	vals := make([]float32, 1<<18)
	buf := make([]byte, size*len(vals))
	for _, s := range specs {
		if err := ctx.Err(); err != nil {
			f.Close()
			return err
		}
		scale, matrix := mmditScale(s), len(s.Shape) >= 2
		for left := mmditNumel(s.Shape); left > 0; {
			n := min(left, len(vals))
			fillRandom(vals[:n], scale, matrix, &state)
			if err := safetensors.EncodeFloats(buf, vals[:n], safetensors.DType(name)); err != nil {
				f.Close()
				return err
			}
			if _, err := w.Write(buf[:size*n]); err != nil {
				f.Close()
				return err
			}
			left -= n
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// mmditScale is the bound of a matrix's uniform values (sqrt(3/fan-in)) or
// a vector's constant value.
func mmditScale(s pipeline.TensorSpec) float32 {
	if len(s.Shape) >= 2 {
		return float32(math.Sqrt(3 / float64(mmditNumel(s.Shape[1:]))))
	}
	if strings.HasSuffix(s.Name, "bias") {
		return 0
	}
	return 1
}

func mmditNumel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}
