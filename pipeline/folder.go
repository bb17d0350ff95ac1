package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
)

// folder loads the components of a diffusers folder, each from its
// sub-folder's config.json and safetensors weights, and keeps the files
// the models read their weights from.
type folder struct {
	dir   string
	opt   LoadOptions
	files []*safetensors.File
}

// config reads a component's config.json.
func (f *folder) config(sub string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(f.dir, sub, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("%s: component %s: %w", f.dir, sub, err)
	}
	return b, nil
}

// load reads the weights of sub into m: one safetensors file, else the
// shards a safetensors index names.
func (f *folder) load(sub string, m nn.Module) error {
	wp, err := weightFile(filepath.Join(f.dir, sub))
	if err != nil {
		if idx := shardIndex(filepath.Join(f.dir, sub)); idx != "" {
			return f.loadShards(idx, m)
		}
		return err
	}
	sf, err := safetensors.Open(wp)
	if err != nil {
		return err
	}
	f.files = append(f.files, sf)
	return loadInto(m, sf, f.opt)
}

// scheduler reads scheduler/scheduler_config.json, or returns def when
// the folder has none.
func (f *folder) scheduler(def string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(f.dir, "scheduler", "scheduler_config.json"))
	if errors.Is(err, os.ErrNotExist) {
		return []byte(def), nil
	}
	return b, err
}

// done lets go of the pages loading touched; close releases the files.
func (f *folder) done()  { f.files = keepMapped(f.files) }
func (f *folder) close() { (&Components{files: f.files}).Close(); f.files = nil }

// component builds sub's model from its config and loads its weights.
func component[C any, M nn.Module](f *folder, sub string, parse func([]byte) (C, error), build func(C) (M, error)) (M, C, error) {
	var zero M
	b, err := f.config(sub)
	if err != nil {
		return zero, *new(C), err
	}
	cfg, err := parse(b)
	if err != nil {
		return zero, cfg, fmt.Errorf("%s/%s/config.json: %w", f.dir, sub, err)
	}
	m, err := build(cfg)
	if err != nil {
		return zero, cfg, fmt.Errorf("%s/%s: %w", f.dir, sub, err)
	}
	if err := f.load(sub, m); err != nil {
		return zero, cfg, err
	}
	return m, cfg, nil
}
