package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/diffuse-go/diffuse/half"
	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/flux"
	"github.com/diffuse-go/diffuse/model/sd3"
	"github.com/diffuse-go/diffuse/model/t5"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/tensor"
)

// isMMDiTKind reports the random-checkpoint kinds of the flow-matching
// transformers: sd3 (SD3 medium with CLIP-L, CLIP-G and T5-XXL), sd3-no-t5,
// sd35 (refused), flux-dev and flux-schnell; a "-tiny" suffix writes the
// same layout at test sizes.
func isMMDiTKind(kind string) bool {
	switch strings.TrimSuffix(kind, "-tiny") {
	case "sd3", "sd3-no-t5", "sd35", "flux-dev", "flux-schnell":
		return true
	}
	return false
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
	base := strings.TrimSuffix(out, ".safetensors")
	return pipeline.ComponentPaths{TextEncoder: base + "-clip_l.safetensors", TextEncoder2: base + "-t5xxl.safetensors",
		VAE: base + "-ae.safetensors"}
}

// writeRandomMMDiT writes kind to out with random weights in the original
// single-file layout (names and shapes from the loader's own mapping), one
// tensor at a time so that memory stays low at full size.
func writeRandomMMDiT(ctx context.Context, kind, out string, dt tensor.DType, seed uint64) (mmditFiles, error) {
	tiny := strings.HasSuffix(kind, "-tiny")
	base := strings.TrimSuffix(kind, "-tiny")
	res := mmditFiles{Checkpoint: out}
	switch base {
	case "sd35":
		return res, fmt.Errorf("random-checkpoint: sd35: SD3.5 (qk norm, MMDiT-X dual attention) is %w by model/sd3 (diffusers v0.30.3's SD3Transformer2DModel)", pipeline.ErrUnsupported)
	case "sd3", "sd3-no-t5":
		c := sd3Configs(tiny)
		if base == "sd3-no-t5" {
			c.t5 = nil
		}
		specs, err := pipeline.SD3FileLayout(c.tr, c.clipL, c.clipG, c.t5, c.vae)
		if err != nil {
			return res, err
		}
		return res, writeRandomSpecs(ctx, out, specs, dt, seed)
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
		if err := writeRandomSpecs(ctx, f.path, f.specs, dt, seed+uint64(i)); err != nil {
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
			for i := range vals[:n] {
				vals[i] = scale
				if matrix {
					state ^= state << 13
					state ^= state >> 7
					state ^= state << 17
					vals[i] *= float32(int64(state>>11))/float32(1<<52) - 1
				}
			}
			encodeValues(buf, vals[:n], dt)
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

// encodeValues writes vals into buf little-endian in dt.
func encodeValues(buf []byte, vals []float32, dt tensor.DType) {
	switch dt {
	case tensor.F32:
		for i, v := range vals {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
		}
	case tensor.BF16:
		for i, v := range vals {
			binary.LittleEndian.PutUint16(buf[2*i:], half.F32ToBF16(v))
		}
	default:
		for i, v := range vals {
			binary.LittleEndian.PutUint16(buf[2*i:], half.F32ToF16(v))
		}
	}
}

func mmditNumel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}
