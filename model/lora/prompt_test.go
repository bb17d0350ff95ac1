package lora

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParsePrompt(t *testing.T) {
	cases := []struct {
		in, clean string
		refs      []Ref
	}{
		{"a cat", "a cat", nil},
		{"a <lora:pixel:0.8> cat", "a cat", []Ref{{"pixel", 0.8, 0.8}}},
		{"<lora:a>photo, <LoRA:dir/b:0.5:1.25>", "photo,", []Ref{{"a", 1, 1}, {"dir/b", 1.25, 0.5}}},
		{"x <lyco:c:unet=0.3:te=0>  y", "x y", []Ref{{"c", 0.3, 0}}},
		{"x <lora:d:0.6:unet=0.2>", "x", []Ref{{"d", 0.2, 0.6}}},
		{"x <lora:e:-1>", "x", []Ref{{"e", -1, -1}}},
		{"x <other:tag> y", "x <other:tag> y", nil},
	}
	for _, c := range cases {
		clean, refs, err := ParsePrompt(c.in)
		if err != nil || clean != c.clean || !reflect.DeepEqual(refs, c.refs) {
			t.Errorf("ParsePrompt(%q) = %q, %+v, %v; want %q, %+v", c.in, clean, refs, err, c.clean, c.refs)
		}
	}
	for _, bad := range []string{"a <lora:>", "a <lora::1>", "a <lora:x:abc>", "a <lora:x:1:2:3>", "a <lora:x:foo=1>", "a <lora:x:1", "<lora:x:NaN>", "<lora:x:inf>"} {
		if _, _, err := ParsePrompt(bad); err == nil {
			t.Errorf("ParsePrompt(%q): no error", bad)
		}
	}
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"top.safetensors", "sub/deep.safetensors", "sub/top2.safetensors", "x/dup.safetensors", "y/dup.safetensors", "notes.txt"} {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ok := map[string]string{"top": "top.safetensors", "top.safetensors": "top.safetensors", "sub/deep": "sub/deep.safetensors", "deep": "sub/deep.safetensors", "x/dup": "x/dup.safetensors"}
	for name, want := range ok {
		got, err := Find(dir, name)
		if err != nil || got != filepath.Join(dir, filepath.FromSlash(want)) {
			t.Errorf("Find(%q) = %q, %v; want %s", name, got, err, want)
		}
	}
	for name, msg := range map[string]string{"missing": "sub/deep", "dup": "ambiguous", "../etc/passwd": "leaves", "": "empty", "notes": "top"} {
		if _, err := Find(dir, name); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("Find(%q): err = %v, want it to mention %q", name, err, msg)
		}
	}
	if _, err := Find(filepath.Join(dir, "nope"), "a"); err == nil {
		t.Error("Find in a missing folder: no error")
	}
}
