package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/pipeline"
)

// TestCacheFlags checks that the step cache flags reach the request.
func TestCacheFlags(t *testing.T) {
	f, err := parseGenFlags([]string{"-m", "m", "--cache-mode", "deepcache", "--cache-interval", "2", "--cache-branch", "1",
		"--cache-threshold", "0.2"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.params()
	if err != nil {
		t.Fatal(err)
	}
	if p.CacheMode != "deepcache" || p.CacheInterval != 2 || p.CacheBranch != 1 || p.CacheThreshold != 0.2 {
		t.Errorf("cache settings %q %d %d %v", p.CacheMode, p.CacheInterval, p.CacheBranch, p.CacheThreshold)
	}
}

// TestGenerateCache runs generate with --cache-mode on the tiny model:
// deepcache is written into the PNG parameters, fbcache is refused.
func TestGenerateCache(t *testing.T) {
	model, _, _ := tinyFolder(t)
	out := filepath.Join(t.TempDir(), "out.png")
	args := []string{"-m", model, "-p", "a cube", "--steps", "4", "-W", "64", "-H", "64", "-o", out, "-q", "--cache-mode"}
	if err := runGenerate(context.Background(), append(args, "deepcache")); err != nil {
		t.Fatal(err)
	}
	text, err := imageio.ReadPNGText(out)
	if err != nil {
		t.Fatal(err)
	}
	p, err := imageio.ParseParams(text[imageio.ParametersKey])
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := p.Get("Cache"); !ok || c != "deepcache interval 3 branch 0" {
		t.Errorf("Cache parameter %q (present %v), want \"deepcache interval 3 branch 0\"", c, ok)
	}
	if err := runGenerate(context.Background(), append(args, "fbcache")); !errors.Is(err, pipeline.ErrCacheMode) {
		t.Errorf("fbcache on SD: %v, want ErrCacheMode", err)
	}
}
