package nn

import (
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/tensor"
)

// CombinedTimestepLabelEmbeddings is diffusers' DiT conditioning: a
// sinusoidal timestep projection (256 channels, cos first, frequency shift
// 1) through timestep_embedder, plus a class label looked up in
// class_embedder.embedding_table (whose last row is the CFG null class).
type CombinedTimestepLabelEmbeddings struct {
	Dim              int
	TimestepEmbedder *TimestepEmbedding
	ClassEmbedder    *Embedding
}

// timestepProjDim is the width of the sinusoidal timestep projection the
// DiT and PixArt embedders use.
const timestepProjDim = 256

// NewCombinedTimestepLabelEmbeddings builds the embedder for numClasses
// labels (the table gets numClasses+1 rows, the extra one for the null
// class dropped labels map to).
func NewCombinedTimestepLabelEmbeddings(numClasses, dim int) *CombinedTimestepLabelEmbeddings {
	return &CombinedTimestepLabelEmbeddings{Dim: dim,
		TimestepEmbedder: NewTimestepEmbedding(timestepProjDim, dim, 0, 0, "silu"),
		ClassEmbedder:    &Embedding{Num: numClasses + 1, Dim: dim}}
}

// Params registers timestep_embedder and class_embedder.embedding_table.
func (e *CombinedTimestepLabelEmbeddings) Params(prefix string, p *Params) {
	e.TimestepEmbedder.Params(prefix+"timestep_embedder.", p)
	e.ClassEmbedder.Params(prefix+"class_embedder.embedding_table.", p)
}

// Forward returns the conditioning [B, Dim] for one timestep and one label
// per sample.
func (e *CombinedTimestepLabelEmbeddings) Forward(timesteps []float32, labels []int64) (*tensor.Tensor, error) {
	if len(labels) != len(timesteps) {
		return nil, fmt.Errorf("nn: %d class labels for %d timesteps", len(labels), len(timesteps))
	}
	t := e.TimestepEmbedder.Forward(tensor.TimestepEmbedding(timesteps, timestepProjDim, true, 1, 1, 10000), nil)
	c, err := e.ClassEmbedder.Forward(labels, len(labels))
	if err != nil {
		return nil, fmt.Errorf("nn: class labels: %w", err)
	}
	return tensor.Add(t, c), nil
}

// AdaLayerNormZero is diffusers' adaLN-Zero (DiT): emb = linear(silu(cond))
// splits into shift, scale and gate for the attention and the MLP; the
// input is layer-normed (no affine, eps 1e-6) and modulated by the first
// shift and scale.
type AdaLayerNormZero struct {
	Dim    int
	Emb    *CombinedTimestepLabelEmbeddings // nil: the caller passes the conditioning
	Linear *Linear
	Norm   *LayerNorm
}

// NewAdaLayerNormZero builds AdaLayerNormZero(dim, numClasses); numClasses
// 0 means no embedder of its own.
func NewAdaLayerNormZero(dim, numClasses int) *AdaLayerNormZero {
	a := &AdaLayerNormZero{Dim: dim, Linear: NewLinear(dim, 6*dim, true), Norm: NewLayerNorm(dim, 1e-6)}
	a.Norm.Affine = false
	if numClasses > 0 {
		a.Emb = NewCombinedTimestepLabelEmbeddings(numClasses, dim)
	}
	return a
}

// Params registers emb.* and linear.
func (a *AdaLayerNormZero) Params(prefix string, p *Params) {
	if a.Emb != nil {
		a.Emb.Params(prefix+"emb.", p)
	}
	a.Linear.Params(prefix+"linear.", p)
}

// Modulation is the shift, scale and gate of adaptive-norm blocks for the
// attention (MSA) and the feed-forward (MLP), each broadcastable to
// [B, L, Dim].
type Modulation struct {
	ShiftMSA, ScaleMSA, GateMSA *tensor.Tensor
	ShiftMLP, ScaleMLP, GateMLP *tensor.Tensor
}

// modulate returns x·(1 + scale) + shift.
func modulate(x, shift, scale *tensor.Tensor) *tensor.Tensor {
	return tensor.Add(tensor.Mul(x, tensor.AddScalar(scale, 1)), shift)
}

// Modulation computes the six modulation tensors ([B, 1, Dim]) from the
// conditioning cond [B, Dim].
func (a *AdaLayerNormZero) Modulation(cond *tensor.Tensor) Modulation {
	emb := a.Linear.Forward(tensor.SiLU(cond))
	ch := emb.Reshape(emb.Dim(0), 6, a.Dim).Chunk(6, 1)
	return Modulation{ShiftMSA: ch[0], ScaleMSA: ch[1], GateMSA: ch[2], ShiftMLP: ch[3], ScaleMLP: ch[4], GateMLP: ch[5]}
}

// PixArtCombinedTimestepSizeEmbeddings is diffusers'
// PixArtAlphaCombinedTimestepSizeEmbeddings: a sinusoidal timestep
// projection (cos first, no frequency shift) through timestep_embedder,
// plus, with additional conditions, the embedded resolution (h, w) and
// aspect ratio (Dim/3 channels each).
type PixArtCombinedTimestepSizeEmbeddings struct {
	Dim, SizeDim        int
	TimestepEmbedder    *TimestepEmbedding
	ResolutionEmbedder  *TimestepEmbedding // nil without additional conditions
	AspectRatioEmbedder *TimestepEmbedding
}

// NewPixArtCombinedTimestepSizeEmbeddings builds the embedder.
func NewPixArtCombinedTimestepSizeEmbeddings(dim int, additional bool) *PixArtCombinedTimestepSizeEmbeddings {
	e := &PixArtCombinedTimestepSizeEmbeddings{Dim: dim, SizeDim: dim / 3,
		TimestepEmbedder: NewTimestepEmbedding(timestepProjDim, dim, 0, 0, "silu")}
	if additional {
		e.ResolutionEmbedder = NewTimestepEmbedding(timestepProjDim, e.SizeDim, 0, 0, "silu")
		e.AspectRatioEmbedder = NewTimestepEmbedding(timestepProjDim, e.SizeDim, 0, 0, "silu")
	}
	return e
}

// Params registers the embedders.
func (e *PixArtCombinedTimestepSizeEmbeddings) Params(prefix string, p *Params) {
	e.TimestepEmbedder.Params(prefix+"timestep_embedder.", p)
	if e.ResolutionEmbedder != nil {
		e.ResolutionEmbedder.Params(prefix+"resolution_embedder.", p)
		e.AspectRatioEmbedder.Params(prefix+"aspect_ratio_embedder.", p)
	}
}

// Forward returns the embedded timestep [B, Dim]. resolution holds (h, w)
// per sample and aspectRatio one value per sample; both are ignored (and
// may be nil) without additional conditions.
func (e *PixArtCombinedTimestepSizeEmbeddings) Forward(timesteps, resolution, aspectRatio []float32) (*tensor.Tensor, error) {
	b := len(timesteps)
	t := e.TimestepEmbedder.Forward(tensor.TimestepEmbedding(timesteps, timestepProjDim, true, 0, 1, 10000), nil)
	if e.ResolutionEmbedder == nil {
		return t, nil
	}
	if len(resolution) != 2*b || len(aspectRatio) != b {
		return nil, fmt.Errorf("nn: PixArt additional conditions: %d resolution and %d aspect-ratio values for batch %d",
			len(resolution), len(aspectRatio), b)
	}
	res := e.ResolutionEmbedder.Forward(tensor.TimestepEmbedding(resolution, timestepProjDim, true, 0, 1, 10000), nil).Reshape(b, -1)
	ar := e.AspectRatioEmbedder.Forward(tensor.TimestepEmbedding(aspectRatio, timestepProjDim, true, 0, 1, 10000), nil).Reshape(b, -1)
	return tensor.Add(t, tensor.Concat(1, res, ar)), nil
}

// AdaLayerNormSingle is diffusers' adaLN-single (PixArt-alpha): one
// timestep embedding whose linear(silu(·)) gives the 6·Dim modulation
// shared by every block.
type AdaLayerNormSingle struct {
	Dim    int
	Emb    *PixArtCombinedTimestepSizeEmbeddings
	Linear *Linear
}

// NewAdaLayerNormSingle builds AdaLayerNormSingle(dim, use_additional_conditions).
func NewAdaLayerNormSingle(dim int, additional bool) *AdaLayerNormSingle {
	return &AdaLayerNormSingle{Dim: dim, Emb: NewPixArtCombinedTimestepSizeEmbeddings(dim, additional),
		Linear: NewLinear(dim, 6*dim, true)}
}

// Params registers emb.* and linear.
func (a *AdaLayerNormSingle) Params(prefix string, p *Params) {
	a.Emb.Params(prefix+"emb.", p)
	a.Linear.Params(prefix+"linear.", p)
}

// Forward returns the block modulation [B, 6·Dim] and the embedded
// timestep [B, Dim] (which the output layer reads).
func (a *AdaLayerNormSingle) Forward(timesteps, resolution, aspectRatio []float32) (mod, embedded *tensor.Tensor, err error) {
	embedded, err = a.Emb.Forward(timesteps, resolution, aspectRatio)
	if err != nil {
		return nil, nil, err
	}
	return a.Linear.Forward(tensor.SiLU(embedded)), embedded, nil
}

// PatchEmbed is diffusers' PatchEmbed with 2-D sin-cos positions: a
// patch-size convolution (proj), flattened to tokens, plus the fixed
// positional embedding of the token grid.
type PatchEmbed struct {
	PatchSize, Dim int
	// BaseSize is the token grid side positions are scaled to (height /
	// patch size at construction); InterpolationScale divides positions.
	BaseSize           int
	InterpolationScale float64
	// NoPositions leaves the positional embedding out (diffusers'
	// pos_embed_type=None, as Hunyuan-DiT, which uses rotary positions).
	NoPositions bool
	Proj        *Conv2d
}

// NewPatchEmbed builds PatchEmbed(height, width=height, patch_size,
// in_channels, embed_dim, interpolation_scale).
func NewPatchEmbed(sampleSize, patchSize, in, dim int, interpolationScale float64) *PatchEmbed {
	return &PatchEmbed{PatchSize: patchSize, Dim: dim, BaseSize: sampleSize / patchSize, InterpolationScale: interpolationScale,
		Proj: NewConv2d(in, dim, patchSize, patchSize, 0, true)}
}

// Params registers proj (the positions are computed, not stored).
func (e *PatchEmbed) Params(prefix string, p *Params) { e.Proj.Params(prefix+"proj.", p) }

// Forward turns x [B, C, H, W] into tokens [B, (H/p)·(W/p), Dim] with
// positions added (unless NoPositions).
func (e *PatchEmbed) Forward(x *tensor.Tensor) *tensor.Tensor {
	y := e.Proj.Forward(x)
	b, d, h, w := y.Dim(0), y.Dim(1), y.Dim(2), y.Dim(3)
	y = y.Reshape(b, d, h*w).Transpose(1, 2)
	if e.NoPositions {
		return y
	}
	return tensor.Add(y, SinCosPosEmbed2D(d, h, w, e.BaseSize, e.InterpolationScale).Unsqueeze(0))
}

// Unpatchify turns tokens [B, h·w, p·p·C] into an image [B, C, h·p, w·p]
// (the inverse of PatchEmbed's patch layout, as DiT and PixArt unpatchify).
func Unpatchify(x *tensor.Tensor, h, w, p, c int) *tensor.Tensor {
	b := x.Dim(0)
	return x.Reshape(b, h, w, p, p, c).Permute(0, 5, 1, 3, 2, 4).Reshape(b, c, h*p, w*p)
}

// SinCosPosEmbed2D is diffusers' get_2d_sincos_pos_embed for a grid of
// h×w tokens: [h·w, dim], the first half the sin-cos embedding of the
// column coordinate and the second half of the row coordinate, with
// coordinates i / (size/baseSize) / interpolationScale (float32, as numpy
// computes them) and the sines in float64.
func SinCosPosEmbed2D(dim, h, w, baseSize int, interpolationScale float64) *tensor.Tensor {
	coords := func(n int) []float64 {
		out := make([]float64, n)
		step := float32(float64(n) / float64(baseSize))
		for i := range out {
			out[i] = float64(float32(i) / step / float32(interpolationScale))
		}
		return out
	}
	ch, cw := coords(h), coords(w)
	half := dim / 2 // channels per axis
	quarter := half / 2
	omega := make([]float64, quarter)
	for i := range omega {
		omega[i] = 1 / math.Pow(10000, float64(i)/(float64(half)/2))
	}
	out := tensor.Zeros(h*w, dim)
	od := out.Data()
	axis := func(row []float32, pos float64) {
		for i, om := range omega {
			s, c := math.Sincos(pos * om)
			row[i], row[quarter+i] = float32(s), float32(c)
		}
	}
	for r := 0; r < h; r++ {
		for c := 0; c < w; c++ {
			row := od[(r*w+c)*dim : (r*w+c+1)*dim]
			axis(row[:half], cw[c])
			axis(row[half:], ch[r])
		}
	}
	return out
}
