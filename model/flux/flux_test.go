package flux

import (
	"math"
	"testing"

	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

func TestParseConfigRejectsRopeMismatch(t *testing.T) {
	if _, err := ParseConfig([]byte(`{"attention_head_dim": 16, "axes_dims_rope": [4, 6, 8]}`)); err == nil {
		t.Fatal("axes summing to 18 accepted for head dim 16")
	}
	if _, err := ParseConfig([]byte(`{"attention_head_dim": 16, "axes_dims_rope": [5, 5, 6]}`)); err == nil {
		t.Fatal("odd axis width accepted")
	}
	c, err := ParseConfig([]byte(`{"attention_head_dim": 16, "axes_dims_rope": [4, 6, 6], "in_channels": 8}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.OutChannels != 8 {
		t.Fatalf("out_channels %d, want in_channels 8", c.OutChannels)
	}
}

// TestRotaryTableAngles checks the table against the angle formula: axis 1
// of width 4 at position 3 rotates pair k by 3/10000^(2k/4).
func TestRotaryTableAngles(t *testing.T) {
	ids := tensor.FromSlice([]float32{0, 3, 0}, 1, 3)
	tab, err := RotaryTable(ids, []int{2, 4, 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := tab.Shape(); !tensor.SameShape(got, []int{1, 1, 1, 4, 2, 2}) {
		t.Fatalf("shape %v", got)
	}
	d := tab.Data()
	angles := []float64{0, 3, 3 / 100.0, 0} // pair 0: axis 0; pairs 1-2: axis 1; pair 3: axis 2
	for k, a := range angles {
		m := d[4*k : 4*k+4]
		want := []float64{math.Cos(a), -math.Sin(a), math.Sin(a), math.Cos(a)}
		for i := range m {
			if math.Abs(float64(m[i])-want[i]) > 1e-7 {
				t.Fatalf("pair %d: %v, want %v", k, m, want)
			}
		}
	}
	rot := rotaryFromTable(tab)
	if c, s := rot.Cos.Data(), rot.Sin.Data(); c[2] != c[3] || s[2] != s[3] || s[2] != d[6] {
		t.Fatalf("interleaved tables cos %v sin %v", c, s)
	}
}

// TestForwardInputErrors checks that bad inputs are reported as errors:
// a guidance-embedding model without guidance, and mismatched ids.
func TestForwardInputErrors(t *testing.T) {
	c, err := ParseConfig([]byte(`{"in_channels": 8, "num_layers": 1, "num_single_layers": 1, "attention_head_dim": 8,
		"num_attention_heads": 2, "joint_attention_dim": 12, "pooled_projection_dim": 6, "guidance_embeds": true,
		"axes_dims_rope": [2, 2, 4]}`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	nn.Init(m, 1, tensor.F32)
	x := tensor.Zeros(1, 4, 8)
	cond := Cond{EncoderHiddenStates: tensor.Zeros(1, 3, 12), PooledProjections: tensor.Zeros(1, 6),
		Timesteps: []float32{0.5}, TxtIDs: tensor.Zeros(1, 3, 3), ImgIDs: tensor.Zeros(1, 4, 3)}
	if _, err := m.Forward(x, cond); err == nil {
		t.Fatal("missing guidance accepted")
	}
	cond.Guidance = []float32{3.5}
	out, err := m.Forward(x, cond)
	if err != nil {
		t.Fatal(err)
	}
	if !tensor.SameShape(out.Shape(), []int{1, 4, 8}) {
		t.Fatalf("output shape %v", out.Shape())
	}
	cond.ImgIDs = tensor.Zeros(1, 5, 3)
	if _, err := m.Forward(x, cond); err == nil {
		t.Fatal("image ids for 5 tokens accepted for 4")
	}
}
