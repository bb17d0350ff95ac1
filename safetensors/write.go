package safetensors

import (
	"fmt"
	"io"
)

// Encode writes tensors (sorted by name) and optional metadata to w.
func Encode(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	infos := make([]TensorInfo, len(tensors))
	data := make(map[string][]byte, len(tensors))
	for i, t := range tensors {
		infos[i] = TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape}
		if size := t.DType.Size(); size > 0 && infos[i].NumElements()*size != len(t.Data) {
			return fmt.Errorf("safetensors: tensor %q: shape %v of %s needs %d bytes, got %d", t.Name, t.Shape, t.DType, infos[i].NumElements()*size, len(t.Data))
		}
		data[t.Name] = t.Data
	}
	return EncodeStream(w, infos, metadata, func(t TensorInfo, dst []byte) error {
		copy(dst, data[t.Name])
		return nil
	})
}

// WriteFile writes tensors to path atomically: it writes a temporary file in
// the same folder and renames it, so a failure never leaves a half-written file.
func WriteFile(path string, tensors []Tensor, metadata map[string]string) error {
	return writeAtomic(path, func(w io.Writer) error { return Encode(w, tensors, metadata) })
}
