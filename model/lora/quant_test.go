package lora

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// qtoy has one layer with a quantised weight and one with a float32 one.
type qtoy struct{ Q, F *nn.Linear }

func (m *qtoy) Params(prefix string, p *nn.Params) {
	m.Q.Params(prefix+"q.", p)
	m.F.Params(prefix+"f.", p)
}

func newQToy(t *testing.T, quantize bool) *qtoy {
	t.Helper()
	m := &qtoy{Q: nn.NewLinear(64, 8, true), F: nn.NewLinear(8, 3, false)}
	nn.Init(m, 11, tensor.F32)
	w, err := tensor.Quantize(m.Q.Weight, tensor.Q8_0)
	if err != nil {
		t.Fatal(err)
	}
	m.Q.Weight = w.Float32()
	if quantize {
		m.Q.Weight = w
	}
	return m
}

// TestQuantizedBase checks adapters on a quantised weight: they run
// unfused, giving the bits the same adapter gives on the dequantised
// weight; Applied.Fuse refuses with ErrFuseQuantized and changes nothing;
// the package-level Fuse fuses the other layers only and
// FuseQuantizedCheck names the quantised one.
func TestQuantizedBase(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var ts []safetensors.Tensor
	ts = pair(r, ts, "unet.q.lora_A.weight", "unet.q.lora_B.weight", []int{2, 64}, []int{8, 2})
	ts = pair(r, ts, "unet.f.lora_A.weight", "unet.f.lora_B.weight", []int{2, 8}, []int{3, 2})
	f, err := Read(encode(t, ts), "quant")
	if err != nil {
		t.Fatal(err)
	}
	q, ref := newQToy(t, true), newQToy(t, false)
	aq, err := Apply(q, f, UNet, 0.8)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(ref, f, UNet, 0.8); err != nil {
		t.Fatal(err)
	}
	x := tensor.FromSlice(randSlice(r, 3*64), 3, 64)
	run := func(m *qtoy) []float32 { return m.F.Forward(m.Q.Forward(x)).Data() }
	same := func(what string, got, want []float32) {
		t.Helper()
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%s: element %d is %v, want %v", what, i, got[i], want[i])
			}
		}
	}
	want := run(ref)
	same("unfused on the quantised weight", run(q), want)
	base := q.Q.Weight
	err = aq.Fuse()
	if !errors.Is(err, ErrFuseQuantized) || !errors.Is(err, tensor.ErrQuantized) || !strings.HasSuffix(err.Error(), "\n  q") {
		t.Fatalf("Fuse on a quantised base: %v", err)
	}
	if q.Q.Weight != base || q.Q.LoRABase != nil || q.F.LoRABase != nil || q.Q.LoRA[0].Fused || q.F.LoRA[0].Fused {
		t.Fatal("a refused Fuse changed the layers")
	}
	same("after the refused Fuse", run(q), want)
	if n := Fuse(q); n != 1 {
		t.Errorf("Fuse changed %d layers, want 1 (the float32 one)", n)
	}
	if q.Q.Weight != base || q.Q.LoRA[0].Fused || !q.F.LoRA[0].Fused {
		t.Error("Fuse touched the quantised layer or skipped the float32 one")
	}
	if err := FuseQuantizedCheck(q); !errors.Is(err, ErrFuseQuantized) || !strings.HasSuffix(err.Error(), "\n  q") {
		t.Errorf("FuseQuantizedCheck = %v", err)
	}
	if err := FuseQuantizedCheck(ref); err != nil {
		t.Errorf("FuseQuantizedCheck on float32 weights = %v", err)
	}
	Fuse(ref)
	if d := tensor.MaxAbsDiff(tensor.FromSlice(run(q), 3, 3), tensor.FromSlice(run(ref), 3, 3)); d > 1e-5 {
		t.Errorf("partly fused output differs by %g", d)
	}
}
