// Command generate is the smallest use of the diffuse library: open any
// model family through pipeline.Open and write its images as PNG files
// with their A1111 parameters.
//
//	go run ./examples/generate -m MODEL -p "a lighthouse at dusk" -o out.png
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/pipeline"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "generate:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	model := fs.String("m", "", "model: a .safetensors checkpoint or a diffusers folder")
	var p pipeline.Params
	fs.StringVar(&p.Prompt, "p", "", "prompt")
	fs.IntVar(&p.Steps, "steps", 0, "sampling steps (0: the model's default)")
	fs.IntVar(&p.Width, "W", 0, "width (0: the model's default)")
	fs.IntVar(&p.Height, "H", 0, "height (0: the model's default)")
	fs.Int64Var(&p.Seed, "seed", 42, "seed")
	out := fs.String("o", "out.png", "output PNG")
	if err := fs.Parse(args); err != nil {
		return err
	}
	m, err := pipeline.Open(ctx, *model, pipeline.Options{})
	if err != nil {
		return err
	}
	defer m.Close()
	res, err := m.Generate(ctx, p)
	if err != nil {
		return err
	}
	img := res.Images[0]
	return imageio.WritePNG(*out, img.Image, img.Text())
}
