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

// runEval measures what a toy model learned: it generates the toy
// package's fixed prompt set (seen and held-out attribute combinations),
// analyses every image and prints per-attribute accuracy.
func runEval(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	model := fs.String("m", "", "toy model folder (default: the built-in model)")
	seen := fs.Int("seen", 60, "number of seen-combination prompts")
	seeds := fs.Int("seeds", 2, "images per prompt (seeds 0, 1, ...)")
	steps := fs.Int("steps", defaultModelSteps, "sampling steps")
	cfg := fs.Float64("cfg-scale", defaultModelCFG, "classifier-free guidance scale")
	sampler := fs.String("sampler", defaultModelSampler, "sampler")
	grid := fs.String("grid", "", "also write the images as one PNG grid (rows of prompts, columns of seeds, upscaled 2×)")
	verbose := fs.Bool("v", false, "print every prompt's analysis")
	threads := fs.Int("t", 0, "threads (0 = all cores)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *seen < 0 || *seeds < 1 || *steps < 1 {
		return fmt.Errorf("eval: -seen must not be negative, -seeds and -steps must be positive")
	}
	path := *model
	if path == "" {
		var err error
		if path, err = defaultModelPath(); err != nil {
			return fmt.Errorf("eval: %w", err)
		}
	}
	m, err := pipeline.Open(ctx, path, pipeline.Options{Threads: max(*threads, 0)})
	if err != nil {
		return fmt.Errorf("eval: -m: %w", err)
	}
	defer m.Close()
	gen := func(ctx context.Context, prompt string, seed int64) (image.Image, error) {
		out, err := m.Generate(ctx, pipeline.Params{Prompt: prompt, Steps: *steps, Guidance: *cfg, Sampler: *sampler,
			Seed: seed, Width: toy.Resolution, Height: toy.Resolution})
		if err != nil {
			return nil, err
		}
		return out.Images[0].Image, nil
	}
	set := toy.EvalSet(*seen)
	rep, err := toy.Evaluate(ctx, set, *seeds, gen, func(s toy.Sample) {
		if *verbose {
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
	if *grid != "" {
		return imageio.WritePNG(*grid, gridImage(rep.Samples, *seeds, 2), nil)
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
