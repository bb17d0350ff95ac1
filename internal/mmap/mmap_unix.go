//go:build unix

// Package mmap maps checkpoint files read-only into memory, so that weights
// are read where they lie instead of being copied; safetensors and gguf share
// it. On systems without mmap the file is read into memory instead.
package mmap

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Map maps the whole file read-only. unmap releases the mapping; slices of
// the data are invalid afterwards. An empty file gives an empty slice.
func Map(path string) (data []byte, unmap func() error, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := st.Size()
	if size == 0 {
		return []byte{}, func() error { return nil }, nil
	}
	if int64(int(size)) != size {
		return nil, nil, fmt.Errorf("%s: file too large to map", path)
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: mmap: %w", path, err)
	}
	return b, func() error { return syscall.Munmap(b) }, nil
}

// Mapped reports that Map maps files (non-empty ones) rather than reading them.
const Mapped = true

// DropPages tells the system that the pages wholly inside b, part of a
// read-only file mapping, are not needed soon: they leave the process's
// resident memory and are read back from the file (usually still in the
// page cache) if touched again. Errors are ignored: this is advice.
func DropPages(b []byte) {
	ps := uintptr(unix.Getpagesize())
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	lo := (start + ps - 1) &^ (ps - 1)
	hi := (start + uintptr(len(b))) &^ (ps - 1)
	if hi <= lo {
		return
	}
	unix.Madvise(b[lo-start:hi-start], unix.MADV_DONTNEED)
}
