package safetensors

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// header builds a file's JSON header for infos (sorted by name, their
// offsets filled in, in place) and the optional metadata, padded so the
// data section is 8-byte aligned.
func header(infos []TensorInfo, metadata map[string]string) ([]byte, error) {
	sort.Slice(infos, func(i, j int) bool { return infos[i].Name < infos[j].Name })
	h := make(map[string]any, len(infos)+1)
	if len(metadata) > 0 {
		h["__metadata__"] = metadata
	}
	var off int64
	for i := range infos {
		t := &infos[i]
		if i > 0 && infos[i-1].Name == t.Name {
			return nil, fmt.Errorf("safetensors: duplicate tensor name %q", t.Name)
		}
		if t.Name == "__metadata__" {
			return nil, fmt.Errorf("safetensors: %q is reserved", t.Name)
		}
		size := t.DType.Size()
		if size == 0 {
			return nil, fmt.Errorf("safetensors: tensor %q: unknown dtype %q", t.Name, t.DType)
		}
		for _, d := range t.Shape {
			if d < 0 {
				return nil, fmt.Errorf("safetensors: tensor %q: negative dimension in shape %v", t.Name, t.Shape)
			}
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		t.Begin, t.End = off, off+int64(t.NumElements()*size)
		h[t.Name] = map[string]any{"dtype": t.DType, "shape": shape, "data_offsets": [2]int64{t.Begin, t.End}}
		off = t.End
	}
	b, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("safetensors: encoding header: %w", err)
	}
	for len(b)%8 != 0 {
		b = append(b, ' ')
	}
	return b, nil
}

// EncodeStream writes a file whose tensors are described by infos and
// whose data fill produces one tensor at a time (in name order, into a
// buffer of the tensor's size), so that a file larger than memory can be
// written while holding one tensor.
func EncodeStream(w io.Writer, infos []TensorInfo, metadata map[string]string, fill func(t TensorInfo, dst []byte) error) error {
	infos = append([]TensorInfo(nil), infos...)
	hdr, err := header(infos, metadata)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var lenb [8]byte
	binary.LittleEndian.PutUint64(lenb[:], uint64(len(hdr)))
	bw.Write(lenb[:])
	bw.Write(hdr)
	var buf []byte
	for _, t := range infos {
		n := int(t.End - t.Begin)
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if err := fill(t, buf); err != nil {
			return fmt.Errorf("safetensors: tensor %q: %w", t.Name, err)
		}
		if _, err := bw.Write(buf); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// WriteStream writes a file as EncodeStream does, atomically as WriteFile
// does.
func WriteStream(path string, infos []TensorInfo, metadata map[string]string, fill func(t TensorInfo, dst []byte) error) error {
	return writeAtomic(path, func(w io.Writer) error { return EncodeStream(w, infos, metadata, fill) })
}

// writeAtomic writes a temporary file in path's folder with write and
// renames it to path, so a failure never leaves a half-written file.
func writeAtomic(path string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := write(tmp); err != nil {
		return fmt.Errorf("%w (writing %s)", err, path)
	}
	// CreateTemp makes the file private; a checkpoint is an ordinary file.
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("safetensors: %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("safetensors: %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("safetensors: %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	ok = true
	return nil
}
