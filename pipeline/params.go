package pipeline

import (
	"errors"
	"fmt"
	"image"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
)

// Params is one generation request through the front door: what A1111's
// and stable-diffusion.cpp's users set. Zero values take the model's
// defaults (Info). A family refuses, with an error, a feature it does not
// take.
type Params struct {
	Prompt, NegativePrompt string
	// HasNegative marks NegativePrompt as given even when empty: SDXL
	// then encodes "" instead of zeroing the unconditional embeddings.
	HasNegative bool
	// Prompt2 and NegativePrompt2 go to SDXL's second text encoder
	// (empty: the first ones).
	Prompt2, NegativePrompt2 string

	Width, Height, Steps int
	Guidance             float64 // classifier-free guidance scale; 0: the model's default, <= 1 after that: off
	GuidanceRescale      float64 // diffusers' guidance_rescale in [0, 1]
	Sampler              string  // a scheduler.Lookup name ("euler_a", "DPM++ 2M Karras", ...); "": the model's default
	// Seed of the first image; image i uses Seed+i (one torch generator
	// each). A negative seed picks one at random.
	Seed int64
	// Count is the number of images, generated one after the other (0: 1).
	Count    int
	ClipSkip int // A1111's clip skip (2 = penultimate layer); 0: the model's default

	// NoResolutionBinning keeps Width × Height where a family would move
	// it to a size its model was trained at (Hunyuan-DiT's resolution
	// binning, on by default as in diffusers).
	NoResolutionBinning bool

	// InitImage enables image-to-image with Strength (in (0, 1]); Mask
	// (white = repaint) enables inpainting of it. Both are resized to the
	// output size.
	InitImage, Mask image.Image
	Strength        float64

	// LoRAs are applied for this request and removed after it; LoRADir is
	// where the prompt's <lora:name:weight> tags are looked up.
	LoRAs   []LoRA
	LoRADir string

	ControlNets   []ControlNet
	Adapters      []Adapter
	AdapterFactor float64 // fraction of the steps T2I-Adapters act on (0: 1)

	// SDXL: micro-conditioning (nil: diffusers' defaults) and the refiner.
	OriginalSize, CropsTopLeft, TargetSize                         *Size
	NegativeOriginalSize, NegativeCropsTopLeft, NegativeTargetSize *Size
	Refiner                                                        string  // refiner checkpoint or folder
	RefinerStart                                                   float64 // fraction done by the base (0: 0.8)
	AestheticScore, NegativeAestheticScore                         float64 // refiner (0: 6 and 2.5)

	// ClassLabels are DiT's ImageNet classes, by id or by name.
	ClassLabels []string

	// Stages are a cascade's later stages, in order: for DeepFloyd IF the
	// stage II folder (IFSuperResolutionPipeline). Empty: the first stage
	// alone. Width and Height are the last stage's output size; Steps,
	// Guidance and Sampler are the first stage's.
	Stages []Stage

	// CacheMode turns on training-free step caching: "" (off),
	// "deepcache" (UNet models) or "fbcache" (diffusion transformers);
	// a model that cannot use the mode refuses it (ErrCacheMode). See
	// StepCache for the other settings (0: their defaults).
	CacheMode      string
	CacheInterval  int
	CacheBranch    int
	CacheThreshold float64

	// OnProgress, when set, is called after every step.
	OnProgress func(Event)
}

// Stage is a later stage of a cascade: its folder and its settings
// (zero values: the stage's defaults).
type Stage struct {
	Path     string
	Steps    int     // 0: the stage's default (IF stage II: 50)
	Guidance float64 // 0: the stage's default (IF stage II: 4)
	// NoiseLevel is the noise added to the previous stage's image before
	// upscaling, in timesteps (0: the stage's default, IF stage II: 250).
	NoiseLevel int
}

// LoRA is one LoRA file and its weight.
type LoRA struct {
	Path string
	// Weight scales the UNet's adapters; TextEncoderWeight the text
	// encoders' (nil: Weight).
	Weight            float64
	TextEncoderWeight *float64
}

// ControlNet is one ControlNet unit.
type ControlNet struct {
	Path  string      // diffusers folder or single file
	Image image.Image // condition image (resized to the output size)
	// Canny runs the Canny edge detector on Image first, with these
	// thresholds (OpenCV units).
	Canny               bool
	CannyLow, CannyHigh float64
	Scale               float64 // weight (0: 1)
	Start, End          float64 // fraction of the steps where it acts (End 0: 1)
	GuessMode           bool
}

// Adapter is one T2I-Adapter unit.
type Adapter struct {
	Path  string
	Image image.Image
	Scale float64 // weight (0: 1)
}

// Event reports progress: image Image of Images, Step of Steps of the
// current stage ("" or "base" / "refiner" for an SDXL ensemble).
type Event struct {
	Image, Images int
	Stage         string
	Step, Steps   int
	Elapsed       time.Duration // since the stage's first step
	// Latents are the current latents (read only), for previews.
	Latents *tensor.Tensor
}

// Output is what a generation returns.
type Output struct {
	Images []Image
}

// Image is one generated image with its seed and its A1111 parameters.
type Image struct {
	Image  *image.NRGBA
	Seed   int64
	Params imageio.Params
}

// Text is the PNG text chunk A1111 writes ("parameters").
func (im Image) Text() []imageio.KV {
	return []imageio.KV{{Key: imageio.ParametersKey, Value: im.Params.String()}}
}

// resolve fills the defaults from the model's info and validates the
// request, so that no work starts on a bad one.
func (p *Params) resolve(in Info) error {
	if p.Width == 0 {
		p.Width = in.Width
	}
	if p.Height == 0 {
		p.Height = in.Height
	}
	if p.Steps == 0 {
		p.Steps = in.Steps
	}
	if p.Guidance == 0 {
		p.Guidance = in.Guidance
	}
	if p.Sampler == "" {
		p.Sampler = in.Sampler
	}
	if p.Count == 0 {
		p.Count = 1
	}
	if p.Seed < 0 {
		p.Seed = rand.Int64N(1 << 32)
	}
	if p.AdapterFactor == 0 {
		p.AdapterFactor = 1
	}
	return p.validate(in)
}

func (p *Params) validate(in Info) error {
	errf := func(format string, a ...any) error { return fmt.Errorf("pipeline: "+format, a...) }
	if p.Count < 1 || p.Count > MaxBatch {
		return errf("image count %d outside [1, %d]", p.Count, MaxBatch)
	}
	if p.Steps < 1 || p.Steps > MaxSteps {
		return errf("steps %d outside [1, %d]", p.Steps, MaxSteps)
	}
	if p.Width <= 0 || p.Height <= 0 || p.Width > MaxSide || p.Height > MaxSide {
		return errf("size %dx%d must be positive and at most %d a side", p.Width, p.Height, MaxSide)
	}
	for _, f := range []struct {
		name   string
		v      float64
		lo, hi float64
	}{
		{"guidance scale", p.Guidance, 0, MaxGuidance}, {"guidance rescale", p.GuidanceRescale, 0, 1},
		{"strength", p.Strength, 0, 1}, {"refiner start", p.RefinerStart, 0, 1},
		{"adapter factor", p.AdapterFactor, 0, 1},
		{"aesthetic score", p.AestheticScore, -100, 100}, {"negative aesthetic score", p.NegativeAestheticScore, -100, 100},
	} {
		if math.IsNaN(f.v) || f.v < f.lo || f.v > f.hi {
			return errf("%s %v outside [%v, %v]", f.name, f.v, f.lo, f.hi)
		}
	}
	if _, ok := scheduler.Lookup(p.Sampler); !ok {
		return errf("unknown sampler %q; known: %s", p.Sampler, strings.Join(scheduler.Names(), ", "))
	}
	if len(p.Prompt) > maxPromptBytes || len(p.NegativePrompt) > maxPromptBytes {
		return errf("prompt longer than %d bytes", maxPromptBytes)
	}
	if p.Mask != nil && p.InitImage == nil {
		return errors.New("pipeline: a mask needs an init image")
	}
	if p.InitImage != nil && p.Strength == 0 {
		p.Strength = 0.75
	}
	for _, need := range []struct {
		feature string
		given   bool
	}{
		{"img2img", p.InitImage != nil && p.Mask == nil}, {"inpaint", p.Mask != nil},
		{"lora", len(p.LoRAs) > 0 || strings.Contains(p.Prompt, "<lora:")},
		{"controlnet", len(p.ControlNets) > 0}, {"t2i-adapter", len(p.Adapters) > 0},
		{"refiner", p.Refiner != ""}, {"class-labels", len(p.ClassLabels) > 0}, {"stages", len(p.Stages) > 0},
	} {
		if need.given && !in.accepts(need.feature) {
			return errf("%s (%s) does not take %s", in.Name, in.Kind, need.feature)
		}
	}
	if err := p.checkCache(in); err != nil {
		return err
	}
	for i, c := range p.ControlNets {
		if c.Image == nil {
			return errf("ControlNet %d has no condition image", i)
		}
		end := c.End
		if end == 0 {
			end = 1
		}
		if math.IsNaN(c.Start) || math.IsNaN(end) || c.Start < 0 || end > 1 || c.Start >= end {
			return errf("ControlNet %d: start %v and end %v must satisfy 0 <= start < end <= 1", i, c.Start, end)
		}
		if math.IsNaN(c.Scale) || math.Abs(c.Scale) > MaxGuidance {
			return errf("ControlNet %d: scale %v is not a usable number", i, c.Scale)
		}
	}
	for i, a := range p.Adapters {
		if a.Image == nil {
			return errf("T2I-Adapter %d has no image", i)
		}
		if math.IsNaN(a.Scale) || math.Abs(a.Scale) > MaxGuidance {
			return errf("T2I-Adapter %d: scale %v is not a usable number", i, a.Scale)
		}
	}
	for i, s := range p.Stages {
		if s.Steps < 0 || s.Steps > MaxSteps || math.IsNaN(s.Guidance) || s.Guidance < 0 || s.Guidance > MaxGuidance ||
			s.NoiseLevel < 0 || s.NoiseLevel >= 1000 {
			return errf("stage %d: steps %d, guidance %v or noise level %d out of range", i+2, s.Steps, s.Guidance, s.NoiseLevel)
		}
	}
	for _, l := range p.LoRAs {
		if math.IsNaN(l.Weight) || math.Abs(l.Weight) > MaxGuidance {
			return errf("LoRA %s: weight %v is not a usable number", l.Path, l.Weight)
		}
	}
	return nil
}

// maxPromptBytes bounds a prompt (CLIP reads 77 tokens; long prompts are
// truncated, but a megabyte of text is a mistake).
const maxPromptBytes = 64 << 10

// imageTensor converts an image to [1, h, w, 3] (or [1, h, w, 1] for a
// mask) in [0, 1] at the output size.
func imageTensor(img image.Image, w, h int, mask bool) (*tensor.Tensor, error) {
	var chw []float32
	var err error
	ch := 3
	if mask {
		chw, err = imageio.MaskToNCHW(img, w, h)
		ch = 1
	} else {
		chw, err = imageio.ToNCHW(img, w, h)
	}
	if err != nil {
		return nil, err
	}
	return tensor.FromSlice(chw, 1, ch, h, w).Permute(0, 2, 3, 1).Contiguous(), nil
}

// progress adapts the loop's callbacks to OnProgress for image i of n.
func (p *Params) progress(i, n int, stage string) Callbacks {
	if p.OnProgress == nil {
		return Callbacks{}
	}
	var latest *tensor.Tensor
	return Callbacks{
		OnStep: func(_ int, _ float64, latents *tensor.Tensor) { latest = latents },
		Progress: func(step, total int, elapsed time.Duration) {
			p.OnProgress(Event{Image: i, Images: n, Stage: stage, Step: step, Steps: total, Elapsed: elapsed, Latents: latest})
		},
	}
}
