package pipeline

import (
	"context"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/sd3"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
)

// tinySD3 builds a randomly initialised SD3 pipeline without T5.
func tinySD3(t *testing.T) *SD3 {
	t.Helper()
	enc := func(hidden int, seed uint64) *clip.Model {
		m, err := clip.New(clip.Config{VocabSize: 50, HiddenSize: hidden, IntermediateSize: 16, ProjectionDim: 6,
			NumHiddenLayers: 2, NumAttentionHeads: 2, MaxPositionEmbeddings: 8, HiddenAct: "gelu", LayerNormEps: 1e-5,
			EOSTokenID: 2, WithProjection: true})
		if err != nil {
			t.Fatal(err)
		}
		nn.Init(m, seed, tensor.F32)
		return m
	}
	tr, err := sd3.New(sd3.Config{SampleSize: 4, PatchSize: 2, InChannels: 4, NumLayers: 2, AttentionHeadDim: 4,
		NumAttentionHeads: 2, JointAttentionDim: 20, CaptionProjectionDim: 8, PooledProjectionDim: 12, OutChannels: 4})
	if err != nil {
		t.Fatal(err)
	}
	nn.Init(tr, 3, tensor.F32)
	vc := vae.Defaults()
	vc.BlockOutChannels, vc.DownBlockTypes, vc.UpBlockTypes = []int{8, 8}, []string{"DownEncoderBlock2D", "DownEncoderBlock2D"}, []string{"UpDecoderBlock2D", "UpDecoderBlock2D"}
	vc.NormNumGroups, vc.UseQuantConv, vc.UsePostQuantConv = 4, false, false
	shift := float32(0.1)
	vc.ShiftFactor = &shift
	v, err := vae.New(vc)
	if err != nil {
		t.Fatal(err)
	}
	nn.Init(v, 4, tensor.F32)
	return &SD3{TextEncoder: enc(8, 1), TextEncoder2: enc(10, 2), Tokenizer: fixedTokenizer{}, Tokenizer2: fixedTokenizer{},
		Transformer: tr, VAE: v}
}

// Without T5 the text states are the CLIP states padded to the transformer's
// joint width followed by 77 zero tokens, and a run yields images.
func TestSD3WithoutT5(t *testing.T) {
	p := tinySD3(t)
	s, err := scheduler.NewFlowMatch("euler", scheduler.Config{Shift: scheduler.Float(3)})
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Generate(context.Background(), SD3Request{Prompts: []string{"a", "bb"}, Steps: 2, Guidance: 4,
		Scheduler: s, Noise: scheduler.NoiseFunc(func(shape []int) []float32 { return tensor.Full(0.5, shape...).Data() })})
	if err != nil {
		t.Fatal(err)
	}
	e := res.PromptEmbeds
	if want := []int{4, 8 + 77, 20}; !tensor.SameShape(e.Shape(), want) {
		t.Fatalf("prompt embeds %v, want %v", e.Shape(), want)
	}
	for b := 0; b < 4; b++ {
		for l := 0; l < 8+77; l++ {
			for d := 0; d < 20; d++ {
				v := e.At(b, l, d)
				if (l >= 8 || d >= 18) && v != 0 {
					t.Fatalf("embeds[%d,%d,%d] = %v, want 0 (padding / T5-less zeros)", b, l, d, v)
				}
			}
		}
	}
	if want := []int{4, 12}; !tensor.SameShape(res.PooledEmbeds.Shape(), want) {
		t.Errorf("pooled %v, want %v", res.PooledEmbeds.Shape(), want)
	}
	if want := []int{2, 8, 8, 3}; !tensor.SameShape(res.Images.Shape(), want) {
		t.Errorf("images %v, want %v", res.Images.Shape(), want)
	}
}

func TestSD3RequestErrors(t *testing.T) {
	p := tinySD3(t)
	flow, _ := scheduler.NewFlowMatch("", scheduler.Config{})
	euler, _ := scheduler.New("euler", scheduler.Config{})
	lat := tensor.Zeros(1, 4, 4, 4)
	for _, c := range []struct {
		r    SD3Request
		want string
	}{
		{SD3Request{Prompts: []string{"a"}, Steps: 1, Latents: lat}, "no scheduler"},
		{SD3Request{Prompts: []string{"a"}, Steps: 1, Latents: lat, Scheduler: euler}, "flow-matching"},
		{SD3Request{Prompts: []string{"a"}, Steps: 1, Scheduler: flow, Width: 10}, "multiples"},
		{SD3Request{Prompts: []string{"a"}, Steps: 1, Scheduler: flow, Latents: tensor.Zeros(2, 4, 4, 4)}, "latents shape"},
		{SD3Request{Prompts: []string{"a", "b"}, NegativePrompts: []string{"x", "y", "z"}, Guidance: 2, Steps: 1, Scheduler: flow}, "negative prompts"},
	} {
		_, err := p.Generate(context.Background(), c.r)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want one containing %q", err, c.want)
		}
	}
}

// Image-to-image: the strength cuts the schedule (4 steps at 0.6 run 3), the
// image is tiled to the prompts, and at strength 1 the image is fully
// replaced by the noise, so the run equals text-to-image from that noise.
func TestSD3ImageToImage(t *testing.T) {
	p := tinySD3(t)
	noise := tensor.Full(0.3, 2, 4, 4, 4)
	img := tensor.Full(0.5, 1, 8, 8, 3)
	run := func(r SD3Request) (*SD3Result, int) {
		t.Helper()
		s, _ := scheduler.NewFlowMatch("euler", scheduler.Config{Shift: scheduler.Float(3)})
		r.Prompts, r.Steps, r.Guidance, r.Scheduler, r.Latents = []string{"a", "bb"}, 4, 3, s, noise
		steps := 0
		r.OnStep = func(int, float64, *tensor.Tensor) { steps++ }
		res, err := p.Generate(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		return res, steps
	}
	if _, steps := run(SD3Request{InitImage: img, Strength: 0.6}); steps != 3 {
		t.Errorf("strength 0.6 ran %d of 4 steps, want 3", steps)
	}
	full, steps := run(SD3Request{InitImage: img, Strength: 1})
	txt, _ := run(SD3Request{})
	if steps != 4 || tensor.MaxAbsDiff(full.Latents, txt.Latents) != 0 {
		t.Errorf("strength 1: %d steps, latents differ from text-to-image by %g", steps, tensor.MaxAbsDiff(full.Latents, txt.Latents))
	}
	if _, err := p.Generate(context.Background(), SD3Request{Prompts: []string{"a"}, Steps: 2, Latents: tensor.Zeros(1, 4, 4, 4),
		Scheduler: newFlowEuler(t), InitImage: img, Width: 16}); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Errorf("size mismatch with the init image: error %v", err)
	}
}

// newFlowEuler builds a default FlowMatchEuler.
func newFlowEuler(t *testing.T) scheduler.Scheduler {
	t.Helper()
	s, err := scheduler.NewFlowMatch("", scheduler.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
