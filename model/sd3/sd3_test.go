package sd3

import (
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

func TestParseConfigRefusesSD35(t *testing.T) {
	for _, c := range []struct{ json, want string }{
		{`{"qk_norm": "rms_norm"}`, "qk_norm"},
		{`{"dual_attention_layers": [0, 1]}`, "dual_attention_layers"},
		{`{"caption_projection_dim": 1000}`, "caption_projection_dim"},
		{`{"num_layers": 0}`, "num_layers"},
	} {
		_, err := ParseConfig([]byte(c.json))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseConfig(%s) error %v, want one naming %s", c.json, err, c.want)
		}
	}
	if _, err := ParseConfig([]byte(`{"dual_attention_layers": [], "qk_norm": null, "out_channels": null}`)); err != nil {
		t.Errorf("SD3 medium config with empty SD3.5 keys refused: %v", err)
	}
}

// tiny builds a randomly initialised small model.
func tiny(t *testing.T, maxSize int) *Model {
	t.Helper()
	c := Config{SampleSize: 8, PatchSize: 2, InChannels: 4, NumLayers: 2, AttentionHeadDim: 4, NumAttentionHeads: 2,
		JointAttentionDim: 6, CaptionProjectionDim: 8, PooledProjectionDim: 5, OutChannels: 4, PosEmbedMaxSize: maxSize}
	m, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	nn.Init(m, 1, tensor.F32)
	return m
}

func TestForwardShapesAndErrors(t *testing.T) {
	for _, maxSize := range []int{0, 6} {
		m := tiny(t, maxSize)
		if maxSize > 0 {
			m.PosTable = nn.SinCosPosEmbed2D(8, maxSize, maxSize, 4, 1).Unsqueeze(0)
		}
		x := tensor.Full(0.1, 2, 4, 6, 10)
		ctx := tensor.Full(0.2, 2, 3, 6)
		pooled := tensor.Full(0.3, 2, 5)
		out, err := m.Forward(x, ctx, pooled, []float32{500, 10})
		if err != nil {
			t.Fatal(err)
		}
		if !tensor.SameShape(out.Shape(), x.Shape()) {
			t.Errorf("output %v, want %v", out.Shape(), x.Shape())
		}
		if _, err := m.Forward(tensor.Full(0, 2, 4, 5, 10), ctx, pooled, []float32{1, 2}); err == nil {
			t.Error("odd latent height accepted")
		}
		if _, err := m.Forward(x, ctx, pooled, []float32{1}); err == nil {
			t.Error("one timestep for two samples accepted")
		}
	}
	// A 16-bit position table (weights kept in their stored dtype) crops
	// to the same float32 values.
	m := tiny(t, 6)
	tab := nn.SinCosPosEmbed2D(8, 6, 6, 4, 1).Unsqueeze(0)
	m.PosTable = tab.ToDType(tensor.BF16)
	got, err := m.CroppedPosEmbed(4, 8)
	if err != nil {
		t.Fatal(err)
	}
	m.PosTable = tab.ToDType(tensor.BF16).Float32()
	want, _ := m.CroppedPosEmbed(4, 8)
	if got.DType() != tensor.F32 || tensor.MaxAbsDiff(got, want) != 0 {
		t.Errorf("bf16 table crop: dtype %v, differs by %g", got.DType(), tensor.MaxAbsDiff(got, want))
	}
	m = tiny(t, 4)
	m.PosTable = tensor.Zeros(1, 16, 8)
	if _, err := m.CroppedPosEmbed(10, 10); err == nil {
		t.Error("a 5x5 grid cropped from a 4x4 table")
	}
}
