// Package defaultmodel is diffuse's built-in text-to-image model: a toy
// Stable Diffusion (CLIP text encoder, UNet2DConditionModel, AutoencoderKL;
// 32×32 pixels) trained from scratch by diffuse's own trainer on the toy
// package's captioned shapes ("a large red circle on the left, gray
// background"). It is embedded in the binary as a diffusers folder so that
// generation works offline with nothing downloaded; diffuse train-toy
// reproduces it.
package defaultmodel

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

//go:embed model
var files embed.FS

// FS is the model's diffusers folder (model_index.json at its root).
func FS() fs.FS {
	sub, err := fs.Sub(files, "model")
	if err != nil {
		panic(err) // "model" is embedded above; fs.Sub fails only on invalid names
	}
	return sub
}

// Version identifies the embedded weights: the first 12 hex digits of a
// SHA-256 over every file's name and contents.
func Version() (string, error) {
	h := sha256.New()
	var names []string
	err := fs.WalkDir(FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, p)
		}
		return err
	})
	if err != nil {
		return "", fmt.Errorf("defaultmodel: %w", err)
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := fs.ReadFile(FS(), n)
		if err != nil {
			return "", fmt.Errorf("defaultmodel: %w", err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

// Dir returns a folder holding the model (pipeline.Open takes a path),
// writing it under cacheRoot (e.g. os.UserCacheDir()) as
// diffuse/default-model-<Version> on first use. The folder is assembled
// in a temporary sibling and renamed into place, so a crash or a
// concurrent first use never leaves a partial model behind.
func Dir(cacheRoot string) (string, error) {
	if cacheRoot == "" {
		return "", errors.New("defaultmodel: no cache folder given")
	}
	v, err := Version()
	if err != nil {
		return "", err
	}
	parent := filepath.Join(cacheRoot, "diffuse")
	final := filepath.Join(parent, "default-model-"+v)
	if st, err := os.Stat(filepath.Join(final, "model_index.json")); err == nil && !st.IsDir() {
		return final, nil
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fmt.Errorf("defaultmodel: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, ".default-model-*")
	if err != nil {
		return "", fmt.Errorf("defaultmodel: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	if err := os.CopyFS(tmp, FS()); err != nil {
		return "", fmt.Errorf("defaultmodel: writing %s: %w", tmp, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", fmt.Errorf("defaultmodel: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		// Another process may have put it there first.
		if _, serr := os.Stat(filepath.Join(final, "model_index.json")); serr == nil {
			return final, nil
		}
		return "", fmt.Errorf("defaultmodel: %w", err)
	}
	return final, nil
}
