// Command train-toy trains diffuse's embedded default model from scratch on
// the toy package's generated shapes: first the small VAE, then the CLIP
// text encoder and the UNet together (full training through train.Trainer),
// and writes the diffusers folder.
//
//	go run ./toy/cmd/train-toy -o toy-train
//
// The VAE stage writes <o>/vae.safetensors and is skipped when that file
// exists; the diffusion stage resumes from the latest <o>/checkpoint-<step>.
// Losses go to <o>/vae_loss.tsv and <o>/loss.tsv (step, loss, ...), the
// model to <o>/model.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/toy"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "train-toy:", err)
		os.Exit(1)
	}
}

func run() error {
	out := flag.String("o", "toy-train", "output folder")
	seed := flag.Uint64("seed", 1, "seed of weights, data and noise")
	vaeSteps := flag.Int("vae-steps", 600, "VAE training steps")
	vaeBatch := flag.Int("vae-batch", 16, "VAE batch size")
	vaeLR := flag.Float64("vae-lr", 2e-3, "VAE learning rate")
	steps := flag.Int("steps", 3000, "diffusion training steps")
	batch := flag.Int("batch", 32, "diffusion batch size")
	lr := flag.Float64("lr", 1e-3, "diffusion learning rate")
	ckpt := flag.Int("checkpoint-every", 100, "checkpoint every so many steps")
	vaeInit := flag.String("vae-init", "", "start the VAE from this weights file (with its vae_scaling_factor.txt beside it) instead of from scratch")
	vocab := flag.String("vocab", "", "folder with CLIP's vocab.json and merges.txt to copy into the model's tokenizer folder")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	v, err := stageVAE(ctx, *out, *vaeInit, toy.TrainConfig{Seed: *seed, BatchSize: *vaeBatch, Steps: *vaeSteps, LR: *vaeLR, Warmup: 20})
	if err != nil {
		return err
	}
	d, err := toy.NewDiffusion(*seed, v)
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(*out, "loss.tsv"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	t0 := time.Now()
	tr, err := toy.TrainDiffusion(ctx, toy.TrainConfig{Seed: *seed, BatchSize: *batch, Steps: *steps, LR: *lr, Warmup: 100,
		CaptionDropout: 0.1, OutDir: *out, CheckpointEvery: *ckpt, Log: logf}, d)
	if err != nil {
		return err
	}
	fmt.Printf("diffusion: %d steps in %s\n", tr.GlobalStep, time.Since(t0).Round(time.Second))
	return d.Save(filepath.Join(*out, "model"), *vocab)
}

// stageVAE loads <out>/vae.safetensors or trains and writes it (from
// init when given).
func stageVAE(ctx context.Context, out, init string, c toy.TrainConfig) (*vae.Model, error) {
	path := filepath.Join(out, "vae.safetensors")
	if v, err := loadVAE(path, c.Seed); err == nil || !errors.Is(err, os.ErrNotExist) {
		return v, err
	}
	var start *vae.Model
	if init != "" {
		var err error
		if start, err = loadVAE(init, c.Seed); err != nil {
			return nil, err
		}
	}
	logf, err := os.Create(filepath.Join(out, "vae_loss.tsv"))
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
	fmt.Printf("vae: %d steps in %s, scaling factor %g\n", c.Steps, time.Since(t0).Round(time.Second), v.Cfg.ScalingFactor)
	if err := toy.SaveModule(path, v); err != nil {
		return nil, err
	}
	return v, os.WriteFile(scalePath(path), []byte(fmt.Sprint(v.Cfg.ScalingFactor)), 0o644)
}

func scalePath(weights string) string {
	return filepath.Join(filepath.Dir(weights), "vae_scaling_factor.txt")
}

// loadVAE reads VAE weights and the scaling factor file beside them.
func loadVAE(path string, seed uint64) (*vae.Model, error) {
	b, err := os.ReadFile(scalePath(path))
	if err != nil {
		return nil, err
	}
	var s float32
	if _, err := fmt.Sscan(string(b), &s); err != nil {
		return nil, fmt.Errorf("%s: %w", scalePath(path), err)
	}
	v, err := toy.NewVAE(seed, s)
	if err != nil {
		return nil, err
	}
	return v, toy.LoadModule(path, v)
}
