package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// runBench builds full-size models with random weights and times them.
func runBench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	arch := fs.String("arch", "sd15", "model family: sd15 or sdxl")
	sizes := fs.String("size", "", "image sizes, comma separated (default 512 for sd15, 1024 for sdxl)")
	dtype := fs.String("dtype", "f16", "weight storage dtype: f32, f16 or bf16")
	steps := fs.Int("steps", 2, "UNet steps to time (each with CFG, batch 2)")
	only := fs.String("only", "text,unet,vae", "components to time")
	threads := fs.Int("threads", 0, "threads (0 = all cores)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *threads > 0 {
		runtime.GOMAXPROCS(*threads)
	}
	dt, err := parseDType(*dtype)
	if err != nil {
		return err
	}
	var ucfg unet.Config
	var tcfgs []clip.Config
	var vcfg vae.Config
	ctxDim := 0
	switch *arch {
	case "sd15":
		ucfg, vcfg = unet.SD15(4), vae.SD()
		tcfgs = []clip.Config{clip.SD15()}
		if *sizes == "" {
			*sizes = "512"
		}
		ctxDim = 768
	case "sdxl":
		ucfg, vcfg = unet.SDXL(), vae.SDXL()
		l, g := clip.SD15(), clip.BigG()
		tcfgs = []clip.Config{l, g}
		if *sizes == "" {
			*sizes = "1024"
		}
		ctxDim = 2048
	default:
		return fmt.Errorf("bench: unknown -arch %q (sd15, sdxl)", *arch)
	}
	fmt.Printf("diffuse bench: arch %s, weights %s, %d threads, %s\n", *arch, dt, runtime.GOMAXPROCS(0), runtime.GOARCH)
	want := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		want[strings.TrimSpace(s)] = true
	}
	if want["text"] {
		for i, tc := range tcfgs {
			m, err := clip.New(tc)
			if err != nil {
				return err
			}
			nn.Init(m, uint64(10+i), dt)
			ids := make([]int64, 2*77)
			for j := range ids {
				ids[j] = int64(j % 49000)
			}
			t0 := time.Now()
			if _, err := m.Forward(ids, 2, 77); err != nil {
				return err
			}
			report(fmt.Sprintf("text encoder %d (2×77 tokens)", i+1), time.Since(t0), 0)
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	for _, s := range strings.Split(*sizes, ",") {
		px, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || px%64 != 0 || px <= 0 {
			return fmt.Errorf("bench: size %q must be a positive multiple of 64", s)
		}
		lat := px / 8
		if want["unet"] {
			u, err := unet.New(ucfg)
			if err != nil {
				return err
			}
			nn.Init(u, 1, dt)
			x := tensor.Full(0.1, 2, 4, lat, lat)
			cond := unet.Cond{EncoderHiddenStates: tensor.Full(0.01, 2, 77, ctxDim)}
			if ucfg.AdditionEmbedType == "text_time" {
				cond.TextEmbeds = tensor.Full(0.01, 2, 1280)
				cond.TimeIDs = tensor.FromSlice([]float32{float32(px), float32(px), 0, 0, float32(px), float32(px), float32(px), float32(px), 0, 0, float32(px), float32(px)}, 2, 6)
			}
			for i := 0; i < *steps; i++ {
				t0 := time.Now()
				if _, err := u.Forward(x, []float32{999 - float32(i)}, cond); err != nil {
					return err
				}
				report(fmt.Sprintf("unet step %dpx (batch 2 = CFG)", px), time.Since(t0), 0)
				if err := ctx.Err(); err != nil {
					return err
				}
			}
		}
		if want["vae"] {
			v, err := vae.New(vcfg)
			if err != nil {
				return err
			}
			nn.Init(v, 2, dt)
			t0 := time.Now()
			if _, err := v.Decode(tensor.Full(0.1, 1, 4, lat, lat)); err != nil {
				return err
			}
			report(fmt.Sprintf("vae decode %dpx", px), time.Since(t0), 0)
		}
	}
	fmt.Printf("peak RSS: %.2f GiB\n", float64(peakRSS())/(1<<30))
	return nil
}

func report(what string, d time.Duration, flops float64) {
	if flops > 0 {
		fmt.Printf("%-40s %8.3f s  %7.1f GFLOP/s\n", what, d.Seconds(), flops/d.Seconds()/1e9)
		return
	}
	fmt.Printf("%-40s %8.3f s\n", what, d.Seconds())
}

// peakRSS returns the process's peak resident set size in bytes.
func peakRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss * 1024 // Linux reports KiB
}

func parseDType(s string) (tensor.DType, error) {
	switch s {
	case "f32", "fp32", "float32":
		return tensor.F32, nil
	case "f16", "fp16", "float16":
		return tensor.F16, nil
	case "bf16", "bfloat16":
		return tensor.BF16, nil
	}
	return 0, fmt.Errorf("unknown dtype %q (f32, f16, bf16)", s)
}

var _ = os.Stdout
