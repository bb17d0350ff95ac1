package main

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/safetensors"
)

func TestParseTrainFlagsErrors(t *testing.T) {
	m := []string{"--pretrained_model_name_or_path", "m"}
	db := append(m, "--instance_data_dir", "i", "--instance_prompt", "a sks dog")
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no model", []string{"--instance_data_dir", "i", "--instance_prompt", "x"}, "--pretrained_model_name_or_path is required"},
		{"bad method", append(m, "--method", "full"), `--method "full"`},
		{"no instance dir", append(m, "--instance_prompt", "x"), "--instance_data_dir is required"},
		{"no instance prompt", append(m, "--instance_data_dir", "i"), "--instance_prompt is required"},
		{"lora without data", append(m, "--method", "lora"), "--method lora needs"},
		{"controlnet without data", append(m, "--method", "controlnet"), "--method controlnet needs"},
		{"prior without class dir", append(db, "--with_prior_preservation", "--class_prompt", "dog"), "--class_data_dir"},
		{"prior without class prompt", append(db, "--with_prior_preservation", "--class_data_dir", "c"), "--class_prompt"},
		{"prior bad count", append(db, "--with_prior_preservation", "--class_data_dir", "c", "--class_prompt", "dog", "--num_class_images", "0"), "--num_class_images"},
		{"controlnet model for lora", append(db, "--controlnet_model_name_or_path", "cn"), "--controlnet_model_name_or_path needs --method controlnet"},
		{"kohya for controlnet", append(m, "--method", "controlnet", "--dataset", "d.jsonl", "--kohya"), "--kohya"},
		{"text encoder for controlnet", append(m, "--method", "controlnet", "--dataset", "d.jsonl", "--train_text_encoder"), "--train_text_encoder"},
		{"negative text encoder lr", append(db, "--train_text_encoder", "--text_encoder_lr", "-1"), "text_encoder_lr"},
		{"validation image missing", append(m, "--method", "controlnet", "--dataset", "d.jsonl", "--validation_prompt", "x"), "--validation_image"},
		{"bad resolution", append(db, "--resolution", "100"), "resolution must be a positive multiple of 8"},
		{"bad scheduler", append(db, "--lr_scheduler", "exp"), "exp"},
		{"bad rank", append(db, "--rank", "0"), "rank must be positive"},
		{"bad number", append(db, "--learning-rate", "fast"), "learning-rate"},
		{"stray", append(db, "extra"), "unexpected arguments"},
		{"empty lora layer", append(db, "--lora_layers", "to_q,,conv1"), "empty name"},
		{"lora layers for controlnet", append(m, "--method", "controlnet", "--dataset", "d.jsonl", "--lora_layers", "conv1"), "--lora_layers"},
		{"bad timestep bias", append(db, "--timestep_bias_strategy", "sideways"), "timestep bias strategy"},
		{"bad timestep bias multiplier", append(db, "--timestep_bias_strategy", "later", "--timestep_bias_multiplier", "0"), "multiplier"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseTrainFlags(c.args, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestParseTrainFlags(t *testing.T) {
	f, err := parseTrainFlags([]string{"--pretrained-model-name-or-path", "m", "--method", "controlnet", "--train_data_dir", "d",
		"--train-batch-size", "2", "--gradient_checkpointing", "--snr-gamma", "5", "--lr_scheduler", "cosine",
		"--timestep_bias_strategy", "later", "--timestep_bias_multiplier", "4", "--timestep_bias_portion", "0.2"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	c := f.cfg
	if g, err := parseTrainFlags([]string{"--pretrained_model_name_or_path", "m", "--instance_data_dir", "i", "--instance_prompt", "p",
		"--lora_layers", "to_q, conv1"}, &bytes.Buffer{}); err != nil || strings.Join(g.cfg.LoRALayers, "|") != "to_q|conv1" {
		t.Errorf("--lora_layers: %v, %v", err, g)
	}
	if c.TimestepBiasStrategy != "later" || c.TimestepBiasMultiplier != 4 || c.TimestepBiasPortion != 0.2 {
		t.Errorf("timestep bias %q %g %g", c.TimestepBiasStrategy, c.TimestepBiasMultiplier, c.TimestepBiasPortion)
	}
	if f.model != "m" || c.Method != "controlnet" || c.TrainBatchSize != 2 || !c.GradientCheckpointing || c.SNRGamma != 5 ||
		c.LRScheduler != "cosine" || c.LearningRate != 5e-6 || f.validationSteps != 100 {
		t.Errorf("parsed %+v (validation_steps %d)", c, f.validationSteps)
	}
	f, err = parseTrainFlags([]string{"--pretrained_model_name_or_path", "m", "--instance_data_dir", "i", "--instance_prompt", "p",
		"--learning_rate", "1e-4"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if f.cfg.Method != "dreambooth_lora" || f.cfg.LearningRate != 1e-4 || f.validationEpochs != 50 || f.cfg.Resolution != 512 ||
		f.cfg.TrainTextEncoder || f.cfg.AdamWeightDecayTextEncoder != nil {
		t.Errorf("parsed %+v", f.cfg)
	}
	f, err = parseTrainFlags([]string{"--pretrained_model_name_or_path", "m", "--instance_data_dir", "i", "--instance_prompt", "p",
		"--train-text-encoder", "--text_encoder_lr", "1e-5", "--adam_weight_decay_text_encoder", "0"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c := f.cfg; !c.TrainTextEncoder || c.TextEncoderLR != 1e-5 || c.AdamWeightDecayTextEncoder == nil || *c.AdamWeightDecayTextEncoder != 0 {
		t.Errorf("parsed %+v", c)
	}
}

// writeTrainImages writes n w×h PNGs into dir, each a different pattern.
func writeTrainImages(t *testing.T, dir, prefix string, n, w, h int) []string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var out []string
	for i := range n {
		img := image.NewNRGBA(image.Rect(0, 0, w, h))
		for y := range h {
			for x := range w {
				img.Set(x, y, color.NRGBA{uint8(x * 255 / w), uint8((y*255/h + 80*i) % 256), uint8(40 * i), 255})
			}
		}
		p := filepath.Join(dir, fmt.Sprintf("%s%d.png", prefix, i))
		if err := imageio.WritePNG(p, img, nil); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func safetensorsFloats(t *testing.T, path string) map[string][]float32 {
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
		out[n] = append([]float32(nil), v...)
	}
	return out
}

func mustExist(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}
}

// TestTrainDreamBoothLoRA: DreamBooth LoRA with prior preservation on the
// tiny model: the missing class images are generated first; 20 steps
// write a checkpoint at step 10, the loss log, validation images, the
// plot and the diffusers and kohya LoRAs; stopping at step 10 and resuming
// gives the straight run's LoRA bit for bit; the LoRA then changes what
// generate draws.
func TestTrainDreamBoothLoRA(t *testing.T) {
	model, _, _ := tinyFolder(t)
	dir := t.TempDir()
	inst, class := filepath.Join(dir, "instance"), filepath.Join(dir, "class")
	writeTrainImages(t, inst, "dog", 2, 72, 64)
	writeTrainImages(t, class, "dog", 1, 64, 64) // one of the three class images exists
	args := func(out string, steps int, extra ...string) []string {
		return append([]string{"--pretrained_model_name_or_path", model, "--instance_data_dir", inst,
			"--instance_prompt", "a photo of sks dog", "--with_prior_preservation", "--class_data_dir", class,
			"--class-prompt", "a photo of dog", "--num_class_images", "3", "--output_dir", out, "--resolution", "64",
			"--train_batch_size", "1", "--max_train_steps", fmt.Sprint(steps), "--learning_rate", "1e-3",
			"--lr_warmup_steps", "0", "--checkpointing_steps", "10", "--seed", "3", "--quiet"}, extra...)
	}
	straight := filepath.Join(dir, "straight")
	plot := filepath.Join(dir, "loss.png")
	if err := runTrain(context.Background(), args(straight, 20, "--kohya", "--validation_prompt", "a photo of sks dog",
		"--validation_steps", "10", "--num_validation_images", "1", "--plot", plot)); err != nil {
		t.Fatal(err)
	}
	classImgs, _ := filepath.Glob(filepath.Join(class, "*.png"))
	if len(classImgs) != 3 {
		t.Fatalf("class folder has %d images, want 3 (2 generated)", len(classImgs))
	}
	lw := filepath.Join(straight, "pytorch_lora_weights.safetensors")
	mustExist(t, lw, filepath.Join(straight, "pytorch_lora_weights_kohya.safetensors"), plot,
		filepath.Join(straight, "checkpoint-10"), filepath.Join(straight, "checkpoint-20"),
		filepath.Join(straight, "validation", "step-000010-0.png"), filepath.Join(straight, "validation", "step-000020-0.png"))
	steps, losses, err := readLossLog(filepath.Join(straight, "logs", "loss.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 20 || steps[0] != 1 || steps[19] != 20 || losses[0] <= 0 {
		t.Fatalf("loss log steps %v losses %v", steps, losses)
	}

	split := filepath.Join(dir, "split")
	if err := runTrain(context.Background(), args(split, 10)); err != nil {
		t.Fatal(err)
	}
	if err := runTrain(context.Background(), args(split, 20, "--resume_from_checkpoint", "latest")); err != nil {
		t.Fatal(err)
	}
	a, b := safetensorsFloats(t, lw), safetensorsFloats(t, filepath.Join(split, "pytorch_lora_weights.safetensors"))
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("%d and %d tensors", len(a), len(b))
	}
	for k, v := range a {
		if !sameFloats(v, b[k]) {
			t.Fatalf("%s differs between the straight and the resumed run", k)
		}
	}
	if steps, _, err := readLossLog(filepath.Join(split, "logs", "loss.jsonl")); err != nil || len(steps) != 20 {
		t.Fatalf("resumed loss log: %d steps, %v", len(steps), err)
	}

	gen := func(name string, extra ...string) []byte {
		out := filepath.Join(dir, name)
		if err := runGenerate(context.Background(), append([]string{"-m", model, "-p", "a photo of sks dog", "--steps", "2",
			"-W", "64", "-H", "64", "--seed", "1", "-q", "-o", out}, extra...)); err != nil {
			t.Fatal(err)
		}
		px, err := imageio.Load(out)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		for y := range 64 {
			for x := range 64 {
				r, g, b, _ := px.At(x, y).RGBA()
				buf.Write([]byte{byte(r), byte(g), byte(b)})
			}
		}
		return buf.Bytes()
	}
	if bytes.Equal(gen("plain.png"), gen("lora.png", "--lora", lw)) {
		t.Error("the trained LoRA does not change the image")
	}
}

// TestTrainTextEncoder: --train_text_encoder writes the text encoder's
// adapters (non-zero lora_B after a few steps) beside the UNet's in both
// layouts, and the file loaded through pipeline.Open's Params.LoRAs
// changes the image against the same LoRA with TextEncoderWeight 0.
func TestTrainTextEncoder(t *testing.T) {
	model, _, _ := tinyFolder(t)
	dir := t.TempDir()
	inst := filepath.Join(dir, "instance")
	writeTrainImages(t, inst, "dog", 2, 64, 64)
	out := filepath.Join(dir, "out")
	if err := runTrain(context.Background(), []string{"--pretrained_model_name_or_path", model, "--instance_data_dir", inst,
		"--instance_prompt", "a photo of sks dog", "--train_text_encoder", "--output_dir", out, "--resolution", "64",
		"--train_batch_size", "1", "--max_train_steps", "4", "--learning_rate", "1e-2", "--lr_warmup_steps", "0",
		"--checkpointing_steps", "0", "--seed", "3", "--kohya", "--quiet"}); err != nil {
		t.Fatal(err)
	}
	const mod = "text_model.encoder.layers.0.self_attn.k_proj"
	lw := filepath.Join(out, "pytorch_lora_weights.safetensors")
	d, k := safetensorsFloats(t, lw), safetensorsFloats(t, filepath.Join(out, "pytorch_lora_weights_kohya.safetensors"))
	up := d["text_encoder."+mod+".lora_linear_layer.up.weight"]
	if len(up) == 0 || sameFloats(up, make([]float32, len(up))) {
		t.Fatalf("text encoder lora_B %v: missing or still zero", up)
	}
	if !sameFloats(k["lora_te_text_model_encoder_layers_0_self_attn_k_proj.lora_up.weight"], up) {
		t.Error("the kohya file's text encoder adapter differs from the diffusers file's")
	}
	m, err := pipeline.Open(context.Background(), model, pipeline.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	gen := func(te float64) []byte {
		out, err := m.Generate(context.Background(), pipeline.Params{Prompt: "a photo of sks dog", Width: 64, Height: 64, Steps: 2, Seed: 1,
			LoRAs: []pipeline.LoRA{{Path: lw, Weight: 1, TextEncoderWeight: &te}}})
		if err != nil {
			t.Fatal(err)
		}
		return pixels(out.Images[0].Image)
	}
	if bytes.Equal(gen(1), gen(0)) {
		t.Error("the text encoder's adapters do not change the image")
	}
}

// pixels are an image's 8-bit RGB values.
func pixels(img image.Image) []byte {
	var buf bytes.Buffer
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			buf.Write([]byte{byte(r >> 8), byte(g >> 8), byte(b >> 8)})
		}
	}
	return buf.Bytes()
}

func sameFloats(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestTrainControlNet: ControlNet training from a --train_data_dir with a
// metadata.jsonl, validating with a condition image, writes a diffusers
// ControlNet folder that generate then uses.
func TestTrainControlNet(t *testing.T) {
	model, _, _ := tinyFolder(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	writeTrainImages(t, data, "img", 2, 64, 64)
	conds := writeTrainImages(t, data, "cond", 2, 64, 64)
	meta := `{"image": "img0.png", "conditioning_image": "cond0.png", "text": "a red car"}
{"image": "img1.png", "conditioning_image": "cond1.png", "text": "a house"}
`
	if err := os.WriteFile(filepath.Join(data, "metadata.jsonl"), []byte(meta), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if err := runTrain(context.Background(), []string{"--method", "controlnet", "--pretrained_model_name_or_path", model,
		"--train_data_dir", data, "--output_dir", out, "--resolution", "64", "--train_batch_size", "2", "--max_train_steps", "2",
		"--learning_rate", "1e-4", "--validation_prompt", "a red car", "--validation_image", conds[0], "--validation_steps", "2",
		"--num_validation_images", "1", "--gradient_checkpointing", "--quiet"}); err != nil {
		t.Fatal(err)
	}
	mustExist(t, filepath.Join(out, "config.json"), filepath.Join(out, "diffusion_pytorch_model.safetensors"),
		filepath.Join(out, "validation", "step-000002-cond0-0.png"))
	if _, err := os.Stat(filepath.Join(out, "validation", ".controlnet")); !os.IsNotExist(err) {
		t.Errorf("the validation's scratch ControlNet was left behind (%v)", err)
	}
	img := filepath.Join(dir, "gen.png")
	if err := runGenerate(context.Background(), []string{"-m", model, "-p", "a red car", "--steps", "2", "-W", "64", "-H", "64",
		"--control-net", out, "--control-image", conds[1], "-q", "-o", img}); err != nil {
		t.Fatal(err)
	}
	mustExist(t, img)

	// Training goes on from the saved ControlNet.
	more := filepath.Join(dir, "more")
	if err := runTrain(context.Background(), []string{"--method", "controlnet", "--pretrained_model_name_or_path", model,
		"--controlnet_model_name_or_path", out, "--dataset", filepath.Join(data, "metadata.jsonl"), "--output_dir", more,
		"--resolution", "64", "--train_batch_size", "1", "--max_train_steps", "1", "--quiet"}); err != nil {
		t.Fatal(err)
	}
	a, b := safetensorsFloats(t, filepath.Join(out, "diffusion_pytorch_model.safetensors")), safetensorsFloats(t, filepath.Join(more, "diffusion_pytorch_model.safetensors"))
	if len(a) != len(b) || sameFloats(a["controlnet_mid_block.weight"], b["controlnet_mid_block.weight"]) {
		t.Errorf("continued training: %d and %d tensors, mid block unchanged", len(a), len(b))
	}
}

// TestTrainLoRACaptions: --method lora takes each image's caption from
// the .txt beside it, and names an image without one.
func TestTrainLoRACaptions(t *testing.T) {
	model, _, _ := tinyFolder(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	imgs := writeTrainImages(t, data, "img", 2, 64, 64)
	if err := os.WriteFile(strings.TrimSuffix(imgs[0], ".png")+".txt", []byte("a red square"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--method", "lora", "--pretrained_model_name_or_path", model, "--train_data_dir", data,
		"--output_dir", filepath.Join(dir, "out"), "--resolution", "64", "--train_batch_size", "1", "--max_train_steps", "2", "--quiet"}
	if err := runTrain(context.Background(), args); err == nil || !strings.Contains(err.Error(), "img1.png has no caption") {
		t.Fatalf("uncaptioned image: %v", err)
	}
	if err := os.WriteFile(strings.TrimSuffix(imgs[1], ".png")+".txt", []byte("a blue square"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := runTrain(context.Background(), args); err != nil {
		t.Fatal(err)
	}
	mustExist(t, filepath.Join(dir, "out", "pytorch_lora_weights.safetensors"))
}

// TestPlotCommand: diffuse plot draws a log into a PNG of the plot's size;
// a missing log is an error naming it.
func TestPlotCommand(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "loss.jsonl")
	var lines []string
	for i := 1; i <= 30; i++ {
		lines = append(lines, fmt.Sprintf(`{"step": %d, "loss": %g}`, i, 1/float64(i)))
	}
	lines = append(lines, `{"step": 30, "loss": 0.5}`) // a resumed run's later line wins
	if err := os.WriteFile(log, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	steps, losses, err := readLossLog(log)
	if err != nil || len(steps) != 30 || losses[29] != 0.5 {
		t.Fatalf("read %d steps, last loss %v, %v", len(steps), losses[len(losses)-1], err)
	}
	out := filepath.Join(dir, "loss.png")
	if err := runPlot([]string{log, "-o", out}); err != nil {
		t.Fatal(err)
	}
	img, err := imageio.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 800 || b.Dy() != 480 {
		t.Fatalf("plot is %v", b)
	}
	dark := 0
	for y := 0; y < 480; y++ {
		for x := 0; x < 800; x++ {
			if r, g, b, _ := img.At(x, y).RGBA(); b > r+0x2000 && b > g+0x2000 {
				dark++
			}
		}
	}
	if dark < 200 {
		t.Errorf("only %d curve pixels drawn", dark)
	}
	if err := runPlot([]string{filepath.Join(dir, "nope.jsonl")}); err == nil || !strings.Contains(err.Error(), "nope.jsonl") {
		t.Errorf("missing log: %v", err)
	}
}

// TestTrainSDXL: DreamBooth LoRA with --train_text_encoder and prior
// preservation on the tiny SDXL folder generates the class image and the
// validation image with the SDXL pipeline and writes the UNet's and both
// text encoders' adapters (diffusers and kohya names); stopping at step 2 and resuming gives the
// straight run's file bit for bit; the file loaded through pipeline.Open's
// Params.LoRAs changes the image, its text encoders' part too.
func TestTrainSDXL(t *testing.T) {
	dir := t.TempDir()
	model := tinySDXLFolder(t, filepath.Join(dir, "tiny-xl"), false)
	inst, class := filepath.Join(dir, "instance"), filepath.Join(dir, "class")
	writeTrainImages(t, inst, "dog", 2, 72, 64)
	args := func(out string, steps int, extra ...string) []string {
		return append([]string{"--pretrained_model_name_or_path", model, "--instance_data_dir", inst,
			"--instance_prompt", "a photo of sks dog", "--with_prior_preservation", "--class_data_dir", class,
			"--class_prompt", "a photo of dog", "--num_class_images", "1", "--train_text_encoder", "--text_encoder_lr", "1e-2", "--output_dir", out,
			"--resolution", "64", "--train_batch_size", "1", "--max_train_steps", fmt.Sprint(steps), "--learning_rate", "1e-2",
			"--lr_warmup_steps", "0", "--checkpointing_steps", "2", "--seed", "3", "--quiet"}, extra...)
	}
	straight := filepath.Join(dir, "straight")
	if err := runTrain(context.Background(), args(straight, 4, "--kohya", "--validation_prompt", "a photo of sks dog",
		"--validation_steps", "4", "--num_validation_images", "1")); err != nil {
		t.Fatal(err)
	}
	lw := filepath.Join(straight, "pytorch_lora_weights.safetensors")
	mustExist(t, filepath.Join(class, "class-00000.png"), filepath.Join(straight, "validation", "step-000004-0.png"))
	const mod = "text_model.encoder.layers.0.self_attn.q_proj"
	d, k := safetensorsFloats(t, lw), safetensorsFloats(t, filepath.Join(straight, "pytorch_lora_weights_kohya.safetensors"))
	for _, key := range []string{"text_encoder." + mod + ".lora_linear_layer.up.weight", "text_encoder_2." + mod + ".lora_linear_layer.up.weight",
		"unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora.up.weight"} {
		if v := d[key]; len(v) == 0 || sameFloats(v, make([]float32, len(v))) {
			t.Errorf("%s: missing or still zero", key)
		}
	}
	for _, key := range []string{"lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight",
		"lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.alpha"} {
		if len(k[key]) == 0 {
			t.Errorf("kohya file has no %s", key)
		}
	}

	split := filepath.Join(dir, "split")
	if err := runTrain(context.Background(), args(split, 2)); err != nil {
		t.Fatal(err)
	}
	if err := runTrain(context.Background(), args(split, 4, "--resume_from_checkpoint", "latest")); err != nil {
		t.Fatal(err)
	}
	for key, v := range safetensorsFloats(t, filepath.Join(split, "pytorch_lora_weights.safetensors")) {
		if !sameFloats(v, d[key]) {
			t.Fatalf("%s differs between the straight and the resumed run", key)
		}
	}

	m, err := pipeline.Open(context.Background(), model, pipeline.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	gen := func(loras ...pipeline.LoRA) []byte {
		out, err := m.Generate(context.Background(), pipeline.Params{Prompt: "a photo of sks dog", Width: 64, Height: 64, Steps: 2, Seed: 1, LoRAs: loras})
		if err != nil {
			t.Fatal(err)
		}
		return pixels(out.Images[0].Image)
	}
	zero, one := 0.0, 1.0
	plain, withTE, unetOnly := gen(), gen(pipeline.LoRA{Path: lw, Weight: 1, TextEncoderWeight: &one}), gen(pipeline.LoRA{Path: lw, Weight: 1, TextEncoderWeight: &zero})
	if bytes.Equal(plain, unetOnly) || bytes.Equal(withTE, unetOnly) {
		t.Error("the trained LoRA (or its text encoders' part) does not change the SDXL image")
	}
}
