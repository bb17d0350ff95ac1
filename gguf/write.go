package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
)

// Tensor is one tensor to write.
type Tensor struct {
	Name string
	Type Type
	// Shape is row-major (PyTorch order); the file stores it reversed.
	Shape []int
	// Data holds the encoded elements: Type.RowBytes(product of Shape) bytes.
	Data []byte
	// Load, used when Data is nil, returns the data when the writer reaches
	// the tensor, so that a converter holds one tensor in memory at a time.
	Load func() ([]byte, error)
}

// size is the byte length the tensor's data must have.
func (t Tensor) size() (int, error) {
	n := 1
	for _, d := range t.Shape {
		if d < 0 || (d != 0 && n > math.MaxInt/d) {
			return 0, fmt.Errorf("gguf: tensor %q has a bad shape %v", t.Name, t.Shape)
		}
		n *= d
	}
	size, err := t.Type.RowBytes(n)
	if err != nil {
		return 0, fmt.Errorf("gguf: tensor %q: %w", t.Name, err)
	}
	return size, nil
}

// data returns the tensor's bytes, loading them if needed.
func (t Tensor) data() ([]byte, error) {
	if t.Data != nil || t.Load == nil {
		return t.Data, nil
	}
	b, err := t.Load()
	if err != nil {
		return nil, fmt.Errorf("gguf: tensor %q: %w", t.Name, err)
	}
	if size, _ := t.size(); len(b) != size {
		return nil, fmt.Errorf("gguf: tensor %q: shape %v of %s needs %d bytes, Load gave %d", t.Name, t.Shape, t.Type, size, len(b))
	}
	return b, nil
}

// Encode writes a version 3 GGUF file: the metadata in the order given,
// then the tensors in the order given, each padded to the alignment
// (general.alignment when metadata sets it, else 32), as ggml and gguf-py
// write them.
func Encode(w io.Writer, metadata []KV, tensors []Tensor) error {
	align, err := checkEncode(metadata, tensors)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	e := &encoder{w: bw}
	e.raw([]byte(Magic))
	e.u32(3)
	e.u64(uint64(len(tensors)))
	e.u64(uint64(len(metadata)))
	for _, kv := range metadata {
		e.str(kv.Key)
		e.u32(uint32(kv.Value.typ))
		e.value(kv.Value)
	}
	var off int64
	for _, t := range tensors {
		size, _ := t.size()
		e.str(t.Name)
		e.u32(uint32(len(t.Shape)))
		for i := len(t.Shape) - 1; i >= 0; i-- {
			e.u64(uint64(t.Shape[i]))
		}
		e.u32(uint32(t.Type))
		e.u64(uint64(off))
		off = alignUp(off+int64(size), align)
	}
	if len(tensors) > 0 { // as the reader, which aligns the data section only then
		e.pad(align)
	}
	for _, t := range tensors {
		data, err := t.data()
		if err != nil {
			return err
		}
		e.raw(data)
		e.pad(align)
	}
	if e.err != nil {
		return e.err
	}
	return bw.Flush()
}

// checkEncode validates what Encode is given and returns the alignment.
func checkEncode(metadata []KV, tensors []Tensor) (int64, error) {
	keys := make(map[string]bool, len(metadata))
	align := int64(DefaultAlignment)
	for _, kv := range metadata {
		if kv.Key == "" {
			return 0, fmt.Errorf("gguf: empty metadata key")
		}
		if keys[kv.Key] {
			return 0, fmt.Errorf("gguf: duplicate metadata key %q", kv.Key)
		}
		keys[kv.Key] = true
		if err := checkValue(kv.Value, 0); err != nil {
			return 0, fmt.Errorf("gguf: metadata %q: %w", kv.Key, err)
		}
		if kv.Key == KeyAlignment {
			a, ok := kv.Value.v.(uint32)
			if !ok || a == 0 || a&(a-1) != 0 || a > 1<<30 {
				return 0, fmt.Errorf("gguf: %s must be a uint32 power of two, got %s %v", KeyAlignment, kv.Value.typ, kv.Value.v)
			}
			align = int64(a)
		}
	}
	names := make(map[string]bool, len(tensors))
	for _, t := range tensors {
		if t.Name == "" || names[t.Name] {
			return 0, fmt.Errorf("gguf: tensor name %q is empty or repeated", t.Name)
		}
		names[t.Name] = true
		if err := checkTensor(t); err != nil {
			return 0, err
		}
	}
	return align, nil
}

func checkTensor(t Tensor) error {
	if len(t.Shape) > MaxDims {
		return fmt.Errorf("gguf: tensor %q has %d dimensions, more than %d", t.Name, len(t.Shape), MaxDims)
	}
	if !t.Type.Known() {
		return fmt.Errorf("gguf: tensor %q has unknown type %s", t.Name, t.Type)
	}
	if len(t.Shape) > 0 {
		if row, bs := t.Shape[len(t.Shape)-1], t.Type.BlockSize(); row%bs != 0 {
			return fmt.Errorf("gguf: tensor %q of type %s has rows of %d elements, not a multiple of the block size %d", t.Name, t.Type, row, bs)
		}
	}
	size, err := t.size()
	if err != nil {
		return err
	}
	if (t.Data != nil || t.Load == nil) && size != len(t.Data) {
		return fmt.Errorf("gguf: tensor %q: shape %v of %s needs %d bytes, got %d", t.Name, t.Shape, t.Type, size, len(t.Data))
	}
	return nil
}

// checkValue makes sure a Value was built by MakeValue or read from a file
// (its Go type matches its declared type).
func checkValue(v Value, depth int) error {
	if depth > maxArrayDepth {
		return fmt.Errorf("arrays nested more than %d deep", maxArrayDepth)
	}
	want, err := MakeValue(v.v)
	if err != nil {
		return err
	}
	if want.typ != v.typ || (v.typ == TypeArray && want.elem != v.elem) {
		return fmt.Errorf("value of Go type %T declared as %s", v.v, v.typ)
	}
	if a, ok := v.v.([]Value); ok {
		for _, e := range a {
			if err := checkValue(e, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// encoder writes little-endian fields, keeping the first error.
type encoder struct {
	w   io.Writer
	n   int64
	err error
}

func (e *encoder) raw(b []byte) {
	if e.err != nil {
		return
	}
	n, err := e.w.Write(b)
	e.n += int64(n)
	e.err = err
}

func (e *encoder) u32(x uint32) { e.raw(binary.LittleEndian.AppendUint32(nil, x)) }
func (e *encoder) u64(x uint64) { e.raw(binary.LittleEndian.AppendUint64(nil, x)) }
func (e *encoder) str(s string) { e.u64(uint64(len(s))); e.raw([]byte(s)) }

func (e *encoder) pad(align int64) {
	if r := e.n % align; r != 0 {
		e.raw(make([]byte, align-r))
	}
}

func (e *encoder) value(v Value) {
	if v.typ == TypeArray {
		e.u32(uint32(v.elem))
		e.u64(uint64(v.Len()))
		for i := 0; i < v.Len(); i++ {
			e.value(v.Index(i))
		}
		return
	}
	le := binary.LittleEndian
	switch x := v.v.(type) {
	case uint8:
		e.raw([]byte{x})
	case int8:
		e.raw([]byte{byte(x)})
	case bool:
		b := byte(0)
		if x {
			b = 1
		}
		e.raw([]byte{b})
	case uint16:
		e.raw(le.AppendUint16(nil, x))
	case int16:
		e.raw(le.AppendUint16(nil, uint16(x)))
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case float32:
		e.u32(math.Float32bits(x))
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float64:
		e.u64(math.Float64bits(x))
	case string:
		e.str(x)
	}
}

// WriteFile writes a GGUF file atomically: it writes a temporary file in the
// same folder and renames it, so a failure never leaves a half-written file.
func WriteFile(path string, metadata []KV, tensors []Tensor) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := Encode(tmp, metadata, tensors); err != nil {
		return fmt.Errorf("%w (writing %s)", err, path)
	}
	// CreateTemp makes the file private; a checkpoint is an ordinary file.
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("gguf: %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("gguf: %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("gguf: %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	ok = true
	return nil
}
