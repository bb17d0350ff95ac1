package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/diffuse-go/diffuse/safetensors"
)

// Model is a loaded model of one family, ready to generate. A Model runs
// one generation at a time (Generate serialises callers); Close releases
// its weights.
type Model interface {
	// Info describes the model: its family, defaults and what it accepts.
	Info() Info
	// Generate runs one request and returns its images with their
	// metadata. It stops between steps when ctx is cancelled.
	Generate(ctx context.Context, p Params) (*Output, error)
	// Close releases the model's files; the Model is unusable after it.
	Close() error
}

// Info describes a loaded model.
type Info struct {
	Family string // the registered family name: "sd", "sdxl", "dit", ...
	Kind   string // what it is, for people: "SD 1.x", "SDXL refiner", ...
	Name   string // the file or folder name, as A1111 shows models
	Path   string
	// Defaults for a request that leaves them out.
	Width, Height, Steps int
	Guidance             float64
	Sampler              string
	// Accepts lists the optional request features the model takes:
	// "img2img", "inpaint", "lora", "controlnet", "t2i-adapter",
	// "refiner", "class-labels", "negative-prompt", "stages", and the
	// step cache modes "deepcache" and "fbcache" (Params.CacheMode).
	Accepts []string
	// Labels maps class names to ids for class-conditional models (DiT).
	Labels map[string]int
}

// accepts reports whether the model takes feature.
func (in Info) accepts(feature string) bool {
	for _, a := range in.Accepts {
		if a == feature {
			return true
		}
	}
	return false
}

// Family is a model family: how its checkpoints are recognised and opened.
// A family registers itself once (Register), usually from an init
// function; Open tries the families in registration order.
type Family struct {
	Name string
	// Detect reports whether src is a checkpoint of this family.
	Detect func(src *Source) bool
	// Open loads the model.
	Open func(ctx context.Context, src *Source, opt Options) (Model, error)
}

var (
	familiesMu sync.RWMutex
	families   []Family
)

// Register adds a family. A second family of the same name replaces the
// first (tests register stand-ins this way).
func Register(f Family) {
	familiesMu.Lock()
	defer familiesMu.Unlock()
	for i, g := range families {
		if g.Name == f.Name {
			families[i] = f
			return
		}
	}
	families = append(families, f)
}

// Families lists the registered family names.
func Families() []string {
	familiesMu.RLock()
	defer familiesMu.RUnlock()
	names := make([]string, len(families))
	for i, f := range families {
		names[i] = f.Name
	}
	return names
}

// Open loads the model at path — a single .safetensors checkpoint or a
// diffusers folder (model_index.json) — as the family that recognises it.
// It applies opt's compute settings first (Options.Apply: they are
// process-wide).
func Open(ctx context.Context, path string, opt Options) (Model, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := opt.Apply(); err != nil {
		return nil, err
	}
	src, err := Probe(path)
	if err != nil {
		return nil, err
	}
	defer src.close()
	familiesMu.RLock()
	fams := append([]Family(nil), families...)
	familiesMu.RUnlock()
	for _, f := range fams {
		if f.Detect(src) {
			m, err := f.Open(ctx, src, opt)
			if err != nil {
				return nil, fmt.Errorf("pipeline: opening %s as %s: %w", path, f.Name, err)
			}
			return m, nil
		}
	}
	what := "its tensor names"
	if src.Dir {
		what = fmt.Sprintf("model_index.json's _class_name %q", src.Class)
	}
	return nil, fmt.Errorf("pipeline: %s: no known model family matches %s (known: %s)", path, what, strings.Join(Families(), ", "))
}

// Source is a checkpoint being opened: a single file or a diffusers folder.
type Source struct {
	Path string
	Dir  bool
	// Index is a folder's model_index.json, Class its _class_name.
	Index map[string]json.RawMessage
	Class string
	file  *safetensors.File // a single file's header, opened on demand
	err   error
}

// Probe looks at path without loading weights: a folder's
// model_index.json, or a single file's safetensors header.
func Probe(path string) (*Source, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	src := &Source{Path: path, Dir: st.IsDir()}
	if !src.Dir {
		if err := refusePickle(path); err != nil {
			return nil, err
		}
		if src.file, err = safetensors.Open(path); err != nil {
			return nil, fmt.Errorf("pipeline: %w", err)
		}
		return src, nil
	}
	b, err := os.ReadFile(filepath.Join(path, "model_index.json"))
	if err != nil {
		return nil, fmt.Errorf("pipeline: %s is a folder without model_index.json, so not a diffusers model", path)
	}
	if err := json.Unmarshal(b, &src.Index); err != nil {
		return nil, fmt.Errorf("pipeline: %s/model_index.json: %w", path, err)
	}
	if raw, ok := src.Index["_class_name"]; ok {
		if err := json.Unmarshal(raw, &src.Class); err != nil {
			return nil, fmt.Errorf("pipeline: %s/model_index.json _class_name: %w", path, err)
		}
	}
	return src, nil
}

func (s *Source) close() {
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
}

// ClassIs reports whether a folder's pipeline class is one of names.
func (s *Source) ClassIs(names ...string) bool {
	for _, n := range names {
		if s.Dir && s.Class == n {
			return true
		}
	}
	return false
}

// HasTensorPrefix reports whether a single file has a tensor whose name
// starts with prefix.
func (s *Source) HasTensorPrefix(prefix string) bool {
	if s.file == nil {
		return false
	}
	for _, n := range s.file.Names() {
		if strings.HasPrefix(n, prefix) {
			return true
		}
	}
	return false
}

// Lists reports whether a folder's model_index.json names component.
func (s *Source) Lists(component string) bool { return s.Dir && listed(s.Index, component) }

// errClosed is returned by a closed model.
var errClosed = errors.New("pipeline: model is closed")

// sortedKeys lists a map's keys in order (for messages).
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
