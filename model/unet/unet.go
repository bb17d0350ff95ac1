package unet

import (
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
	convIn      *nn.Conv2d
	timeEmb     *nn.TimestepEmbedding
	classEmb    *nn.TimestepEmbedding // class_embed_type timestep/projection
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
	if err := c.Validate(); err != nil {
		return nil, err
	}
	e, err := NewEncoder(c)
	if err != nil {
		return nil, err
	}
	m := &Model{Encoder: e}
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
			b.resnets = append(b.resnets, e.resnet(rin+skip, out))
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

func (e *Encoder) resnet(in, out int) *nn.ResnetBlock2D {
	c := e.Cfg
	return nn.NewResnetBlock2D(nn.ResnetConfig{In: in, Out: out, TembChannels: e.timeDim, Groups: c.NormNumGroups,
		Eps: c.NormEps, Act: c.ActFn, TimeScaleShift: c.ResnetTimeScaleShift == "scale_shift",
		OutputScale: c.ResnetOutScaleFactor, SkipTimeAct: c.ResnetSkipTimeAct})
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
	timeDim := c.TimeEmbeddingDim
	if timeDim == 0 {
		timeDim = boc[0] * 4
	}
	m.timeDim = timeDim
	pad := (c.ConvInKernel - 1) / 2
	m.convIn = nn.NewConv2d(c.InChannels, boc[0], c.ConvInKernel, 1, pad, true)
	m.timeEmb = nn.NewTimestepEmbedding(boc[0], timeDim, 0, c.TimeCondProjDim, c.ActFn)
	m.timeEmb.PostAct = c.TimestepPostAct
	switch {
	case c.ClassEmbedType == "" && c.NumClassEmbeds > 0:
		m.classTable = &nn.Embedding{Num: c.NumClassEmbeds, Dim: timeDim}
	case c.ClassEmbedType == "timestep":
		m.classEmb = nn.NewTimestepEmbedding(boc[0], timeDim, 0, 0, c.ActFn)
	case c.ClassEmbedType == "projection":
		m.classEmb = nn.NewTimestepEmbedding(c.ProjectionClassEmbeddingsDim, timeDim, 0, 0, c.ActFn)
	}
	switch c.AdditionEmbedType {
	case "text_time":
		m.addEmb = nn.NewTimestepEmbedding(c.ProjectionClassEmbeddingsDim, timeDim, 0, 0, c.ActFn)
	case "text":
		from := c.EncoderHidDim
		if from == 0 {
			from = cross[0]
		}
		m.textEmb = nn.NewTextTimeEmbedding(from, timeDim, c.AdditionEmbedTypeNumHeads)
	}
	if c.EncoderHidDimType == "text_proj" {
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
			b.resnets = append(b.resnets, resnet(rin, out))
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
		mb := &midBlock{resnets: []*nn.ResnetBlock2D{resnet(ch, ch)}}
		// UNetMidBlock2D (as UNets and ControlNets build it: no layers, no
		// attention) is the first resnet alone.
		if *c.MidBlockType == "UNetMidBlock2DCrossAttn" {
			t, err := transformer(ch, heads[n-1], tlayers[n-1], cross[n-1], false)
			if err != nil {
				return nil, err
			}
			mb.attentions = append(mb.attentions, t)
			mb.resnets = append(mb.resnets, resnet(ch, ch))
		}
		if *c.MidBlockType == simpleCrossMidBlock {
			mb.kv = append(mb.kv, m.addedKV(ch, headDims[n-1], cross[n-1], c.midOnlyCross()))
			mb.resnets = append(mb.resnets, resnet(ch, ch))
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
	boc := c.BlockOutChannels
	tEmb := tensor.TimestepEmbedding(timesteps, boc[0], c.FlipSinToCos, c.FreqShift, 1, 10000)
	emb = m.timeEmb.Forward(tEmb, cond.TimestepCond)
	if m.classTable != nil || m.classEmb != nil {
		if cond.ClassLabels == nil {
			return nil, nil, fmt.Errorf("unet: class_labels are required by this model")
		}
		var ce *tensor.Tensor
		switch {
		case m.classTable != nil:
			ids := cond.ClassLabels.Int64s()
			e, err := m.classTable.Forward(ids, len(ids))
			if err != nil {
				return nil, nil, fmt.Errorf("unet: class labels: %w", err)
			}
			ce = e
		case c.ClassEmbedType == "timestep":
			ce = m.classEmb.Forward(tensor.TimestepEmbedding(cond.ClassLabels.Data(), boc[0], c.FlipSinToCos, c.FreqShift, 1, 10000), nil)
		default:
			ce = m.classEmb.Forward(cond.ClassLabels, nil)
		}
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
	return emb, ehs, nil
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
// tensor (conv_in output first), consuming T2I-Adapter residuals from intra.
func (m *Encoder) Down(h, emb, ehs, mask *tensor.Tensor, intra []*tensor.Tensor) (*tensor.Tensor, []*tensor.Tensor, []*tensor.Tensor) {
	skips := []*tensor.Tensor{h}
	for _, b := range m.down {
		for j, r := range b.resnets {
			h = m.runResnet(r, h, emb)
			if len(b.attentions) > 0 {
				h = m.runAttention(b.attentions[j], h, ehs, mask)
				// T2I-Adapter: added to the last resnet/attention pair's output.
				if j == len(b.resnets)-1 && len(intra) > 0 {
					h = tensor.Add(h, intra[0])
					intra = intra[1:]
				}
			}
			if len(b.kv) > 0 {
				h = b.kv[j].Forward(h, ehs, mask)
			}
			skips = append(skips, h)
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
			h = tensor.Add(h, intra[0])
			intra = intra[1:]
			skips[len(skips)-1] = h
		}
	}
	return h, skips, intra
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
	h := m.ConvIn(sample)
	intra := append([]*tensor.Tensor(nil), cond.DownIntrablockAdditionalResidual...)
	h, skips, intra := m.Down(h, emb, ehs, cond.EncoderMask, intra)
	if res := cond.DownBlockAdditionalResiduals; res != nil {
		if len(res) != len(skips) {
			return nil, fmt.Errorf("unet: %d down-block residuals for %d skips", len(res), len(skips))
		}
		for i := range skips {
			skips[i] = tensor.Add(skips[i], res[i])
		}
	}
	h = m.Mid(h, emb, ehs, cond.EncoderMask)
	if len(intra) > 0 && tensor.SameShape(h.Shape(), intra[0].Shape()) {
		h = tensor.Add(h, intra[0])
	}
	if cond.MidBlockAdditionalResidual != nil {
		h = tensor.Add(h, cond.MidBlockAdditionalResidual)
	}
	for i, b := range m.up {
		for j, r := range b.resnets {
			skip := skips[len(skips)-1]
			skips = skips[:len(skips)-1]
			h = m.runResnet(r, tensor.Concat(1, h, skip), emb)
			if len(b.attentions) > 0 {
				h = m.runAttention(b.attentions[j], h, ehs, cond.EncoderMask)
			}
			if len(b.kv) > 0 {
				h = b.kv[j].Forward(h, ehs, cond.EncoderMask)
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
	h = tensor.Activation(c.ActFn, m.normOut.Forward(h))
	return m.convOut.Forward(h), nil
}
