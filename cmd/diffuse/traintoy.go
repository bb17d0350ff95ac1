package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/toy"
	"github.com/diffuse-go/diffuse/train"
)

// toyTrainFlags are the settings of "diffuse train-toy".
type toyTrainFlags struct {
	out                     string
	seed                    uint64
	vaeSteps, vaeBatch      int
	vaeLR                   float64
	steps, batch, ckptEvery int
	lr                      float64
	vaeInit, vocab          string
	biasPortion, biasMult   float64
	cpuprofile              string
	ema                     bool
}

func parseToyTrainFlags(args []string, out io.Writer) (*toyTrainFlags, error) {
	f := &toyTrainFlags{}
	fs := flag.NewFlagSet("train-toy", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&f.out, "o", "toy-train", "output folder: vae.safetensors, checkpoint-<step>/, logs/, model/")
	fs.Uint64Var(&f.seed, "seed", 1, "seed of weights, data and noise")
	fs.IntVar(&f.vaeSteps, "vae-steps", 200, "VAE training steps")
	fs.IntVar(&f.vaeBatch, "vae-batch", 16, "VAE batch size")
	fs.Float64Var(&f.vaeLR, "vae-lr", 2e-3, "VAE learning rate")
	fs.IntVar(&f.steps, "steps", 3150, "diffusion training steps (text encoder and UNet)")
	fs.IntVar(&f.batch, "batch", 16, "diffusion batch size")
	fs.Float64Var(&f.lr, "lr", 1e-3, "diffusion learning rate (constant after 100 warm-up steps)")
	fs.Float64Var(&f.biasPortion, "timestep-bias-portion", 0.2, "draw the noisiest portion of the timesteps more often (0: uniform draws); there the caption alone decides where the shape goes")
	fs.Float64Var(&f.biasMult, "timestep-bias-multiplier", 4, "how much more often (with -timestep-bias-portion)")
	fs.IntVar(&f.ckptEvery, "checkpoint-every", 50, "write a resumable checkpoint (with a usable model/ folder) every so many steps")
	fs.StringVar(&f.vaeInit, "vae-init", "", "start the VAE from this weights file (with its vae_scaling_factor.txt beside it) instead of from scratch")
	fs.BoolVar(&f.ema, "ema", false, "keep an exponential moving average of the weights (diffusers' EMAModel defaults) and save it as the model")
	fs.StringVar(&f.cpuprofile, "cpuprofile", "", "write a CPU profile of the diffusion stage to this file, for go tool pprof")
	fs.StringVar(&f.vocab, "vocab", "", "folder with CLIP's vocab.json and merges.txt to copy into the model's tokenizer folder (for diffusers)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: diffuse train-toy [-o toy-train] [flags]\n\ntrains the built-in toy model from scratch: the VAE, then the text encoder and UNet together")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("train-toy: unexpected arguments %q", fs.Args())
	}
	if f.out == "" || f.vaeSteps <= 0 || f.vaeBatch <= 0 || f.steps <= 0 || f.batch <= 0 || f.ckptEvery < 0 || f.lr <= 0 || f.vaeLR <= 0 {
		return nil, errors.New("train-toy: -o must be set; steps, batch sizes and learning rates must be positive")
	}
	return f, nil
}

// runTrainToy is "diffuse train-toy": it trains the built-in model from
// scratch on the toy package's generated shapes, the VAE first (skipped
// when <o>/vae.safetensors exists), then the CLIP text encoder and the UNet
// together through train.Trainer (resuming from the latest
// <o>/checkpoint-<step>), and writes the diffusers folder <o>/model. Loss
// logs are JSON lines in <o>/logs (diffuse plot draws them).
func runTrainToy(ctx context.Context, args []string) error {
	f, err := parseToyTrainFlags(args, os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if err := os.MkdirAll(filepath.Join(f.out, "logs"), 0o755); err != nil {
		return fmt.Errorf("train-toy: %w", err)
	}
	v, err := toyVAEStage(ctx, f.out, f.vaeInit, toy.TrainConfig{Seed: f.seed, BatchSize: f.vaeBatch, Steps: f.vaeSteps, LR: f.vaeLR, Warmup: 20})
	if err != nil {
		return fmt.Errorf("train-toy: VAE: %w", err)
	}
	d, err := toy.NewDiffusion(f.seed, v)
	if err != nil {
		return fmt.Errorf("train-toy: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(f.out, "logs", "loss.jsonl"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("train-toy: %w", err)
	}
	defer logf.Close()
	t0 := time.Now()
	var tr *train.Trainer
	err = withCPUProfile(f.cpuprofile, func() (err error) {
		tr, err = toy.TrainDiffusion(ctx, toy.TrainConfig{Seed: f.seed, BatchSize: f.batch, Steps: f.steps, LR: f.lr, Warmup: 100,
			CaptionDropout: 0.1, OutDir: f.out, CheckpointEvery: f.ckptEvery, Log: logf, TimestepBias: f.timestepBias(), EMA: f.emaConfig()}, d)
		return err
	})
	if err != nil {
		return fmt.Errorf("train-toy: diffusion: %w", err)
	}
	fmt.Fprintf(os.Stderr, "diffusion: step %d after %s\n", tr.GlobalStep, time.Since(t0).Round(time.Second))
	dir := filepath.Join(f.out, "model")
	if err := tr.WithEMAWeights(func() error { return d.Save(dir, f.vocab) }); err != nil {
		return fmt.Errorf("train-toy: %w", err)
	}
	fmt.Fprintln(os.Stderr, "wrote", dir)
	return nil
}

// toyVAEStage loads <out>/vae.safetensors or trains the VAE (from init
// when given) and writes it.
func toyVAEStage(ctx context.Context, out, init string, c toy.TrainConfig) (*vae.Model, error) {
	path := filepath.Join(out, "vae.safetensors")
	if v, err := toy.LoadVAE(path, c.Seed); err == nil || !errors.Is(err, os.ErrNotExist) {
		return v, err
	}
	var start *vae.Model
	if init != "" {
		var err error
		if start, err = toy.LoadVAE(init, c.Seed); err != nil {
			return nil, err
		}
	}
	logf, err := os.Create(filepath.Join(out, "logs", "vae_loss.jsonl"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	c.Log = logf
	t0 := time.Now()
	v, err := toy.TrainVAE(ctx, c, start)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "vae: %d steps in %s, scaling factor %g\n", c.Steps, time.Since(t0).Round(time.Second), v.Cfg.ScalingFactor)
	return v, toy.SaveVAE(path, v)
}

// timestepBias is the "later" bias of -timestep-bias-portion (none when 0).
func (f *toyTrainFlags) emaConfig() *train.EMAConfig {
	if !f.ema {
		return nil
	}
	c := train.DefaultEMA()
	return &c
}

func (f *toyTrainFlags) timestepBias() train.TimestepBias {
	if f.biasPortion == 0 {
		return train.TimestepBias{}
	}
	return train.TimestepBias{Strategy: "later", Portion: f.biasPortion, Multiplier: f.biasMult}
}
