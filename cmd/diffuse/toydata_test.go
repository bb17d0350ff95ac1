package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestToyDataFlags(t *testing.T) {
	for _, args := range [][]string{{}, {"-o", "x", "-n", "0"}, {"-o", "x", "-shape", "star"}, {"-o", "x", "extra"}} {
		if _, err := parseToyDataFlags(args, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	dir := t.TempDir()
	if err := runToyData([]string{"-o", dir, "-n", "2", "-shape", "cross"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "000001.txt"))
	if err != nil || !strings.Contains(string(b), " cross ") {
		t.Errorf("caption %q (%v), want a cross", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "metadata.jsonl")); err == nil {
		t.Error("manifest written without -masks")
	}
	bare := t.TempDir()
	if err := runToyData([]string{"-o", bare, "-n", "1", "-captions=false"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(bare, "000000.txt")); err == nil {
		t.Error("caption written with -captions=false")
	}
	if _, err := os.Stat(filepath.Join(bare, "000000.png")); err != nil {
		t.Error(err)
	}
}

func TestEvalFlags(t *testing.T) {
	for _, args := range [][]string{{"-seeds", "0"}, {"-probe-seeds", "0"}, {"-placements", "0"}, {"-seen", "-1"}} {
		if _, err := parseEvalFlags(args); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	f, err := parseEvalFlags([]string{"-lora", "l.safetensors", "-lora-weight", "0.5", "-probe", "a sks shape", "-probe", "a shape"})
	if err != nil {
		t.Fatal(err)
	}
	p := f.params("a sks shape", 3)
	if len(f.probes) != 2 || len(p.LoRAs) != 1 || p.LoRAs[0].Weight != 0.5 || p.Seed != 3 || p.Width != 32 {
		t.Errorf("flags %+v gave params %+v", f, p)
	}
}
