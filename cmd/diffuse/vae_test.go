package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/tensor"
)

// TestGenerateComponentVAE: --component vae=PATH replaces an SD model's
// VAE (the image changes); a missing path is named.
func TestGenerateComponentVAE(t *testing.T) {
	model, _, _ := tinyFolder(t)
	b, err := os.ReadFile(filepath.Join(model, "vae", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	other := filepath.Join(dir, "other")
	f := pipeline.RandomFolder{Class: "StableDiffusionPipeline",
		Components: []pipeline.RandomComponent{{Name: "vae", Library: "diffusers", Class: "AutoencoderKL", Config: cfg}}}
	if err := pipeline.WriteRandomFolder(other, f, 5, tensor.F32); err != nil {
		t.Fatal(err)
	}
	gen := func(out string, extra ...string) error {
		args := append([]string{"-m", model, "-p", "x", "--steps", "1", "-W", "64", "-H", "64", "--seed", "3", "-q", "-o", out}, extra...)
		return runGenerate(context.Background(), args)
	}
	own, given := filepath.Join(dir, "own.png"), filepath.Join(dir, "given.png")
	if err := gen(own); err != nil {
		t.Fatal(err)
	}
	if err := gen(given, "--component", "vae="+filepath.Join(other, "vae")); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(own)
	c, _ := os.ReadFile(given)
	if len(a) == 0 || bytes.Equal(a, c) {
		t.Error("--component vae did not change the image")
	}
	missing := filepath.Join(dir, "no-vae.safetensors")
	if err := gen(filepath.Join(dir, "x.png"), "--component", "vae="+missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing VAE: %v", err)
	}
}

// --vae-dir is the server's VAE folder.
func TestServeVAEDir(t *testing.T) {
	f, err := parseServeFlags([]string{"-m", "x", "--vae-dir", "/vaes"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := f.config(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.VAEDir != "/vaes" {
		t.Errorf("VAEDir %q", cfg.VAEDir)
	}
}
