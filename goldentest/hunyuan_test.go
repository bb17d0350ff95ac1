package goldentest

import (
	"math"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/hunyuan"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

func init() {
	golden.Register("diffusers.HunyuanDiT2DModel", runHunyuanDiT)
}

// checkHunyuanRotary rebuilds the case's rotary inputs the way
// HunyuanDiTPipeline does (case field "rotary") and compares them with the
// tables the reference passed: they must agree to float32 rounding of the
// angles.
func checkHunyuanRotary(t *testing.T, c *golden.Case, cfg hunyuan.Config) (gridH, gridW int) {
	t.Helper()
	var rot struct {
		Height, Width int
		Grid          [2]int
		BaseSize      int       `json:"base_size"`
		CropsCoords   [2][2]int `json:"crops_coords"`
		HeadDim       int       `json:"head_dim"`
	}
	if err := c.Field("rotary", &rot); err != nil {
		t.Fatal(err)
	}
	gh, gw := rot.Height/8/cfg.PatchSize, rot.Width/8/cfg.PatchSize
	if gh != rot.Grid[0] || gw != rot.Grid[1] || hunyuan.PipelineBaseSize(cfg.PatchSize) != rot.BaseSize || cfg.AttentionHeadDim != rot.HeadDim {
		t.Fatalf("rotary grid %dx%d base %d head dim %d, case has %v base %d head dim %d",
			gh, gw, hunyuan.PipelineBaseSize(cfg.PatchSize), cfg.AttentionHeadDim, rot.Grid, rot.BaseSize, rot.HeadDim)
	}
	crop := hunyuan.ResizeCropRegionForGrid(gh, gw, rot.BaseSize)
	want := hunyuan.Crop{Top: float64(rot.CropsCoords[0][0]), Left: float64(rot.CropsCoords[0][1]),
		Bottom: float64(rot.CropsCoords[1][0]), Right: float64(rot.CropsCoords[1][1])}
	if crop != want {
		t.Fatalf("crop region %+v, case has %+v", crop, want)
	}
	cos, sin, err := hunyuan.RotaryPosEmbed2D(rot.HeadDim, crop, gh, gw)
	if err != nil {
		t.Fatal(err)
	}
	// The largest angle is the largest crop coordinate (frequency 1); a
	// float32 angle is off by at most a few units in its last place.
	maxAngle := math.Max(1, math.Max(want.Bottom, want.Right))
	tol := 4 * maxAngle * 0x1p-24
	for _, tab := range []struct {
		name string
		got  *tensor.Tensor
	}{{"image_rotary_emb_cos", cos}, {"image_rotary_emb_sin", sin}} {
		exp, shape := c.MustF32(t, tab.name)
		if !tensor.SameShape(shape, tab.got.Shape()) {
			t.Fatalf("%s: shape %v, case has %v", tab.name, tab.got.Shape(), shape)
		}
		worst := 0.0
		for i, g := range tab.got.Data() {
			worst = math.Max(worst, math.Abs(float64(g)-float64(exp[i])))
		}
		if worst > tol {
			t.Errorf("%s: max |err| %.3g > %.3g", tab.name, worst, tol)
		} else {
			t.Logf("%s: max |err| %.3g", tab.name, worst)
		}
	}
	return gh, gw
}

func runHunyuanDiT(t *testing.T, c *golden.Case) {
	cfg, err := hunyuan.ParseConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	gh, gw := checkHunyuanRotary(t, c, cfg)
	m, err := hunyuan.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.Weights("")
	if err != nil {
		t.Fatal(err)
	}
	if err := nn.Load(m, "", nn.FileSource{F: w}, nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	ts, _ := c.MustF32(t, "timestep")
	mask, _ := c.MustI64(t, "text_embedding_mask")
	maskT5, _ := c.MustI64(t, "text_embedding_mask_t5")
	meta, _ := c.MustF32(t, "image_meta_size")
	style, _ := c.MustI64(t, "style")
	cond := hunyuan.Cond{
		EncoderHiddenStates: caseTensor(t, c, "encoder_hidden_states"), TextMask: mask,
		EncoderHiddenStatesT5: caseTensor(t, c, "encoder_hidden_states_t5"), TextMaskT5: maskT5,
		Timesteps: ts, ImageMetaSize: meta, Style: style,
		Rotary: &nn.Rotary{Cos: caseTensor(t, c, "image_rotary_emb_cos"), Sin: caseTensor(t, c, "image_rotary_emb_sin"), Interleaved: true}}
	out, err := m.Forward(caseTensor(t, c, "hidden_states"), cond)
	if err != nil {
		t.Fatal(err)
	}
	c.Check(t, "out_sample", out.Contiguous().Data(), out.Shape())
	// Without a table the model builds the pipeline's own, which is the
	// case's when its latent grid is the one the rotary field describes.
	x := caseTensor(t, c, "hidden_states")
	if x.Dim(2)/cfg.PatchSize != gh || x.Dim(3)/cfg.PatchSize != gw {
		t.Logf("latent grid differs from the rotary grid %dx%d: pipeline table not checked", gh, gw)
		return
	}
	cond.Rotary = nil
	if out, err = m.Forward(x, cond); err != nil {
		t.Fatal(err)
	}
	c.Check(t, "out_sample", out.Contiguous().Data(), out.Shape())
}
