package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/draw"
	"os"
	"strings"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/toy"
)

// evalFlags are the settings of "diffuse eval".
type evalFlags struct {
	model, sampler, grid, lora, controlnet  string
	seen, seeds, steps, threads, placements int
	probeSeeds                              int
	cfg, loraWeight                         float64
	verbose, attributes                     bool
	probes                                  multiFlag
}

func parseEvalFlags(args []string) (*evalFlags, error) {
	f := &evalFlags{}
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	fs.StringVar(&f.model, "m", "", "toy model folder (default: the built-in model)")
	fs.IntVar(&f.seen, "seen", 60, "number of seen-combination prompts")
	fs.IntVar(&f.seeds, "seeds", 2, "images per prompt (seeds 0, 1, ...)")
	fs.IntVar(&f.steps, "steps", defaultModelSteps, "sampling steps")
	fs.Float64Var(&f.cfg, "cfg-scale", defaultModelCFG, "classifier-free guidance scale")
	fs.StringVar(&f.sampler, "sampler", defaultModelSampler, "sampler")
	fs.StringVar(&f.grid, "grid", "", "also write the images as one PNG grid (rows of prompts, columns of seeds, upscaled 2×)")
	fs.BoolVar(&f.verbose, "v", false, "print every prompt's analysis")
	fs.IntVar(&f.threads, "t", 0, "threads (0 = all cores)")
	fs.StringVar(&f.lora, "lora", "", "apply this LoRA (e.g. a DreamBooth result) to every image")
	fs.Float64Var(&f.loraWeight, "lora-weight", 1, "weight of -lora")
	fs.Var(&f.probes, "probe", "also generate -probe-seeds images of this prompt and count the shapes in them (repeatable)")
	probeSeeds := fs.Int("probe-seeds", 20, "images per -probe prompt")
	fs.StringVar(&f.controlnet, "controlnet", "", "placement ControlNet: measure where shapes land against their masks, with it and without")
	fs.IntVar(&f.placements, "placements", 40, "images of the -controlnet measurement")
	fs.BoolVar(&f.attributes, "attributes", true, "run the per-attribute evaluation")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if f.seen < 0 || f.seeds < 1 || f.steps < 1 || *probeSeeds < 1 || f.placements < 1 {
		return nil, fmt.Errorf("eval: -seen must not be negative; -seeds, -steps, -probe-seeds and -placements must be positive")
	}
	f.probeSeeds = *probeSeeds
	return f, nil
}

// runEval measures what a toy model learned: it generates the toy
// package's fixed prompt set (seen and held-out attribute combinations),
// analyses every image and prints per-attribute accuracy; -probe counts
// the shapes a prompt gives (DreamBooth), -controlnet measures placement.
func runEval(ctx context.Context, args []string) error {
	f, err := parseEvalFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	path := f.model
	if path == "" {
		if path, err = defaultModelPath(); err != nil {
			return fmt.Errorf("eval: %w", err)
		}
	}
	m, err := pipeline.Open(ctx, path, pipeline.Options{Threads: max(f.threads, 0)})
	if err != nil {
		return fmt.Errorf("eval: -m: %w", err)
	}
	defer m.Close()
	if f.attributes {
		if err := evalAttributes(ctx, f, m); err != nil {
			return err
		}
	}
	for _, p := range f.probes {
		c, err := toy.ShapeCounts(ctx, p, f.probeSeeds, f.generator(m, nil))
		if err != nil {
			return fmt.Errorf("eval: %w", err)
		}
		fmt.Printf("probe %q (%d images): %s\n", p, f.probeSeeds, toy.FormatCounts(c))
	}
	if f.controlnet != "" {
		return evalPlacement(ctx, f, m)
	}
	return nil
}

// params is one toy image's request.
func (f *evalFlags) params(prompt string, seed int64) pipeline.Params {
	p := pipeline.Params{Prompt: prompt, Steps: f.steps, Guidance: f.cfg, Sampler: f.sampler,
		Seed: seed, Width: toy.Resolution, Height: toy.Resolution}
	if f.lora != "" {
		p.LoRAs = []pipeline.LoRA{{Path: f.lora, Weight: f.loraWeight}}
	}
	return p
}

// generator generates with m; edit, when set, adjusts each request.
func (f *evalFlags) generator(m pipeline.Model, edit func(*pipeline.Params)) toy.Generate {
	return func(ctx context.Context, prompt string, seed int64) (image.Image, error) {
		p := f.params(prompt, seed)
		if edit != nil {
			edit(&p)
		}
		out, err := m.Generate(ctx, p)
		if err != nil {
			return nil, err
		}
		return out.Images[0].Image, nil
	}
}

// evalAttributes is the per-attribute evaluation.
func evalAttributes(ctx context.Context, f *evalFlags, m pipeline.Model) error {
	set := toy.EvalSet(f.seen)
	rep, err := toy.Evaluate(ctx, set, f.seeds, f.generator(m, nil), func(s toy.Sample) {
		if f.verbose {
			mark := ""
			if s.Want.IsHeldOut() {
				mark = " [held out]"
			}
			fmt.Printf("%-58q seed %d → %s %s %s %s%s\n", s.Want.Caption(), s.Seed, s.Got.Size, s.Got.Colour, s.Got.Shape, s.Got.Position, mark)
		}
	})
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	rep.Write(os.Stdout)
	for _, a := range toy.Attributes {
		if c := rep.Confusions(a); len(c) > 0 {
			fmt.Printf("%s errors: %s\n", a, strings.Join(c, ", "))
		}
	}
	if f.grid != "" {
		return imageio.WritePNG(f.grid, gridImage(rep.Samples, f.seeds, 2), nil)
	}
	return nil
}

// evalPlacement measures where shapes land against their placement
// masks, without the ControlNet and with it.
func evalPlacement(ctx context.Context, f *evalFlags, m pipeline.Model) error {
	set, err := toy.PlacementSet(f.placements)
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	for _, withNet := range []bool{false, true} {
		gen := func(ctx context.Context, prompt string, mask image.Image, seed int64) (image.Image, error) {
			return f.generator(m, func(p *pipeline.Params) {
				if mask != nil {
					p.ControlNets = []pipeline.ControlNet{{Path: f.controlnet, Image: mask}}
				}
			})(ctx, prompt, seed)
		}
		p, err := toy.EvaluatePlacement(ctx, set, withNet, gen)
		if err != nil {
			return fmt.Errorf("eval: %w", err)
		}
		label := "without ControlNet"
		if withNet {
			label = "with ControlNet"
		}
		p.Write(os.Stdout, label)
	}
	return nil
}

// gridImage lays samples out in rows of cols images, each upscaled n
// times, with a 2-pixel gap.
func gridImage(samples []toy.Sample, cols, n int) *image.NRGBA {
	if len(samples) == 0 {
		return image.NewNRGBA(image.Rect(0, 0, 1, 1))
	}
	b := samples[0].Image.Bounds()
	cw, ch := b.Dx()*n+2, b.Dy()*n+2
	rows := (len(samples) + cols - 1) / cols
	out := image.NewNRGBA(image.Rect(0, 0, cols*cw, rows*ch))
	for i, s := range samples {
		img, ok := s.Image.(*image.NRGBA)
		if !ok {
			img = image.NewNRGBA(s.Image.Bounds())
			draw.Draw(img, img.Bounds(), s.Image, s.Image.Bounds().Min, draw.Src)
		}
		x, y := (i%cols)*cw, (i/cols)*ch
		up := upscaleNearest(img, n)
		draw.Draw(out, image.Rect(x, y, x+cw-2, y+ch-2), up, up.Bounds().Min, draw.Src)
	}
	return out
}
