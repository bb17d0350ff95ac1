package sd3

import (
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

func TestParseConfigErrors(t *testing.T) {
	for _, c := range []struct{ json, want string }{
		{`{"qk_norm": "layer_norm"}`, "qk_norm"},
		{`{"qk_norm": ""}`, "qk_norm"},
		{`{"qk_norm": 1}`, "qk_norm"},
		{`{"dual_attention_layers": [0, 18]}`, "dual_attention_layers"},
		{`{"dual_attention_layers": [-1]}`, "dual_attention_layers"},
		{`{"dual_attention_layers": "0-12"}`, "dual_attention_layers"},
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

// SD3.5 Medium's and Large's transformer configs (diffusers' config.json
// of stabilityai/stable-diffusion-3.5-medium and -large) parse, and the
// models built from them have the SD3.5 modules where diffusers has them.
func TestParseConfigSD35(t *testing.T) {
	medium := `{"_class_name": "SD3Transformer2DModel", "_diffusers_version": "0.31.0.dev0", "attention_head_dim": 64,
		"caption_projection_dim": 1536, "dual_attention_layers": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], "in_channels": 16,
		"joint_attention_dim": 4096, "num_attention_heads": 24, "num_layers": 24, "out_channels": 16, "patch_size": 2,
		"pooled_projection_dim": 2048, "pos_embed_max_size": 384, "qk_norm": "rms_norm", "sample_size": 128}`
	large := `{"attention_head_dim": 64, "caption_projection_dim": 2432, "in_channels": 16, "joint_attention_dim": 4096,
		"num_attention_heads": 38, "num_layers": 38, "out_channels": 16, "patch_size": 2, "pooled_projection_dim": 2048,
		"pos_embed_max_size": 192, "qk_norm": "rms_norm", "sample_size": 128}`
	for _, c := range []struct {
		name, json string
		dual       int
	}{{"medium", medium, 13}, {"large", large, 0}} {
		cfg, err := ParseConfig([]byte(c.json))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		m, err := New(cfg)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		dual := 0
		for i, b := range m.Blocks {
			if b.Attn.NormQ == nil || b.Attn.NormAddedK == nil {
				t.Errorf("%s: block %d has no qk norms", c.name, i)
			}
			if b.Attn2 != nil {
				dual++
				if b.Norm1X == nil || b.Norm1 != nil || b.Attn2.NormK == nil || i > 12 {
					t.Errorf("%s: dual block %d: norm1 %v, norm1 X %v", c.name, i, b.Norm1, b.Norm1X)
				}
			}
		}
		if dual != c.dual {
			t.Errorf("%s: %d dual-attention blocks, want %d", c.name, dual, c.dual)
		}
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
