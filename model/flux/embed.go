package flux

import (
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// timeProjDim is the width of the sinusoidal projection of the timestep and
// the guidance (diffusers' Timesteps(num_channels=256)).
const timeProjDim = 256

// TimeTextEmbed is diffusers' CombinedTimestepGuidanceTextProjEmbeddings
// (FLUX.1-dev, with GuidanceEmbedder) or CombinedTimestepTextProjEmbeddings
// (FLUX.1-schnell, GuidanceEmbedder nil): the embedded timestep, plus the
// embedded guidance, plus the projected pooled text embedding.
type TimeTextEmbed struct {
	TimestepEmbedder *nn.TimestepEmbedding
	GuidanceEmbedder *nn.TimestepEmbedding // nil without guidance_embeds
	// TextEmbedder is PixArtAlphaTextProjection(act_fn="silu"): linear_1,
	// SiLU, linear_2, the same layout as TimestepEmbedding.
	TextEmbedder *nn.TimestepEmbedding
}

// NewTimeTextEmbed builds the embedder for width dim and pooled text width
// pooledDim.
func NewTimeTextEmbed(dim, pooledDim int, guidance bool) *TimeTextEmbed {
	e := &TimeTextEmbed{TimestepEmbedder: nn.NewTimestepEmbedding(timeProjDim, dim, 0, 0, "silu"),
		TextEmbedder: nn.NewTimestepEmbedding(pooledDim, dim, 0, 0, "silu")}
	if guidance {
		e.GuidanceEmbedder = nn.NewTimestepEmbedding(timeProjDim, dim, 0, 0, "silu")
	}
	return e
}

// Params registers timestep_embedder, guidance_embedder and text_embedder.
func (e *TimeTextEmbed) Params(prefix string, p *nn.Params) {
	e.TimestepEmbedder.Params(prefix+"timestep_embedder.", p)
	if e.GuidanceEmbedder != nil {
		e.GuidanceEmbedder.Params(prefix+"guidance_embedder.", p)
	}
	e.TextEmbedder.Params(prefix+"text_embedder.", p)
}

// project is Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0).
func project(t []float32) *tensor.Tensor {
	return tensor.TimestepEmbedding(t, timeProjDim, true, 0, 1, 10000)
}

// Forward returns the conditioning [B, dim] for timesteps and guidance
// already scaled by 1000 (as the model scales them) and pooled [B,
// pooledDim]. guidance is ignored without a guidance embedder.
func (e *TimeTextEmbed) Forward(timesteps, guidance []float32, pooled *tensor.Tensor) (*tensor.Tensor, error) {
	b := len(timesteps)
	if in := e.TextEmbedder.Linear1.In; pooled == nil || pooled.Rank() != 2 || pooled.Dim(0) != b || pooled.Dim(1) != in {
		return nil, fmt.Errorf("flux: pooled projections must be [%d, %d]", b, in)
	}
	temb := e.TimestepEmbedder.Forward(project(timesteps), nil)
	if e.GuidanceEmbedder != nil {
		if len(guidance) != b {
			return nil, fmt.Errorf("flux: %d guidance values for batch %d (the model has guidance_embeds)", len(guidance), b)
		}
		temb = tensor.Add(temb, e.GuidanceEmbedder.Forward(project(guidance), nil))
	}
	return tensor.Add(temb, e.TextEmbedder.Forward(pooled, nil)), nil
}

// ropeTheta is the base of FluxPosEmbed's frequencies.
const ropeTheta = 10000

// RotaryTable is FluxPosEmbed (EmbedND) applied to position ids [B, S, n]
// (or [S, n], shared by the batch): for each axis a of width axes[a], the
// angles id[..., a]·ω_k with ω_k = 1/θ^(2k/axes[a]) in float64, as 2×2
// rotation matrices [[cos, −sin], [sin, cos]], axes concatenated:
// [B, 1, S, Σaxes/2, 2, 2] in float32.
func RotaryTable(ids *tensor.Tensor, axes []int) (*tensor.Tensor, error) {
	if ids == nil || (ids.Rank() != 2 && ids.Rank() != 3) || ids.Dim(-1) != len(axes) {
		return nil, fmt.Errorf("flux: position ids must be [B, S, %d] or [S, %d]", len(axes), len(axes))
	}
	b, s := 1, ids.Dim(0)
	if ids.Rank() == 3 {
		b, s = ids.Dim(0), ids.Dim(1)
	}
	half := 0
	for _, d := range axes {
		if d <= 0 || d%2 != 0 {
			return nil, fmt.Errorf("flux: rotary axis width %d must be positive and even", d)
		}
		half += d / 2
	}
	omega := make([]float64, 0, half)
	axisOf := make([]int, 0, half)
	for a, d := range axes {
		for k := 0; k < d; k += 2 {
			// torch: arange(0, d, 2, float64) / d, then 1 / θ^scale.
			omega = append(omega, 1/math.Pow(ropeTheta, float64(k)/float64(d)))
			axisOf = append(axisOf, a)
		}
	}
	pos := ids.Contiguous().Data()
	n := len(axes)
	out := tensor.Zeros(b, 1, s, half, 2, 2)
	od := out.Data()
	for i := 0; i < b*s; i++ {
		row := pos[i*n : (i+1)*n]
		for k, w := range omega {
			sin, cos := math.Sincos(float64(row[axisOf[k]]) * w)
			m := od[(i*half+k)*4 : (i*half+k+1)*4]
			m[0], m[1], m[2], m[3] = float32(cos), float32(-sin), float32(sin), float32(cos)
		}
	}
	return out, nil
}

// rotaryFromTable turns the 2×2 table [B, 1, S, D/2, 2, 2] into the
// interleaved cos and sin tables [B, 1, S, D] nn.Rotary applies: apply_rope
// computes x'[2k] = cos·x[2k] − sin·x[2k+1], x'[2k+1] = sin·x[2k] +
// cos·x[2k+1], which is x·cos + rotate_half(x)·sin on channel pairs.
func rotaryFromTable(table *tensor.Tensor) *nn.Rotary {
	b, s, half := table.Dim(0), table.Dim(2), table.Dim(3)
	td := table.Contiguous().Data()
	cos, sin := tensor.Zeros(b, 1, s, 2*half), tensor.Zeros(b, 1, s, 2*half)
	cd, sd := cos.Data(), sin.Data()
	for i := 0; i < b*s*half; i++ {
		m := td[i*4 : i*4+4]
		cd[2*i], cd[2*i+1] = m[0], m[3]
		sd[2*i], sd[2*i+1] = m[2], m[2]
	}
	return &nn.Rotary{Cos: cos, Sin: sin, Interleaved: true}
}
