package train

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/controlnet"
	"github.com/diffuse-go/diffuse/model/lora"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// unetOut runs the UNet once on fixed inputs (no gradients recorded).
func unetOut(t *testing.T, u *unet.Model, cond unet.Cond) []float32 {
	t.Helper()
	x := tensor.FromSlice(rng.New(3).Randn([]int{1, 4, 16, 16}), 1, 4, 16, 16)
	out, err := u.Forward(x, []float32{500}, cond)
	if err != nil {
		t.Fatal(err)
	}
	return append([]float32(nil), out.Detach().Data()...)
}

// TestLoRAExportsLoad: after a few steps the diffusers and kohya files both
// load through model/lora into a fresh UNet and reproduce the trained
// network's output bit for bit.
func TestLoRAExportsLoad(t *testing.T) {
	tr := loraTrainer(t, 5, 3, 1e-2)
	run(t, tr, tinyBatch(1, 2, 64, false), 3)
	cond := unet.Cond{EncoderHiddenStates: tensor.Full(0.1, 1, 77, tr.Models.UNet.Cfg.CrossAttentionDim.For(1)[0])}
	// Inference with the trained network: no gradients, as after loading.
	for _, p := range tr.Params {
		p.T.SetRequiresGrad(false)
	}
	want := unetOut(t, tr.Models.UNet, cond)
	if sameBits(unetOut(t, tinyModels(t).UNet, cond), want) {
		t.Fatal("training left the UNet output unchanged")
	}
	dir := t.TempDir()
	files := map[string]func(string) error{
		"pytorch_lora_weights.safetensors": tr.LoRA.SaveDiffusers,
		"kohya.safetensors":                func(p string) error { return tr.LoRA.SaveKohya(p, "sd_v1") },
	}
	for name, save := range files {
		path := filepath.Join(dir, name)
		if err := save(path); err != nil {
			t.Fatal(err)
		}
		f, err := lora.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		fresh := tinyModels(t).UNet
		a, err := lora.Apply(fresh, f, lora.UNet, 1)
		if err != nil {
			t.Fatal(err)
		}
		if w := a.Warning(); w != "" {
			t.Errorf("%s: %s", name, w)
		}
		if len(a.Modules) != len(tr.LoRA.Modules) {
			t.Errorf("%s: %d modules adapted, trained %d", name, len(a.Modules), len(tr.LoRA.Modules))
		}
		if got := unetOut(t, fresh, cond); !sameBits(got, want) {
			var md float64
			for i := range got {
				md = max(md, math.Abs(float64(got[i]-want[i])))
			}
			t.Errorf("%s: the loaded LoRA changes the UNet output (max diff %g)", name, md)
		}
	}
	sf, err := safetensors.Open(filepath.Join(dir, "kohya.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	md := sf.Metadata
	for k, v := range map[string]string{"ss_network_dim": "4", "ss_network_alpha": "4", "ss_base_model_version": "sd_v1"} {
		if md[k] != v {
			t.Errorf("kohya metadata %s = %q, want %q", k, md[k], v)
		}
	}
	if !sf.Has("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.alpha") {
		t.Error("kohya file has no alpha for the first adapter")
	}
}

// TestControlNetExportLoads: the saved ControlNet folder loads through
// pipeline.LoadControlNet and gives the trained model's residuals bit for
// bit.
func TestControlNetExportLoads(t *testing.T) {
	tr := controlNetTrainer(t, 5, 2, 1e-3)
	b := tinyBatch(1, 1, 64, true)
	run(t, tr, b, 2)
	for _, p := range tr.Params {
		p.T.SetRequiresGrad(false)
	}
	dir := filepath.Join(t.TempDir(), "controlnet")
	if err := SaveControlNet(dir, tr.Models.ControlNet); err != nil {
		t.Fatal(err)
	}
	loaded, release, err := pipeline.LoadControlNet(dir, tr.Models.UNet.Cfg, pipeline.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	x := tensor.FromSlice(rng.New(3).Randn([]int{1, 4, 8, 8}), 1, 4, 8, 8)
	cond := unet.Cond{EncoderHiddenStates: tensor.Full(0.1, 1, 77, tr.Models.UNet.Cfg.CrossAttentionDim.For(1)[0])}
	res := func(m *controlnet.Model) []float32 {
		t.Helper()
		r, err := m.Forward(x, []float32{500}, cond, b.Conditioning, 1, false)
		if err != nil {
			t.Fatal(err)
		}
		return append(append([]float32(nil), r.Mid.Data()...), r.Down[0].Data()...)
	}
	want := res(tr.Models.ControlNet)
	if got := res(loaded); !sameBits(got, want) {
		t.Error("the loaded ControlNet's residuals differ from the trained one's")
	}
	var zero = true
	for _, v := range want {
		zero = zero && v == 0
	}
	if zero {
		t.Error("training left the zero convolutions at zero")
	}
}

// teOut runs the text encoder on fixed ids (no gradients recorded).
func teOut(t *testing.T, m *clip.Model) []float32 {
	t.Helper()
	ids, _ := rng.New(8).RandInt(3, 1000, 77)
	var out []float32
	tensor.NoGrad(func() {
		o, err := m.Forward(ids, 1, 77)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, o.LastHiddenState.Data()...)
	})
	return out
}

// TestTextEncoderLoRAExports: with the text encoder trained, both files
// hold its adapters under diffusers' ("text_encoder.<module>.
// lora_linear_layer.down.weight") and kohya's ("lora_te_<module>.
// lora_down.weight") names beside the UNet's, and load through model/lora
// into a fresh text encoder that then gives the trained one's output bit
// for bit.
func TestTextEncoderLoRAExports(t *testing.T) {
	tr := loraTETrainer(t, 5, 3, 1e-2)
	run(t, tr, tinyBatch(1, 2, 64, false), 3)
	want := teOut(t, tr.Models.TextEncoder)
	if sameBits(teOut(t, tinyModels(t).TextEncoder), want) {
		t.Fatal("training left the text encoder's output unchanged")
	}
	dir := t.TempDir()
	nets := tr.LoRAs()
	const mod = "text_model.encoder.layers.0.self_attn.q_proj"
	for _, c := range []struct {
		name string
		save func(string) error
		keys []string
	}{
		{"pytorch_lora_weights.safetensors", nets.SaveDiffusers, []string{"text_encoder." + mod + ".lora_linear_layer.down.weight",
			"text_encoder." + mod + ".lora_linear_layer.up.weight", "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora.down.weight"}},
		{"kohya.safetensors", func(p string) error { return nets.SaveKohya(p, "sd_v1") }, []string{"lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight",
			"lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", "lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha",
			"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"}},
	} {
		path := filepath.Join(dir, c.name)
		if err := c.save(path); err != nil {
			t.Fatal(err)
		}
		sf, err := safetensors.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range c.keys {
			if !sf.Has(k) {
				t.Errorf("%s has no %s", c.name, k)
			}
		}
		sf.Close()
		f, err := lora.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		fresh := tinyModels(t).TextEncoder
		a, err := lora.Apply(fresh, f, lora.TextEncoder, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Modules) != len(tr.TextLoRAs[0].Modules) || a.Warning() != "" {
			t.Errorf("%s: %d text encoder modules adapted (trained %d); %s", c.name, len(a.Modules), len(tr.TextLoRAs[0].Modules), a.Warning())
		}
		if !sameBits(teOut(t, fresh), want) {
			t.Errorf("%s: the loaded LoRA's text encoder output differs from the trained one's", c.name)
		}
	}
}

// TestDiffusersExportFoldsAlpha: a network whose alpha is not its rank is
// written in diffusers' layout with Alpha/Rank folded into lora_up and no
// ".alpha" keys (diffusers' loaders take alpha = rank and ignore them), so
// the file loads back with the trained effect; the kohya file keeps the
// alpha.
func TestDiffusersExportFoldsAlpha(t *testing.T) {
	m := tinyModels(t)
	net, err := AddLoRA(m.UNet, lora.UNet, LoRAConfig{Rank: 4, Alpha: 8, TargetModules: DreamBoothTargets, InitWeights: "gaussian"}, rng.New(7))
	if err != nil {
		t.Fatal(err)
	}
	g := rng.New(3)
	for _, mod := range net.Modules { // a trained-looking, non-zero B
		g.Uniform(net.Up[mod].Data(), -0.2, 0.2)
	}
	for _, p := range net.Params() {
		p.T.SetRequiresGrad(false)
	}
	cond := unet.Cond{EncoderHiddenStates: tensor.Full(0.1, 1, 77, m.UNet.Cfg.CrossAttentionDim.For(1)[0])}
	want := unetOut(t, m.UNet, cond)
	path := filepath.Join(t.TempDir(), "pytorch_lora_weights.safetensors")
	if err := net.SaveDiffusers(path); err != nil {
		t.Fatal(err)
	}
	sf, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	mod := net.Modules[0]
	for _, name := range sf.Names() {
		if strings.HasSuffix(name, ".alpha") {
			t.Fatalf("diffusers file holds %s", name)
		}
	}
	up, _, err := sf.Float32("unet." + mod + ".lora.up.weight")
	sf.Close()
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range net.Up[mod].Data() {
		if up[i] != 2*v { // alpha/rank = 2: exact
			t.Fatalf("lora_up[%d] = %v, want 2 × %v", i, up[i], v)
		}
	}
	f, err := lora.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	fresh := tinyModels(t).UNet
	if _, err := lora.Apply(fresh, f, lora.UNet, 1); err != nil {
		t.Fatal(err)
	}
	got := unetOut(t, fresh, cond)
	var md, mx float64
	for i := range got {
		md = max(md, math.Abs(float64(got[i]-want[i])))
		mx = max(mx, math.Abs(float64(want[i])))
	}
	if md > 1e-5*mx || sameBits(unetOut(t, tinyModels(t).UNet, cond), want) {
		t.Errorf("reloaded diffusers LoRA: max diff %g (output scale %g); or the LoRA changes nothing", md, mx)
	}
	if ks := net.kohyaTensors("lora_unet_"); ks[2].Name != "lora_unet_"+strings.ReplaceAll(mod, ".", "_")+".alpha" {
		t.Errorf("kohya tensors %s…: no alpha for %s", ks[2].Name, mod)
	}
}
