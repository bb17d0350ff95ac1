// Package bert is transformers' BertModel, the text encoder of
// Hunyuan-DiT: word + absolute position + token-type embeddings and a
// LayerNorm, then post-LN encoder layers (self-attention with an additive
// padding mask, a feed-forward network), and an optional tanh pooler over
// the first token.
package bert

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// Config is transformers' BertConfig (the fields the model uses).
type Config struct {
	VocabSize             int     `json:"vocab_size"`
	HiddenSize            int     `json:"hidden_size"`
	NumHiddenLayers       int     `json:"num_hidden_layers"`
	NumAttentionHeads     int     `json:"num_attention_heads"`
	IntermediateSize      int     `json:"intermediate_size"`
	HiddenAct             string  `json:"hidden_act"`
	MaxPositionEmbeddings int     `json:"max_position_embeddings"`
	TypeVocabSize         int     `json:"type_vocab_size"`
	LayerNormEps          float64 `json:"layer_norm_eps"`
	PositionEmbeddingType string  `json:"position_embedding_type"`
}

// ParseConfig decodes a transformers config.json, with BertConfig's
// defaults for absent fields.
func ParseConfig(b []byte) (Config, error) {
	c := Config{VocabSize: 30522, HiddenSize: 768, NumHiddenLayers: 12, NumAttentionHeads: 12, IntermediateSize: 3072,
		HiddenAct: "gelu", MaxPositionEmbeddings: 512, TypeVocabSize: 2, LayerNormEps: 1e-12, PositionEmbeddingType: "absolute"}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("bert: config: %w", err)
	}
	return c, c.validate()
}

func (c Config) validate() error {
	if c.VocabSize <= 0 || c.HiddenSize <= 0 || c.NumHiddenLayers <= 0 || c.NumAttentionHeads <= 0 ||
		c.IntermediateSize <= 0 || c.MaxPositionEmbeddings <= 0 || c.TypeVocabSize <= 0 {
		return fmt.Errorf("bert: config has a non-positive size: %+v", c)
	}
	if c.HiddenSize%c.NumAttentionHeads != 0 {
		return fmt.Errorf("bert: hidden_size %d not divisible by %d heads", c.HiddenSize, c.NumAttentionHeads)
	}
	if c.PositionEmbeddingType != "absolute" {
		return fmt.Errorf("bert: position_embedding_type %q is not supported (absolute only)", c.PositionEmbeddingType)
	}
	switch c.HiddenAct {
	case "gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu", "silu", "swish", "quick_gelu", "tanh":
	default:
		return fmt.Errorf("bert: unsupported hidden_act %q", c.HiddenAct)
	}
	return nil
}

// layer is one BertLayer.
type layer struct {
	query, key, value, attnOut *nn.Linear
	attnNorm                   *nn.LayerNorm
	intermediate, output       *nn.Linear
	outNorm                    *nn.LayerNorm
}

// Model is a BERT encoder.
type Model struct {
	Cfg                          Config
	words, positions, tokenTypes *nn.Embedding
	embNorm                      *nn.LayerNorm
	layers                       []*layer
	// pooler is the optional pooler.dense (pooler_output).
	poolerWeight, poolerBias *tensor.Tensor
}

// New builds an unloaded model from its config.
func New(c Config) (*Model, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	d := c.HiddenSize
	m := &Model{Cfg: c,
		words:      &nn.Embedding{Num: c.VocabSize, Dim: d},
		positions:  &nn.Embedding{Num: c.MaxPositionEmbeddings, Dim: d},
		tokenTypes: &nn.Embedding{Num: c.TypeVocabSize, Dim: d},
		embNorm:    nn.NewLayerNorm(d, c.LayerNormEps)}
	for i := 0; i < c.NumHiddenLayers; i++ {
		m.layers = append(m.layers, &layer{
			query: nn.NewLinear(d, d, true), key: nn.NewLinear(d, d, true), value: nn.NewLinear(d, d, true),
			attnOut: nn.NewLinear(d, d, true), attnNorm: nn.NewLayerNorm(d, c.LayerNormEps),
			intermediate: nn.NewLinear(d, c.IntermediateSize, true), output: nn.NewLinear(c.IntermediateSize, d, true),
			outNorm: nn.NewLayerNorm(d, c.LayerNormEps)})
	}
	return m, nil
}

// Params registers the weights under transformers' BertModel names; the
// pooler is optional (checkpoints saved with add_pooling_layer=False lack
// it).
func (m *Model) Params(prefix string, p *nn.Params) {
	m.words.Params(prefix+"embeddings.word_embeddings.", p)
	m.positions.Params(prefix+"embeddings.position_embeddings.", p)
	m.tokenTypes.Params(prefix+"embeddings.token_type_embeddings.", p)
	m.embNorm.Params(prefix+"embeddings.LayerNorm.", p)
	for i, l := range m.layers {
		lp := nn.Join(prefix+"encoder.layer.", i)
		l.query.Params(lp+"attention.self.query.", p)
		l.key.Params(lp+"attention.self.key.", p)
		l.value.Params(lp+"attention.self.value.", p)
		l.attnOut.Params(lp+"attention.output.dense.", p)
		l.attnNorm.Params(lp+"attention.output.LayerNorm.", p)
		l.intermediate.Params(lp+"intermediate.dense.", p)
		l.output.Params(lp+"output.dense.", p)
		l.outNorm.Params(lp+"output.LayerNorm.", p)
	}
	d := m.Cfg.HiddenSize
	p.AddOptional(prefix+"pooler.dense.weight", []int{d, d}, &m.poolerWeight)
	p.AddOptional(prefix+"pooler.dense.bias", []int{d}, &m.poolerBias)
}

// maskedBias is what transformers adds to masked attention scores:
// torch.finfo(float32).min.
const maskedBias = -math.MaxFloat32

// Output is BertModel's output.
type Output struct {
	// LastHiddenState is [batch, length, hidden_size].
	LastHiddenState *tensor.Tensor
	// PoolerOutput is tanh(dense(first token)) [batch, hidden_size], nil
	// when the checkpoint has no pooler.
	PoolerOutput *tensor.Tensor
}

// Forward encodes ids [batch, length] with token type 0 and positions
// 0..length-1. mask (may be nil) holds 1 for tokens to attend to and 0 for
// padding, in the same layout as ids.
func (m *Model) Forward(ids, mask []int64, batch, length int) (*Output, error) {
	c := m.Cfg
	if batch <= 0 || length <= 0 || len(ids) != batch*length {
		return nil, fmt.Errorf("bert: %d ids for batch %d × length %d", len(ids), batch, length)
	}
	if mask != nil && len(mask) != len(ids) {
		return nil, fmt.Errorf("bert: %d mask values for %d ids", len(mask), len(ids))
	}
	if length > c.MaxPositionEmbeddings {
		return nil, fmt.Errorf("bert: %d tokens exceed max_position_embeddings %d", length, c.MaxPositionEmbeddings)
	}
	x, err := m.embed(ids, batch, length)
	if err != nil {
		return nil, err
	}
	var bias *tensor.Tensor
	if mask != nil {
		bias = tensor.Zeros(batch, 1, 1, length)
		bd := bias.Data()
		for i, v := range mask {
			if v == 0 {
				bd[i] = maskedBias
			}
		}
	}
	heads := c.NumAttentionHeads
	hd := c.HiddenSize / heads
	split := func(t *tensor.Tensor) *tensor.Tensor {
		return t.Reshape(batch, length, heads, hd).Permute(0, 2, 1, 3)
	}
	for _, l := range m.layers {
		a := tensor.Attention(split(l.query.Forward(x)), split(l.key.Forward(x)), split(l.value.Forward(x)), bias,
			float32(1/math.Sqrt(float64(hd))))
		a = a.Permute(0, 2, 1, 3).Reshape(batch, length, c.HiddenSize)
		x = l.attnNorm.Forward(tensor.Add(l.attnOut.Forward(a), x))
		h := tensor.Activation(c.HiddenAct, l.intermediate.Forward(x))
		x = l.outNorm.Forward(tensor.Add(l.output.Forward(h), x))
	}
	out := &Output{LastHiddenState: x}
	if m.poolerWeight != nil && m.poolerBias != nil {
		first := x.Narrow(1, 0, 1).Reshape(batch, c.HiddenSize)
		pooler := &nn.Linear{In: c.HiddenSize, Out: c.HiddenSize, HasBias: true, Weight: m.poolerWeight, Bias: m.poolerBias}
		out.PoolerOutput = tensor.Tanh(pooler.Forward(first))
	}
	return out, nil
}

// embed is BertEmbeddings: word + token type 0 + absolute position, then
// LayerNorm.
func (m *Model) embed(ids []int64, batch, length int) (*tensor.Tensor, error) {
	words, err := m.words.Forward(ids, batch, length)
	if err != nil {
		return nil, fmt.Errorf("bert: %w", err)
	}
	types, err := m.tokenTypes.Forward(make([]int64, batch*length), batch, length)
	if err != nil {
		return nil, fmt.Errorf("bert: %w", err)
	}
	pos := make([]int64, length)
	for i := range pos {
		pos[i] = int64(i)
	}
	positions, err := m.positions.Forward(pos, 1, length)
	if err != nil {
		return nil, fmt.Errorf("bert: %w", err)
	}
	// transformers adds the token types to the words, then the positions.
	return m.embNorm.Forward(tensor.Add(tensor.Add(words, types), positions)), nil
}
