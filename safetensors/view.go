package safetensors

import (
	"fmt"
	"unsafe"
)

// View16 returns the elements of an F16 or BF16 tensor. When the file is
// memory-mapped, the host little-endian and the tensor 2-byte aligned, the
// slice is the file's data itself, not a copy: it is valid only until Close
// and must not be written, and release (non-nil only then) lets the system
// drop its pages from memory once the caller has no further use for them
// soon (they are re-read from the file if touched again). Otherwise it
// returns a copy, as Uint16 does, and a nil release.
func (f *File) View16(name string) (v []uint16, info TensorInfo, release func(), err error) {
	info, b, err := f.Bytes(name)
	if err != nil {
		return nil, info, nil, err
	}
	if info.DType != F16 && info.DType != BF16 {
		return nil, info, nil, fmt.Errorf("safetensors: %s: tensor %q has dtype %s, want F16 or BF16", f.Path, name, info.DType)
	}
	if n := len(b) / 2; n > 0 && f.inPlace(b, 2) {
		return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), n), info, func() { dropPages(b) }, nil
	}
	v, info, err = f.Uint16(name)
	return v, info, nil, err
}

// View32 is View16 for F32 tensors (4-byte alignment).
func (f *File) View32(name string) (v []float32, info TensorInfo, release func(), err error) {
	info, b, err := f.Bytes(name)
	if err != nil {
		return nil, info, nil, err
	}
	if info.DType != F32 {
		return nil, info, nil, fmt.Errorf("safetensors: %s: tensor %q has dtype %s, want F32", f.Path, name, info.DType)
	}
	if n := len(b) / 4; n > 0 && f.inPlace(b, 4) {
		return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), n), info, func() { dropPages(b) }, nil
	}
	v, _, err = f.Float32(name)
	return v, info, nil, err
}

// Mapped reports whether the file's data is a memory mapping (Open on
// Unix-like systems), so that View16 and View32 can return it in place.
func (f *File) Mapped() bool { return f.mapped }

// DropPages lets the system drop the file's pages from this process's
// memory, as the release functions of View16 and View32 do for one tensor;
// the data stays readable. For a file read into memory it does nothing.
func (f *File) DropPages() {
	if f.mapped && f.unmap != nil {
		dropPages(f.data)
	}
}

// inPlace reports whether b, a tensor's bytes, can be used as elements of
// the given size where they lie.
func (f *File) inPlace(b []byte, size int) bool {
	return f.mapped && littleEndian && uintptr(unsafe.Pointer(&b[0]))%uintptr(size) == 0
}

var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()
