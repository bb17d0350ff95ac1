package unet

import (
	"errors"
	"fmt"

	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

type downBlock struct {
	resnets     []*nn.ResnetBlock2D
	attentions  []*nn.Transformer2D
	downsampler *nn.Downsample2D
	kv          []*nn.AddedKVAttention // SimpleCrossAttnDownBlock2D
	resampler   *nn.ResampleResnet     // ResnetDownsampleBlock2D / SimpleCrossAttnDownBlock2D
}

type upBlock struct {
	resnets    []*nn.ResnetBlock2D
	attentions []*nn.Transformer2D
	upsampler  *nn.Upsample2D
	kv         []*nn.AddedKVAttention // SimpleCrossAttnUpBlock2D
	resampler  *nn.ResampleResnet     // ResnetUpsampleBlock2D / SimpleCrossAttnUpBlock2D
}

type midBlock struct {
	resnets    []*nn.ResnetBlock2D
	attentions []*nn.Transformer2D
	kv         []*nn.AddedKVAttention // UNetMidBlock2DSimpleCrossAttn
}

// Encoder is the contracting half of a UNet2DConditionModel: the input
// convolution, the time/class/addition embeddings, the down blocks and the
// mid block. ControlNet is a trainable copy of exactly this part, so it
// shares the type (and the weight names).
type Encoder struct {
	Cfg         Config
	timeDim     int
	crossDim    int // width of the encoder states the blocks attend to (0: none)
	convIn      *nn.Conv2d
	timeEmb     *nn.TimestepEmbedding
	classEmb    *nn.TimestepEmbedding // class_embed_type timestep/projection
	classLinear *nn.Linear            // class_embed_type simple_projection
	classTable  *nn.Embedding         // num_class_embeds
	addEmb      *nn.TimestepEmbedding // addition_embed_type text_time
	textEmb     *nn.TextTimeEmbedding // addition_embed_type text
	encoderProj *nn.Linear            // encoder_hid_proj
	down        []*downBlock
	mid         *midBlock
	// GradientCheckpointing recomputes each resnet's and transformer's
	// activations in the backward pass instead of keeping them (diffusers'
	// enable_gradient_checkpointing); it changes memory, not results.
	GradientCheckpointing bool
}

// Model is a UNet2DConditionModel.
type Model struct {
	*Encoder
	up           []*upBlock
	normOut      *nn.GroupNorm
	convOut      *nn.Conv2d
	numUpsampler int
}

// New builds an unloaded UNet from its config.
func New(c Config) (*Model, error) {
	c = c.canonical()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	e, err := NewEncoder(c)
	if err != nil {
		return nil, err
	}
	m := &Model{Encoder: e}
	e.crossDim, _ = c.crossWidth(true) // checked by Validate
	n := len(c.BlockOutChannels)
	boc := c.BlockOutChannels
	layers := c.LayersPerBlock.For(n)
	tlayers := c.TransformerLayersPerBlock.For(n)
	cross := c.CrossAttentionDim.For(n)
	heads := c.heads(n)
	headDims := c.headDims(n)
	onlyCross := c.OnlyCrossAttention.For(n)
	rtl := tlayers
	if len(c.ReverseTransformerLayers) > 0 {
		rtl = reverse(c.ReverseTransformerLayers.For(n))
	}
	out := boc[n-1]
	for i, typ := range c.UpBlockTypes {
		ri := n - 1 - i
		prev := out
		out = boc[ri]
		in := boc[max(ri-1, 0)]
		b := &upBlock{}
		nl := layers[ri] + 1
		for j := 0; j < nl; j++ {
			skip := out
			if j == nl-1 {
				skip = in
			}
			rin := out
			if j == 0 {
				rin = prev
			}
			b.resnets = append(b.resnets, e.resnet(rin+skip, out, typ))
			if typ == "CrossAttnUpBlock2D" {
				t, err := e.transformer(out, heads[ri], rtl[ri], cross[ri], onlyCross[ri])
				if err != nil {
					return nil, err
				}
				b.attentions = append(b.attentions, t)
			}
			if typ == simpleCrossUpBlock {
				b.kv = append(b.kv, e.addedKV(out, headDims[ri], cross[ri], onlyCross[ri]))
			}
		}
		if i < n-1 {
			if resampledByResnet(typ) {
				b.resampler = e.resampleResnet(out, true)
			} else {
				b.upsampler = nn.NewUpsample2D(out, out)
			}
			m.numUpsampler++
		}
		m.up = append(m.up, b)
	}
	m.normOut = nn.NewGroupNorm(c.NormNumGroups, boc[0], c.NormEps)
	m.convOut = nn.NewConv2d(boc[0], c.OutChannels, c.ConvOutKernel, 1, (c.ConvOutKernel-1)/2, true)
	return m, nil
}

// heads is the number of attention heads per block (legacy configs call it
// attention_head_dim unless num_attention_heads is given).
func (c Config) heads(n int) []int {
	if len(c.NumAttentionHeads) > 0 {
		return c.NumAttentionHeads.For(n)
	}
	return c.AttentionHeadDim.For(n)
}

// resnet builds a ResnetBlock2D of a block of type typ: as diffusers'
// get_down_block / get_mid_block / get_up_block, resnet_out_scale_factor and
// resnet_skip_time_act reach only the UnCLIP / IF block kinds.
func (e *Encoder) resnet(in, out int, typ string) *nn.ResnetBlock2D {
	c := e.Cfg
	scale, skip := float32(1), false
	if takesResnetOptions(typ) {
		scale, skip = c.ResnetOutScaleFactor, c.ResnetSkipTimeAct
	}
	return nn.NewResnetBlock2D(nn.ResnetConfig{In: in, Out: out, TembChannels: e.timeDim, Groups: c.NormNumGroups,
		Eps: c.NormEps, Act: c.ActFn, TimeScaleShift: c.ResnetTimeScaleShift == "scale_shift",
		OutputScale: scale, SkipTimeAct: skip})
}

func (e *Encoder) transformer(ch, heads, layers, crossDim int, only bool) (*nn.Transformer2D, error) {
	c := e.Cfg
	return nn.NewTransformer2D(nn.Transformer2DConfig{InChannels: ch, Heads: heads, HeadDim: ch / heads, Layers: layers,
		CrossAttentionDim: crossDim, NormGroups: c.NormNumGroups, UseLinearProjection: c.UseLinearProjection,
		OnlyCrossAttention: only, UpcastAttention: c.UpcastAttention})
}

// NewEncoder builds the contracting half of a UNet from its config (up
// block settings are ignored).
func NewEncoder(c Config) (*Encoder, error) {
	c = c.canonical()
	if err := c.validateEncoder(); err != nil {
		return nil, err
	}
	n := len(c.BlockOutChannels)
	boc := c.BlockOutChannels
	layers := c.LayersPerBlock.For(n)
	tlayers := c.TransformerLayersPerBlock.For(n)
	cross := c.CrossAttentionDim.For(n)
	heads := c.heads(n)
	headDims := c.headDims(n)
	onlyCross := c.OnlyCrossAttention.For(n)
	m := &Encoder{Cfg: c}
	m.crossDim, _ = c.crossWidth(false) // checked by validateEncoder
	timeDim := c.TimeEmbeddingDim
	if timeDim == 0 {
		timeDim = boc[0] * 4
	}
	m.timeDim = timeDim
	pad := (c.ConvInKernel - 1) / 2
	m.convIn = nn.NewConv2d(c.InChannels, boc[0], c.ConvInKernel, 1, pad, true)
	m.timeEmb = nn.NewTimestepEmbedding(boc[0], timeDim, 0, c.TimeCondProjDim, c.ActFn)
	m.timeEmb.PostAct = c.TimestepPostAct
	// As diffusers' _set_class_embedding: "identity" has no layer, and the
	// projections' TimestepEmbedding keeps its default SiLU whatever act_fn.
	switch {
	case c.ClassEmbedType == "" && c.NumClassEmbeds > 0:
		m.classTable = &nn.Embedding{Num: c.NumClassEmbeds, Dim: timeDim}
	case c.ClassEmbedType == "timestep":
		m.classEmb = nn.NewTimestepEmbedding(boc[0], timeDim, 0, 0, c.ActFn)
	case c.ClassEmbedType == "projection":
		m.classEmb = nn.NewTimestepEmbedding(c.ProjectionClassEmbeddingsDim, timeDim, 0, 0, "silu")
	case c.ClassEmbedType == "simple_projection":
		m.classLinear = nn.NewLinear(c.ProjectionClassEmbeddingsDim, timeDim, true)
	}
	switch c.AdditionEmbedType {
	case "text_time":
		m.addEmb = nn.NewTimestepEmbedding(c.ProjectionClassEmbeddingsDim, timeDim, 0, 0, "silu")
	case "text":
		from := c.EncoderHidDim
		if from == 0 {
			from = cross[0]
		}
		m.textEmb = nn.NewTextTimeEmbedding(from, timeDim, c.AdditionEmbedTypeNumHeads)
	}
	if c.encoderHidProj() {
		m.encoderProj = nn.NewLinear(c.EncoderHidDim, cross[0], true)
	}
	resnet, transformer := m.resnet, m.transformer
	out := boc[0]
	for i, typ := range c.DownBlockTypes {
		in := out
		out = boc[i]
		b := &downBlock{}
		for j := 0; j < layers[i]; j++ {
			rin := out
			if j == 0 {
				rin = in
			}
			b.resnets = append(b.resnets, resnet(rin, out, typ))
			if typ == "CrossAttnDownBlock2D" {
				t, err := transformer(out, heads[i], tlayers[i], cross[i], onlyCross[i])
				if err != nil {
					return nil, err
				}
				b.attentions = append(b.attentions, t)
			}
			if typ == simpleCrossDownBlock {
				b.kv = append(b.kv, m.addedKV(out, headDims[i], cross[i], onlyCross[i]))
			}
		}
		if i < n-1 {
			if resampledByResnet(typ) {
				b.resampler = m.resampleResnet(out, false)
			} else {
				b.downsampler = nn.NewDownsample2D(out, out, c.DownsamplePadding)
			}
		}
		m.down = append(m.down, b)
	}
	if c.MidBlockType != nil {
		ch := boc[n-1]
		mb := &midBlock{resnets: []*nn.ResnetBlock2D{resnet(ch, ch, *c.MidBlockType)}}
		// UNetMidBlock2D (as UNets and ControlNets build it: no layers, no
		// attention) is the first resnet alone.
		if *c.MidBlockType == "UNetMidBlock2DCrossAttn" {
			t, err := transformer(ch, heads[n-1], tlayers[n-1], cross[n-1], false)
			if err != nil {
				return nil, err
			}
			mb.attentions = append(mb.attentions, t)
			mb.resnets = append(mb.resnets, resnet(ch, ch, *c.MidBlockType))
		}
		if *c.MidBlockType == simpleCrossMidBlock {
			mb.kv = append(mb.kv, m.addedKV(ch, headDims[n-1], cross[n-1], c.midOnlyCross()))
			mb.resnets = append(mb.resnets, resnet(ch, ch, *c.MidBlockType))
		}
		for _, r := range mb.resnets {
			r.Cfg.OutputScale = c.MidBlockScaleFactor
		}
		m.mid = mb
	}
	return m, nil
}

func reverse(a []int) []int {
	out := make([]int, len(a))
	for i, v := range a {
		out[len(a)-1-i] = v
	}
	return out
}

// Params registers every weight under diffusers' names.
func (m *Model) Params(prefix string, p *nn.Params) {
	m.Encoder.Params(prefix, p)
	for i, b := range m.up {
		bp := nn.Join(prefix+"up_blocks.", i)
		for j, r := range b.resnets {
			r.Params(nn.Join(bp+"resnets.", j), p)
		}
		for j, a := range b.attentions {
			a.Params(nn.Join(bp+"attentions.", j), p)
		}
		for j, a := range b.kv {
			a.Params(nn.Join(bp+"attentions.", j), p)
		}
		if b.upsampler != nil {
			b.upsampler.Params(bp+"upsamplers.0.", p)
		}
		if b.resampler != nil {
			b.resampler.Params(bp+"upsamplers.0.", p)
		}
	}
	m.normOut.Params(prefix+"conv_norm_out.", p)
	m.convOut.Params(prefix+"conv_out.", p)
}

// Params registers the encoder's weights under diffusers' names.
func (m *Encoder) Params(prefix string, p *nn.Params) {
	m.convIn.Params(prefix+"conv_in.", p)
	m.timeEmb.Params(prefix+"time_embedding.", p)
	if m.classTable != nil {
		m.classTable.Params(prefix+"class_embedding.", p)
	}
	if m.classEmb != nil {
		m.classEmb.Params(prefix+"class_embedding.", p)
	}
	if m.classLinear != nil {
		m.classLinear.Params(prefix+"class_embedding.", p)
	}
	if m.addEmb != nil {
		m.addEmb.Params(prefix+"add_embedding.", p)
	}
	if m.textEmb != nil {
		m.textEmb.Params(prefix+"add_embedding.", p)
	}
	if m.encoderProj != nil {
		m.encoderProj.Params(prefix+"encoder_hid_proj.", p)
	}
	for i, b := range m.down {
		bp := nn.Join(prefix+"down_blocks.", i)
		for j, r := range b.resnets {
			r.Params(nn.Join(bp+"resnets.", j), p)
		}
		for j, a := range b.attentions {
			a.Params(nn.Join(bp+"attentions.", j), p)
		}
		for j, a := range b.kv {
			a.Params(nn.Join(bp+"attentions.", j), p)
		}
		if b.downsampler != nil {
			b.downsampler.Params(bp+"downsamplers.0.", p)
		}
		if b.resampler != nil {
			b.resampler.Params(bp+"downsamplers.0.", p)
		}
	}
	if m.mid != nil {
		for j, r := range m.mid.resnets {
			r.Params(nn.Join(prefix+"mid_block.resnets.", j), p)
		}
		for j, a := range m.mid.attentions {
			a.Params(nn.Join(prefix+"mid_block.attentions.", j), p)
		}
		for j, a := range m.mid.kv {
			a.Params(nn.Join(prefix+"mid_block.attentions.", j), p)
		}
	}
}

// Cond is everything besides the sample and timestep that conditions a step.
type Cond struct {
	EncoderHiddenStates *tensor.Tensor // [B, S, cross_attention_dim]
	EncoderMask         *tensor.Tensor // additive bias [B, 1, 1, S] for cross-attention (may be nil)
	ClassLabels         *tensor.Tensor // [B] (class_embed_type timestep) or [B, D]
	TextEmbeds          *tensor.Tensor // [B, D] pooled text (SDXL text_time)
	TimeIDs             *tensor.Tensor // [B, k] micro-conditioning (SDXL text_time)
	TimestepCond        *tensor.Tensor // [B, time_cond_proj_dim] (LCM)

	// Adapter hooks, as diffusers names them.
	DownBlockAdditionalResiduals     []*tensor.Tensor // ControlNet: one per skip
	MidBlockAdditionalResidual       *tensor.Tensor   // ControlNet
	DownIntrablockAdditionalResidual []*tensor.Tensor // T2I-Adapter: one per down block (and mid, for XL)
}

// Embed computes the time embedding (with class and addition embeddings)
// and the projected encoder states for a batch of B samples.
func (m *Encoder) Embed(B int, timesteps []float32, cond Cond) (emb, ehs *tensor.Tensor, err error) {
	c := m.Cfg
	if len(timesteps) == 1 && B > 1 {
		t := timesteps[0]
		timesteps = make([]float32, B)
		for i := range timesteps {
			timesteps[i] = t
		}
	}
	if len(timesteps) != B {
		return nil, nil, fmt.Errorf("unet: %d timesteps for batch %d", len(timesteps), B)
	}
	ehs = cond.EncoderHiddenStates
	if ehs == nil || ehs.Rank() != 3 || ehs.Dim(0) != B {
		return nil, nil, fmt.Errorf("unet: encoder_hidden_states must be [%d, S, D]", B)
	}
	if err := m.checkCond(B, cond); err != nil {
		return nil, nil, err
	}
	boc := c.BlockOutChannels
	tEmb := tensor.TimestepEmbedding(timesteps, boc[0], c.FlipSinToCos, c.FreqShift, 1, 10000)
	emb = m.timeEmb.Forward(tEmb, cond.TimestepCond)
	ce, err := m.classEmbedding(B, cond.ClassLabels)
	if err != nil {
		return nil, nil, err
	}
	if ce != nil {
		emb = tensor.Add(emb, ce)
	}
	if m.addEmb != nil {
		if cond.TextEmbeds == nil || cond.TimeIDs == nil {
			return nil, nil, fmt.Errorf("unet: text_time conditioning needs text_embeds and time_ids")
		}
		te := tensor.TimestepEmbedding(cond.TimeIDs.Data(), c.AdditionTimeEmbedDim, c.FlipSinToCos, c.FreqShift, 1, 10000)
		te = te.Reshape(B, -1)
		add := tensor.Concat(1, cond.TextEmbeds, te)
		if add.Dim(1) != c.ProjectionClassEmbeddingsDim {
			return nil, nil, fmt.Errorf("unet: text_embeds + time_ids give %d features, add_embedding wants %d", add.Dim(1), c.ProjectionClassEmbeddingsDim)
		}
		emb = tensor.Add(emb, m.addEmb.Forward(add, nil))
	}
	if m.textEmb != nil {
		// Pooled from the raw encoder states, before encoder_hid_proj.
		emb = tensor.Add(emb, m.textEmb.Forward(ehs))
	}
	if c.TimeEmbeddingActFn != "" {
		emb = tensor.Activation(c.TimeEmbeddingActFn, emb)
	}
	if m.encoderProj != nil {
		ehs = m.encoderProj.Forward(ehs)
	}
	if m.crossDim > 0 && ehs.Dim(2) != m.crossDim {
		return nil, nil, fmt.Errorf("unet: encoder_hidden_states have %d features (after encoder_hid_proj), the blocks attend to %d", ehs.Dim(2), m.crossDim)
	}
	return emb, ehs, nil
}

// checkCond checks the widths of the conditioning inputs against the
// layers that read them, so that a mismatch is an error rather than a
// panic inside a product.
func (m *Encoder) checkCond(B int, cond Cond) error {
	c := m.Cfg
	w := cond.EncoderHiddenStates.Dim(2)
	if w == 0 {
		return fmt.Errorf("unet: encoder_hidden_states have no features")
	}
	if m.encoderProj != nil && w != m.encoderProj.In {
		return fmt.Errorf("unet: encoder_hidden_states have %d features, encoder_hid_proj reads encoder_hid_dim %d", w, m.encoderProj.In)
	}
	if m.textEmb != nil && w != m.textEmb.Norm1.Dim {
		return fmt.Errorf("unet: encoder_hidden_states have %d features, the text addition embedding pools %d", w, m.textEmb.Norm1.Dim)
	}
	if tc := cond.TimestepCond; tc != nil && (m.timeEmb.CondProj == nil || !tensor.SameShape(tc.Shape(), []int{B, c.TimeCondProjDim})) {
		return fmt.Errorf("unet: timestep_cond shape %v, want [%d, time_cond_proj_dim %d]", tc.Shape(), B, c.TimeCondProjDim)
	}
	if m.addEmb != nil && cond.TextEmbeds != nil && cond.TimeIDs != nil {
		te, ids := cond.TextEmbeds, cond.TimeIDs
		if te.Rank() != 2 || te.Dim(0) != B || ids.Numel()%B != 0 ||
			te.Dim(1)+ids.Numel()/B*c.AdditionTimeEmbedDim != c.ProjectionClassEmbeddingsDim {
			return fmt.Errorf("unet: text_embeds %v and time_ids %v (×%d features each) do not give [%d, %d] for add_embedding",
				te.Shape(), ids.Shape(), c.AdditionTimeEmbedDim, B, c.ProjectionClassEmbeddingsDim)
		}
	}
	return nil
}

// classEmbedding is diffusers' get_class_embed for a batch of B: nil when
// the model has no class embedding.
func (m *Encoder) classEmbedding(B int, labels *tensor.Tensor) (*tensor.Tensor, error) {
	c := m.Cfg
	if m.classTable == nil && m.classEmb == nil && m.classLinear == nil && c.ClassEmbedType != "identity" {
		return nil, nil
	}
	if labels == nil {
		return nil, fmt.Errorf("unet: class_labels are required by this model (class_embed_type %q, num_class_embeds %d)", c.ClassEmbedType, c.NumClassEmbeds)
	}
	// want is the labels' shape: one per sample, or a vector of in features.
	want, in := []int{B}, 0
	switch {
	case m.classTable != nil, c.ClassEmbedType == "timestep":
	case c.ClassEmbedType == "identity":
		in = m.timeDim
	default:
		in = c.ProjectionClassEmbeddingsDim
	}
	if in > 0 {
		want = []int{B, in}
	}
	if !tensor.SameShape(labels.Shape(), want) {
		return nil, fmt.Errorf("unet: class_labels shape %v, want %v (class_embed_type %q)", labels.Shape(), want, c.ClassEmbedType)
	}
	switch {
	case m.classTable != nil:
		ids := labels.Int64s()
		e, err := m.classTable.Forward(ids, len(ids))
		if err != nil {
			return nil, fmt.Errorf("unet: class labels: %w", err)
		}
		return e, nil
	case c.ClassEmbedType == "timestep":
		boc := c.BlockOutChannels
		return m.classEmb.Forward(tensor.TimestepEmbedding(labels.Data(), boc[0], c.FlipSinToCos, c.FreqShift, 1, 10000), nil), nil
	case c.ClassEmbedType == "identity":
		return labels, nil
	case m.classLinear != nil:
		return m.classLinear.Forward(labels), nil
	}
	return m.classEmb.Forward(labels, nil), nil
}

// ConvIn applies the input convolution.
func (m *Encoder) ConvIn(sample *tensor.Tensor) *tensor.Tensor {
	if m.Cfg.CenterInputSample {
		sample = tensor.AddScalar(tensor.Scale(sample, 2), -1)
	}
	return m.convIn.Forward(sample)
}

// Down runs the down blocks on h (the conv_in output, possibly plus a
// ControlNet condition embedding) and returns the result and every skip
// tensor (conv_in output first), consuming T2I-Adapter residuals from intra
// (one per down block, while there are any) and returning those left. A
// residual whose shape is not its block's output shape is an error.
func (m *Encoder) Down(h, emb, ehs, mask *tensor.Tensor, intra []*tensor.Tensor) (*tensor.Tensor, []*tensor.Tensor, []*tensor.Tensor, error) {
	return m.downTo(h, emb, ehs, mask, intra, 0)
}

// downTo is Down stopping as soon as it has limit skips (0: all of them), as
// DeepCache's cached steps run only the shallow layers.
func (m *Encoder) downTo(h, emb, ehs, mask *tensor.Tensor, intra []*tensor.Tensor, limit int) (*tensor.Tensor, []*tensor.Tensor, []*tensor.Tensor, error) {
	skips := []*tensor.Tensor{h}
	enough := func() bool { return limit > 0 && len(skips) >= limit }
	if enough() {
		return h, skips, intra, nil
	}
	used := 0
	addIntra := func(block int) error {
		r := intra[0]
		if r == nil || !tensor.SameShape(r.Shape(), h.Shape()) {
			return &ResidualError{Kind: "down_intrablock_additional_residuals", Index: used, Got: shapeOf(r), Want: h.Shape(),
				Where: fmt.Sprintf("down block %d output", block)}
		}
		h = tensor.Add(h, r)
		intra = intra[1:]
		used++
		return nil
	}
	for i, b := range m.down {
		for j, r := range b.resnets {
			h = m.runResnet(r, h, emb)
			if len(b.attentions) > 0 {
				h = m.runAttention(b.attentions[j], h, ehs, mask)
				// T2I-Adapter: added to the last resnet/attention pair's output.
				if j == len(b.resnets)-1 && len(intra) > 0 {
					if err := addIntra(i); err != nil {
						return nil, nil, nil, err
					}
				}
			}
			if len(b.kv) > 0 {
				h = b.kv[j].Forward(h, ehs, mask)
			}
			if skips = append(skips, h); enough() {
				return h, skips, intra, nil
			}
		}
		if b.downsampler != nil {
			h = b.downsampler.Forward(h)
			skips = append(skips, h)
		}
		if b.resampler != nil {
			h = b.resampler.Forward(h, emb)
			skips = append(skips, h)
		}
		if len(b.attentions) == 0 && len(intra) > 0 {
			// diffusers adds in place to the block output, which is also the
			// last skip it just stored.
			if err := addIntra(i); err != nil {
				return nil, nil, nil, err
			}
			skips[len(skips)-1] = h
		}
		if enough() {
			return h, skips, intra, nil
		}
	}
	return h, skips, intra, nil
}

// ErrResidual is what every error about adapter residuals wraps
// (errors.Is): residuals missing, too many or too few, or of the wrong
// shape for the features they are added to.
var ErrResidual = errors.New("adapter residuals do not fit the UNet")

// ResidualError is an adapter residual (ControlNet's down and mid
// residuals, T2I-Adapter's intrablock ones) that does not fit the UNet
// feature it is added to.
type ResidualError struct {
	Kind  string // the diffusers argument: down_block_additional_residuals, ...
	Index int    // position in the list (0 for the mid residual)
	Got   []int  // the residual's shape (nil: missing)
	Want  []int  // the feature's shape
	Where string // the feature
}

// Unwrap returns ErrResidual.
func (e *ResidualError) Unwrap() error { return ErrResidual }

func (e *ResidualError) Error() string {
	if e.Got == nil {
		return fmt.Sprintf("unet: %s[%d] missing, %s is %v", e.Kind, e.Index, e.Where, e.Want)
	}
	return fmt.Sprintf("unet: %s[%d] has shape %v, %s is %v", e.Kind, e.Index, e.Got, e.Where, e.Want)
}

// checkResidualCounts checks the number of adapter residuals against the
// features they are added to: ControlNet's down residuals one per skip
// (conv_in, each resnet, each downsampler) with its mid residual (diffusers
// uses them only together), T2I-Adapter's one per down block and possibly
// one for the mid block.
func (m *Encoder) checkResidualCounts(cond Cond) error {
	down, mid := cond.DownBlockAdditionalResiduals, cond.MidBlockAdditionalResidual
	if (down == nil) != (mid == nil) {
		return fmt.Errorf("unet: %w: ControlNet residuals need both down_block_additional_residuals (%d given) and mid_block_additional_residual (given: %v)",
			ErrResidual, len(down), mid != nil)
	}
	skips := m.Skips()
	if down != nil && len(down) != skips {
		return fmt.Errorf("unet: %w: %d down_block_additional_residuals for %d skips", ErrResidual, len(down), skips)
	}
	intra, blocks := len(cond.DownIntrablockAdditionalResidual), len(m.down)
	if intra > 0 && intra != blocks && (intra != blocks+1 || m.mid == nil) {
		most := blocks
		if m.mid != nil {
			most++
		}
		return fmt.Errorf("unet: %w: %d down_intrablock_additional_residuals for %d down blocks (at most %d with the mid block)",
			ErrResidual, intra, blocks, most)
	}
	return nil
}

func shapeOf(t *tensor.Tensor) []int {
	if t == nil {
		return nil
	}
	return t.Shape()
}

// Mid runs the mid block (identity when the config has none).
func (m *Encoder) Mid(h, emb, ehs, mask *tensor.Tensor) *tensor.Tensor {
	if m.mid == nil {
		return h
	}
	h = m.runResnet(m.mid.resnets[0], h, emb)
	for j, a := range m.mid.attentions {
		h = m.runAttention(a, h, ehs, mask)
		h = m.runResnet(m.mid.resnets[j+1], h, emb)
	}
	for j, a := range m.mid.kv {
		h = a.Forward(h, ehs, mask)
		h = m.mid.resnets[j+1].Forward(h, emb)
	}
	return h
}

// Forward predicts the model output for sample [B, C, H, W] at timesteps
// (one per batch row, or one for all).
func (m *Model) Forward(sample *tensor.Tensor, timesteps []float32, cond Cond) (*tensor.Tensor, error) {
	return m.ForwardCached(sample, timesteps, cond, nil, true)
}

// ForwardCached is Forward with DeepCache's feature reuse: with a cache
// and full false it runs only the shallow layers above cache.Branch and
// takes the deep features from the cache's last full step; with full true
// (or nothing cached yet for this input shape) it runs the whole UNet,
// exactly as Forward, and fills the cache. A nil cache is Forward.
func (m *Model) ForwardCached(sample *tensor.Tensor, timesteps []float32, cond Cond, cache *Cache, full bool) (*tensor.Tensor, error) {
	c := m.Cfg
	if sample.Rank() != 4 || sample.Dim(1) != c.InChannels {
		return nil, fmt.Errorf("unet: sample shape %v, want [B, %d, H, W]", sample.Shape(), c.InChannels)
	}
	B := sample.Dim(0)
	emb, ehs, err := m.Embed(B, timesteps, cond)
	if err != nil {
		return nil, err
	}
	// Upsampling to explicit sizes is needed when H, W are not multiples of 2^upsamplers.
	factor := 1 << m.numUpsampler
	forwardSizes := sample.Dim(2)%factor != 0 || sample.Dim(3)%factor != 0
	if forwardSizes && m.resampledUp() {
		return nil, fmt.Errorf("unet: sample size %dx%d must be a multiple of %d for resnet upsamplers", sample.Dim(2), sample.Dim(3), factor)
	}
	if err := m.checkResidualCounts(cond); err != nil {
		return nil, err
	}
	var h *tensor.Tensor
	if cache == nil {
		h, err = m.full(sample, emb, ehs, cond, forwardSizes)
	} else {
		h, err = cache.forward(m, sample, emb, ehs, cond, forwardSizes, full)
	}
	if err != nil {
		return nil, err
	}
	h = tensor.Activation(c.ActFn, m.normOut.Forward(h))
	return m.convOut.Forward(h), nil
}

// full runs the down, mid and up blocks on sample, returning the up
// path's output.
func (m *Model) full(sample, emb, ehs *tensor.Tensor, cond Cond, forwardSizes bool) (*tensor.Tensor, error) {
	h, skips, err := m.contract(m.ConvIn(sample), emb, ehs, cond)
	if err != nil {
		return nil, err
	}
	if h, err = m.expand(h, skips, emb, ehs, cond.EncoderMask, forwardSizes); err != nil {
		return nil, fmt.Errorf("%w (sample %dx%d)", err, sample.Dim(2), sample.Dim(3))
	}
	return h, nil
}

// contract runs the down blocks and the mid block on the conv_in output h,
// adding the adapter residuals of cond (whose counts checkResidualCounts
// has checked), and returns the mid block output and the skips.
func (m *Model) contract(h, emb, ehs *tensor.Tensor, cond Cond) (*tensor.Tensor, []*tensor.Tensor, error) {
	intra := append([]*tensor.Tensor(nil), cond.DownIntrablockAdditionalResidual...)
	h, skips, intra, err := m.Down(h, emb, ehs, cond.EncoderMask, intra)
	if err != nil {
		return nil, nil, err
	}
	for i, r := range cond.DownBlockAdditionalResiduals {
		if r == nil || !tensor.SameShape(r.Shape(), skips[i].Shape()) {
			return nil, nil, &ResidualError{Kind: "down_block_additional_residuals", Index: i, Got: shapeOf(r), Want: skips[i].Shape(),
				Where: fmt.Sprintf("skip %d", i)}
		}
		skips[i] = tensor.Add(skips[i], r)
	}
	h = m.Mid(h, emb, ehs, cond.EncoderMask)
	if len(intra) > 0 {
		// T2I-Adapter-XL: one residual more than down blocks, for the mid
		// block's output.
		if !tensor.SameShape(h.Shape(), shapeOf(intra[0])) {
			return nil, nil, &ResidualError{Kind: "down_intrablock_additional_residuals", Index: len(m.down), Got: shapeOf(intra[0]),
				Want: h.Shape(), Where: "mid block output"}
		}
		h = tensor.Add(h, intra[0])
	}
	if r := cond.MidBlockAdditionalResidual; r != nil {
		if !tensor.SameShape(r.Shape(), h.Shape()) {
			return nil, nil, &ResidualError{Kind: "mid_block_additional_residual", Got: r.Shape(), Want: h.Shape(), Where: "mid block output"}
		}
		h = tensor.Add(h, r)
	}
	return h, skips, nil
}

// expand runs the up blocks on the mid block output h, consuming skips;
// with forwardSizes the upsamplers take their output size from the next
// skip.
func (m *Model) expand(h *tensor.Tensor, skips []*tensor.Tensor, emb, ehs, mask *tensor.Tensor, forwardSizes bool) (*tensor.Tensor, error) {
	h, _, err := m.expandFrom(h, skips, emb, ehs, mask, forwardSizes, 0, -1)
	return h, err
}

// expandFrom is expand starting at up resnet start (counted over all up
// blocks, from the deepest) with h as that resnet's input, and returning
// the input of up resnet keep too (nil when keep < start): DeepCache's
// cached steps enter the up path at its cached feature, and its full
// steps keep that feature.
func (m *Model) expandFrom(h *tensor.Tensor, skips []*tensor.Tensor, emb, ehs, mask *tensor.Tensor, forwardSizes bool,
	start, keep int) (out, kept *tensor.Tensor, err error) {
	k := 0 // the up resnet's index over all blocks
	for i, b := range m.up {
		if k+len(b.resnets) <= start {
			k += len(b.resnets)
			continue
		}
		for j, r := range b.resnets {
			idx := k
			k++
			if idx < start {
				continue
			}
			if idx == keep {
				kept = h
			}
			skip := skips[len(skips)-1]
			skips = skips[:len(skips)-1]
			if h.Dim(2) != skip.Dim(2) || h.Dim(3) != skip.Dim(3) {
				// Resnet downsamplers floor odd sizes and their upsamplers
				// double: the skip no longer fits (diffusers fails here too).
				return nil, nil, fmt.Errorf("unet: up block %d: features %dx%d do not match skip %dx%d",
					i, h.Dim(2), h.Dim(3), skip.Dim(2), skip.Dim(3))
			}
			h = m.runResnet(r, tensor.Concat(1, h, skip), emb)
			if len(b.attentions) > 0 {
				h = m.runAttention(b.attentions[j], h, ehs, mask)
			}
			if len(b.kv) > 0 {
				h = b.kv[j].Forward(h, ehs, mask)
			}
		}
		if b.resampler != nil {
			h = b.resampler.Forward(h, emb)
		}
		if b.upsampler != nil {
			uh, uw := 0, 0
			if forwardSizes && i < len(m.up)-1 {
				next := skips[len(skips)-1]
				uh, uw = next.Dim(2), next.Dim(3)
			}
			h = b.upsampler.Forward(h, uh, uw)
		}
	}
	return h, kept, nil
}
