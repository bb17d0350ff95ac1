package checkpoint

import (
	"fmt"
	"strconv"
)

// Param is one parameter a diffusers model expects and where an LDM
// checkpoint keeps it.
type Param struct {
	// Name is the diffusers parameter name (its state-dict key).
	Name string
	// Source is the LDM name, relative to the component's prefix.
	Source string
	// Aliases are other LDM names (relative to the prefix) that some
	// checkpoints use for the same tensor; Source is preferred.
	Aliases []string
	// Shape is the diffusers shape.
	Shape []int
	// SourceShape is the shape LDM checkpoints store. Without Rows or
	// Transpose it differs from Shape only by size-1 dimensions (a reshape),
	// and a file may hold either shape. With Rows or Transpose it is the
	// shape of the whole source tensor, which the file must hold exactly.
	SourceShape []int
	// Rows, when Rows[1] > 0, says the parameter is rows [Rows[0], Rows[1])
	// of the source tensor's first dimension: OpenCLIP fuses the q, k and v
	// projections into one in_proj tensor.
	Rows [2]int
	// Transpose says the 2-D source tensor holds the parameter transposed
	// (OpenCLIP's text_projection is applied as x @ P, diffusers' as a
	// Linear with weight Pᵀ).
	Transpose bool
}

// params accumulates Params; its helpers take the diffusers and LDM module
// paths and add the module's weight and bias.
type params struct{ list []Param }

func (p *params) add(name, src string, shape ...int) {
	p.list = append(p.list, Param{Name: name, Source: src, Shape: shape, SourceShape: shape})
}

func (p *params) norm(dst, src string, c int) {
	p.add(dst+".weight", src+".weight", c)
	p.add(dst+".bias", src+".bias", c)
}

func (p *params) linear(dst, src string, out, in int, bias bool) {
	p.add(dst+".weight", src+".weight", out, in)
	if bias {
		p.add(dst+".bias", src+".bias", out)
	}
}

func (p *params) conv(dst, src string, out, in, k int) {
	p.add(dst+".weight", src+".weight", out, in, k, k)
	p.add(dst+".bias", src+".bias", out)
}

// convAsLinear adds a Linear [out, in] that LDM stores as a 1×1 convolution
// [out, in, 1, 1].
func (p *params) convAsLinear(dst, src string, out, in int) {
	p.list = append(p.list, Param{Name: dst + ".weight", Source: src + ".weight", Shape: []int{out, in}, SourceShape: []int{out, in, 1, 1}})
	p.add(dst+".bias", src+".bias", out)
}

func itoa(i int) string { return strconv.Itoa(i) }

// UNetParams lists every parameter of a diffusers UNet2DConditionModel with
// the given layout, with its name under LDM's "model.diffusion_model.".
func UNetParams(l UNetLayout) ([]Param, error) {
	n := len(l.BlockOutChannels)
	errf := func(format string, a ...any) ([]Param, error) {
		return nil, fmt.Errorf("checkpoint: UNet layout: "+format, a...)
	}
	switch {
	case n == 0:
		return errf("block_out_channels is empty")
	case len(l.DownBlockTypes) != n || len(l.UpBlockTypes) != n:
		return errf("%d block_out_channels but %d down_block_types and %d up_block_types", n, len(l.DownBlockTypes), len(l.UpBlockTypes))
	case l.LayersPerBlock < 1:
		return errf("layers_per_block is %d", l.LayersPerBlock)
	case l.InChannels < 1 || l.OutChannels < 1:
		return errf("in_channels %d, out_channels %d", l.InChannels, l.OutChannels)
	case l.MidBlockType != "" && l.MidBlockType != "UNetMidBlock2DCrossAttn":
		return errf("mid_block_type %q is not supported", l.MidBlockType)
	case l.AdditionEmbedType != "" && l.AdditionEmbedType != "text_time":
		return errf("addition_embed_type %q is not supported", l.AdditionEmbedType)
	case l.AdditionEmbedType == "text_time" && l.ProjectionClassEmbeddingsInputDim < 1:
		return errf("addition_embed_type text_time needs projection_class_embeddings_input_dim")
	}
	for _, c := range l.BlockOutChannels {
		if c < 1 {
			return errf("block_out_channels %v", l.BlockOutChannels)
		}
	}
	depth, err := l.TransformerLayersPerBlock.For(n, 1)
	if err != nil {
		return errf("transformer_layers_per_block %v", err)
	}
	downAttn := make([]bool, n)
	for i, t := range l.DownBlockTypes {
		switch t {
		case "CrossAttnDownBlock2D":
			downAttn[i] = true
		case "DownBlock2D":
		default:
			return errf("down block %d: type %q is not supported", i, t)
		}
	}
	upAttn := make([]bool, n)
	for i, t := range l.UpBlockTypes {
		switch t {
		case "CrossAttnUpBlock2D":
			upAttn[i] = true
		case "UpBlock2D":
		default:
			return errf("up block %d: type %q is not supported", i, t)
		}
	}
	if l.CrossAttentionDim < 1 {
		// The mid block always has a transformer.
		return errf("cross_attention_dim is %d", l.CrossAttentionDim)
	}

	var p params
	ch := l.BlockOutChannels
	temb := 4 * ch[0]
	lpb := l.LayersPerBlock

	p.conv("conv_in", "input_blocks.0.0", ch[0], l.InChannels, 3)
	p.linear("time_embedding.linear_1", "time_embed.0", temb, ch[0], true)
	p.linear("time_embedding.linear_2", "time_embed.2", temb, temb, true)
	if l.AdditionEmbedType == "text_time" {
		p.linear("add_embedding.linear_1", "label_emb.0.0", temb, l.ProjectionClassEmbeddingsInputDim, true)
		p.linear("add_embedding.linear_2", "label_emb.0.2", temb, temb, true)
	}

	// LDM numbers the down path as one flat list: input_blocks.0 is conv_in,
	// then each block contributes layers_per_block (resnet, attention)
	// entries followed by one downsampler entry (except the last block).
	in := ch[0]
	for i := range n {
		out := ch[i]
		dst := "down_blocks." + itoa(i)
		for j := range lpb {
			src := "input_blocks." + itoa(1+i*(lpb+1)+j)
			p.unetResnet(dst+".resnets."+itoa(j), src+".0", in, out, temb)
			if downAttn[i] {
				p.transformer(dst+".attentions."+itoa(j), src+".1", out, l.CrossAttentionDim, depth[i], l.UseLinearProjection)
			}
			in = out
		}
		if i < n-1 {
			p.conv(dst+".downsamplers.0.conv", "input_blocks."+itoa(1+i*(lpb+1)+lpb)+".0.op", out, out, 3)
		}
	}

	last := ch[n-1]
	p.unetResnet("mid_block.resnets.0", "middle_block.0", last, last, temb)
	p.transformer("mid_block.attentions.0", "middle_block.1", last, l.CrossAttentionDim, depth[n-1], l.UseLinearProjection)
	p.unetResnet("mid_block.resnets.1", "middle_block.2", last, last, temb)

	// The up path: output_blocks numbers layers_per_block+1 entries per
	// block; each holds a resnet, then an attention if the block has one,
	// then (last entry of every block but the last) the upsampler.
	prevOut := last
	for i := range n {
		out := ch[n-1-i]
		skipIn := ch[max(n-2-i, 0)] // channels of the matching down block's input
		dst := "up_blocks." + itoa(i)
		for j := range lpb + 1 {
			src := "output_blocks." + itoa(i*(lpb+1)+j)
			skip := out
			if j == lpb {
				skip = skipIn
			}
			resIn := out
			if j == 0 {
				resIn = prevOut
			}
			p.unetResnet(dst+".resnets."+itoa(j), src+".0", resIn+skip, out, temb)
			next := 1
			if upAttn[i] {
				p.transformer(dst+".attentions."+itoa(j), src+".1", out, l.CrossAttentionDim, depth[n-1-i], l.UseLinearProjection)
				next = 2
			}
			if j == lpb && i < n-1 {
				p.conv(dst+".upsamplers.0.conv", src+"."+itoa(next)+".conv", out, out, 3)
			}
		}
		prevOut = out
	}

	p.norm("conv_norm_out", "out.0", ch[0])
	p.conv("conv_out", "out.2", l.OutChannels, ch[0], 3)
	return p.list, nil
}

// unetResnet adds a ResnetBlock2D with a time embedding projection.
func (p *params) unetResnet(dst, src string, in, out, temb int) {
	p.norm(dst+".norm1", src+".in_layers.0", in)
	p.conv(dst+".conv1", src+".in_layers.2", out, in, 3)
	p.linear(dst+".time_emb_proj", src+".emb_layers.1", out, temb, true)
	p.norm(dst+".norm2", src+".out_layers.0", out)
	p.conv(dst+".conv2", src+".out_layers.3", out, out, 3)
	if in != out {
		p.conv(dst+".conv_shortcut", src+".skip_connection", out, in, 1)
	}
}

// transformer adds a Transformer2DModel of depth BasicTransformerBlocks;
// LDM's SpatialTransformer uses the same names inside.
func (p *params) transformer(dst, src string, c, cross, depth int, linear bool) {
	p.norm(dst+".norm", src+".norm", c)
	proj := func(name string) {
		if linear {
			p.linear(dst+"."+name, src+"."+name, c, c, true)
		} else {
			p.conv(dst+"."+name, src+"."+name, c, c, 1)
		}
	}
	proj("proj_in")
	for t := range depth {
		b := ".transformer_blocks." + itoa(t)
		d, s := dst+b, src+b
		p.norm(d+".norm1", s+".norm1", c)
		p.linear(d+".attn1.to_q", s+".attn1.to_q", c, c, false)
		p.linear(d+".attn1.to_k", s+".attn1.to_k", c, c, false)
		p.linear(d+".attn1.to_v", s+".attn1.to_v", c, c, false)
		p.linear(d+".attn1.to_out.0", s+".attn1.to_out.0", c, c, true)
		p.norm(d+".norm2", s+".norm2", c)
		p.linear(d+".attn2.to_q", s+".attn2.to_q", c, c, false)
		p.linear(d+".attn2.to_k", s+".attn2.to_k", c, cross, false)
		p.linear(d+".attn2.to_v", s+".attn2.to_v", c, cross, false)
		p.linear(d+".attn2.to_out.0", s+".attn2.to_out.0", c, c, true)
		p.norm(d+".norm3", s+".norm3", c)
		p.linear(d+".ff.net.0.proj", s+".ff.net.0.proj", 8*c, c, true) // GEGLU: value and gate
		p.linear(d+".ff.net.2", s+".ff.net.2", c, 4*c, true)
	}
	proj("proj_out")
}

// VAEParams lists every parameter of a diffusers AutoencoderKL with the
// given layout, with its name under LDM's "first_stage_model.".
func VAEParams(l VAELayout) ([]Param, error) {
	n := len(l.BlockOutChannels)
	errf := func(format string, a ...any) ([]Param, error) {
		return nil, fmt.Errorf("checkpoint: VAE layout: "+format, a...)
	}
	switch {
	case n == 0:
		return errf("block_out_channels is empty")
	case len(l.DownBlockTypes) != n || len(l.UpBlockTypes) != n:
		return errf("%d block_out_channels but %d down_block_types and %d up_block_types", n, len(l.DownBlockTypes), len(l.UpBlockTypes))
	case l.LayersPerBlock < 1:
		return errf("layers_per_block is %d", l.LayersPerBlock)
	case l.InChannels < 1 || l.OutChannels < 1 || l.LatentChannels < 1:
		return errf("in_channels %d, out_channels %d, latent_channels %d", l.InChannels, l.OutChannels, l.LatentChannels)
	}
	for i := range n {
		if l.BlockOutChannels[i] < 1 {
			return errf("block_out_channels %v", l.BlockOutChannels)
		}
		if t := l.DownBlockTypes[i]; t != "DownEncoderBlock2D" {
			return errf("down block %d: type %q is not supported", i, t)
		}
		if t := l.UpBlockTypes[i]; t != "UpDecoderBlock2D" {
			return errf("up block %d: type %q is not supported", i, t)
		}
	}
	var p params
	ch := l.BlockOutChannels
	last := ch[n-1]
	lat := l.LatentChannels

	p.conv("encoder.conv_in", "encoder.conv_in", ch[0], l.InChannels, 3)
	in := ch[0]
	for i := range n {
		out := ch[i]
		for j := range l.LayersPerBlock {
			p.vaeResnet("encoder.down_blocks."+itoa(i)+".resnets."+itoa(j), "encoder.down."+itoa(i)+".block."+itoa(j), in, out)
			in = out
		}
		if i < n-1 {
			p.conv("encoder.down_blocks."+itoa(i)+".downsamplers.0.conv", "encoder.down."+itoa(i)+".downsample.conv", out, out, 3)
		}
	}
	p.vaeMid("encoder", last)
	p.norm("encoder.conv_norm_out", "encoder.norm_out", last)
	p.conv("encoder.conv_out", "encoder.conv_out", 2*lat, last, 3)
	p.conv("quant_conv", "quant_conv", 2*lat, 2*lat, 1)
	p.conv("post_quant_conv", "post_quant_conv", lat, lat, 1)

	p.conv("decoder.conv_in", "decoder.conv_in", last, lat, 3)
	p.vaeMid("decoder", last)
	// diffusers counts decoder up blocks from the bottom (most channels), LDM
	// from the top: diffusers up_blocks.i is LDM up.(n-1-i).
	in = last
	for i := range n {
		out := ch[n-1-i]
		src := "decoder.up." + itoa(n-1-i)
		for j := range l.LayersPerBlock + 1 {
			p.vaeResnet("decoder.up_blocks."+itoa(i)+".resnets."+itoa(j), src+".block."+itoa(j), in, out)
			in = out
		}
		if i < n-1 {
			p.conv("decoder.up_blocks."+itoa(i)+".upsamplers.0.conv", src+".upsample.conv", out, out, 3)
		}
	}
	p.norm("decoder.conv_norm_out", "decoder.norm_out", ch[0])
	p.conv("decoder.conv_out", "decoder.conv_out", l.OutChannels, ch[0], 3)
	return p.list, nil
}

// vaeResnet adds a ResnetBlock2D without time embedding.
func (p *params) vaeResnet(dst, src string, in, out int) {
	p.norm(dst+".norm1", src+".norm1", in)
	p.conv(dst+".conv1", src+".conv1", out, in, 3)
	p.norm(dst+".norm2", src+".norm2", out)
	p.conv(dst+".conv2", src+".conv2", out, out, 3)
	if in != out {
		p.conv(dst+".conv_shortcut", src+".nin_shortcut", out, in, 1)
	}
}

// vaeMid adds a VAE mid block: resnet, single-head attention, resnet. LDM's
// attention uses 1×1 convolutions where diffusers uses Linear layers.
func (p *params) vaeMid(part string, c int) {
	dst, src := part+".mid_block", part+".mid"
	p.vaeResnet(dst+".resnets.0", src+".block_1", c, c)
	a, s := dst+".attentions.0", src+".attn_1"
	p.norm(a+".group_norm", s+".norm", c)
	p.convAsLinear(a+".to_q", s+".q", c, c)
	p.convAsLinear(a+".to_k", s+".k", c, c)
	p.convAsLinear(a+".to_v", s+".v", c, c)
	p.convAsLinear(a+".to_out.0", s+".proj_out", c, c)
	p.vaeResnet(dst+".resnets.1", src+".block_2", c, c)
}

// TextEncoderParams lists every parameter of a transformers CLIPTextModel
// with the given layout, with its name under LDM's
// "cond_stage_model.transformer.". SD 1.x checkpoints store the text encoder
// with transformers' own names, so the names agree; checkpoints saved by old
// transformers versions lack the "text_model." level, accepted as an alias.
func TextEncoderParams(l TextEncoderLayout) ([]Param, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	var p params
	h := l.HiddenSize
	p.add("text_model.embeddings.token_embedding.weight", "text_model.embeddings.token_embedding.weight", l.VocabSize, h)
	p.add("text_model.embeddings.position_embedding.weight", "text_model.embeddings.position_embedding.weight", l.MaxPositionEmbeddings, h)
	for i := range l.NumHiddenLayers {
		b := "text_model.encoder.layers." + itoa(i)
		for _, proj := range []string{"q_proj", "k_proj", "v_proj", "out_proj"} {
			p.linear(b+".self_attn."+proj, b+".self_attn."+proj, h, h, true)
		}
		p.norm(b+".layer_norm1", b+".layer_norm1", h)
		p.linear(b+".mlp.fc1", b+".mlp.fc1", l.IntermediateSize, h, true)
		p.linear(b+".mlp.fc2", b+".mlp.fc2", h, l.IntermediateSize, true)
		p.norm(b+".layer_norm2", b+".layer_norm2", h)
	}
	p.norm("text_model.final_layer_norm", "text_model.final_layer_norm", h)
	for i := range p.list {
		p.list[i].Aliases = []string{p.list[i].Source[len("text_model."):]}
	}
	if l.WithProjection {
		p.add("text_projection.weight", "text_projection.weight", l.ProjectionDim, h)
	}
	return p.list, nil
}

func (l TextEncoderLayout) check() error {
	if l.VocabSize < 1 || l.HiddenSize < 1 || l.IntermediateSize < 1 || l.NumHiddenLayers < 1 || l.MaxPositionEmbeddings < 1 ||
		l.WithProjection && l.ProjectionDim < 1 {
		return fmt.Errorf("checkpoint: text encoder layout: vocab_size %d, hidden_size %d, intermediate_size %d, num_hidden_layers %d, max_position_embeddings %d, projection_dim %d",
			l.VocabSize, l.HiddenSize, l.IntermediateSize, l.NumHiddenLayers, l.MaxPositionEmbeddings, l.ProjectionDim)
	}
	return nil
}

// OpenCLIPParams lists every parameter of a transformers CLIPTextModel (or
// CLIPTextModelWithProjection when l.WithProjection) with its name in
// OpenCLIP's layout, relative to the encoder's prefix (SDXL:
// "conditioner.embedders.1.model."). OpenCLIP names differ from
// transformers' (resblocks, ln_1, c_fc, ...) and fuse each layer's q, k and
// v projections into attn.in_proj_weight [3·hidden, hidden] and
// attn.in_proj_bias [3·hidden]; q, k and v are rows [0, h), [h, 2h) and
// [2h, 3h) of them. text_projection [hidden, projection] is applied as
// x @ P, so it is the transpose of transformers' text_projection.weight.
func OpenCLIPParams(l TextEncoderLayout) ([]Param, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	var p params
	h := l.HiddenSize
	p.add("text_model.embeddings.token_embedding.weight", "token_embedding.weight", l.VocabSize, h)
	p.add("text_model.embeddings.position_embedding.weight", "positional_embedding", l.MaxPositionEmbeddings, h)
	for i := range l.NumHiddenLayers {
		b := "text_model.encoder.layers." + itoa(i)
		s := "transformer.resblocks." + itoa(i)
		p.norm(b+".layer_norm1", s+".ln_1", h)
		for j, proj := range []string{"q_proj", "k_proj", "v_proj"} {
			rows := [2]int{j * h, (j + 1) * h}
			p.list = append(p.list,
				Param{Name: b + ".self_attn." + proj + ".weight", Source: s + ".attn.in_proj_weight", Shape: []int{h, h}, SourceShape: []int{3 * h, h}, Rows: rows},
				Param{Name: b + ".self_attn." + proj + ".bias", Source: s + ".attn.in_proj_bias", Shape: []int{h}, SourceShape: []int{3 * h}, Rows: rows})
		}
		p.linear(b+".self_attn.out_proj", s+".attn.out_proj", h, h, true)
		p.norm(b+".layer_norm2", s+".ln_2", h)
		p.linear(b+".mlp.fc1", s+".mlp.c_fc", l.IntermediateSize, h, true)
		p.linear(b+".mlp.fc2", s+".mlp.c_proj", h, l.IntermediateSize, true)
	}
	p.norm("text_model.final_layer_norm", "ln_final", h)
	if l.WithProjection {
		p.list = append(p.list, Param{Name: "text_projection.weight", Source: "text_projection",
			Shape: []int{l.ProjectionDim, h}, SourceShape: []int{h, l.ProjectionDim}, Transpose: true})
	}
	return p.list, nil
}
