package goldentest

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/lora"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

func init() {
	golden.Register("diffusers.UNet2DConditionModel + peft LoraConfig", runLoRA)
}

// runLoRA checks the four LoRA file layouts against diffusers/peft: scale 1,
// scale 0.5, removed, fused; then that unfusing gives back every base weight
// bit for bit.
func runLoRA(t *testing.T, c *golden.Case) {
	base, ok := c.UsesWeightsOf["unet"]
	if !ok {
		t.Fatal("lora case: uses_weights_of has no unet")
	}
	sib, err := c.Sibling(base)
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.Weights("unet")
	if err != nil {
		t.Fatal(err)
	}
	m := buildUNet(t, sib.Config, w)
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
	// Every LoRA layer of the model must be the one the file targets: the
	// case's LoRA covers every to_q/to_k/to_v/to_out.0.
	var targets int
	for _, p := range lora.Modules(m) {
		for _, suffix := range []string{".to_q", ".to_k", ".to_v", ".to_out.0"} {
			if strings.HasSuffix(p, suffix) {
				targets++
			}
		}
	}

	for _, name := range []string{"lora_peft.safetensors", "lora_diffusers.safetensors", "lora_kohya.safetensors", "lora_kohya_alpha8.safetensors"} {
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
			c.Check(t, "out_scale1", run().Data(), nil)
			a.SetWeight(0.5)
			c.Check(t, "out_scale0p5", run().Data(), nil)
			a.SetEnabled(false)
			c.Check(t, "out_no_lora", run().Data(), nil)
			a.SetEnabled(true)
			a.SetWeight(1)
			c.Check(t, "out_scale1", run().Data(), nil)
		})
	}
	t.Run("removed", func(t *testing.T) {
		c.Check(t, "out_no_lora", run().Data(), nil)
	})

	t.Run("fused", func(t *testing.T) {
		fresh := buildUNet(t, sib.Config, w)
		a, err := lora.Apply(m, load("lora_diffusers.safetensors"), lora.UNet, 1)
		if err != nil {
			t.Fatal(err)
		}
		if n := lora.Fuse(m); n != targets {
			t.Fatalf("Fuse changed %d layers, want %d", n, targets)
		}
		if same := countSame(t, m, fresh); same == 0 || same != paramCount(m)-targets {
			t.Errorf("after Fuse %d of %d weights are unchanged, want all but the %d adapted ones", same, paramCount(m), targets)
		}
		c.Check(t, "out_fused_scale1", run().Data(), nil)
		// Changing the weight of a fused adapter recomputes from the originals.
		a.SetWeight(0.5)
		c.Check(t, "out_scale0p5", run().Data(), nil)
		a.SetWeight(1)
		if n := lora.Unfuse(m); n != targets {
			t.Fatalf("Unfuse restored %d layers, want %d", n, targets)
		}
		if same := countSame(t, m, fresh); same != paramCount(m) {
			t.Errorf("after Unfuse only %d of %d weights are bit-identical to a fresh load", same, paramCount(m))
		}
		c.Check(t, "out_scale1", run().Data(), nil) // unfused, still attached
		a.Remove()
		c.Check(t, "out_no_lora", run().Data(), nil)

		// Several adapters at once, with weights, fused together and unfused.
		p, err := lora.Apply(m, load("lora_peft.safetensors"), lora.UNet, 0.3)
		if err != nil {
			t.Fatal(err)
		}
		k, err := lora.Apply(m, load("lora_kohya_alpha8.safetensors"), lora.UNet, 0.2)
		if err != nil {
			t.Fatal(err)
		}
		// 0.3 + 0.2 of the same adapter = 0.5 of it.
		dyn := run()
		c.Check(t, "out_scale0p5", dyn.Data(), nil)
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
		c.Check(t, "out_no_lora", run().Data(), nil)
	})

	t.Run("wrong_component", func(t *testing.T) {
		// The kohya file names only the UNet: asking for a text encoder must
		// fail, and so must applying UNet names to a model without them.
		if _, err := lora.Apply(m, load("lora_kohya.safetensors"), lora.TextEncoder, 1); err == nil {
			t.Error("kohya UNet LoRA applied to text_encoder without error")
		}
		ctrl, err := unet.NewEncoder(m.Cfg)
		if err != nil {
			t.Fatal(err)
		}
		a, err := lora.Apply(ctrl, load("lora_peft.safetensors"), lora.UNet, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Remove()
		if len(a.Unmatched) == 0 || a.Warning() == "" {
			t.Errorf("up-block keys applied to an encoder-only UNet gave no warning (%d modules)", len(a.Modules))
		}
		t.Logf("partial match: %d modules, %d keys unmatched", len(a.Modules), len(a.Unmatched))
	})
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
