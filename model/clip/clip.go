// Package clip is the CLIP text encoder (transformers' CLIPTextModel and
// CLIPTextModelWithProjection) that conditions Stable Diffusion and SDXL.
package clip

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// Config is transformers' CLIPTextConfig (the fields the model uses).
type Config struct {
	VocabSize             int     `json:"vocab_size"`
	HiddenSize            int     `json:"hidden_size"`
	IntermediateSize      int     `json:"intermediate_size"`
	ProjectionDim         int     `json:"projection_dim"`
	NumHiddenLayers       int     `json:"num_hidden_layers"`
	NumAttentionHeads     int     `json:"num_attention_heads"`
	MaxPositionEmbeddings int     `json:"max_position_embeddings"`
	HiddenAct             string  `json:"hidden_act"`
	LayerNormEps          float64 `json:"layer_norm_eps"`
	EOSTokenID            int64   `json:"eos_token_id"`
	// WithProjection adds text_projection (CLIPTextModelWithProjection).
	WithProjection bool `json:"-"`
}

// ParseConfig decodes a transformers config.json.
func ParseConfig(b []byte) (Config, error) {
	c := Config{LayerNormEps: 1e-5, HiddenAct: "quick_gelu", EOSTokenID: 2}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("clip: config: %w", err)
	}
	return c, c.validate()
}

func (c Config) validate() error {
	if c.HiddenSize <= 0 || c.NumAttentionHeads <= 0 || c.HiddenSize%c.NumAttentionHeads != 0 {
		return fmt.Errorf("clip: hidden_size %d not divisible into %d heads", c.HiddenSize, c.NumAttentionHeads)
	}
	if c.VocabSize <= 0 || c.MaxPositionEmbeddings <= 0 || c.NumHiddenLayers <= 0 || c.IntermediateSize <= 0 {
		return fmt.Errorf("clip: config has a non-positive size: %+v", c)
	}
	return nil
}

// SD15 is the ViT-L/14 text encoder of Stable Diffusion 1.x.
func SD15() Config {
	return Config{VocabSize: 49408, HiddenSize: 768, IntermediateSize: 3072, ProjectionDim: 768, NumHiddenLayers: 12,
		NumAttentionHeads: 12, MaxPositionEmbeddings: 77, HiddenAct: "quick_gelu", LayerNormEps: 1e-5, EOSTokenID: 2}
}

// BigG is OpenCLIP ViT-bigG/14, SDXL's second text encoder (with projection).
func BigG() Config {
	return Config{VocabSize: 49408, HiddenSize: 1280, IntermediateSize: 5120, ProjectionDim: 1280, NumHiddenLayers: 32,
		NumAttentionHeads: 20, MaxPositionEmbeddings: 77, HiddenAct: "gelu", LayerNormEps: 1e-5, EOSTokenID: 2, WithProjection: true}
}

// ViTH is OpenCLIP ViT-H/14's text tower as Stable Diffusion 2.x uses it
// (diffusers' SD 2.x text_encoder): SD 2.x conditions on the output of the
// penultimate of its 24 layers, so the converted model keeps 23 and no
// projection.
func ViTH() Config {
	return Config{VocabSize: 49408, HiddenSize: 1024, IntermediateSize: 4096, ProjectionDim: 512, NumHiddenLayers: 23,
		NumAttentionHeads: 16, MaxPositionEmbeddings: 77, HiddenAct: "gelu", LayerNormEps: 1e-5, EOSTokenID: 2}
}

type layer struct {
	ln1, ln2               *nn.LayerNorm
	q, k, v, out, fc1, fc2 *nn.Linear
}

// Model is a CLIP text transformer.
type Model struct {
	Cfg        Config
	tok, pos   *nn.Embedding
	layers     []*layer
	final      *nn.LayerNorm
	projection *nn.Linear
}

// New builds an unloaded model from its config.
func New(c Config) (*Model, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	m := &Model{Cfg: c,
		tok:   &nn.Embedding{Num: c.VocabSize, Dim: c.HiddenSize},
		pos:   &nn.Embedding{Num: c.MaxPositionEmbeddings, Dim: c.HiddenSize},
		final: nn.NewLayerNorm(c.HiddenSize, c.LayerNormEps)}
	d := c.HiddenSize
	for i := 0; i < c.NumHiddenLayers; i++ {
		m.layers = append(m.layers, &layer{
			ln1: nn.NewLayerNorm(d, c.LayerNormEps), ln2: nn.NewLayerNorm(d, c.LayerNormEps),
			q: nn.NewLinear(d, d, true), k: nn.NewLinear(d, d, true), v: nn.NewLinear(d, d, true), out: nn.NewLinear(d, d, true),
			fc1: nn.NewLinear(d, c.IntermediateSize, true), fc2: nn.NewLinear(c.IntermediateSize, d, true),
		})
	}
	if c.WithProjection {
		m.projection = nn.NewLinear(d, c.ProjectionDim, false)
	}
	return m, nil
}

// Params registers the weights under transformers' names.
func (m *Model) Params(prefix string, p *nn.Params) {
	tm := prefix + "text_model."
	m.tok.Params(tm+"embeddings.token_embedding.", p)
	m.pos.Params(tm+"embeddings.position_embedding.", p)
	for i, l := range m.layers {
		lp := nn.Join(tm+"encoder.layers.", i)
		l.ln1.Params(lp+"layer_norm1.", p)
		l.ln2.Params(lp+"layer_norm2.", p)
		l.q.Params(lp+"self_attn.q_proj.", p)
		l.k.Params(lp+"self_attn.k_proj.", p)
		l.v.Params(lp+"self_attn.v_proj.", p)
		l.out.Params(lp+"self_attn.out_proj.", p)
		l.fc1.Params(lp+"mlp.fc1.", p)
		l.fc2.Params(lp+"mlp.fc2.", p)
	}
	m.final.Params(tm+"final_layer_norm.", p)
	if m.projection != nil {
		m.projection.Params(prefix+"text_projection.", p)
	}
}

// Output holds what the pipelines read from the encoder.
type Output struct {
	LastHiddenState *tensor.Tensor   // [B, L, D], after the final layer norm
	Pooled          *tensor.Tensor   // [B, D] final-norm state at the EOS position
	TextEmbeds      *tensor.Tensor   // [B, ProjectionDim] (with projection only)
	HiddenStates    []*tensor.Tensor // embeddings, then each layer's output (before final norm)
}

// Forward encodes ids [B, L].
func (m *Model) Forward(ids []int64, batch, length int) (*Output, error) {
	c := m.Cfg
	if length > c.MaxPositionEmbeddings {
		return nil, fmt.Errorf("clip: sequence of %d tokens exceeds %d positions", length, c.MaxPositionEmbeddings)
	}
	if len(ids) != batch*length {
		return nil, fmt.Errorf("clip: %d ids for batch %d × length %d", len(ids), batch, length)
	}
	x, err := m.tok.Forward(ids, batch, length)
	if err != nil {
		return nil, fmt.Errorf("clip: %w", err)
	}
	posIDs := make([]int64, length)
	for i := range posIDs {
		posIDs[i] = int64(i)
	}
	pe, err := m.pos.Forward(posIDs, 1, length)
	if err != nil {
		return nil, err
	}
	x = tensor.Add(x, pe)
	out := &Output{HiddenStates: []*tensor.Tensor{x}}
	// Causal mask: position i sees keys j <= i.
	mask := tensor.Zeros(1, 1, length, length)
	md := mask.Data()
	for i := 0; i < length; i++ {
		for j := i + 1; j < length; j++ {
			md[i*length+j] = float32(math.Inf(-1))
		}
	}
	heads := c.NumAttentionHeads
	hd := c.HiddenSize / heads
	split := func(t *tensor.Tensor) *tensor.Tensor {
		return t.Reshape(batch, length, heads, hd).Permute(0, 2, 1, 3)
	}
	for _, l := range m.layers {
		h := l.ln1.Forward(x)
		a := tensor.Attention(split(l.q.Forward(h)), split(l.k.Forward(h)), split(l.v.Forward(h)), mask, 0)
		a = a.Permute(0, 2, 1, 3).Reshape(batch, length, c.HiddenSize)
		x = tensor.Add(x, l.out.Forward(a))
		h = l.ln2.Forward(x)
		h = l.fc2.Forward(tensor.Activation(c.HiddenAct, l.fc1.Forward(h)))
		x = tensor.Add(x, h)
		out.HiddenStates = append(out.HiddenStates, x)
	}
	out.LastHiddenState = m.final.Forward(x)
	// Pooling: legacy configs (eos_token_id == 2) take the argmax id, which
	// is the first EOS since EOS has the largest id; newer ones the first eos_token_id.
	rows := make([]*tensor.Tensor, batch)
	for b := 0; b < batch; b++ {
		row := ids[b*length : (b+1)*length]
		p := 0
		if c.EOSTokenID == 2 {
			for j, id := range row {
				if id > row[p] {
					p = j
				}
			}
		} else {
			for j, id := range row {
				if id == c.EOSTokenID {
					p = j
					break
				}
			}
		}
		rows[b] = out.LastHiddenState.Narrow(0, b, 1).Narrow(1, p, 1).Reshape(1, c.HiddenSize)
	}
	out.Pooled = tensor.Concat(0, rows...)
	if m.projection != nil {
		out.TextEmbeds = m.projection.Forward(out.Pooled)
	}
	return out, nil
}

// FinalNorm applies the final layer norm (what diffusers does to an earlier
// layer's states when a clip skip is requested).
func (m *Model) FinalNorm(x *tensor.Tensor) *tensor.Tensor { return m.final.Forward(x) }
