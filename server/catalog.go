package server

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// entry is one model file or folder a request may name.
type entry struct {
	Name  string // relative path without extension, slash-separated
	Title string // relative path with extension (A1111's title)
	Path  string
}

// scan lists the models inside dir: .safetensors files (and .gguf ones
// when gguf is set: SD3/FLUX transformers, which open with the server's
// Options.Components) and folders holding model_index.json or config.json
// (as isModel tells: diffusers pipelines, or ControlNets).
// Symbolic links are not followed out of dir: names resolve only to what
// the listing holds, so a request cannot reach other paths.
func scan(dir string, isModel func(folder string) bool, gguf bool) []entry {
	if dir == "" {
		return nil
	}
	var out []entry
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir {
				return err
			}
			return nil
		}
		if p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if isModel != nil && isModel(p) {
				out = append(out, entry{Name: rel, Title: rel, Path: p})
				return filepath.SkipDir
			}
			if exists(filepath.Join(p, "model_index.json")) || exists(filepath.Join(p, "config.json")) {
				return filepath.SkipDir // pipelines and components of other kinds
			}
			if strings.Count(rel, "/") >= 3 {
				return filepath.SkipDir // deep trees are not model folders
			}
			return nil
		}
		ext := filepath.Ext(p)
		if (strings.EqualFold(ext, ".safetensors") || gguf && strings.EqualFold(ext, ".gguf")) && d.Type().IsRegular() {
			out = append(out, entry{Name: strings.TrimSuffix(rel, filepath.Ext(rel)), Title: rel, Path: p})
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// find resolves a name from a request among entries: the name, the title,
// or the title followed by A1111's " [hash]".
func find(entries []entry, name, what string) (entry, error) {
	n := strings.TrimSpace(name)
	if i := strings.LastIndex(n, " ["); i > 0 && strings.HasSuffix(n, "]") {
		n = n[:i]
	}
	n = strings.TrimSuffix(n, "/")
	for _, e := range entries {
		if e.Name == n || e.Title == n {
			return e, nil
		}
	}
	// A bare file name matches a model in a subfolder when unambiguous.
	var hits []entry
	for _, e := range entries {
		if pathBase(e.Name) == n || pathBase(e.Title) == n {
			hits = append(hits, e)
		}
	}
	if len(hits) == 1 {
		return hits[0], nil
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name
	}
	if len(names) > 20 {
		names = append(names[:20], "…")
	}
	return entry{}, &apiError{Status: 404, Code: what + "_not_found", Param: what,
		Message: fmt.Sprintf("unknown %s %q; known: %s", what, name, strings.Join(names, ", "))}
}

func pathBase(s string) string {
	if i := strings.LastIndex(s, "/"); i >= 0 {
		return s[i+1:]
	}
	return s
}

// models lists the checkpoints: those of ModelsDir and the configured
// Model when it is a path outside it.
func (s *Server) models() []entry {
	list := scan(s.cfg.ModelsDir, isPipelineDir, true)
	if s.extraModel.Path != "" {
		for _, e := range list {
			if sameFile(e.Path, s.extraModel.Path) {
				return list
			}
		}
		list = append([]entry{s.extraModel}, list...)
	}
	return list
}

func (s *Server) loras() []entry       { return scan(s.cfg.LoRADir, nil, false) }
func (s *Server) controlnets() []entry { return scan(s.cfg.ControlNetDir, isControlNetDir, false) }
func (s *Server) vaes() []entry        { return scan(s.cfg.VAEDir, isVAEDir, false) }

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func isPipelineDir(dir string) bool { return exists(filepath.Join(dir, "model_index.json")) }

// isControlNetDir reports a diffusers ControlNet folder (its config.json
// names a ControlNet class, or has a ControlNet's conditioning fields).
func isControlNetDir(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return false
	}
	var c struct {
		Class    string `json:"_class_name"`
		Channels *int   `json:"conditioning_channels"`
		Embed    []int  `json:"conditioning_embedding_out_channels"`
	}
	return json.Unmarshal(b, &c) == nil && (strings.Contains(c.Class, "ControlNet") || c.Class == "" && (c.Channels != nil || c.Embed != nil))
}

// isVAEDir reports a diffusers VAE folder (its config.json names an
// autoencoder class, or has latent_channels without a class).
func isVAEDir(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return false
	}
	var c struct {
		Class  string `json:"_class_name"`
		Latent *int   `json:"latent_channels"`
	}
	return json.Unmarshal(b, &c) == nil && (strings.HasPrefix(c.Class, "Autoencoder") || c.Class == "" && c.Latent != nil)
}

func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}
