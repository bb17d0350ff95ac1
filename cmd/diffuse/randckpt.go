package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/diffuse-go/diffuse/checkpoint"
	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/pipeline"
)

// runRandomCheckpoint writes a full-size SD 1.x single-file checkpoint with
// random weights in the original LDM layout: real sizes and key names,
// without downloading anything.
func runRandomCheckpoint(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("random-checkpoint", flag.ContinueOnError)
	out := fs.String("o", "sd15-random.safetensors", "output file")
	dtype := fs.String("dtype", "f16", "weight dtype: f32, f16 or bf16")
	inpaint := fs.Bool("inpainting", false, "9-channel inpainting UNet")
	seed := fs.Uint64("seed", 1, "seed for the weights")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dt, err := parseDType(*dtype)
	if err != nil {
		return err
	}
	layout, inCh := checkpoint.SD15(), 4
	if *inpaint {
		layout, inCh = checkpoint.SD15Inpainting(), 9
	}
	t0 := time.Now()
	c := &pipeline.Components{}
	if c.TextEncoder, err = clip.New(clip.SD15()); err != nil {
		return err
	}
	if c.UNet, err = unet.New(unet.SD15(inCh)); err != nil {
		return err
	}
	if c.VAE, err = vae.New(vae.SD()); err != nil {
		return err
	}
	nn.Init(c.TextEncoder, *seed, dt)
	nn.Init(c.UNet, *seed+1, dt)
	nn.Init(c.VAE, *seed+2, dt)
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := pipeline.WriteLDM(*out, layout, c, dt); err != nil {
		return err
	}
	fmt.Printf("wrote %s (%s, %s weights) in %.1fs\n", *out, layout.Name, dt, time.Since(t0).Seconds())
	return nil
}
