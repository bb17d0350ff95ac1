package checkpoint

import (
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/model/flux"
	"github.com/diffuse-go/diffuse/model/sd3"
	"github.com/diffuse-go/diffuse/nn"
)

// tinyFlux is FLUX.1 dev with one double and one single block.
func tinyFlux(t *testing.T) *flux.Model {
	t.Helper()
	m, err := flux.New(flux.Config{PatchSize: 1, InChannels: 64, OutChannels: 64, NumLayers: 1, NumSingleLayers: 1,
		AttentionHeadDim: 32, NumAttentionHeads: 2, JointAttentionDim: 128, PooledProjectionDim: 64, GuidanceEmbeds: true,
		AxesDimsRope: []int{4, 14, 14}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// tinySD3 is SD3 medium's MMDiT with two joint blocks (the last one
// pre-only on the context side).
func tinySD3(t *testing.T) *sd3.Model {
	t.Helper()
	c := sd3.Defaults()
	c.NumLayers, c.NumAttentionHeads, c.CaptionProjectionDim = 2, 1, 64
	c.JointAttentionDim, c.PooledProjectionDim, c.PosEmbedMaxSize, c.SampleSize = 128, 64, 16, 16
	m, err := sd3.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// tinySD35 is an SD3.5 Medium-style MMDiT (qk norms) with two joint
// blocks, the first with dual attention (MMDiT-X), as SD3.5 Medium's
// blocks 0..12 are, the last without.
func tinySD35(t *testing.T) *sd3.Model {
	t.Helper()
	c := tinySD3(t).Cfg
	rms := sd3.QKNormRMS
	c.QKNorm, c.DualAttentionLayers = &rms, []int{0}
	m, err := sd3.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// weightBias lists module.weight and module.bias for each module.
func weightBias(modules ...string) []string {
	var out []string
	for _, m := range modules {
		out = append(out, m+".weight", m+".bias")
	}
	return out
}

// The tensors of the original files, as BFL's flux/model.py and
// Stability AI's mmdit.py name them (and so flux1-dev.safetensors,
// sd3_medium.safetensors and the GGUF files made from them), for the tiny
// models above.
var (
	bflNames = slices.Concat(
		weightBias("img_in", "txt_in", "time_in.in_layer", "time_in.out_layer", "vector_in.in_layer", "vector_in.out_layer",
			"guidance_in.in_layer", "guidance_in.out_layer",
			"double_blocks.0.img_mod.lin", "double_blocks.0.img_attn.qkv", "double_blocks.0.img_attn.proj",
			"double_blocks.0.img_mlp.0", "double_blocks.0.img_mlp.2",
			"double_blocks.0.txt_mod.lin", "double_blocks.0.txt_attn.qkv", "double_blocks.0.txt_attn.proj",
			"double_blocks.0.txt_mlp.0", "double_blocks.0.txt_mlp.2",
			"single_blocks.0.linear1", "single_blocks.0.linear2", "single_blocks.0.modulation.lin",
			"final_layer.linear", "final_layer.adaLN_modulation.1"),
		[]string{"double_blocks.0.img_attn.norm.query_norm.scale", "double_blocks.0.img_attn.norm.key_norm.scale",
			"double_blocks.0.txt_attn.norm.query_norm.scale", "double_blocks.0.txt_attn.norm.key_norm.scale",
			"single_blocks.0.norm.query_norm.scale", "single_blocks.0.norm.key_norm.scale"})
	mmditNames = slices.Concat(
		[]string{"pos_embed"},
		weightBias("x_embedder.proj", "t_embedder.mlp.0", "t_embedder.mlp.2", "y_embedder.mlp.0", "y_embedder.mlp.2",
			"context_embedder", "final_layer.linear", "final_layer.adaLN_modulation.1"),
		weightBias("joint_blocks.0.x_block.adaLN_modulation.1", "joint_blocks.0.x_block.attn.qkv", "joint_blocks.0.x_block.attn.proj",
			"joint_blocks.0.x_block.mlp.fc1", "joint_blocks.0.x_block.mlp.fc2",
			"joint_blocks.0.context_block.adaLN_modulation.1", "joint_blocks.0.context_block.attn.qkv",
			"joint_blocks.0.context_block.attn.proj", "joint_blocks.0.context_block.mlp.fc1", "joint_blocks.0.context_block.mlp.fc2"),
		// The last block's context side is pre-only: no projection, no MLP.
		weightBias("joint_blocks.1.x_block.adaLN_modulation.1", "joint_blocks.1.x_block.attn.qkv", "joint_blocks.1.x_block.attn.proj",
			"joint_blocks.1.x_block.mlp.fc1", "joint_blocks.1.x_block.mlp.fc2",
			"joint_blocks.1.context_block.adaLN_modulation.1", "joint_blocks.1.context_block.attn.qkv"))
	// SD3.5 Medium's file (sd3.5_medium.safetensors) adds the qk norms of
	// both streams and, in the MMDiT-X blocks, x_block.attn2.
	sd35Names = slices.Concat(mmditNames,
		[]string{"joint_blocks.0.x_block.attn.ln_q.weight", "joint_blocks.0.x_block.attn.ln_k.weight",
			"joint_blocks.0.context_block.attn.ln_q.weight", "joint_blocks.0.context_block.attn.ln_k.weight",
			"joint_blocks.1.x_block.attn.ln_q.weight", "joint_blocks.1.x_block.attn.ln_k.weight",
			"joint_blocks.1.context_block.attn.ln_q.weight", "joint_blocks.1.context_block.attn.ln_k.weight",
			"joint_blocks.0.x_block.attn2.ln_q.weight", "joint_blocks.0.x_block.attn2.ln_k.weight"},
		weightBias("joint_blocks.0.x_block.attn2.qkv", "joint_blocks.0.x_block.attn2.proj"))
)

// layoutOf lists the source tensors params need, each once, at their
// source shapes, under prefix.
func layoutOf(params []Param, prefix string) fakeSource {
	src := fakeSource{}
	for _, p := range params {
		src[prefix+p.Source] = p.SourceShape
	}
	return src
}

// mmditRef is an expected mapping of an SD3 or FLUX parameter.
type mmditRef struct {
	src  string
	rows [2]int
	swap bool
}

var (
	// The FLUX model's width is 64, its MLP 256 wide, its norm_out 2·64.
	fluxRefs = map[string]mmditRef{
		"transformer_blocks.0.attn.to_k.weight":           {src: "double_blocks.0.img_attn.qkv.weight", rows: [2]int{64, 128}},
		"transformer_blocks.0.attn.add_v_proj.bias":       {src: "double_blocks.0.txt_attn.qkv.bias", rows: [2]int{128, 192}},
		"single_transformer_blocks.0.attn.to_q.weight":    {src: "single_blocks.0.linear1.weight", rows: [2]int{0, 64}},
		"single_transformer_blocks.0.proj_mlp.weight":     {src: "single_blocks.0.linear1.weight", rows: [2]int{192, 448}},
		"single_transformer_blocks.0.proj_mlp.bias":       {src: "single_blocks.0.linear1.bias", rows: [2]int{192, 448}},
		"single_transformer_blocks.0.attn.norm_k.weight":  {src: "single_blocks.0.norm.key_norm.scale"},
		"single_transformer_blocks.0.proj_out.weight":     {src: "single_blocks.0.linear2.weight"},
		"transformer_blocks.0.attn.norm_added_q.weight":   {src: "double_blocks.0.txt_attn.norm.query_norm.scale"},
		"norm_out.linear.weight":                          {src: "final_layer.adaLN_modulation.1.weight", swap: true},
		"norm_out.linear.bias":                            {src: "final_layer.adaLN_modulation.1.bias", swap: true},
		"transformer_blocks.0.norm1.linear.weight":        {src: "double_blocks.0.img_mod.lin.weight"},
		"time_text_embed.guidance_embedder.linear_1.bias": {src: "guidance_in.in_layer.bias"},
		"x_embedder.weight":                               {src: "img_in.weight"},
		"proj_out.bias":                                   {src: "final_layer.linear.bias"},
	}
	sd3Refs = map[string]mmditRef{
		"pos_embed.pos_embed":                              {src: "pos_embed"},
		"pos_embed.proj.weight":                            {src: "x_embedder.proj.weight"},
		"transformer_blocks.0.attn.to_v.weight":            {src: "joint_blocks.0.x_block.attn.qkv.weight", rows: [2]int{128, 192}},
		"transformer_blocks.1.attn.add_k_proj.bias":        {src: "joint_blocks.1.context_block.attn.qkv.bias", rows: [2]int{64, 128}},
		"transformer_blocks.0.norm1_context.linear.weight": {src: "joint_blocks.0.context_block.adaLN_modulation.1.weight"},
		"transformer_blocks.1.norm1_context.linear.weight": {src: "joint_blocks.1.context_block.adaLN_modulation.1.weight", swap: true},
		"transformer_blocks.1.norm1.linear.bias":           {src: "joint_blocks.1.x_block.adaLN_modulation.1.bias"},
		"norm_out.linear.bias":                             {src: "final_layer.adaLN_modulation.1.bias", swap: true},
		"transformer_blocks.0.ff_context.net.2.weight":     {src: "joint_blocks.0.context_block.mlp.fc2.weight"},
		"time_text_embed.text_embedder.linear_1.weight":    {src: "y_embedder.mlp.0.weight"},
	}
)

// sd35Refs adds SD3.5's modules to sd3Refs (width 64): the dual block's
// nine-chunk modulation is copied as it is (diffusers' convert script does
// not reorder it).
var sd35Refs = func() map[string]mmditRef {
	r := map[string]mmditRef{
		"transformer_blocks.0.attn.norm_q.weight":       {src: "joint_blocks.0.x_block.attn.ln_q.weight"},
		"transformer_blocks.0.attn.norm_k.weight":       {src: "joint_blocks.0.x_block.attn.ln_k.weight"},
		"transformer_blocks.1.attn.norm_added_q.weight": {src: "joint_blocks.1.context_block.attn.ln_q.weight"},
		"transformer_blocks.1.attn.norm_added_k.weight": {src: "joint_blocks.1.context_block.attn.ln_k.weight"},
		"transformer_blocks.0.attn2.to_q.weight":        {src: "joint_blocks.0.x_block.attn2.qkv.weight", rows: [2]int{0, 64}},
		"transformer_blocks.0.attn2.to_k.bias":          {src: "joint_blocks.0.x_block.attn2.qkv.bias", rows: [2]int{64, 128}},
		"transformer_blocks.0.attn2.to_v.weight":        {src: "joint_blocks.0.x_block.attn2.qkv.weight", rows: [2]int{128, 192}},
		"transformer_blocks.0.attn2.to_out.0.weight":    {src: "joint_blocks.0.x_block.attn2.proj.weight"},
		"transformer_blocks.0.attn2.norm_q.weight":      {src: "joint_blocks.0.x_block.attn2.ln_q.weight"},
		"transformer_blocks.0.attn2.norm_k.weight":      {src: "joint_blocks.0.x_block.attn2.ln_k.weight"},
		"transformer_blocks.0.norm1.linear.weight":      {src: "joint_blocks.0.x_block.adaLN_modulation.1.weight"},
	}
	for k, v := range sd3Refs {
		r[k] = v
	}
	return r
}()

// checkMMDiTRefs checks c's entries against want, sources under prefix.
func checkMMDiTRefs(t *testing.T, what string, c Component, prefix string, want map[string]mmditRef) {
	t.Helper()
	for name, r := range want {
		got, ok := c[name]
		switch {
		case !ok:
			t.Errorf("%s: no entry for %s", what, name)
		case got.Source != prefix+r.src || got.Rows != r.rows || got.Swap != r.swap:
			t.Errorf("%s: %s maps to %s rows %v swap %v, want %s rows %v swap %v",
				what, name, got.Source, got.Rows, got.Swap, prefix+r.src, r.rows, r.swap)
		}
	}
}

// TestMMDiTRules maps the tiny FLUX and SD3 transformers onto the tensor
// names of the original files: every parameter gets a name, the names are
// exactly the files', and fused rows and swapped halves fall where
// diffusers' convert scripts put them.
func TestMMDiTRules(t *testing.T) {
	for _, c := range []struct {
		rules Rules
		m     nn.Module
		names []string
		refs  map[string]mmditRef
	}{
		{Flux, tinyFlux(t), bflNames, fluxRefs},
		{SD3, tinySD3(t), mmditNames, sd3Refs},
		{SD3, tinySD35(t), sd35Names, sd35Refs},
	} {
		ps, err := c.rules.Names(c.m)
		if err != nil {
			t.Fatalf("%s: %v", c.rules, err)
		}
		src := layoutOf(ps, "")
		want := slices.Clone(c.names)
		sort.Strings(want)
		if got := src.Names(); !slices.Equal(got, want) {
			t.Errorf("%s: the rules name %d tensors, the files hold %d:\n got %v\nwant %v", c.rules, len(got), len(want), got, want)
		}
		comp, err := MapComponent(src, "", ps)
		if err != nil {
			t.Fatalf("%s: %v", c.rules, err)
		}
		checkMMDiTRefs(t, c.rules.String(), comp, "", c.refs)
	}
}

// A swapped or fused source must have its exact shape: the halves or rows
// are not defined otherwise.
func TestMMDiTShapes(t *testing.T) {
	ps, err := Flux.Names(tinyFlux(t))
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string][]int{
		"final_layer.adaLN_modulation.1.weight": {64, 128},
		"single_blocks.0.linear1.weight":        {448, 64, 1},
	} {
		src := layoutOf(ps, "")
		src[name] = bad
		_, err := MapComponent(src, "", ps)
		if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "wrong shape") {
			t.Errorf("%s %v: %v", name, bad, err)
		}
	}
	// An odd number of rows cannot be swapped.
	if _, err := Flux.Names(module{{Name: "norm_out.linear.bias", Shape: []int{3}}}); err == nil {
		t.Error("norm_out with 3 rows named")
	}
	// A fused member without its partners has no rows.
	if _, err := Flux.Names(module{{Name: "single_transformer_blocks.0.attn.to_q.weight", Shape: []int{4, 4}}}); err == nil {
		t.Error("to_q without to_k, to_v, proj_mlp named")
	}
	r := Ref{Source: "s", SourceShape: []int{3}, Shape: []int{3}, Swap: true}
	if _, err := r.Apply([]int{3}); err == nil {
		t.Error("odd swap applied")
	}
}
