package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	_ "image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/internal/testmodel"
	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/scheduler"
)

func TestParseGenFlagsErrors(t *testing.T) {
	img := "x.png"
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"bad upscale", []string{"-p", "x", "--upscale", "0"}, "--upscale"},
		{"unknown sampler", []string{"-m", "m", "--sampler", "bogus"}, "unknown sampler"},
		{"unknown schedule", []string{"-m", "m", "--scheduler", "exp"}, "--scheduler"},
		{"width not multiple of 8", []string{"-m", "m", "-W", "100"}, "-W 100"},
		{"negative height", []string{"-m", "m", "-H", "-64"}, "-H -64"},
		{"negative steps", []string{"-m", "m", "--steps", "-1"}, "--steps"},
		{"NaN guidance", []string{"-m", "m", "--cfg-scale", "NaN"}, "--cfg-scale"},
		{"mask without init", []string{"-m", "m", "--mask", "mask.png"}, "--mask needs --init-img"},
		{"bad batch", []string{"-m", "m", "-b", "0"}, "--batch-count"},
		{"image without net", []string{"-m", "m", "--control-image", img}, "without --control-net"},
		{"net without image", []string{"-m", "m", "--control-net", "cn"}, "no --control-image"},
		{"mismatched images", []string{"-m", "m", "--control-net", "a", "--control-net", "b", "--control-image", "1", "--control-image", "2", "--control-image", "3"}, "3 --control-image values for 2 --control-net"},
		{"mismatched strengths", []string{"-m", "m", "--control-net", "a", "--control-image", img, "--control-strength", "1,0.5"}, "2 --control-strength values for 1"},
		{"bad strength", []string{"-m", "m", "--control-net", "a", "--control-image", img, "--control-strength", "strong"}, "not a number"},
		{"bad window", []string{"-m", "m", "--control-net", "a", "--control-image", img, "--control-start", "0.8", "--control-end", "0.2"}, "start < end"},
		{"canny without net", []string{"-m", "m", "--canny"}, "--canny needs"},
		{"adapter image without adapter", []string{"-m", "m", "--adapter-image", img}, "without --adapter"},
		{"mismatched adapter scales", []string{"-m", "m", "--adapter", "a", "--adapter-image", img, "--adapter-scale", "1,2,3"}, "3 --adapter-scale values for 1"},
		{"bad adapter factor", []string{"-m", "m", "--adapter", "a", "--adapter-image", img, "--adapter-factor", "0"}, "--adapter-factor"},
		{"bad original size", []string{"-m", "m", "--original-size", "1024"}, "--original-size"},
		{"bad crop", []string{"-m", "m", "--crop-top-left", "a,b"}, "--crop-top-left"},
		{"bad refiner start", []string{"-m", "m", "--refiner", "r", "--refiner-start", "1"}, "--refiner-start"},
		{"stray argument", []string{"-m", "m", "extra"}, "unexpected arguments"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseGenFlags(c.args, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestParseGenFlags(t *testing.T) {
	f, err := parseGenFlags([]string{"-m", "m", "--sampler", "DPM++ 2M", "--scheduler", "karras",
		"--control-net", "a", "--control-net", "b", "--control-image", "c.png", "--control-strength", "0.5",
		"--control-strength", "0.7", "--control-end", "0.9", "--original-size", "2048x1536", "--crop-top-left", "10,20",
		"--adapter", "t", "--adapter-image", "s.png"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if f.info.Name != "dpm++2m_karras" {
		t.Errorf("sampler %q, want dpm++2m_karras", f.info.Name)
	}
	if len(f.cnImages) != 2 || f.cnImages[1] != "c.png" || f.cnScale[0] != 0.5 || f.cnScale[1] != 0.7 || f.cnEnd[1] != 0.9 || f.cnStart[0] != 0 {
		t.Errorf("per-net settings: images %v scales %v starts %v ends %v", f.cnImages, f.cnScale, f.cnStart, f.cnEnd)
	}
	if f.xl.original == nil || *f.xl.original != (pipeline.Size{1536, 2048}) || *f.xl.crop != (pipeline.Size{10, 20}) {
		t.Errorf("SDXL sizes: %v %v, want (h, w) = (1536, 2048) and (top, left) = (10, 20)", f.xl.original, f.xl.crop)
	}
	if len(f.adScale) != 1 || f.adScale[0] != 1 {
		t.Errorf("adapter scales %v, want [1]", f.adScale)
	}
	if f.width != 0 || f.height != 0 {
		t.Errorf("size %dx%d, want 0 (model default) when not given", f.width, f.height)
	}
}

func TestGenerateHelp(t *testing.T) {
	var buf bytes.Buffer
	_, err := parseGenFlags([]string{"-h"}, &buf)
	if !errors.Is(err, errHelp) {
		t.Fatalf("got %v, want errHelp", err)
	}
	for _, want := range []string{"-control-net", "-control-image", "-control-strength", "-guess-mode", "-canny-low", "-adapter-scale",
		"-adapter-factor", "-refiner-start", "-aesthetic-score", "-original-size", "-crop-top-left", "-prompt-2", "-lora", "euler_a", "dpm++2m_karras"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestOutputName(t *testing.T) {
	for _, c := range []struct {
		base string
		i    int
		want string
	}{{"out.png", 0, "out.png"}, {"out.png", 1, "out_2.png"}, {"dir/x.png", 9, "dir/x_10.png"}, {"noext", 2, "noext_3"}} {
		if got := outputName(c.base, c.i); got != c.want {
			t.Errorf("outputName(%q, %d) = %q, want %q", c.base, c.i, got, c.want)
		}
	}
}

func TestA1111Sampler(t *testing.T) {
	for name, want := range map[string]string{"euler_a": "Euler a", "euler": "Euler", "dpm++2m": "DPM++ 2M",
		"dpm++2m_karras": "DPM++ 2M", "ddim": "DDIM", "lcm": "LCM", "dpm++2m_sde_karras": "DPM++ 2M SDE", "unipc": "UniPC"} {
		in, ok := scheduler.Lookup(name)
		if !ok {
			t.Fatalf("no sampler %q", name)
		}
		if got := pipeline.A1111Sampler(in); got != want {
			t.Errorf("A1111Sampler(%s) = %q, want %q", name, got, want)
		}
	}
}

// writeTestModule writes a module's parameters as a safetensors file.
func writeTestModule(t *testing.T, path string, m nn.Module) {
	t.Helper()
	if err := testmodel.WriteModule(path, m); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// goldenComponent loads a golden case's weights into the module build makes
// from its config, and returns the module and the config.
func goldenComponent(t *testing.T, name string, build func(cfg []byte) (nn.Module, error)) (nn.Module, []byte) {
	t.Helper()
	gc, err := golden.Find(name)
	if err != nil {
		t.Skipf("needs the tiny models of golden case %s, not found under %s (DIFFUSE_GOLDEN_DIR points elsewhere?): %v", name, golden.Dir(), err)
	}
	t.Cleanup(gc.Close)
	w, err := gc.Weights("")
	if err != nil {
		t.Fatal(err)
	}
	m, err := build(gc.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := nn.Load(m, "", nn.FileSource{F: w}, nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	return m, gc.Config
}

// tinyFolder writes the golden tiny UNet, VAE and CLIP as a diffusers
// folder, the golden ControlNet and full T2I-Adapter as folders, and
// returns their paths.
func tinyFolder(t *testing.T) (model, cn, adapter string) {
	t.Helper()
	f, err := testmodel.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return f.SD, f.ControlNet, f.Adapter
}

// testImage writes a w×h PNG with a bright square (edges for Canny).
func testImage(t *testing.T, path string, w, h int) {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := color.NRGBA{20, 30, 40, 255}
			if x > w/4 && x < 3*w/4 && y > h/4 && y < 3*h/4 {
				c = color.NRGBA{230, 220, 210, 255}
			}
			img.Set(x, y, c)
		}
	}
	if err := imageio.WritePNG(path, img, nil); err != nil {
		t.Fatal(err)
	}
}

// TestGenerateTiny runs generate end to end on the tiny golden models with
// a ControlNet (Canny) and a T2I-Adapter at 64×64, 2 steps.
func TestGenerateTiny(t *testing.T) {
	model, cn, adapter := tinyFolder(t)
	dir := t.TempDir()
	ctrl := filepath.Join(dir, "control.png")
	testImage(t, ctrl, 80, 48) // resized to 64×64 by the control image processor
	sketch := filepath.Join(dir, "sketch.png")
	testImage(t, sketch, 64, 64)
	out := filepath.Join(dir, "out.png")
	args := []string{"-m", model, "-p", "a red cube, studio light", "-n", "blurry", "--steps", "2", "-W", "64", "-H", "64",
		"--seed", "7", "--sampler", "euler", "--cfg-scale", "5", "--control-net", cn, "--control-image", ctrl, "--canny",
		"--control-strength", "0.8", "--control-end", "0.5", "--adapter", adapter, "--adapter-image", sketch,
		"--adapter-scale", "0.6", "-o", out, "-q"}
	if err := runGenerate(context.Background(), args); err != nil {
		t.Fatal(err)
	}
	fh, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	cfg, format, err := image.DecodeConfig(fh)
	if err != nil {
		t.Fatal(err)
	}
	if format != "png" || cfg.Width != 64 || cfg.Height != 64 {
		t.Fatalf("%s %dx%d, want png 64x64", format, cfg.Width, cfg.Height)
	}
	text, err := imageio.ReadPNGText(out)
	if err != nil {
		t.Fatal(err)
	}
	p, err := imageio.ParseParams(text[imageio.ParametersKey])
	if err != nil {
		t.Fatal(err)
	}
	if p.Prompt != "a red cube, studio light" || p.NegativePrompt != "blurry" || p.Seed != 7 || p.Steps != 2 || p.Sampler != "Euler" ||
		p.CFGScale != 5 || p.Width != 64 || p.Height != 64 || p.Model != "tiny-sd" {
		t.Errorf("parameters %+v", p)
	}
	c0, ok := p.Get("ControlNet 0")
	if !ok || !strings.Contains(c0, "Module: canny") || !strings.Contains(c0, "Model: control-tiny") ||
		!strings.Contains(c0, "Weight: 0.8") || !strings.Contains(c0, "Guidance End: 0.5") {
		t.Errorf("ControlNet 0 = %q", c0)
	}
	if c1, ok := p.Get("ControlNet 1"); !ok || !strings.Contains(c1, "Model: t2i-tiny") || !strings.Contains(c1, "Weight: 0.6") {
		t.Errorf("ControlNet 1 (T2I-Adapter) = %q", c1)
	}

	// Without the ControlNet and the adapter the image differs: they acted.
	plain := filepath.Join(dir, "plain.png")
	if err := runGenerate(context.Background(), []string{"-m", model, "-p", "a red cube, studio light", "-n", "blurry", "--steps", "2",
		"-W", "64", "-H", "64", "--seed", "7", "--sampler", "euler", "--cfg-scale", "5", "-o", plain, "-q"}); err != nil {
		t.Fatal(err)
	}
	a, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	ia, _, err := image.Decode(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	ib, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	differ := false
	for y := 0; y < 64 && !differ; y++ {
		for x := 0; x < 64 && !differ; x++ {
			differ = ia.At(x, y) != ib.At(x, y)
		}
	}
	if !differ {
		t.Error("the ControlNet and T2I-Adapter did not change the image")
	}

	// A cancelled context stops before any image is written.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out2 := filepath.Join(dir, "cancelled.png")
	args[len(args)-2] = out2
	if err := runGenerate(ctx, args); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled run: got %v, want context.Canceled", err)
	}
	if _, err := os.Stat(out2); !os.IsNotExist(err) {
		t.Errorf("cancelled run left %s (%v)", out2, err)
	}

	// A missing model is named.
	if err := runGenerate(context.Background(), []string{"-m", filepath.Join(dir, "nope"), "-p", "x", "-q"}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing model: got %v", err)
	}
}

// tinySDXLFolder writes the golden tiny SDXL base (unet_sdxl, vae,
// clip_text, clip_text_proj) or refiner (pipeline_sdxl's refiner UNet, no
// first text encoder) as a diffusers folder.
func tinySDXLFolder(t *testing.T, dir string, refiner bool) string {
	t.Helper()
	index := `{"_class_name": "StableDiffusionXLPipeline", "force_zeros_for_empty_prompt": true,
 "text_encoder": ["transformers", "CLIPTextModel"], "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
 "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}`
	if refiner {
		index = `{"_class_name": "StableDiffusionXLImg2ImgPipeline", "force_zeros_for_empty_prompt": false, "requires_aesthetics_score": true,
 "text_encoder": [null, null], "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
 "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}`
	}
	writeFile(t, filepath.Join(dir, "model_index.json"), []byte(index))
	unetCase, unetCfg, unetFile := "unet_sdxl", json.RawMessage(nil), "weights.safetensors"
	if refiner {
		unetCase, unetFile = "pipeline_sdxl", "refiner_unet.safetensors"
	}
	gc, err := golden.Find(unetCase)
	if err != nil {
		t.Skipf("needs the tiny models of golden case %s, not found under %s (DIFFUSE_GOLDEN_DIR points elsewhere?): %v", unetCase, golden.Dir(), err)
	}
	t.Cleanup(gc.Close)
	unetCfg = gc.Config
	if refiner {
		unetCfg = gc.Raw["refiner_unet_config"]
	}
	uc, err := unet.ParseConfig(unetCfg)
	if err != nil {
		t.Fatal(err)
	}
	u, err := unet.New(uc)
	if err != nil {
		t.Fatal(err)
	}
	uf, err := gc.Open(unetFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := nn.Load(u, "", nn.FileSource{F: uf}, nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "unet", "config.json"), unetCfg)
	writeTestModule(t, filepath.Join(dir, "unet", "diffusion_pytorch_model.safetensors"), u)
	v, cfg := goldenComponent(t, "vae", func(b []byte) (nn.Module, error) {
		c, err := vae.ParseConfig(b)
		if err != nil {
			return nil, err
		}
		return vae.New(c)
	})
	writeFile(t, filepath.Join(dir, "vae", "config.json"), cfg)
	writeTestModule(t, filepath.Join(dir, "vae", "diffusion_pytorch_model.safetensors"), v)
	encoders := []struct{ sub, name string }{{"text_encoder_2", "clip_text_proj"}}
	if !refiner {
		encoders = append(encoders, struct{ sub, name string }{"text_encoder", "clip_text"})
	}
	for _, e := range encoders {
		te, cfg := goldenComponent(t, e.name, func(b []byte) (nn.Module, error) {
			c, err := clip.ParseConfig(b)
			if err != nil {
				return nil, err
			}
			c.WithProjection = e.sub == "text_encoder_2"
			return clip.New(c)
		})
		writeFile(t, filepath.Join(dir, e.sub, "config.json"), cfg)
		writeTestModule(t, filepath.Join(dir, e.sub, "model.safetensors"), te)
	}
	return dir
}

// TestGenerateTinySDXL runs the SDXL base with a refiner (ensemble of
// experts) on the tiny golden SDXL models at 64×64, 2 steps.
func TestGenerateTinySDXL(t *testing.T) {
	dir := t.TempDir()
	base := tinySDXLFolder(t, filepath.Join(dir, "tiny-xl"), false)
	ref := tinySDXLFolder(t, filepath.Join(dir, "tiny-refiner"), true)
	out := filepath.Join(dir, "xl.png")
	args := []string{"-m", base, "-p", "a fox", "--prompt-2", "watercolor", "--steps", "2", "-W", "64", "-H", "64",
		"--seed", "3", "--sampler", "euler", "--original-size", "1024x768", "--crop-top-left", "16,32",
		"--refiner", ref, "--refiner-start", "0.5", "--aesthetic-score", "7", "-o", out, "-q"}
	if err := runGenerate(context.Background(), args); err != nil {
		t.Fatal(err)
	}
	text, err := imageio.ReadPNGText(out)
	if err != nil {
		t.Fatal(err)
	}
	p, err := imageio.ParseParams(text[imageio.ParametersKey])
	if err != nil {
		t.Fatal(err)
	}
	if p.Prompt != "a fox" || p.Width != 64 || p.Seed != 3 || p.Model != "tiny-xl" {
		t.Errorf("parameters %+v", p)
	}
	for k, want := range map[string]string{"Prompt 2": "watercolor", "Original size": "1024x768", "Crop top left": "16,32",
		"Refiner switch at": "0.5", "Aesthetic score": "7", "Negative aesthetic score": "2.5"} {
		if got, _ := p.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if r, _ := p.Get("Refiner"); !strings.HasPrefix(r, "tiny-refiner") {
		t.Errorf("Refiner = %q", r)
	}
	// The refiner alone needs an init image.
	if err := runGenerate(context.Background(), []string{"-m", ref, "-p", "x", "-W", "64", "-H", "64", "-q", "-o", filepath.Join(dir, "r.png")}); err == nil || !strings.Contains(err.Error(), "refiner") {
		t.Errorf("refiner without init image: got %v", err)
	}
}

func TestParseStage(t *testing.T) {
	st, err := parseStage("if-ii:30:5.5:100")
	if err != nil || st.Path != "if-ii" || st.Steps != 30 || st.Guidance != 5.5 || st.NoiseLevel != 100 {
		t.Errorf("parseStage = %+v, %v", st, err)
	}
	if st, err := parseStage("if-ii"); err != nil || st.Path != "if-ii" || st.Steps != 0 {
		t.Errorf("parseStage(path) = %+v, %v", st, err)
	}
	for _, bad := range []string{"", ":3", "x:zero", "x:3:NaN", "x:3:4:-1", "x:1:2:3:4"} {
		if _, err := parseStage(bad); err == nil || !strings.Contains(err.Error(), "--stage") {
			t.Errorf("parseStage(%q) = %v, want a --stage error", bad, err)
		}
	}
}
