// Command plot-loss draws a training loss log ("step loss ..." lines, as
// toy/cmd/train-toy writes) as a PNG curve on a logarithmic loss axis.
//
//	go run ./toy/cmd/plot-loss -o loss.png toy-train/loss.tsv
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/toy"
)

func main() {
	out := flag.String("o", "loss.png", "output PNG")
	w := flag.Int("W", 640, "width")
	h := flag.Int("H", 320, "height")
	smooth := flag.Float64("smooth", 0.98, "moving-average weight of the previous value")
	flag.Parse()
	if err := run(flag.Args(), *out, *w, *h, *smooth); err != nil {
		fmt.Fprintln(os.Stderr, "plot-loss:", err)
		os.Exit(1)
	}
}

func run(args []string, out string, w, h int, smooth float64) error {
	if len(args) != 1 {
		return fmt.Errorf("give one loss log file")
	}
	f, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	pts, err := toy.ReadLossLog(f)
	if err != nil {
		return err
	}
	img, err := toy.PlotLoss(pts, w, h, smooth)
	if err != nil {
		return err
	}
	return imageio.WritePNG(out, img, nil)
}
