package goldentest

import (
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/lora"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

func init() {
	golden.Register("diffusers.UNet2DConditionModel + peft LoraConfig", runLoRA)
}

// loraOutputs are the LoRA case's outputs by kind: out_scale<w> (the
// adapter at weight w, "0p5" = 0.5), out_fused_scale<w> (fused at w),
// out_no_lora (without it).
type loraOutputs struct {
	scales, fused map[string]float32
	none          string
}

func parseLoRAOutputs(t *testing.T, c *golden.Case) loraOutputs {
	t.Helper()
	o := loraOutputs{scales: map[string]float32{}, fused: map[string]float32{}}
	for name := range c.Outputs {
		var ok bool
		var w float64
		switch {
		case strings.HasSuffix(name, "__f64"):
			continue
		case name == "out_no_lora":
			o.none, ok = name, true
		case strings.HasPrefix(name, "out_fused_scale"):
			if w, ok = pointName(strings.TrimPrefix(name, "out_fused_scale")); ok {
				o.fused[name] = float32(w)
			}
		case strings.HasPrefix(name, "out_scale"):
			if w, ok = pointName(strings.TrimPrefix(name, "out_scale")); ok {
				o.scales[name] = float32(w)
			}
		}
		if !ok {
			t.Errorf("LoRA output %s: want out_scale<w>, out_fused_scale<w> or out_no_lora", name)
		}
	}
	return o
}

// any returns one recorded output and its weight (the first by name), or
// "" when there is none.
func anyScale(m map[string]float32) (string, float32) {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "", 0
	}
	return names[0], m[names[0]]
}

// loraFiles lists the LoRA files of the case folder (its "files" besides
// case.json, io and weights).
func loraFiles(t *testing.T, c *golden.Case) []string {
	t.Helper()
	var files []string
	if err := c.Field("files", &files); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		if strings.HasSuffix(f, ".safetensors") && f != "io.safetensors" && f != "weights.safetensors" {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		t.Fatalf("case %s lists no LoRA file", c.Name)
	}
	return out
}

// runLoRA checks every LoRA file of the case against diffusers/peft at each
// recorded weight, removed and fused; then that unfusing gives back every
// base weight bit for bit, and that several adapters add up.
func runLoRA(t *testing.T, c *golden.Case) {
	ucfg, w := component(t, c, "unet")
	m := buildUNet(t, ucfg, w)
	sample := caseTensor(t, c, "sample")
	ts, _ := c.MustF32(t, "timestep")
	cond := unet.Cond{EncoderHiddenStates: caseTensor(t, c, "encoder_hidden_states")}
	run := func() *tensor.Tensor {
		t.Helper()
		out, err := m.Forward(sample, ts, cond)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	load := func(name string) *lora.File {
		t.Helper()
		f, err := lora.Load(filepath.Join(c.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	outs := parseLoRAOutputs(t, c)
	files := loraFiles(t, c)
	// Every layer the LoRA config targets must be adapted.
	var cfg struct {
		Targets []string `json:"target_modules"`
	}
	if err := c.Field("lora_config", &cfg); err != nil {
		t.Fatal(err)
	}
	var targets int
	for _, p := range lora.Modules(m) {
		for _, target := range cfg.Targets {
			// peft's rule: the whole path, or a suffix after a dot.
			if p == target || strings.HasSuffix(p, "."+target) {
				targets++
			}
		}
	}
	for _, name := range files {
		t.Run(name, func(t *testing.T) {
			f := load(name)
			a, err := lora.Apply(m, f, lora.UNet, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Remove()
			if len(a.Modules) != targets || len(a.Unmatched) != 0 || a.Warning() != "" {
				t.Fatalf("%s (%v): %d modules adapted, want %d; warning: %s", name, f.Formats, len(a.Modules), targets, a.Warning())
			}
			for out, w := range outs.scales {
				a.SetWeight(w)
				c.Check(t, out, run().Data(), nil)
			}
			if outs.none != "" {
				a.SetEnabled(false)
				c.Check(t, outs.none, run().Data(), nil)
			}
		})
	}
	if outs.none != "" {
		t.Run("removed", func(t *testing.T) { c.Check(t, outs.none, run().Data(), nil) })
	}
	t.Run("fused", func(t *testing.T) { checkLoRAFused(t, c, m, ucfg, w, files, outs, targets, run, load) })
	t.Run("wrong_component", func(t *testing.T) { checkLoRAWrongComponent(t, m, files, load) })
}

// checkLoRAFused fuses the first file at each out_fused_scale<w> weight,
// changes the weight of the fused adapter, unfuses, and fuses two files
// whose weights add up to a recorded one.
func checkLoRAFused(t *testing.T, c *golden.Case, m *unet.Model, ucfg []byte, w *safetensors.File, files []string,
	outs loraOutputs, targets int, run func() *tensor.Tensor, load func(string) *lora.File) {
	fresh := buildUNet(t, ucfg, w)
	other, ow := anyScale(outs.scales)
	for out, fw := range outs.fused {
		a, err := lora.Apply(m, load(files[0]), lora.UNet, fw)
		if err != nil {
			t.Fatal(err)
		}
		if n := lora.Fuse(m); n != targets {
			t.Fatalf("Fuse changed %d layers, want %d", n, targets)
		}
		if same := countSame(t, m, fresh); same == 0 || same != paramCount(m)-targets {
			t.Errorf("after Fuse %d of %d weights are unchanged, want all but the %d adapted ones", same, paramCount(m), targets)
		}
		c.Check(t, out, run().Data(), nil)
		if other != "" {
			// Changing the weight of a fused adapter recomputes from the originals.
			a.SetWeight(ow)
			c.Check(t, other, run().Data(), nil)
		}
		if n := lora.Unfuse(m); n != targets {
			t.Fatalf("Unfuse restored %d layers, want %d", n, targets)
		}
		if same := countSame(t, m, fresh); same != paramCount(m) {
			t.Errorf("after Unfuse only %d of %d weights are bit-identical to a fresh load", same, paramCount(m))
		}
		a.Remove()
		if outs.none != "" {
			c.Check(t, outs.none, run().Data(), nil)
		}
	}
	if len(files) < 2 || other == "" {
		t.Logf("%d LoRA files, %d recorded weights: two-adapter check not possible", len(files), len(outs.scales))
		return
	}
	// Two files of the same adapter at 0.6 w and 0.4 w = the adapter at w.
	p, err := lora.Apply(m, load(files[0]), lora.UNet, 0.6*ow)
	if err != nil {
		t.Fatal(err)
	}
	k, err := lora.Apply(m, load(files[len(files)-1]), lora.UNet, 0.4*ow)
	if err != nil {
		t.Fatal(err)
	}
	dyn := run()
	c.Check(t, other, dyn.Data(), nil)
	p.Fuse()
	half := run() // one fused, one not
	lora.Fuse(m)
	fused := run()
	if d := tensor.MaxAbsDiff(dyn, fused); d > 1e-5 || tensor.MaxAbsDiff(dyn, half) > 1e-5 {
		t.Errorf("two fused adapters differ from unfused by %g", d)
	}
	k.Unfuse()
	p.Unfuse()
	if same := countSame(t, m, fresh); same != paramCount(m) {
		t.Errorf("after unfusing two adapters only %d of %d weights are bit-identical to a fresh load", same, paramCount(m))
	}
	lora.Fuse(m)
	p.Remove() // removing a fused adapter unfuses it
	k.Remove()
	if same := countSame(t, m, fresh); same != paramCount(m) {
		t.Errorf("after removing fused adapters only %d of %d weights are bit-identical to a fresh load", same, paramCount(m))
	}
}

// checkLoRAWrongComponent: a file that names only the UNet must not apply to
// a text encoder, and UNet names applied to an encoder-only UNet warn.
func checkLoRAWrongComponent(t *testing.T, m *unet.Model, files []string, load func(string) *lora.File) {
	for _, name := range files {
		if f := load(name); slices.Equal(f.Components(), []string{lora.UNet}) {
			if _, err := lora.Apply(m, f, lora.TextEncoder, 1); err == nil {
				t.Errorf("%s: UNet LoRA applied to text_encoder without error", name)
			}
		}
	}
	ctrl, err := unet.NewEncoder(m.Cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, err := lora.Apply(ctrl, load(files[0]), lora.UNet, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Remove()
	if len(a.Unmatched) == 0 || a.Warning() == "" {
		t.Errorf("up-block keys applied to an encoder-only UNet gave no warning (%d modules)", len(a.Modules))
	}
	t.Logf("partial match: %d modules, %d keys unmatched", len(a.Modules), len(a.Unmatched))
}

// paramCount is the number of parameters of m.
func paramCount(m nn.Module) int {
	var ps nn.Params
	m.Params("", &ps)
	return len(ps.List())
}

// countSame counts the parameters of a whose values are bit-identical to b's.
func countSame(t *testing.T, a, b nn.Module) int {
	t.Helper()
	var pa, pb nn.Params
	a.Params("", &pa)
	b.Params("", &pb)
	la, lb := pa.List(), pb.List()
	if len(la) != len(lb) {
		t.Fatalf("models have %d and %d parameters", len(la), len(lb))
	}
	n := 0
	for i := range la {
		x, y := *la[i].Ptr, *lb[i].Ptr
		if la[i].Name != lb[i].Name || x.DType() != y.DType() || !tensor.SameShape(x.Shape(), y.Shape()) {
			t.Fatalf("parameter %d: %s %v %v vs %s %v %v", i, la[i].Name, x.DType(), x.Shape(), lb[i].Name, y.DType(), y.Shape())
		}
		xd, yd := x.Data(), y.Data()
		same := true
		for j := range xd {
			if math.Float32bits(xd[j]) != math.Float32bits(yd[j]) {
				same = false
				break
			}
		}
		if same {
			n++
		}
	}
	return n
}
