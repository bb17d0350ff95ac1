package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"

	"github.com/diffuse-go/diffuse/toy"
)

// toyDataFlags are the settings of "diffuse toy-data".
type toyDataFlags struct {
	out         string
	seed, first uint64
	n           int
	shape       string
	free, masks bool
	captions    bool
}

func parseToyDataFlags(args []string, out io.Writer) (*toyDataFlags, error) {
	f := &toyDataFlags{}
	fs := flag.NewFlagSet("toy-data", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&f.out, "o", "", "output folder (required)")
	fs.IntVar(&f.n, "n", 100, "number of images")
	fs.Uint64Var(&f.seed, "seed", 1, "dataset seed")
	fs.Uint64Var(&f.first, "first", 0, "index of the first example")
	fs.StringVar(&f.shape, "shape", "", "draw only this shape, e.g. cross (a shape the built-in model never saw)")
	fs.BoolVar(&f.free, "free", false, "place shapes anywhere (captions then leave the position out)")
	fs.BoolVar(&f.captions, "captions", true, "write each image's caption beside it (-captions=false for DreamBooth instance images, which take --instance_prompt)")
	fs.BoolVar(&f.masks, "masks", false, "also write placement masks in conditioning/ and a metadata.jsonl manifest (ControlNet data)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: diffuse toy-data -o DIR [flags]\n\nwrites captioned images of the toy shapes world (NNNNNN.png with NNNNNN.txt) for diffuse train")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("toy-data: unexpected arguments %q", fs.Args())
	case f.out == "":
		return nil, errors.New("toy-data: -o is required")
	case f.n <= 0:
		return nil, fmt.Errorf("toy-data: -n %d must be positive", f.n)
	case f.shape != "" && !slices.Contains(toy.Shapes, f.shape) && !slices.Contains(toy.NewShapes, f.shape):
		return nil, fmt.Errorf("toy-data: unknown -shape %q (one of %v or %v)", f.shape, toy.Shapes, toy.NewShapes)
	}
	return f, nil
}

// runToyData is "diffuse toy-data": training sets from the toy world for
// the DreamBooth and ControlNet demonstrations.
func runToyData(args []string, stderr io.Writer) error {
	f, err := parseToyDataFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	g := toy.Generator{Seed: f.seed, Resolution: toy.Resolution, Shape: f.shape, FreePosition: f.free}
	if err := toy.WriteDataset(f.out, g, f.first, uint64(f.n), toy.DatasetOptions{NoCaptions: !f.captions, Masks: f.masks}); err != nil {
		return fmt.Errorf("toy-data: %w", err)
	}
	fmt.Fprintf(stderr, "wrote %d images to %s\n", f.n, f.out)
	return nil
}
