package gguf

import (
	"reflect"
	"testing"
)

// Tensor names as the two tools write them (see names.go): ComfyUI-GGUF
// keeps the original checkpoint names and sets general.architecture;
// stable-diffusion.cpp prefixes them and sets no architecture.
var (
	fluxNames = []string{
		"img_in.weight", "time_in.in_layer.weight", "guidance_in.in_layer.weight",
		"double_blocks.0.img_attn.qkv.weight", "double_blocks.0.img_attn.proj.weight",
		"double_blocks.0.img_attn.norm.query_norm.scale", "double_blocks.0.txt_mlp.0.weight",
		"single_blocks.0.linear1.weight", "single_blocks.0.modulation.lin.bias",
		"final_layer.adaLN_modulation.1.weight",
	}
	sd3Names = []string{
		"x_embedder.proj.weight", "pos_embed", "t_embedder.mlp.0.weight", "y_embedder.mlp.2.bias",
		"joint_blocks.0.x_block.attn.qkv.weight", "joint_blocks.0.x_block.attn.ln_q.weight",
		"joint_blocks.0.context_block.adaLN_modulation.1.weight", "joint_blocks.23.context_block.attn.proj.weight",
		"final_layer.linear.weight",
	}
)

func prefixed(prefix string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = prefix + n
	}
	return out
}

func identity(names []string) map[string]string {
	m := map[string]string{}
	for _, n := range names {
		m[n] = n
	}
	return m
}

func TestStripPrefix(t *testing.T) {
	cases := []struct {
		in, out string
		comp    Component
	}{
		{"model.diffusion_model.double_blocks.0.img_attn.qkv.weight", "double_blocks.0.img_attn.qkv.weight", ComponentDiffusion},
		{"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight", "joint_blocks.0.x_block.attn.qkv.weight", ComponentDiffusion},
		{"first_stage_model.decoder.conv_in.weight", "decoder.conv_in.weight", ComponentVAE},
		{"text_encoders.clip_l.transformer.text_model.final_layer_norm.weight", "text_model.final_layer_norm.weight", ComponentCLIPL},
		{"text_encoders.clip_g.transformer.text_projection.weight", "text_projection.weight", ComponentCLIPG},
		{"text_encoders.t5xxl.transformer.encoder.block.0.layer.0.SelfAttention.q.weight", "encoder.block.0.layer.0.SelfAttention.q.weight", ComponentT5XXL},
		{"cond_stage_model.transformer.text_model.embeddings.token_embedding.weight", "text_model.embeddings.token_embedding.weight", ComponentCLIPL},
		{"cond_stage_model.1.transformer.text_model.encoder.layers.0.mlp.fc1.weight", "text_model.encoder.layers.0.mlp.fc1.weight", ComponentCLIPG},
		{"double_blocks.0.img_attn.qkv.weight", "double_blocks.0.img_attn.qkv.weight", ComponentNone},
		{"model.diffusion_modelx.w", "model.diffusion_modelx.w", ComponentNone},
	}
	for _, c := range cases {
		out, comp := StripPrefix(c.in)
		if out != c.out || comp != c.comp {
			t.Errorf("StripPrefix(%q) = %q, %q; want %q, %q", c.in, out, comp, c.out, c.comp)
		}
	}
}

func TestDiffusionModelNames(t *testing.T) {
	// A ComfyUI-GGUF file: names as they are.
	if got := DiffusionModelNames(fluxNames); !reflect.DeepEqual(got, identity(fluxNames)) {
		t.Errorf("ComfyUI-GGUF FLUX names: %v", got)
	}
	// A stable-diffusion.cpp file holding the whole checkpoint: only the
	// diffusion model's tensors, unprefixed, each mapped to its file name.
	all := append(prefixed(DiffusionModelPrefix, sd3Names), "first_stage_model.decoder.conv_in.weight", "text_encoders.t5xxl.transformer.shared.weight")
	got := DiffusionModelNames(all)
	if len(got) != len(sd3Names) {
		t.Fatalf("got %d names, want %d: %v", len(got), len(sd3Names), got)
	}
	for _, n := range sd3Names {
		if got[n] != DiffusionModelPrefix+n {
			t.Errorf("%q maps to %q", n, got[n])
		}
	}
}

func TestDetectArch(t *testing.T) {
	cases := []struct {
		names []string
		want  string
	}{
		{fluxNames, "flux"},
		{prefixed(DiffusionModelPrefix, fluxNames), "flux"},
		{sd3Names, "sd3"},
		{prefixed(DiffusionModelPrefix, sd3Names), "sd3"},
		{[]string{"input_blocks.3.0.op.weight", "input_blocks.6.0.op.weight", "input_blocks.9.0.op.weight", "output_blocks.2.1.conv.weight", "output_blocks.5.2.conv.weight", "output_blocks.8.2.conv.weight"}, "sd1"},
		{[]string{"label_emb.0.0.weight", "input_blocks.3.0.op.weight"}, "sdxl"},
		// Diffusers names are not the format either tool writes.
		{[]string{"transformer_blocks.0.attn.to_q.weight", "x_embedder.weight"}, ""},
		{nil, ""},
	}
	for _, c := range cases {
		if got := DetectArch(c.names); got != c.want {
			t.Errorf("DetectArch(%v…) = %q, want %q", c.names[:min(2, len(c.names))], got, c.want)
		}
	}
}

// TestNamesThroughFiles writes the two tools' layouts of the same FLUX
// weights and checks that both give the same diffusion model.
func TestNamesThroughFiles(t *testing.T) {
	w := make([]float32, 64)
	for i := range w {
		w[i] = float32(i) / 8
	}
	data, _ := Quantize(Q8_0, []int{2, 32}, w)
	want := make([]float32, len(w))
	DequantizeRow(Q8_0, data, want)
	mk := func(names []string) []Tensor {
		ts := make([]Tensor, len(names))
		for i, n := range names {
			ts[i] = Tensor{Name: n, Type: Q8_0, Shape: []int{2, 32}, Data: data}
		}
		return ts
	}
	comfy, err := Parse(encode(t, []KV{{"general.architecture", MustValue("flux")}}, mk(fluxNames)))
	if err != nil {
		t.Fatal(err)
	}
	sdcpp, err := Parse(encode(t, nil, mk(append(prefixed(DiffusionModelPrefix, fluxNames), "first_stage_model.decoder.conv_in.weight"))))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []*File{comfy, sdcpp} {
		arch := f.Architecture()
		if arch == "" {
			arch = DetectArch(f.Names())
		}
		if arch != "flux" {
			t.Errorf("architecture %q", arch)
		}
		m := DiffusionModelNames(f.Names())
		if len(m) != len(fluxNames) {
			t.Fatalf("%d diffusion tensors, want %d", len(m), len(fluxNames))
		}
		for _, n := range fluxNames {
			v, shape, err := f.Float32(m[n])
			if err != nil || !reflect.DeepEqual(shape, []int{2, 32}) || !reflect.DeepEqual(v, want) {
				t.Errorf("%s: %v %v", n, shape, err)
			}
		}
	}
}
