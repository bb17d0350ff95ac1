package server

import (
	"os"
	"path/filepath"
	"testing"
)

// Model listings take GGUF files (SD3/FLUX transformers) beside
// safetensors files and folders; LoRA and ControlNet listings do not.
func TestScanGGUF(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a.safetensors", "flux1-dev-Q8_0.gguf", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	names := func(es []entry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.Title)
		}
		return out
	}
	if got := names(scan(dir, isPipelineDir, true)); len(got) != 2 || got[0] != "a.safetensors" || got[1] != "flux1-dev-Q8_0.gguf" {
		t.Errorf("models %v, want a.safetensors and flux1-dev-Q8_0.gguf", got)
	}
	if got := names(scan(dir, nil, false)); len(got) != 1 || got[0] != "a.safetensors" {
		t.Errorf("LoRAs %v, want a.safetensors only", got)
	}
}
