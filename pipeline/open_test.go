package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/internal/testmodel"
	"github.com/diffuse-go/diffuse/pipeline"
)

var (
	tinyOnce sync.Once
	tiny     testmodel.Folders
	tinyErr  error
)

// tinyModels writes the tiny golden SD folder, ControlNet and adapter once
// for the package's tests.
func tinyModels(t *testing.T) testmodel.Folders {
	t.Helper()
	tinyOnce.Do(func() {
		dir, err := os.MkdirTemp("", "diffuse-open-test")
		if err != nil {
			tinyErr = err
			return
		}
		tiny, tinyErr = testmodel.Write(dir)
	})
	if tinyErr != nil {
		t.Fatal(tinyErr)
	}
	return tiny
}

func openTiny(t *testing.T, opt pipeline.Options) pipeline.Model {
	t.Helper()
	m, err := pipeline.Open(context.Background(), tinyModels(t).SD, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func square(w, h int) image.Image {
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
	return img
}

func TestOpenDetectsFamily(t *testing.T) {
	m := openTiny(t, pipeline.Options{})
	in := m.Info()
	if in.Family != "sd" || in.Kind != "SD 1.x" || in.Name != "tiny-sd" {
		t.Errorf("info %+v", in)
	}
	// The tiny UNet's sample_size is 16 latents: 128 pixels.
	if in.Width != 128 || in.Height != 128 {
		t.Errorf("default size %dx%d, want 128x128", in.Width, in.Height)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	notModel := filepath.Join(dir, "plain")
	os.Mkdir(notModel, 0o755)
	unknown := filepath.Join(dir, "unknown")
	os.Mkdir(unknown, 0o755)
	os.WriteFile(filepath.Join(unknown, "model_index.json"), []byte(`{"_class_name": "MysteryPipeline"}`), 0o644)
	badJSON := filepath.Join(dir, "bad")
	os.Mkdir(badJSON, 0o755)
	os.WriteFile(filepath.Join(badJSON, "model_index.json"), []byte(`{`), 0o644)
	pickle := filepath.Join(dir, "m.ckpt")
	os.WriteFile(pickle, []byte("not really"), 0o644)
	junk := filepath.Join(dir, "junk.safetensors")
	os.WriteFile(junk, []byte{1, 2, 3}, 0o644)
	for _, c := range []struct{ path, want string }{
		{filepath.Join(dir, "missing"), "no such file"},
		{notModel, "model_index.json"},
		{unknown, "MysteryPipeline"},
		{badJSON, "model_index.json"},
		{pickle, "pickle"},
		{junk, "junk.safetensors"},
	} {
		_, err := pipeline.Open(context.Background(), c.path, pipeline.Options{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%s) = %v, want an error naming %q", c.path, err, c.want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := pipeline.Open(ctx, tinyModels(t).SD, pipeline.Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Open with a cancelled context = %v", err)
	}
}

func TestGenerateThroughFrontDoor(t *testing.T) {
	m := openTiny(t, pipeline.Options{})
	f := tinyModels(t)
	var events int
	out, err := m.Generate(context.Background(), pipeline.Params{Prompt: "a red cube", NegativePrompt: "blurry",
		Width: 64, Height: 64, Steps: 2, Seed: 7, Count: 2, Sampler: "DPM++ 2M Karras",
		ControlNets: []pipeline.ControlNet{{Path: f.ControlNet, Image: square(64, 64), Canny: true, Scale: 0.8}},
		Adapters:    []pipeline.Adapter{{Path: f.Adapter, Image: square(64, 64), Scale: 0.5}},
		OnProgress:  func(pipeline.Event) { events++ }})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Images) != 2 || events != 4 {
		t.Fatalf("%d images, %d progress events; want 2 and 4", len(out.Images), events)
	}
	for i, im := range out.Images {
		if b := im.Image.Bounds(); b.Dx() != 64 || b.Dy() != 64 || im.Seed != int64(7+i) {
			t.Errorf("image %d: %v seed %d", i, b, im.Seed)
		}
		text := im.Params.String()
		for _, want := range []string{"a red cube", "Negative prompt: blurry", "Steps: 2", "Sampler: DPM++ 2M",
			"Schedule type: Karras", "Model: tiny-sd", "ControlNet 0: \"Module: canny", "ControlNet 1:", "Version: diffuse"} {
			if !strings.Contains(text, want) {
				t.Errorf("image %d parameters lack %q:\n%s", i, want, text)
			}
		}
		p, err := imageio.ParseParams(text)
		if err != nil || p.Seed != im.Seed {
			t.Errorf("parameters do not parse back: %v, seed %d", err, p.Seed)
		}
	}
	if out.Images[0].Image.Pix[0] == out.Images[1].Image.Pix[0] && string(out.Images[0].Image.Pix) == string(out.Images[1].Image.Pix) {
		t.Error("two seeds gave the same image")
	}
}

// TestBadRequests sends the front door requests it must refuse, each with
// a named error and no panic, before any generation work.
func TestBadRequests(t *testing.T) {
	m := openTiny(t, pipeline.Options{MemoryLimit: 1 << 30})
	ok := pipeline.Params{Prompt: "x", Width: 64, Height: 64, Steps: 1}
	nan := math.NaN()
	cases := []struct {
		name string
		edit func(p *pipeline.Params)
		want string
	}{
		{"width not a multiple of 8", func(p *pipeline.Params) { p.Width = 60 }, "multiples of 8"},
		{"huge size", func(p *pipeline.Params) { p.Width, p.Height = 100000, 100000 }, "at most"},
		{"too large for memory", func(p *pipeline.Params) { p.Width, p.Height = 8192, 8192 }, "memory"},
		{"negative size", func(p *pipeline.Params) { p.Height = -64 }, "size"},
		{"steps negative", func(p *pipeline.Params) { p.Steps = -1 }, "steps"},
		{"steps huge", func(p *pipeline.Params) { p.Steps = 1 << 30 }, "steps"},
		{"guidance NaN", func(p *pipeline.Params) { p.Guidance = nan }, "guidance scale"},
		{"guidance Inf", func(p *pipeline.Params) { p.Guidance = math.Inf(1) }, "guidance scale"},
		{"guidance negative", func(p *pipeline.Params) { p.Guidance = -3 }, "guidance scale"},
		{"rescale above 1", func(p *pipeline.Params) { p.GuidanceRescale = 2 }, "guidance rescale"},
		{"strength above 1", func(p *pipeline.Params) { p.InitImage, p.Strength = square(64, 64), 1.5 }, "strength"},
		{"strength NaN", func(p *pipeline.Params) { p.InitImage, p.Strength = square(64, 64), nan }, "strength"},
		{"mask without image", func(p *pipeline.Params) { p.Mask = square(64, 64) }, "mask needs an init image"},
		{"count negative", func(p *pipeline.Params) { p.Count = -2 }, "count"},
		{"count huge", func(p *pipeline.Params) { p.Count = 1 << 20 }, "count"},
		{"unknown sampler", func(p *pipeline.Params) { p.Sampler = "warp drive" }, "unknown sampler"},
		{"class labels on SD", func(p *pipeline.Params) { p.ClassLabels = []string{"1"} }, "class-labels"},
		{"refiner on SD", func(p *pipeline.Params) { p.Refiner = "x" }, "refiner"},
		{"missing LoRA file", func(p *pipeline.Params) { p.LoRAs = []pipeline.LoRA{{Path: "/nope.safetensors", Weight: 1}} }, "nope"},
		{"LoRA weight NaN", func(p *pipeline.Params) { p.LoRAs = []pipeline.LoRA{{Path: "x", Weight: nan}} }, "weight"},
		{"LoRA tag without folder", func(p *pipeline.Params) { p.Prompt = "x <lora:style:1>" }, "LoRA folder"},
		{"malformed LoRA tag", func(p *pipeline.Params) { p.Prompt = "x <lora:style:abc>"; p.LoRADir = "." }, "lora"},
		{"ControlNet without image", func(p *pipeline.Params) { p.ControlNets = []pipeline.ControlNet{{Path: "x"}} }, "condition image"},
		{"ControlNet window", func(p *pipeline.Params) {
			p.ControlNets = []pipeline.ControlNet{{Path: "x", Image: square(8, 8), Start: 0.9, End: 0.2}}
		}, "start"},
		{"missing ControlNet", func(p *pipeline.Params) {
			p.ControlNets = []pipeline.ControlNet{{Path: "/no/such/net", Image: square(8, 8)}}
		}, "/no/such/net"},
		{"adapter without image", func(p *pipeline.Params) { p.Adapters = []pipeline.Adapter{{Path: "x"}} }, "no image"},
		{"prompt too long", func(p *pipeline.Params) { p.Prompt = strings.Repeat("a", 1<<20) }, "prompt"},
		{"empty image", func(p *pipeline.Params) { p.InitImage = image.NewNRGBA(image.Rect(0, 0, 0, 0)) }, "image"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := ok
			c.edit(&p)
			_, err := m.Generate(context.Background(), p)
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(c.want)) {
				t.Errorf("got %v, want an error mentioning %q", err, c.want)
			}
		})
	}
	if _, err := m.Generate(context.Background(), ok); err != nil {
		t.Fatalf("the good request failed after the bad ones: %v", err)
	}
}

func TestGenerateCancelled(t *testing.T) {
	m := openTiny(t, pipeline.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	p := pipeline.Params{Prompt: "x", Width: 64, Height: 64, Steps: 3,
		OnProgress: func(e pipeline.Event) { cancel() }}
	if _, err := m.Generate(ctx, p); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled generation returned %v", err)
	}
}

func TestClosedModel(t *testing.T) {
	m, err := pipeline.Open(context.Background(), tinyModels(t).SD, pipeline.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	m.Close()
	if _, err := m.Generate(context.Background(), pipeline.Params{Prompt: "x"}); err == nil {
		t.Error("a closed model generated")
	}
}

// TestFullPreview decodes the latents of every step with the VAE: the
// preview of the last step is the image the generation returns, and the
// first step's differs from it.
func TestFullPreview(t *testing.T) {
	m := openTiny(t, pipeline.Options{})
	var previews []*image.NRGBA
	p := pipeline.Params{Prompt: "x", Width: 64, Height: 48, Steps: 3, Seed: 5, Sampler: "Euler",
		OnProgress: func(e pipeline.Event) {
			if e.Decode == nil {
				t.Fatal("an SD event without Decode")
			}
			img, err := e.Decode()
			if err != nil {
				t.Fatal(err)
			}
			previews = append(previews, img)
		}}
	out, err := m.Generate(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(previews) != 3 {
		t.Fatalf("%d previews, want 3", len(previews))
	}
	final := out.Images[0].Image
	if b := previews[2].Bounds(); b != final.Bounds() {
		t.Fatalf("preview %v, image %v", b, final.Bounds())
	}
	if !bytes.Equal(previews[2].Pix, final.Pix) {
		t.Error("the last step's preview is not the returned image")
	}
	if bytes.Equal(previews[0].Pix, final.Pix) {
		t.Error("the first step's preview is already the final image")
	}
}
