package main

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
	"github.com/diffuse-go/diffuse/tensor/gemm"
	cliptok "github.com/diffuse-go/diffuse/tokenizer/clip"
)

// bf16Prompts is the fixed prompt set of `bench -only bf16`'s image error.
var bf16Prompts = []string{
	"a photograph of an astronaut riding a horse",
	"a lighthouse on a cliff at dusk, oil painting",
	"a bowl of ramen on a wooden table, studio lighting",
}

// bf16Bench is what `bench -only bf16` measures: UNet steps in float32
// and in bfloat16 side by side, and the image error of bfloat16 against
// float32 over bf16Prompts.
type bf16Bench struct {
	mode     gemm.BF16Mode // the bf16 mode compared with float32
	steps    int           // UNet steps of each mode, alternating (0: none)
	genSteps int           // Euler steps of each image (0: no images)
}

// bf16Mode is the mode `bench -only bf16` compares with float32: the one
// -bf16 or DIFFUSE_BF16 set, else the native kernel where the CPU has it.
func bf16Mode() (gemm.BF16Mode, error) {
	m := gemm.CurrentBF16Mode()
	if m == gemm.BF16Off {
		m = gemm.SetBF16Mode(gemm.BF16Native)
	}
	if m == gemm.BF16Off {
		return m, fmt.Errorf("bench: -only bf16 needs an AVX512_BF16 CPU (or DIFFUSE_BF16=round to emulate it)")
	}
	return m, nil
}

// benchBF16 runs the comparison on the bench models at px.
func benchBF16(ctx context.Context, bm benchModels, px int, bb bf16Bench) error {
	if len(bm.text) != 1 || bm.unet == nil || bm.vae == nil {
		return fmt.Errorf("bench: -only bf16 times SD 1.x/2.x (a text encoder, a UNet and a VAE)")
	}
	defer gemm.SetBF16Mode(bb.mode)
	if bb.steps > 0 {
		if err := bf16Steps(ctx, bm, px, bb); err != nil {
			return err
		}
	}
	if bb.genSteps > 0 {
		return bf16Images(ctx, bm, px, bb)
	}
	return nil
}

// bf16Steps times UNet steps (CFG batch 2) in float32 and in bf16,
// alternating ABBA…, after one untimed step of each (weight packing, and
// the bf16 pair panels).
func bf16Steps(ctx context.Context, bm benchModels, px int, bb bf16Bench) error {
	lat := px / 8
	x := tensor.Full(0.1, 2, bm.unet.Cfg.InChannels, lat, lat)
	cond := unet.Cond{EncoderHiddenStates: tensor.Full(0.01, 2, 77, bm.ctxDim)}
	step := func(m gemm.BF16Mode, ds, cs *[]time.Duration) error {
		gemm.SetBF16Mode(m)
		c0 := cpuTime()
		d, err := unetStep(bm.unet, x, cond, 999)
		if ds != nil {
			*ds, *cs = append(*ds, d), append(*cs, cpuTime()-c0)
		}
		return err
	}
	for _, m := range []gemm.BF16Mode{gemm.BF16Off, bb.mode} {
		if err := step(m, nil, nil); err != nil {
			return err
		}
	}
	var fd, fc, bd, bc []time.Duration
	for i := range bb.steps {
		order := []gemm.BF16Mode{gemm.BF16Off, bb.mode}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, m := range order {
			ds, cs := &fd, &fc
			if m != gemm.BF16Off {
				ds, cs = &bd, &bc
			}
			if err := step(m, ds, cs); err != nil {
				return err
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	f, b := median(fd).Seconds(), median(bd).Seconds()
	fcpu, bcpu := median(fc).Seconds(), median(bc).Seconds()
	fmt.Printf("unet step %dpx (CFG batch 2), median of %d each, alternating:\n  float32 %.3f s (CPU %.2f s)\n  bf16 %-6s %.3f s (CPU %.2f s)\n  speed-up %.2fx wall, %.2fx CPU time\n",
		px, bb.steps, f, fcpu, bb.mode, b, bcpu, f/b, fcpu/bcpu)
	return nil
}

// bf16Images generates each of bf16Prompts in float32 and in bf16 (the
// text encoder and VAE in that mode too, as -bf16 runs them) and reports
// the image error.
func bf16Images(ctx context.Context, bm benchModels, px int, bb bf16Bench) error {
	tok, err := cliptok.New(cliptok.Options{Pad: cliptok.PadEOS})
	if err != nil {
		return err
	}
	cfg, err := scheduler.ParseConfig([]byte(pipeline.SD15SchedulerConfig))
	if err != nil {
		return err
	}
	p := &pipeline.SD{TextEncoder: bm.text[0], Tokenizer: tok, UNet: bm.unet, VAE: bm.vae}
	gen := func(m gemm.BF16Mode, prompt string) ([]float32, error) {
		gemm.SetBF16Mode(m)
		s, err := scheduler.New("euler", cfg)
		if err != nil {
			return nil, err
		}
		res, err := p.Generate(ctx, pipeline.Request{Prompts: []string{prompt}, Width: px, Height: px, Steps: bb.genSteps,
			Guidance: 7, Scheduler: s, Noise: rng.New(42)})
		if err != nil {
			return nil, err
		}
		return res.Images.Data(), nil
	}
	fmt.Printf("bf16 %s against float32, %dpx, euler, %d steps, CFG 7, seed 42:\n", bb.mode, px, bb.genSteps)
	var all32, all16 []float32
	for _, prompt := range bf16Prompts {
		f, err := gen(gemm.BF16Off, prompt)
		if err != nil {
			return err
		}
		b, err := gen(bb.mode, prompt)
		if err != nil {
			return err
		}
		fmt.Printf("  %-52q PSNR %5.1f dB, max abs diff %3.0f/255\n", prompt, psnr(f, b), math.Round(255*maxAbsDiff(f, b)))
		all32, all16 = append(all32, f...), append(all16, b...)
	}
	fmt.Printf("  all %d images: PSNR %.1f dB, max abs diff %.0f/255\n", len(bf16Prompts), psnr(all32, all16), math.Round(255*maxAbsDiff(all32, all16)))
	return nil
}
