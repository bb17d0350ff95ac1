package lora

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// toy is a small model with layers reached through exported and
// unexported fields, an interface slice and a map.
type toy struct {
	Fc    *nn.Linear
	conv  *nn.Conv2d // 3×3, stride 2
	proj  *nn.Conv2d // 1×1
	extra []nn.Module
	byKey map[string]*nn.Linear
}

func newToy(_ testing.TB, dtype tensor.DType) *toy {
	m := &toy{Fc: nn.NewLinear(6, 5, true), conv: nn.NewConv2d(3, 4, 3, 2, 1, true), proj: nn.NewConv2d(4, 2, 1, 1, 0, false),
		extra: []nn.Module{nn.NewLinear(5, 3, false)}, byKey: map[string]*nn.Linear{"q": nn.NewLinear(3, 3, true)}}
	nn.Init(m, 7, dtype)
	return m
}

func (m *toy) Params(prefix string, p *nn.Params) {
	m.Fc.Params(prefix+"fc.", p)
	m.conv.Params(prefix+"block.conv.", p)
	m.proj.Params(prefix+"block.proj_in.", p)
	m.extra[0].Params(prefix+"extra.0.", p)
	m.byKey["q"].Params(prefix+"attn.to_q.", p)
}

func randSlice(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// encode builds an in-memory safetensors file.
func encode(t *testing.T, ts []safetensors.Tensor) *safetensors.File {
	t.Helper()
	var b bytes.Buffer
	if err := safetensors.Encode(&b, ts, nil); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Parse(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// pair adds a random down/up pair under the given key names.
func pair(r *rand.Rand, ts []safetensors.Tensor, down, up string, dshape, ushape []int) []safetensors.Tensor {
	return append(ts, safetensors.F32Tensor(down, dshape, randSlice(r, numel(dshape))),
		safetensors.F32Tensor(up, ushape, randSlice(r, numel(ushape))))
}

func TestParseKey(t *testing.T) {
	cases := []struct {
		key, comp, module, part, format string
		kohya                           bool
	}{
		{"down_blocks.0.attentions.0.proj_in.lora_A.weight", "", "down_blocks.0.attentions.0.proj_in", "down", "peft", false},
		{"unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0.lora_B.weight", "unet", "mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0", "up", "peft", false},
		{"base_model.model.up_blocks.1.resnets.0.conv1.lora_A.default.weight", "", "up_blocks.1.resnets.0.conv1", "down", "peft", false},
		{"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k.lora.down.weight", "unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k", "down", "diffusers", false},
		{"text_encoder.text_model.encoder.layers.3.mlp.fc1.lora_linear_layer.up.weight", "text_encoder", "text_model.encoder.layers.3.mlp.fc1", "up", "diffusers", false},
		{"text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.alpha", "text_encoder_2", "text_model.encoder.layers.0.self_attn.q_proj", "alpha", "diffusers", false},
		{"down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.up.weight", "", "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0", "up", "diffusers-legacy", false},
		{"text_encoder.text_model.encoder.layers.0.self_attn.to_v_lora.down.weight", "text_encoder", "text_model.encoder.layers.0.self_attn.v_proj", "down", "diffusers-legacy", false},
		{"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", "unet", "down_blocks_0_attentions_0_proj_in", "down", "kohya", true},
		{"lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.alpha", "unet", "input_blocks_4_1_transformer_blocks_0_attn1_to_q", "alpha", "kohya", true},
		{"lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", "text_encoder", "text_model_encoder_layers_0_self_attn_q_proj", "up", "kohya", true},
		{"lora_te1_text_model_encoder_layers_0_mlp_fc2.lora_down.weight", "text_encoder", "text_model_encoder_layers_0_mlp_fc2", "down", "kohya", true},
		{"lora_te2_text_model_encoder_layers_9_self_attn_out_proj.lora_down.weight", "text_encoder_2", "text_model_encoder_layers_9_self_attn_out_proj", "down", "kohya", true},
	}
	for _, c := range cases {
		k, ok := parseKey(c.key)
		if !ok || k.component != c.comp || k.module != c.module || k.part != c.part || k.format != c.format || k.kohya != c.kohya {
			t.Errorf("parseKey(%q) = %+v, %v; want %s %q %s %s kohya=%v", c.key, k, ok, c.comp, c.module, c.part, c.format, c.kohya)
		}
	}
	for _, key := range []string{"lora_unet_x.dora_scale", "unet.x.lora_magnitude_vector", "lora_unet_x.hada_w1_a", "x.lora_B.bias", "model.diffusion_model.x.weight", "lora_unet_.lora_down.weight"} {
		if k, ok := parseKey(key); ok || k.reason == "" {
			t.Errorf("parseKey(%q) accepted (%+v)", key, k)
		}
	}
}

// TestApplyForward checks the unfused outputs against a direct computation
// and the fused ones against the unfused, for linear and conv adapters.
func TestApplyForward(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	m := newToy(t, tensor.F32)
	var ts []safetensors.Tensor
	ts = pair(r, ts, "lora_unet_fc.lora_down.weight", "lora_unet_fc.lora_up.weight", []int{2, 6}, []int{5, 2})
	ts = append(ts, safetensors.F32Tensor("lora_unet_fc.alpha", nil, []float32{3}))
	ts = pair(r, ts, "lora_unet_block_conv.lora_down.weight", "lora_unet_block_conv.lora_up.weight", []int{3, 3, 3, 3}, []int{4, 3, 1, 1})
	ts = pair(r, ts, "lora_unet_block_proj_in.lora_down.weight", "lora_unet_block_proj_in.lora_up.weight", []int{2, 4}, []int{2, 2})
	ts = pair(r, ts, "lora_unet_extra_0.lora_down.weight", "lora_unet_extra_0.lora_up.weight", []int{1, 5, 1, 1}, []int{3, 1, 1, 1})
	ts = pair(r, ts, "lora_unet_attn_to_q.lora_down.weight", "lora_unet_attn_to_q.lora_up.weight", []int{2, 3}, []int{3, 2})
	f, err := Read(encode(t, ts), "toy")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Entries) != 5 || f.Formats[0] != "kohya" {
		t.Fatalf("parsed %d entries, formats %v", len(f.Entries), f.Formats)
	}
	x := tensor.FromSlice(randSlice(r, 2*6), 2, 6)
	img := tensor.FromSlice(randSlice(r, 2*3*7*7), 2, 3, 7, 7)
	feat := tensor.FromSlice(randSlice(r, 2*4*3*3), 2, 4, 3, 3)
	x5 := tensor.FromSlice(randSlice(r, 2*5), 2, 5)
	q := m.byKey["q"]
	outs := func() []*tensor.Tensor {
		return []*tensor.Tensor{m.Fc.Forward(x), m.conv.Forward(img), m.proj.Forward(feat), m.extra[0].(*nn.Linear).Forward(x5), q.Forward(tensor.FromSlice(x.Data()[:6], 2, 3))}
	}
	base := outs()

	a, err := Apply(m, f, UNet, 0.7)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Modules) != 5 || a.Warning() != "" {
		t.Fatalf("modules %v, warning %q", a.Modules, a.Warning())
	}
	dyn := outs()

	// Linear: y = base + 0.7·(3/2)·B(A x), computed directly.
	e := entry(t, f, "fc")
	A, B := e.Down.Data(), e.Up.Data()
	for n := 0; n < 2; n++ {
		for o := 0; o < 5; o++ {
			var s float64
			for k := 0; k < 2; k++ {
				var h float64
				for i := 0; i < 6; i++ {
					h += float64(A[k*6+i]) * float64(x.Data()[n*6+i])
				}
				s += float64(B[o*2+k]) * h
			}
			want := float64(base[0].Data()[n*5+o]) + 0.7*1.5*s
			if got := float64(dyn[0].Data()[n*5+o]); math.Abs(got-want) > 1e-5 {
				t.Fatalf("fc output [%d,%d] = %g, want %g", n, o, got, want)
			}
		}
	}
	// Conv: the base convolution with W + s·up·down must give the same.
	ce := entry(t, f, "block_conv")
	wd := m.conv.Weight.Clone().Data()
	cd, cu := ce.Down.Data(), ce.Up.Data()
	for o := 0; o < 4; o++ {
		for j := 0; j < 27; j++ {
			var s float32
			for k := 0; k < 3; k++ {
				s += cu[o*3+k] * cd[k*27+j]
			}
			wd[o*27+j] += 0.7 * s
		}
	}
	ref := tensor.Conv2d(img, tensor.FromSlice(wd, 4, 3, 3, 3), m.conv.Bias, m.conv.Opts)
	if d := tensor.MaxAbsDiff(ref, dyn[1]); d > 1e-4 || !tensor.SameShape(ref.Shape(), dyn[1].Shape()) {
		t.Fatalf("conv LoRA differs from merged-weight conv by %g", d)
	}
	for i := range base {
		if tensor.MaxAbsDiff(base[i], dyn[i]) < 1e-3 {
			t.Errorf("output %d unchanged by its adapter", i)
		}
	}

	// Fused outputs match the unfused ones; unfusing restores the tensors.
	orig := []*tensor.Tensor{m.Fc.Weight, m.conv.Weight, m.proj.Weight, m.extra[0].(*nn.Linear).Weight, q.Weight}
	if n := Fuse(m); n != 5 {
		t.Fatalf("Fuse changed %d layers", n)
	}
	fused := outs()
	for i := range fused {
		if d := tensor.MaxAbsDiff(fused[i], dyn[i]); d > 1e-4 {
			t.Errorf("output %d: fused differs from unfused by %g", i, d)
		}
	}
	a.SetWeight(0)
	for i, o := range outs() {
		if d := tensor.MaxAbsDiff(o, base[i]); d != 0 {
			t.Errorf("output %d with weight 0 differs from base by %g", i, d)
		}
	}
	a.SetWeight(0.7)
	Unfuse(m)
	now := []*tensor.Tensor{m.Fc.Weight, m.conv.Weight, m.proj.Weight, m.extra[0].(*nn.Linear).Weight, q.Weight}
	for i := range orig {
		if now[i] != orig[i] {
			t.Errorf("layer %d: Unfuse did not restore the original tensor", i)
		}
	}
	for i, o := range outs() {
		if d := tensor.MaxAbsDiff(o, dyn[i]); d != 0 {
			t.Errorf("output %d after Unfuse differs from unfused by %g", i, d)
		}
	}
	a.Remove()
	a.Remove()
	for i, o := range outs() {
		if d := tensor.MaxAbsDiff(o, base[i]); d != 0 {
			t.Errorf("output %d after Remove differs from base by %g", i, d)
		}
	}
	if m.Fc.LoRA != nil || m.Fc.LoRABase != nil {
		t.Error("Remove left adapter state on the layer")
	}
}

func entry(t *testing.T, f *File, module string) *Entry {
	for _, e := range f.Entries {
		if e.Module == module {
			return e
		}
	}
	t.Fatalf("no entry %s", module)
	return nil
}

// TestFuseF16 checks that fusing into 16-bit weights and unfusing several
// adapters in any order restores the original tensors.
func TestFuseF16(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	m := newToy(t, tensor.F16)
	if m.Fc.Weight.DType() != tensor.F16 {
		t.Skip("nn.Init did not make F16 weights")
	}
	orig := m.Fc.Weight
	origBits := append([]uint16(nil), orig.U16()...)
	var apps []*Applied
	for i, name := range []string{"a", "b", "c"} {
		var ts []safetensors.Tensor
		ts = pair(r, ts, "unet.fc.lora_A.weight", "unet.fc.lora_B.weight", []int{i + 1, 6}, []int{5, i + 1})
		f, err := Read(encode(t, ts), name)
		if err != nil {
			t.Fatal(err)
		}
		a, err := Apply(m, f, UNet, float32(i)+0.5)
		if err != nil {
			t.Fatal(err)
		}
		apps = append(apps, a)
	}
	x := tensor.FromSlice(randSlice(r, 6), 1, 6)
	dyn := m.Fc.Forward(x)
	Fuse(m)
	if m.Fc.Weight.DType() != tensor.F16 || m.Fc.Weight == orig {
		t.Fatalf("fused weight %v (same tensor: %v)", m.Fc.Weight.DType(), m.Fc.Weight == orig)
	}
	if d := tensor.MaxAbsDiff(dyn, m.Fc.Forward(x)); d > 0.05 {
		t.Errorf("fused F16 output differs by %g", d)
	}
	apps[1].Unfuse()
	apps[0].Remove()
	if m.Fc.Weight == orig {
		t.Error("weight restored while adapter c is still fused")
	}
	apps[2].Unfuse()
	if m.Fc.Weight != orig || m.Fc.LoRABase != nil {
		t.Fatal("original tensor not restored")
	}
	for i, v := range m.Fc.Weight.U16() {
		if v != origBits[i] {
			t.Fatalf("weight element %d changed", i)
		}
	}
}

func TestApplyErrors(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	m := newToy(t, tensor.F32)
	read := func(ts []safetensors.Tensor) *File {
		t.Helper()
		f, err := Read(encode(t, ts), "bad")
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	// Nothing matches: an error listing the keys.
	var ts []safetensors.Tensor
	ts = pair(r, ts, "unet.nope.lora_A.weight", "unet.nope.lora_B.weight", []int{2, 6}, []int{5, 2})
	ts = pair(r, ts, "lora_unet_also_nope.lora_down.weight", "lora_unet_also_nope.lora_up.weight", []int{2, 6}, []int{5, 2})
	_, err := Apply(m, read(ts), UNet, 1)
	if err == nil || !strings.Contains(err.Error(), "unet.nope.lora_A.weight") || !strings.Contains(err.Error(), "lora_unet_also_nope.lora_up.weight") {
		t.Errorf("unmatched file: err = %v", err)
	}
	if m.Fc.LoRA != nil {
		t.Error("failed Apply attached adapters")
	}
	// Some match: a warning with the rest.
	ts = pair(r, ts, "unet.fc.lora_A.weight", "unet.fc.lora_B.weight", []int{2, 6}, []int{5, 2})
	a, err := Apply(m, read(ts), UNet, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Modules) != 1 || len(a.Unmatched) != 4 || !strings.Contains(a.Warning(), "unet.nope.lora_B.weight") {
		t.Errorf("partial match: modules %v unmatched %v warning %q", a.Modules, a.Unmatched, a.Warning())
	}
	a.Remove()
	// Wrong component.
	if _, err := Apply(m, read(ts), TextEncoder, 1); err == nil || !strings.Contains(err.Error(), "unet") {
		t.Errorf("wrong component: err = %v", err)
	}
	// Shape mismatch is an error even when other adapters fit.
	ts = nil
	ts = pair(r, ts, "fc.lora_A.weight", "fc.lora_B.weight", []int{2, 7}, []int{5, 2})
	ts = pair(r, ts, "attn.to_q.lora_A.weight", "attn.to_q.lora_B.weight", []int{2, 3}, []int{3, 2})
	if _, err := Apply(m, read(ts), UNet, 1); err == nil || !strings.Contains(err.Error(), "fc.lora_A.weight") {
		t.Errorf("shape mismatch: err = %v", err)
	}
	// Kernel mismatch on a conv.
	ts = nil
	ts = pair(r, ts, "block.conv.lora_A.weight", "block.conv.lora_B.weight", []int{2, 3}, []int{4, 2})
	if _, err := Apply(m, read(ts), UNet, 1); err == nil || !strings.Contains(err.Error(), "convolution") {
		t.Errorf("conv kernel mismatch: err = %v", err)
	}
}

func TestReadErrors(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	bad := map[string][]safetensors.Tensor{
		"no up":           {safetensors.F32Tensor("unet.fc.lora_A.weight", []int{2, 6}, randSlice(r, 12))},
		"rank mismatch":   pair(r, nil, "fc.lora_A.weight", "fc.lora_B.weight", []int{2, 6}, []int{5, 3}),
		"3-D down":        pair(r, nil, "fc.lora_A.weight", "fc.lora_B.weight", []int{2, 6, 1}, []int{5, 2}),
		"3×3 up":          pair(r, nil, "c.lora_A.weight", "c.lora_B.weight", []int{2, 6, 3, 3}, []int{5, 2, 3, 3}),
		"vector alpha":    append(pair(r, nil, "lora_unet_fc.lora_down.weight", "lora_unet_fc.lora_up.weight", []int{2, 6}, []int{5, 2}), safetensors.F32Tensor("lora_unet_fc.alpha", []int{2}, []float32{1, 2})),
		"integer weights": {safetensors.I64Tensor("fc.lora_A.weight", []int{2, 6}, make([]int64, 12)), safetensors.F32Tensor("fc.lora_B.weight", []int{5, 2}, randSlice(r, 10))},
		"nan alpha":       append(pair(r, nil, "lora_unet_fc.lora_down.weight", "lora_unet_fc.lora_up.weight", []int{2, 6}, []int{5, 2}), safetensors.F32Tensor("lora_unet_fc.alpha", nil, []float32{float32(math.NaN())})),
		"no lora keys":    {safetensors.F32Tensor("model.diffusion_model.conv.weight", []int{2}, []float32{1, 2})},
		"empty":           {},
		"duplicate":       append(pair(r, nil, "fc.lora_A.weight", "fc.lora_B.weight", []int{2, 6}, []int{5, 2}), safetensors.F32Tensor("fc.lora_A.default.weight", []int{2, 6}, randSlice(r, 12))),
	}
	for name, ts := range bad {
		if _, err := Read(encode(t, ts), "x"); err == nil {
			t.Errorf("%s: no error", name)
		} else if !strings.Contains(err.Error(), "<memory>") {
			t.Errorf("%s: error does not name the file: %v", name, err)
		}
	}
	// Unsupported keys next to good ones are listed, not fatal.
	ts := pair(r, nil, "lora_unet_fc.lora_down.weight", "lora_unet_fc.lora_up.weight", []int{2, 6}, []int{5, 2})
	ts = append(ts, safetensors.F32Tensor("lora_unet_fc.dora_scale", []int{5, 1}, randSlice(r, 5)), safetensors.F32Tensor("lora_unet_other.alpha", nil, []float32{4}))
	f, err := Read(encode(t, ts), "x")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Unsupported) != 2 || len(f.Entries) != 1 || f.Entries[0].HasAlpha {
		t.Errorf("unsupported %v, entries %d", f.Unsupported, len(f.Entries))
	}
	a, err := Apply(newToy(t, tensor.F32), f, UNet, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(a.Warning(), "dora_scale") {
		t.Errorf("warning %q does not list the unsupported key", a.Warning())
	}
}

// FuzzRead feeds arbitrary files to Read: errors are fine, panics are not.
func FuzzRead(f *testing.F) {
	f.Add([]byte("x"))
	r := rand.New(rand.NewPCG(1, 1))
	for _, ts := range [][]safetensors.Tensor{
		append(pair(r, nil, "lora_unet_fc.lora_down.weight", "lora_unet_fc.lora_up.weight", []int{2, 6}, []int{5, 2}), safetensors.F32Tensor("lora_unet_fc.alpha", nil, []float32{1})),
		pair(r, nil, "unet.block.conv.lora_A.weight", "unet.block.conv.lora_B.weight", []int{1, 3, 3, 3}, []int{4, 1, 1, 1}),
	} {
		var b bytes.Buffer
		if err := safetensors.Encode(&b, ts, nil); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sf, err := safetensors.Parse(b)
		if err != nil {
			return
		}
		lf, err := Read(sf, "fuzz")
		if err != nil {
			return
		}
		m := newToy(nil, tensor.F32)
		if _, err := Apply(m, lf, UNet, 1); err != nil {
			return
		}
		// Whatever Apply accepted must run, fused and unfused.
		m.Fc.Forward(tensor.Zeros(1, 6))
		m.conv.Forward(tensor.Zeros(1, 3, 5, 5))
		m.proj.Forward(tensor.Zeros(1, 4, 2, 2))
		m.extra[0].(*nn.Linear).Forward(tensor.Zeros(1, 5))
		m.byKey["q"].Forward(tensor.Zeros(1, 3))
		Fuse(m)
		Unfuse(m)
	})
}

// goldenUNet builds the (unloaded) UNet of a golden case.
func goldenUNet(t *testing.T, name string) *unet.Model {
	t.Helper()
	c, err := golden.Find(name)
	if err != nil {
		t.Skip(err)
	}
	cfg, err := unet.ParseConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	m, err := unet.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestKohyaNames resolves kohya names in diffusers and SGM/LDM form on the
// SD 1.5 and SDXL layouts.
func TestKohyaNames(t *testing.T) {
	cases := map[string]map[string]string{
		"unet_sd15": { // CrossAttnDown ×2, Down; Up, CrossAttnUp ×2
			"down_blocks_0_attentions_1_transformer_blocks_0_attn2_to_out_0": "down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_out.0",
			"down_blocks_0_resnets_0_conv1":                                  "down_blocks.0.resnets.0.conv1",
			"input_blocks_0_0":                                               "conv_in",
			"input_blocks_2_1_proj_in":                                       "down_blocks.0.attentions.1.proj_in",
			"input_blocks_3_0_op":                                            "down_blocks.0.downsamplers.0.conv",
			"input_blocks_4_0_skip_connection":                               "down_blocks.1.resnets.0.conv_shortcut",
			"input_blocks_7_0_emb_layers_1":                                  "down_blocks.2.resnets.0.time_emb_proj",
			"middle_block_0_in_layers_2":                                     "mid_block.resnets.0.conv1",
			"middle_block_1_transformer_blocks_0_ff_net_0_proj":              "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj",
			"middle_block_2_out_layers_3":                                    "mid_block.resnets.1.conv2",
			"output_blocks_2_1_conv":                                         "up_blocks.0.upsamplers.0.conv",
			"output_blocks_5_2_conv":                                         "up_blocks.1.upsamplers.0.conv",
			"output_blocks_5_1_transformer_blocks_0_attn1_to_q":              "up_blocks.1.attentions.2.transformer_blocks.0.attn1.to_q",
			"output_blocks_8_0_skip_connection":                              "up_blocks.2.resnets.2.conv_shortcut",
			"time_embed_0":                                                   "time_embedding.linear_1",
			"out_2":                                                          "conv_out",
		},
		"unet_sdxl": { // Down, CrossAttnDown ×2 (2 transformer layers last); CrossAttnUp ×2, Up
			"input_blocks_1_0_in_layers_2":                      "down_blocks.0.resnets.0.conv1",
			"input_blocks_3_0_op":                               "down_blocks.0.downsamplers.0.conv",
			"input_blocks_4_1_transformer_blocks_0_attn1_to_k":  "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k",
			"input_blocks_6_0_op":                               "down_blocks.1.downsamplers.0.conv",
			"input_blocks_8_1_transformer_blocks_1_ff_net_2":    "down_blocks.2.attentions.1.transformer_blocks.1.ff.net.2",
			"middle_block_1_proj_out":                           "mid_block.attentions.0.proj_out",
			"output_blocks_0_1_transformer_blocks_1_attn2_to_v": "up_blocks.0.attentions.0.transformer_blocks.1.attn2.to_v",
			"output_blocks_2_2_conv":                            "up_blocks.0.upsamplers.0.conv",
			"output_blocks_5_2_conv":                            "up_blocks.1.upsamplers.0.conv",
			"output_blocks_8_0_out_layers_3":                    "up_blocks.2.resnets.2.conv2",
			"label_emb_0_0":                                     "add_embedding.linear_1",
			"label_emb_0_2":                                     "add_embedding.linear_2",
		},
	}
	for name, want := range cases {
		m := goldenUNet(t, name)
		mods := Modules(m)
		tab := kohyaTable(mods)
		for k, v := range want {
			if got := tab[k]; got != v {
				t.Errorf("%s: kohya %s -> %q, want %q", name, k, got, v)
			}
		}
		// Every module is reachable by its own underscore name, unambiguously.
		for _, p := range mods {
			if got := tab[strings.ReplaceAll(p, ".", "_")]; got != p {
				t.Errorf("%s: %s resolves to %q", name, p, got)
			}
		}
		// And the SGM names are one-to-one.
		sgm := sgmNames(mods)
		seen := map[string]bool{}
		for _, p := range sgm {
			if seen[p] {
				t.Errorf("%s: two SGM names for %s", name, p)
			}
			seen[p] = true
		}
		t.Logf("%s: %d modules, %d with SGM names", name, len(mods), len(sgm))
	}
}

// TestSGMFileOnSDXL applies a kohya file in SGM naming (LoCon on a
// downsampler, linear on attention) to the SDXL layout.
func TestSGMFileOnSDXL(t *testing.T) {
	m := goldenUNet(t, "unet_sdxl")
	r := rand.New(rand.NewPCG(9, 10))
	var ts []safetensors.Tensor
	ts = pair(r, ts, "lora_unet_input_blocks_3_0_op.lora_down.weight", "lora_unet_input_blocks_3_0_op.lora_up.weight", []int{2, 32, 3, 3}, []int{32, 2, 1, 1})
	ts = pair(r, ts, "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight", "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_up.weight", []int{2, 64}, []int{64, 2})
	f, err := Read(encode(t, ts), "sgm")
	if err != nil {
		t.Fatal(err)
	}
	a, err := Apply(m, f, UNet, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"down_blocks.0.downsamplers.0.conv", "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"}
	if strings.Join(a.Modules, " ") != strings.Join(want, " ") {
		t.Errorf("modules %v, want %v", a.Modules, want)
	}
}

// TestTextEncoderKohya resolves kohya text-encoder names on the CLIP model.
func TestTextEncoderKohya(t *testing.T) {
	c := clip.SD15()
	c.NumHiddenLayers, c.HiddenSize, c.IntermediateSize, c.NumAttentionHeads = 2, 8, 16, 2
	m, err := clip.New(c)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(11, 12))
	var ts []safetensors.Tensor
	ts = pair(r, ts, "lora_te_text_model_encoder_layers_1_self_attn_q_proj.lora_down.weight", "lora_te_text_model_encoder_layers_1_self_attn_q_proj.lora_up.weight", []int{2, 8}, []int{8, 2})
	ts = pair(r, ts, "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight", []int{2, 8}, []int{16, 2})
	ts = pair(r, ts, "lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight", "lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight", []int{2, 8}, []int{16, 2})
	f, err := Read(encode(t, ts), "te")
	if err != nil {
		t.Fatal(err)
	}
	a, err := Apply(m, f, TextEncoder, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := "text_model.encoder.layers.0.mlp.fc1 text_model.encoder.layers.1.self_attn.q_proj"
	if got := strings.Join(a.Modules, " "); got != want || len(a.Unmatched) != 0 {
		t.Errorf("modules %q unmatched %v, want %q", got, a.Unmatched, want)
	}
	if _, err := Apply(m, f, TextEncoder2, 1); err == nil {
		t.Error("te LoRA applied to text_encoder_2")
	}
}
