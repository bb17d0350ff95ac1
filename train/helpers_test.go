package train

import (
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/controlnet"
	"github.com/diffuse-go/diffuse/model/lora"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
)

// loadGolden loads the weights of a golden case into m.
func loadGolden(t testing.TB, name string, m nn.Module) {
	t.Helper()
	c, err := golden.Find(name)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w, err := c.Weights("")
	if err != nil {
		t.Fatal(err)
	}
	if err := nn.Load(m, "", nn.FileSource{F: w}, nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
}

// goldenConfig is a golden case's model config.
func goldenConfig(t testing.TB, name string) []byte {
	t.Helper()
	c, err := golden.Find(name)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.Config
}

// tinyModels loads the tiny SD1.5-style UNet, VAE and CLIP text encoder of
// the golden cases (unet_sd15, vae, clip_text) and an SD1.5 DDPM scheduler.
func tinyModels(t testing.TB) Models {
	t.Helper()
	return tinyWith(t, "unet_sd15")
}

// tinyXLModels are the golden cases' tiny SDXL: unet_sdxl, vae, clip_text
// and clip_text_proj (with its projection) as the second text encoder.
func tinyXLModels(t testing.TB) Models {
	t.Helper()
	m := tinyWith(t, "unet_sdxl")
	cc, err := clip.ParseConfig(goldenConfig(t, "clip_text_proj"))
	if err != nil {
		t.Fatal(err)
	}
	cc.WithProjection = true
	if m.TextEncoder2, err = clip.New(cc); err != nil {
		t.Fatal(err)
	}
	loadGolden(t, "clip_text_proj", m.TextEncoder2)
	return m
}

// tinyWith builds the tiny models around the UNet of golden case unetCase.
func tinyWith(t testing.TB, unetCase string) Models {
	t.Helper()
	uc, err := unet.ParseConfig(goldenConfig(t, unetCase))
	if err != nil {
		t.Fatal(err)
	}
	vc, err := vae.ParseConfig(goldenConfig(t, "vae"))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := clip.ParseConfig(goldenConfig(t, "clip_text"))
	if err != nil {
		t.Fatal(err)
	}
	var m Models
	if m.UNet, err = unet.New(uc); err != nil {
		t.Fatal(err)
	}
	if m.VAE, err = vae.New(vc); err != nil {
		t.Fatal(err)
	}
	if m.TextEncoder, err = clip.New(cc); err != nil {
		t.Fatal(err)
	}
	loadGolden(t, unetCase, m.UNet)
	loadGolden(t, "vae", m.VAE)
	loadGolden(t, "clip_text", m.TextEncoder)
	sc, err := scheduler.ParseConfig([]byte(`{"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
		"beta_schedule": "scaled_linear", "prediction_type": "epsilon", "steps_offset": 1}`))
	if err != nil {
		t.Fatal(err)
	}
	if m.Noise, err = scheduler.NewDDPM(sc); err != nil {
		t.Fatal(err)
	}
	m.PredictionType = "epsilon"
	return m
}

// tinyBatch is a deterministic batch of n images of size px with captions
// of random token ids (and condition images in [0, 1] when cond is set).
func tinyBatch(seed uint64, n, px int, cond bool) Batch {
	g := rng.New(seed)
	pix := g.Rand(n * 3 * px * px)
	for i := range pix {
		pix[i] = 2*pix[i] - 1
	}
	const L = 77
	ids, _ := g.RandInt(3, 1000, n*L)
	b := Batch{Pixels: tensor.FromSlice(pix, n, 3, px, px), InputIDs: ids, IDLength: L}
	if cond {
		b.Conditioning = tensor.FromSlice(g.Rand(n*3*px*px), n, 3, px, px)
	}
	return b
}

// loraTrainer is a DreamBooth-LoRA trainer (prior preservation) on the tiny
// models with the draws of drawSeed.
func loraTrainer(t testing.TB, drawSeed uint64, steps int, lr float64) *Trainer {
	t.Helper()
	m := tinyModels(t)
	net, err := AddLoRA(m.UNet, lora.UNet, LoRAConfig{Rank: 4, Alpha: 4, TargetModules: DreamBoothTargets, InitWeights: "gaussian"}, rng.New(7))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTrainer(m, Options{PriorPreservation: true, PriorLossWeight: 1, MaxGradNorm: 1}, net.Params(),
		AdamWConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 1e-2},
		&LRScheduler{Base: lr, Schedule: Schedule{Name: "constant_with_warmup", Warmup: 1, Total: steps}},
		&GeneratorDraws{G: rng.New(drawSeed)})
	if err != nil {
		t.Fatal(err)
	}
	tr.LoRA = net
	return tr
}

// loraTETrainer is loraTrainer with --train_text_encoder: the UNet's
// adapters, then the text encoder's, drawn from one generator and
// optimised together.
func loraTETrainer(t testing.TB, drawSeed uint64, steps int, lr float64) *Trainer {
	t.Helper()
	m := tinyModels(t)
	nets, err := addLoRAs(Config{Rank: 4, TrainTextEncoder: true}, m, rng.New(7))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTrainer(m, Options{PriorPreservation: true, PriorLossWeight: 1, MaxGradNorm: 1}, nets.Params(),
		AdamWConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 1e-2},
		&LRScheduler{Base: lr, Schedule: Schedule{Name: "constant_with_warmup", Warmup: 1, Total: steps}},
		&GeneratorDraws{G: rng.New(drawSeed)})
	if err != nil {
		t.Fatal(err)
	}
	tr.LoRA, tr.TextLoRAs = nets[0], nets[1:]
	return tr
}

// xlBatch is tinyBatch for SDXL: the same ids for both tokenizers and
// time ids of a 96×80 image cropped at (8, 4).
func xlBatch(seed uint64, n, px int) Batch {
	b := tinyBatch(seed, n, px, false)
	b.InputIDs2 = b.InputIDs
	var ids []float32
	for i := 0; i < n; i++ {
		ids = append(ids, Crop{OriginalHeight: 96, OriginalWidth: 80, Top: 8, Left: 4}.TimeIDs(px)...)
	}
	b.TimeIDs = tensor.FromSlice(ids, n, 6)
	return b
}

// xlTrainer is an SDXL DreamBooth-LoRA trainer (prior preservation) on the
// tiny SDXL; textEncoders adds both encoders' adapters in their param
// groups (SDXL's text_encoder_lr 5e-6 would barely move them in a test, so
// they train at lr too, with weight decay 1e-3).
func xlTrainer(t testing.TB, drawSeed uint64, steps int, lr float64, textEncoders bool) *Trainer {
	t.Helper()
	m := tinyXLModels(t)
	wd := 1e-3
	cfg := Config{Rank: 4, TrainTextEncoder: textEncoders, AdamWeightDecay: 1e-2, AdamWeightDecayTextEncoder: &wd}
	nets, err := addLoRAs(cfg, m, rng.New(7))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTrainer(m, Options{PriorPreservation: true, PriorLossWeight: 1, MaxGradNorm: 1}, nets.Params(),
		AdamWConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 1e-2},
		&LRScheduler{Base: lr, Schedule: Schedule{Name: "constant_with_warmup", Warmup: 1, Total: steps}},
		&GeneratorDraws{G: rng.New(drawSeed)})
	if err != nil {
		t.Fatal(err)
	}
	tr.LoRA, tr.TextLoRAs = nets[0], nets[1:]
	if err := tr.SetGroups(paramGroups(cfg, nets, lr)); err != nil {
		t.Fatal(err)
	}
	return tr
}

// controlNetTrainer is a ControlNet trainer on the tiny models.
func controlNetTrainer(t testing.TB, drawSeed uint64, steps int, lr float64) *Trainer {
	t.Helper()
	m := tinyModels(t)
	var err error
	if m.ControlNet, err = ControlNetFromUNet(m.UNet, controlnet.FromUNet(m.UNet.Cfg), rng.New(11)); err != nil {
		t.Fatal(err)
	}
	tr, err := NewTrainer(m, Options{MaxGradNorm: 1}, ModuleParams(m.ControlNet),
		AdamWConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 1e-2},
		&LRScheduler{Base: lr, Schedule: Schedule{Name: "constant", Total: steps}},
		&GeneratorDraws{G: rng.New(drawSeed)})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}
