// Package gguf reads and writes GGUF files (versions 2 and 3), the format of
// ggml, llama.cpp and stable-diffusion.cpp, in which quantised SD3 and FLUX
// checkpoints are distributed (ComfyUI-GGUF, stable-diffusion.cpp convert).
//
// A file is: the magic "GGUF", a uint32 version, uint64 tensor and metadata
// counts, the metadata key-value pairs, the tensor infos (name, dimensions,
// ggml type, data offset), padding to the alignment (metadata
// "general.alignment", default 32), then the tensor data, each tensor
// starting at a multiple of the alignment. All numbers are little-endian.
//
// Files are memory-mapped and every field is validated as ggml's reader
// does, so a damaged file gives an error naming the file and the field
// instead of a panic or an allocation the file's size cannot justify.
// Tensors of the ggml block types are dequantised with DequantizeRow exactly
// as ggml's dequantize_row_* functions do.
package gguf

import (
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/internal/mmap"
)

// Magic is the first four bytes of a GGUF file.
const Magic = "GGUF"

// DefaultAlignment is the data alignment when general.alignment is absent.
const DefaultAlignment = 32

// KeyAlignment is the metadata key that sets the data alignment (a uint32
// power of two).
const KeyAlignment = "general.alignment"

// MaxDims is the most dimensions a tensor may have (ggml's GGML_MAX_DIMS).
const MaxDims = 4

// maxArrayDepth bounds the nesting of arrays of arrays, so a crafted file
// cannot make the reader recurse once per 12 bytes of input.
const maxArrayDepth = 16

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	Name string
	Type Type
	// Dims are the dimensions in ggml order: Dims[0] varies fastest and is a
	// whole number of blocks.
	Dims []int64
	// Shape is Dims reversed: the row-major shape a PyTorch state dict has.
	Shape []int
	// Offset is the byte offset of the data from the start of the data
	// section, Size its byte length.
	Offset, Size int64
}

// NumElements is the product of the dimensions (1 for a scalar).
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// File is an open GGUF file.
type File struct {
	// Path names the file in errors ("<memory>" for Parse).
	Path string
	// Version is the format version (2 or 3).
	Version uint32
	// Alignment is the data alignment in bytes.
	Alignment int
	// DataOffset is the file offset of the data section.
	DataOffset int64
	// Metadata lists the key-value pairs in file order.
	Metadata []KV
	meta     map[string]int
	infos    []TensorInfo // file order
	byName   map[string]int
	data     []byte // the data section
	unmap    func() error
}

// Open memory-maps and validates a GGUF file.
func Open(path string) (*File, error) {
	buf, unmap, err := mmap.Map(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	f, err := parse(buf, path)
	if err != nil {
		unmap()
		return nil, err
	}
	f.unmap = unmap
	return f, nil
}

// Parse validates a GGUF file held in memory. The File refers to buf.
func Parse(buf []byte) (*File, error) { return parse(buf, "<memory>") }

// Close releases the mapping. Slices returned by Bytes become invalid.
func (f *File) Close() error {
	if f.unmap != nil {
		err := f.unmap()
		f.unmap = nil
		return err
	}
	return nil
}

// Get returns the value of a metadata key.
func (f *File) Get(key string) (Value, bool) {
	i, ok := f.meta[key]
	if !ok {
		return Value{}, false
	}
	return f.Metadata[i].Value, true
}

// String returns a string metadata value ("" and false when absent or not
// a string).
func (f *File) String(key string) (string, bool) {
	v, ok := f.Get(key)
	if !ok {
		return "", false
	}
	return v.Str()
}

// Architecture is general.architecture ("flux", "sd3", …), empty when the
// file has none (stable-diffusion.cpp writes none).
func (f *File) Architecture() string { s, _ := f.String("general.architecture"); return s }

// Tensors lists the tensors in file order.
func (f *File) Tensors() []TensorInfo { return f.infos }

// Names lists the tensor names in file order.
func (f *File) Names() []string {
	out := make([]string, len(f.infos))
	for i, t := range f.infos {
		out[i] = t.Name
	}
	return out
}

// Info returns a tensor's description.
func (f *File) Info(name string) (TensorInfo, bool) {
	i, ok := f.byName[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.infos[i], true
}

// Has reports whether the file holds a tensor of that name.
func (f *File) Has(name string) bool { _, ok := f.byName[name]; return ok }

// Bytes returns the raw data of a tensor, without copying. When the file is
// memory-mapped it is valid only until Close and must not be written.
func (f *File) Bytes(name string) (TensorInfo, []byte, error) {
	info, ok := f.Info(name)
	if !ok {
		return info, nil, fmt.Errorf("gguf: %s: no tensor %q", f.Path, name)
	}
	return info, f.data[info.Offset : info.Offset+info.Size], nil
}

// Float32 returns a tensor dequantised to float32, with its logical shape
// (Shape, or the original shape ComfyUI-GGUF recorded, see LogicalShape).
func (f *File) Float32(name string) ([]float32, []int, error) {
	info, b, err := f.Bytes(name)
	if err != nil {
		return nil, nil, err
	}
	shape, err := f.LogicalShape(name)
	if err != nil {
		return nil, nil, err
	}
	if !CanDequantize(info.Type) {
		return nil, nil, fmt.Errorf("gguf: %s: tensor %q has type %s, which cannot be dequantised", f.Path, name, info.Type)
	}
	out := make([]float32, info.NumElements())
	if err := DequantizeRow(info.Type, b, out); err != nil {
		return nil, nil, fmt.Errorf("gguf: %s: tensor %q: %w", f.Path, name, err)
	}
	return out, shape, nil
}

// KeyOrigShape prefixes the metadata key in which ComfyUI-GGUF's convert.py
// records a tensor's original shape (an array of int32) when it stored the
// tensor reshaped to rows of 256 elements so that K-quants apply.
const KeyOrigShape = "comfy.gguf.orig_shape."

// LogicalShape returns the shape the tensor had in the original checkpoint:
// the one recorded under KeyOrigShape+name when present (it must be an
// integer array with the same number of elements), else Shape.
func (f *File) LogicalShape(name string) ([]int, error) {
	info, ok := f.Info(name)
	if !ok {
		return nil, fmt.Errorf("gguf: %s: no tensor %q", f.Path, name)
	}
	v, ok := f.Get(KeyOrigShape + name)
	if !ok {
		return info.Shape, nil
	}
	dims, ok := v.Ints()
	if !ok {
		return nil, fmt.Errorf("gguf: %s: %s%s is %s, want an integer array", f.Path, KeyOrigShape, name, v.Type())
	}
	shape := make([]int, len(dims))
	n := int64(1)
	for i, d := range dims {
		if d < 0 || (d != 0 && n > math.MaxInt64/d) {
			return nil, fmt.Errorf("gguf: %s: %s%s holds a bad shape %v", f.Path, KeyOrigShape, name, dims)
		}
		n *= d
		shape[i] = int(d)
	}
	if n != info.NumElements() {
		return nil, fmt.Errorf("gguf: %s: tensor %q has %d elements but its original shape %v has %d", f.Path, name, info.NumElements(), dims, n)
	}
	return shape, nil
}
