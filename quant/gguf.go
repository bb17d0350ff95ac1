package quant

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/diffuse-go/diffuse/gguf"
	"github.com/diffuse-go/diffuse/safetensors"
)

// ggufTypeOf chooses a tensor's stored type for target t (see the package
// comment); kept reports a weight left F16 because its rows are not whole
// blocks.
func ggufTypeOf(t gguf.Type, info Tensor) (typ gguf.Type, kept bool) {
	switch {
	case len(info.Shape) < 2 || numel(info.Shape) <= smallTensor:
		return gguf.F32, false
	case !isWeight(info.Name):
		return storedGGUF(info.DType), false
	case info.Shape[len(info.Shape)-1]%t.BlockSize() != 0:
		return gguf.F16, true
	}
	return t, false
}

// storedGGUF is the GGUF type of a safetensors dtype, F16 for the 8-bit
// floats and F32 for F64.
func storedGGUF(d safetensors.DType) gguf.Type {
	switch d {
	case safetensors.F16, safetensors.F8E4, safetensors.F8E5:
		return gguf.F16
	case safetensors.BF16:
		return gguf.BF16
	}
	return gguf.F32
}

// writeGGUF writes the tensors to a GGUF file, quantising each when the
// writer reaches it. general.architecture is set where the names are an
// architecture's (gguf.DetectArch), as ComfyUI-GGUF sets it.
func writeGGUF(ts []Tensor, out string, t gguf.Type) (Report, error) {
	rep := Report{Counts: map[string]int{}}
	var gts []gguf.Tensor
	names := make([]string, len(ts))
	for i, info := range ts {
		names[i] = info.Name
		if len(info.Shape) > gguf.MaxDims {
			return rep, fmt.Errorf("quant: tensor %q has %d dimensions; GGUF holds at most %d", info.Name, len(info.Shape), gguf.MaxDims)
		}
		typ, kept := ggufTypeOf(t, info)
		if kept {
			rep.Kept = append(rep.Kept, info.Name)
		}
		rep.Counts[typ.String()]++
		n, err := typ.RowBytes(numel(info.Shape))
		if err != nil {
			return rep, fmt.Errorf("quant: tensor %q: %w", info.Name, err)
		}
		rep.Bytes += int64(n)
		gts = append(gts, gguf.Tensor{Name: info.Name, Type: typ, Shape: info.Shape, Load: func() ([]byte, error) {
			v, err := info.Values()
			if err != nil {
				return nil, err
			}
			return quantize(typ, info.Shape, v)
		}})
	}
	var meta []gguf.KV
	if arch := gguf.DetectArch(names); arch != "" {
		meta = append(meta, gguf.KV{Key: "general.architecture", Value: gguf.MustValue(arch)})
	}
	// ggml's quantisation format version (GGML_QNT_VERSION), which
	// ComfyUI-GGUF and llama.cpp write.
	meta = append(meta, gguf.KV{Key: "general.quantization_version", Value: gguf.MustValue(uint32(2))})
	if err := gguf.WriteFile(out, meta, gts); err != nil {
		return rep, err
	}
	return rep, nil
}

// quantize encodes v (of the row-major shape) as typ with the rows split
// among the cores. Blocks are independent, so the bytes are
// gguf.Quantize's; K-quants take seconds per large FLUX matrix on one core.
func quantize(typ gguf.Type, shape []int, v []float32) ([]byte, error) {
	workers := runtime.GOMAXPROCS(0)
	if len(shape) < 2 || workers < 2 || numel(shape) != len(v) {
		return gguf.Quantize(typ, shape, v)
	}
	cols := shape[len(shape)-1]
	rows := len(v) / cols
	rowBytes, err := typ.RowBytes(cols)
	if err != nil {
		return nil, err
	}
	out := make([]byte, rows*rowBytes)
	per := (rows + workers - 1) / workers
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := 0; w*per < rows; w++ {
		r0, r1 := w*per, min(rows, (w+1)*per)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = gguf.QuantizeRow(typ, v[r0*cols:r1*cols], out[r0*rowBytes:r1*rowBytes])
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}
