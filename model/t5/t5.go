// Package t5 is the T5 text encoder (transformers' T5EncoderModel) that
// conditions PixArt and other DiT pipelines: token embeddings, pre-norm
// blocks of self-attention with a learned relative position bias and a
// (gated) feed-forward network, RMS norms, and a final norm.
package t5

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// Config is transformers' T5Config (the fields the encoder uses).
type Config struct {
	VocabSize                    int     `json:"vocab_size"`
	DModel                       int     `json:"d_model"`
	DKV                          int     `json:"d_kv"`
	DFF                          int     `json:"d_ff"`
	NumLayers                    int     `json:"num_layers"`
	NumHeads                     int     `json:"num_heads"`
	RelativeAttentionNumBuckets  int     `json:"relative_attention_num_buckets"`
	RelativeAttentionMaxDistance int     `json:"relative_attention_max_distance"`
	LayerNormEpsilon             float64 `json:"layer_norm_epsilon"`
	// FeedForwardProj is "relu", "gelu", "gated-gelu" (T5 v1.1, gelu_new)
	// or "gated-<act>".
	FeedForwardProj string `json:"feed_forward_proj"`
}

// ParseConfig decodes a transformers config.json, with T5Config's defaults
// for absent fields.
func ParseConfig(b []byte) (Config, error) {
	c := Config{VocabSize: 32128, DModel: 512, DKV: 64, DFF: 2048, NumLayers: 6, NumHeads: 8,
		RelativeAttentionNumBuckets: 32, RelativeAttentionMaxDistance: 128, LayerNormEpsilon: 1e-6, FeedForwardProj: "relu"}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("t5: config: %w", err)
	}
	return c, c.validate()
}

// activation reports whether the feed-forward is gated, and its
// activation's name as tensor.Activation spells it.
func (c Config) activation() (gated bool, act string, err error) {
	a := c.FeedForwardProj
	if strings.HasPrefix(a, "gated-") {
		gated, a = true, strings.TrimPrefix(a, "gated-")
	}
	// transformers maps "gated-gelu" to gelu_new (the tanh approximation).
	switch {
	case a == "gelu" && gated, a == "gelu_new":
		return gated, "gelu_new", nil
	case a == "gelu", a == "relu", a == "silu":
		return gated, a, nil
	}
	return false, "", fmt.Errorf("t5: unsupported feed_forward_proj %q", c.FeedForwardProj)
}

func (c Config) validate() error {
	if c.VocabSize <= 0 || c.DModel <= 0 || c.DKV <= 0 || c.DFF <= 0 || c.NumLayers <= 0 || c.NumHeads <= 0 {
		return fmt.Errorf("t5: config has a non-positive size: %+v", c)
	}
	if c.RelativeAttentionNumBuckets < 4 || c.RelativeAttentionMaxDistance <= 0 {
		return fmt.Errorf("t5: relative attention needs >= 4 buckets and a positive max distance")
	}
	_, _, err := c.activation()
	return err
}

type block struct {
	ln1, ln2       *nn.RMSNorm
	q, k, v, o     *nn.Linear
	wi0, wi1, wo   *nn.Linear // wi0 is wi when the feed-forward is not gated
	relativeBias   *nn.Embedding
	gated          bool
	act            string
	heads, headDim int
}

// Model is a T5 encoder stack.
type Model struct {
	Cfg Config
	// shared and embedTokens are the tied token embeddings; checkpoints
	// hold either or both (identical) names.
	shared, embedTokens *tensor.Tensor
	blocks              []*block
	final               *nn.RMSNorm
}

// New builds an unloaded encoder from its config.
func New(c Config) (*Model, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	gated, act, _ := c.activation()
	m := &Model{Cfg: c, final: &nn.RMSNorm{Dim: c.DModel, Eps: c.LayerNormEpsilon}}
	d, inner := c.DModel, c.NumHeads*c.DKV
	for i := 0; i < c.NumLayers; i++ {
		b := &block{
			ln1: &nn.RMSNorm{Dim: d, Eps: c.LayerNormEpsilon}, ln2: &nn.RMSNorm{Dim: d, Eps: c.LayerNormEpsilon},
			q: nn.NewLinear(d, inner, false), k: nn.NewLinear(d, inner, false), v: nn.NewLinear(d, inner, false),
			o: nn.NewLinear(inner, d, false), wi0: nn.NewLinear(d, c.DFF, false), wo: nn.NewLinear(c.DFF, d, false),
			gated: gated, act: act, heads: c.NumHeads, headDim: c.DKV,
		}
		if gated {
			b.wi1 = nn.NewLinear(d, c.DFF, false)
		}
		if i == 0 {
			b.relativeBias = &nn.Embedding{Num: c.RelativeAttentionNumBuckets, Dim: c.NumHeads}
		}
		m.blocks = append(m.blocks, b)
	}
	return m, nil
}

// Params registers the weights under transformers' T5EncoderModel names.
// The token embedding may come as "shared.weight", as
// "encoder.embed_tokens.weight" or as both (they are tied).
func (m *Model) Params(prefix string, p *nn.Params) {
	emb := []int{m.Cfg.VocabSize, m.Cfg.DModel}
	p.AddOptional(prefix+"shared.weight", emb, &m.shared)
	p.AddOptional(prefix+"encoder.embed_tokens.weight", emb, &m.embedTokens)
	for i, b := range m.blocks {
		bp := nn.Join(prefix+"encoder.block.", i)
		b.q.Params(bp+"layer.0.SelfAttention.q.", p)
		b.k.Params(bp+"layer.0.SelfAttention.k.", p)
		b.v.Params(bp+"layer.0.SelfAttention.v.", p)
		b.o.Params(bp+"layer.0.SelfAttention.o.", p)
		if b.relativeBias != nil {
			b.relativeBias.Params(bp+"layer.0.SelfAttention.relative_attention_bias.", p)
		}
		b.ln1.Params(bp+"layer.0.layer_norm.", p)
		if b.gated {
			b.wi0.Params(bp+"layer.1.DenseReluDense.wi_0.", p)
			b.wi1.Params(bp+"layer.1.DenseReluDense.wi_1.", p)
		} else {
			b.wi0.Params(bp+"layer.1.DenseReluDense.wi.", p)
		}
		b.wo.Params(bp+"layer.1.DenseReluDense.wo.", p)
		b.ln2.Params(bp+"layer.1.layer_norm.", p)
	}
	m.final.Params(prefix+"encoder.final_layer_norm.", p)
}

// relativeBucket is transformers' bidirectional _relative_position_bucket
// for relative position rel = key - query, computed in float32 as torch
// does so that bucket boundaries agree.
func relativeBucket(rel, numBuckets, maxDistance int) int {
	numBuckets /= 2
	bucket := 0
	if rel > 0 {
		bucket = numBuckets
	}
	if rel < 0 {
		rel = -rel
	}
	maxExact := numBuckets / 2
	if rel < maxExact {
		return bucket + rel
	}
	l := float32(math.Log(float64(float32(rel) / float32(maxExact))))
	l /= float32(math.Log(float64(maxDistance) / float64(maxExact)))
	l *= float32(numBuckets - maxExact)
	large := maxExact + int(l)
	return bucket + min(large, numBuckets-1)
}

// positionBias returns the relative position bias [1, H, L, L] of the
// first block's table.
func (m *Model) positionBias(length int) *tensor.Tensor {
	c := m.Cfg
	h := c.NumHeads
	table := m.blocks[0].relativeBias.Weight.Float32().Contiguous().Data()
	out := tensor.Zeros(1, h, length, length)
	od := out.Data()
	for q := 0; q < length; q++ {
		for k := 0; k < length; k++ {
			bk := relativeBucket(k-q, c.RelativeAttentionNumBuckets, c.RelativeAttentionMaxDistance)
			for hh := 0; hh < h; hh++ {
				od[(hh*length+q)*length+k] = table[bk*h+hh]
			}
		}
	}
	return out
}

// maskedBias is float32's lowest value, the additive bias transformers
// gives masked keys.
const maskedBias = -math.MaxFloat32

// Forward encodes ids [batch, length] and returns the last hidden state
// [batch, length, d_model]. mask (may be nil) holds 1 for tokens to attend
// to and 0 for padding, in the same layout as ids.
func (m *Model) Forward(ids, mask []int64, batch, length int) (*tensor.Tensor, error) {
	if len(ids) != batch*length {
		return nil, fmt.Errorf("t5: %d ids for batch %d × length %d", len(ids), batch, length)
	}
	if mask != nil && len(mask) != len(ids) {
		return nil, fmt.Errorf("t5: %d mask values for %d ids", len(mask), len(ids))
	}
	table := m.embedTokens
	if table == nil {
		table = m.shared
	}
	if table == nil {
		return nil, fmt.Errorf("t5: no token embedding loaded (shared.weight or encoder.embed_tokens.weight)")
	}
	x, err := tensor.Embedding(table, ids, batch, length)
	if err != nil {
		return nil, fmt.Errorf("t5: %w", err)
	}
	// Layer 0's position bias (plus the padding mask) serves every layer.
	bias := m.positionBias(length)
	if mask != nil {
		mb := tensor.Zeros(batch, 1, 1, length)
		md := mb.Data()
		for i, v := range mask {
			if v == 0 {
				md[i] = maskedBias
			}
		}
		bias = tensor.Add(bias, mb)
	}
	inner := m.Cfg.NumHeads * m.Cfg.DKV
	for _, b := range m.blocks {
		split := func(t *tensor.Tensor) *tensor.Tensor {
			return t.Reshape(batch, length, b.heads, b.headDim).Permute(0, 2, 1, 3)
		}
		h := b.ln1.Forward(x)
		// T5 folds the 1/√d scaling into its initialisation: scale 1.
		a := tensor.Attention(split(b.q.Forward(h)), split(b.k.Forward(h)), split(b.v.Forward(h)), bias, 1)
		a = a.Permute(0, 2, 1, 3).Reshape(batch, length, inner)
		x = tensor.Add(x, b.o.Forward(a))
		h = b.ln2.Forward(x)
		f := tensor.Activation(b.act, b.wi0.Forward(h))
		if b.gated {
			f = tensor.Mul(f, b.wi1.Forward(h))
		}
		x = tensor.Add(x, b.wo.Forward(f))
	}
	return m.final.Forward(x), nil
}
