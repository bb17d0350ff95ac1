package train

import (
	"context"
	"image"
	"image/color"
	"os"
	"path/filepath"
	"testing"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/model/lora"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/safetensors"
	tokclip "github.com/diffuse-go/diffuse/tokenizer/clip"
)

// writeImages writes n random w×h PNGs named img<i>.png into dir.
func writeImages(t *testing.T, dir string, n, w, h int, seed uint64) []string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	g := rng.New(seed)
	var out []string
	for i := 0; i < n; i++ {
		img := image.NewNRGBA(image.Rect(0, 0, w, h))
		v := g.Rand(w * h * 3)
		for p := 0; p < w*h; p++ {
			img.Set(p%w, p/w, color.NRGBA{uint8(255 * v[3*p]), uint8(255 * v[3*p+1]), uint8(255 * v[3*p+2]), 255})
		}
		path := filepath.Join(dir, "img"+string(rune('0'+i))+".png")
		if err := imageio.WritePNG(path, img, nil); err != nil {
			t.Fatal(err)
		}
		out = append(out, path)
	}
	return out
}

func runModels(t *testing.T) Models {
	t.Helper()
	m := tinyModels(t)
	tok, err := tokclip.New(tokclip.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m.Tokenizer = tok
	return m
}

// runXLModels are the tiny SDXL with SDXL's two tokenizers.
func runXLModels(t *testing.T) Models {
	t.Helper()
	m := tinyXLModels(t)
	var err error
	if m.Tokenizer, err = tokclip.New(tokclip.Options{}); err != nil {
		t.Fatal(err)
	}
	if m.Tokenizer2, err = tokclip.New(tokclip.Options{Pad: tokclip.PadExclamation}); err != nil {
		t.Fatal(err)
	}
	return m
}

func dreamBoothConfig(out string, steps int) Config {
	c := Defaults("dreambooth_lora")
	c.OutputDir, c.Resolution, c.TrainBatchSize, c.MaxTrainSteps = out, 64, 1, steps
	c.InstancePrompt, c.ClassPrompt, c.WithPriorPreservation = "a photo of sks dog", "a photo of dog", true
	c.LearningRate, c.LRWarmupSteps, c.CheckpointingSteps, c.CheckpointsTotalLimit = 1e-3, 0, 2, 1
	c.KohyaOutput, c.Seed = true, 42
	return c
}

// TestRunDreamBoothResume: a DreamBooth-LoRA run from image folders (one
// image captioned by a .txt file, a non-square one randomly cropped)
// writes loadable outputs; stopping after half the steps and resuming from
// the latest checkpoint gives the straight run's LoRA bit for bit.
func TestRunDreamBoothResume(t *testing.T) {
	root := t.TempDir()
	inst, class := filepath.Join(root, "instance"), filepath.Join(root, "class")
	writeImages(t, inst, 2, 80, 64, 1)
	writeImages(t, class, 3, 64, 64, 2)
	if err := os.WriteFile(filepath.Join(inst, "img1.txt"), []byte("a sks dog on grass\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	idata, err := ImageFolder(inst, "")
	if err != nil {
		t.Fatal(err)
	}
	if idata.Examples[1].Caption != "a sks dog on grass" || idata.Examples[0].Caption != "" {
		t.Fatalf("captions %q, %q", idata.Examples[0].Caption, idata.Examples[1].Caption)
	}
	cdata, err := ImageFolder(class, "")
	if err != nil {
		t.Fatal(err)
	}
	data := Data{Train: idata, Class: cdata}
	for _, c := range []struct {
		name       string
		models     func(*testing.T) Models
		te         bool
		components int
	}{{"unet", runModels, false, 1}, {"text_encoder", runModels, true, 2}, {"sdxl", runXLModels, true, 3}} {
		t.Run(c.name, func(t *testing.T) {
			runResume(t, filepath.Join(root, c.name), data, c.models, c.components, func(cfg *Config) { cfg.TrainTextEncoder = c.te })
		})
	}
}

// runResume runs 4 steps straight, then 2 and 2 more resumed from the
// checkpoint, and compares the two runs' LoRA files, which must hold
// adapters for the given number of components.
func runResume(t *testing.T, root string, data Data, models func(*testing.T) Models, components int, mod func(*Config)) {
	const n = 4
	config := func(out string, steps int) Config {
		c := dreamBoothConfig(out, steps)
		mod(&c)
		return c
	}
	straight := filepath.Join(root, "straight")
	res, err := Run(context.Background(), config(straight, n), models(t), data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.GlobalStep != n || len(res.Outputs) != 2 {
		t.Fatalf("run ended at step %d with outputs %v", res.GlobalStep, res.Outputs)
	}
	for _, p := range res.Outputs {
		f, err := lora.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		if cs := f.Components(); len(cs) != components {
			t.Errorf("%s has adapters for %v", p, cs)
		}
	}
	cps, _ := Checkpoints(straight)
	if len(cps) != 1 || filepath.Base(cps[0]) != "checkpoint-4" {
		t.Fatalf("checkpoints %v, want [checkpoint-4] (limit 1)", cps)
	}

	split := filepath.Join(root, "split")
	if _, err := Run(context.Background(), config(split, n/2), models(t), data, nil); err != nil {
		t.Fatal(err)
	}
	cfg := config(split, n)
	cfg.ResumeFromCheckpoint = "latest"
	if _, err := Run(context.Background(), cfg, models(t), data, nil); err != nil {
		t.Fatal(err)
	}
	a, b := readAll(t, filepath.Join(straight, "pytorch_lora_weights.safetensors")), readAll(t, filepath.Join(split, "pytorch_lora_weights.safetensors"))
	if len(a) != len(b) || len(a) == 0 {
		t.Fatalf("%d and %d tensors", len(a), len(b))
	}
	for k, v := range a {
		if !sameBits(v, b[k]) {
			t.Fatalf("%s differs between the straight and the resumed run", k)
		}
	}
}

func readAll(t *testing.T, path string) map[string][]float32 {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]float32{}
	for _, n := range f.Names() {
		v, _, err := f.Float32(n)
		if err != nil {
			t.Fatal(err)
		}
		out[n] = v
	}
	return out
}

// TestRunControlNetManifest: a ControlNet run from a JSONL manifest writes
// a ControlNet folder.
func TestRunControlNetManifest(t *testing.T) {
	root := t.TempDir()
	writeImages(t, filepath.Join(root, "images"), 2, 64, 64, 3)
	writeImages(t, filepath.Join(root, "cond"), 2, 64, 64, 4)
	manifest := `{"image": "images/img0.png", "conditioning_image": "cond/img0.png", "text": "a red car"}
{"image": "images/img1.png", "conditioning_image": "cond/img1.png", "text": "a house"}
`
	mp := filepath.Join(root, "train.jsonl")
	if err := os.WriteFile(mp, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := Manifest(mp)
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 2 || d.Examples[1].Caption != "a house" || d.Examples[1].Conditioning != filepath.Join(root, "cond", "img1.png") {
		t.Fatalf("manifest read as %+v", d.Examples)
	}
	c := Defaults("controlnet")
	c.OutputDir, c.Resolution, c.TrainBatchSize, c.MaxTrainSteps, c.CheckpointingSteps = filepath.Join(root, "out"), 64, 2, 2, 1
	res, err := Run(context.Background(), c, runModels(t), Data{Train: d}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"config.json", "diffusion_pytorch_model.safetensors", "checkpoint-2/controlnet/config.json", "checkpoint-2/" + StateJSONFile} {
		if _, err := os.Stat(filepath.Join(c.OutputDir, f)); err != nil {
			t.Error(err)
		}
	}
	if res.GlobalStep != 2 {
		t.Errorf("stopped at step %d", res.GlobalStep)
	}
}

// TestRunAccumulationEpochEnd: with gradient_accumulation_steps 2 over 3
// batches an epoch, the optimizer steps after batches 2 and 3 (the end of
// the data loader syncs, as in accelerate), so 4 steps take 6 batches.
func TestRunAccumulationEpochEnd(t *testing.T) {
	root := t.TempDir()
	writeImages(t, filepath.Join(root, "i"), 3, 64, 64, 5)
	d, err := ImageFolder(filepath.Join(root, "i"), "")
	if err != nil {
		t.Fatal(err)
	}
	c := dreamBoothConfig(filepath.Join(root, "out"), 4)
	c.WithPriorPreservation, c.GradientAccumulationSteps, c.CheckpointingSteps, c.KohyaOutput = false, 2, 0, false
	var synced []bool
	res, err := Run(context.Background(), c, runModels(t), Data{Train: d}, func(r *StepResult) { synced = append(synced, r.Synced) })
	if err != nil {
		t.Fatal(err)
	}
	want := []bool{false, true, true, false, true, true}
	if len(synced) != len(want) || res.GlobalStep != 4 {
		t.Fatalf("%d batches (synced %v), step %d; want 6 batches, step 4", len(synced), synced, res.GlobalStep)
	}
	for i := range want {
		if synced[i] != want[i] {
			t.Fatalf("synced %v, want %v", synced, want)
		}
	}
	if cps, _ := Checkpoints(c.OutputDir); len(cps) != 0 {
		t.Errorf("checkpointing_steps 0 wrote %v", cps)
	}
}
