//go:build !unix

// Package mmap maps checkpoint files read-only into memory, so that weights
// are read where they lie instead of being copied; safetensors and gguf share
// it. On systems without mmap the file is read into memory instead.
package mmap

import "os"

// Map reads the whole file into memory (no mmap on this system); unmap does
// nothing.
func Map(path string) (data []byte, unmap func() error, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return b, func() error { return nil }, nil
}

// Mapped reports that Map reads files into memory here.
const Mapped = false

// DropPages does nothing for data read into memory.
func DropPages(b []byte) {}
