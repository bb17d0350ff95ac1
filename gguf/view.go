package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"github.com/diffuse-go/diffuse/internal/mmap"
)

// View16 returns the elements of an F16 or BF16 tensor. When the file is
// memory-mapped and the host little-endian (tensor data is aligned), the
// slice is the file's data itself, not a copy: it is valid only until Close
// and must not be written, and release (non-nil only then) lets the system
// drop its pages once the caller has no further use for them soon.
// Otherwise it returns a copy and a nil release. As safetensors.File.View16.
func (f *File) View16(name string) (v []uint16, info TensorInfo, release func(), err error) {
	info, b, err := f.Bytes(name)
	if err != nil {
		return nil, info, nil, err
	}
	if info.Type != F16 && info.Type != BF16 {
		return nil, info, nil, fmt.Errorf("gguf: %s: tensor %q has type %s, want F16 or BF16", f.Path, name, info.Type)
	}
	if n := len(b) / 2; n > 0 && f.inPlace(b, 2) {
		return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), n), info, func() { mmap.DropPages(b) }, nil
	}
	v = make([]uint16, len(b)/2)
	for i := range v {
		v[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return v, info, nil, nil
}

// View32 is View16 for F32 tensors.
func (f *File) View32(name string) (v []float32, info TensorInfo, release func(), err error) {
	info, b, err := f.Bytes(name)
	if err != nil {
		return nil, info, nil, err
	}
	if info.Type != F32 {
		return nil, info, nil, fmt.Errorf("gguf: %s: tensor %q has type %s, want F32", f.Path, name, info.Type)
	}
	if n := len(b) / 4; n > 0 && f.inPlace(b, 4) {
		return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), n), info, func() { mmap.DropPages(b) }, nil
	}
	v = make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v, info, nil, nil
}

// Mapped reports whether the file's data is a memory mapping (Open on
// Unix-like systems), so that Bytes, View16 and View32 return it in place.
func (f *File) Mapped() bool { return f.unmap != nil && mmap.Mapped && len(f.data) > 0 }

// DropPages lets the system drop a tensor's pages from this process's
// memory (after its data has been packed elsewhere, say); the data stays
// readable, re-read from the file if touched. For a file read into memory
// it does nothing.
func (f *File) DropPages(name string) {
	if _, b, err := f.Bytes(name); err == nil && f.Mapped() {
		mmap.DropPages(b)
	}
}

// inPlace reports whether b, a tensor's bytes, can be used as elements of
// the given size where they lie.
func (f *File) inPlace(b []byte, size int) bool {
	return f.Mapped() && littleEndian && uintptr(unsafe.Pointer(&b[0]))%uintptr(size) == 0
}

var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()
