package train

import (
	"math"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/model/lora"
	"github.com/diffuse-go/diffuse/rng"
)

// TestTextEncoderLoRAOrder: the text encoder's adapters sit on the four
// attention projections of every layer, in transformers' registration
// order (k, v, q, out), after the UNet's in the optimizer, under names
// that start with the component.
func TestTextEncoderLoRAOrder(t *testing.T) {
	tr := loraTETrainer(t, 5, 1, 1e-3)
	te := tr.TextLoRAs[0]
	layers := tr.Models.TextEncoder.Cfg.NumHiddenLayers
	if te.Component != lora.TextEncoder || len(te.Modules) != 4*layers {
		t.Fatalf("text encoder network %s has %d modules, want %d", te.Component, len(te.Modules), 4*layers)
	}
	for i, want := range []string{"k_proj", "v_proj", "q_proj", "out_proj"} {
		if m := te.Modules[i]; m != "text_model.encoder.layers.0.self_attn."+want {
			t.Errorf("module %d is %s, want layer 0's %s", i, m, want)
		}
	}
	n := 2 * len(tr.LoRA.Modules)
	if len(tr.Params) != n+2*len(te.Modules) || tr.Params[n].Name != "text_encoder.text_model.encoder.layers.0.self_attn.k_proj.lora_A.default.weight" {
		t.Errorf("%d parameters, the first text encoder one %q", len(tr.Params), tr.Params[n].Name)
	}
}

// TestTextEncoderLoRALearns: with the text encoder's adapters trained
// too, the loss goes down, the text encoder's lora_B leave zero, and the
// base weights of both models stay frozen.
func TestTextEncoderLoRALearns(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	tr := loraTETrainer(t, 5, 30, 3e-2)
	lossGoesDown(t, tr, tinyBatch(1, 2, 64, false), 30, 0.1)
	te := tr.TextLoRAs[0]
	for _, mod := range te.Modules {
		if allZero(te.Up[mod].Data()) {
			t.Fatalf("%s: lora_B is still zero", mod)
		}
	}
	frozen(t, "UNet", paramMap(tr.Models.UNet))
	frozen(t, "text encoder", paramMap(tr.Models.TextEncoder))
}

func allZero(v []float32) bool {
	for _, x := range v {
		if x != 0 {
			return false
		}
	}
	return true
}

// TestTextEncoderLoRAGradient compares the backward pass's gradient of the
// text encoders' adapters with central finite differences of the loss
// (they agree to about 1e-4 here; 1% is allowed for float32 rounding): SD's
// encoder through its last hidden state, and SDXL's two through their
// penultimate hidden states and (the second) the pooled projection.
func TestTextEncoderLoRAGradient(t *testing.T) {
	sd := loraTETrainer(t, 5, 1, 1e-3)
	gradCheck(t, sd, tinyBatch(1, 2, 64, false), "text_encoder.")
	xl := xlTrainer(t, 5, 1, 1e-3, true)
	b := xlBatch(1, 2, 64)
	gradCheck(t, xl, b, "text_encoder.")
	gradCheck(t, xl, b, "text_encoder_2.")
}

// gradCheck gives the text encoders' lora_B random values, takes one
// backward pass and checks the largest gradient element of the lora_A and
// lora_B matrices under prefix against finite differences.
func gradCheck(t *testing.T, tr *Trainer, b Batch, prefix string) {
	t.Helper()
	g := rng.New(13)
	for _, n := range tr.TextLoRAs {
		for _, mod := range n.Modules {
			for i, v := range g.Randn(n.Up[mod].Shape()) {
				n.Up[mod].Data()[i] = 0.05 * v
			}
		}
	}
	tr.Optimizer.ZeroGrad()
	draws := func() Draws { return &GeneratorDraws{G: rng.New(21)} }
	tr.Draws = draws()
	if _, err := tr.Backward(b); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"lora_A", "lora_B"} {
		p, i, grad := largestGrad(tr, prefix, kind)
		if i < 0 || grad == 0 {
			t.Fatalf("no %s%s parameter has a gradient", prefix, kind)
		}
		const h = 1e-2
		w := p.T.Data()
		orig := w[i]
		loss := func(v float32) float64 {
			w[i] = v
			l, err := tr.Loss(b, draws())
			if err != nil {
				t.Fatal(err)
			}
			return float64(l)
		}
		fd := (loss(orig+h) - loss(orig-h)) / (2 * h)
		w[i] = orig
		t.Logf("%s[%d]: backward %.6g, finite difference %.6g", p.Name, i, grad, fd)
		if math.Abs(fd-float64(grad)) > 0.01*math.Abs(float64(grad)) {
			t.Errorf("%s[%d]: gradient %g, finite difference %g", p.Name, i, grad, fd)
		}
	}
}

// largestGrad finds the element of the parameters under prefix (their
// lora_A or lora_B matrices) with the largest gradient.
func largestGrad(tr *Trainer, prefix, kind string) (Param, int, float32) {
	var best Param
	bi, bg := -1, float32(0)
	for _, p := range tr.Params {
		if !strings.HasPrefix(p.Name, prefix) || !strings.Contains(p.Name, kind) || p.T.Grad() == nil {
			continue
		}
		for i, v := range p.T.Grad().Data() {
			if bi < 0 || abs32(v) > abs32(bg) {
				best, bi, bg = p, i, v
			}
		}
	}
	return best, bi, bg
}

func abs32(v float32) float32 { return float32(math.Abs(float64(v))) }
