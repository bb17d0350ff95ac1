package nn

import (
	"fmt"
	"strings"

	"github.com/diffuse-go/diffuse/gguf"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// GGUFSource reads tensors from a GGUF file under their names as stored
// (with Prefix prepended to every requested name, as FileSource does), so
// that Load fills a module from a GGUF checkpoint. Quantised tensors stay
// quantised (tensor.Q8_0 … Q6_K), read in place from the file's mapping,
// which must then stay open while the model is used; Load with KeepDType
// keeps them so for matrices and dequantises vectors. F16 and BF16 tensors
// are used in place likewise, F32 ones too where the mapping allows.
// Shapes are the logical ones (gguf.File.LogicalShape): a tensor that
// ComfyUI-GGUF stored reshaped into rows of whole blocks comes back in its
// original shape, a view of the same blocks.
type GGUFSource struct {
	F      *gguf.File
	Prefix string
}

// Names lists the tensor names (without Prefix).
func (s GGUFSource) Names() []string {
	var out []string
	for _, n := range s.F.Names() {
		if rest, ok := strings.CutPrefix(n, s.Prefix); ok {
			out = append(out, rest)
		}
	}
	return out
}

// Shape returns a tensor's logical shape.
func (s GGUFSource) Shape(name string) ([]int, bool) {
	shape, err := s.F.LogicalShape(s.Prefix + name)
	return shape, err == nil
}

// Tensor returns a tensor (see GGUFTensor).
func (s GGUFSource) Tensor(name string) (*tensor.Tensor, error) {
	return GGUFTensor(s.F, s.Prefix+name)
}

// GGUFTensor returns one tensor of a GGUF file in its logical shape:
// block-quantised types as tensor block dtypes over the file's bytes (no
// copy), F16/BF16/F32 as ViewTensor returns them from a safetensors file,
// and the other types ggml defines dequantised to float32 where gguf can,
// else an error naming the type.
func GGUFTensor(f *gguf.File, name string) (*tensor.Tensor, error) {
	info, raw, err := f.Bytes(name)
	if err != nil {
		return nil, err
	}
	shape, err := f.LogicalShape(name)
	if err != nil {
		return nil, err
	}
	var t *tensor.Tensor
	var release func()
	if d, ok := tensor.DTypeOfGGUF(info.Type); ok {
		// Blocks run along the stored rows; the logical shape is a view.
		if t, err = tensor.FromBlocks(d, raw, info.Shape...); err == nil {
			t = t.Reshape(shape...)
		}
	} else {
		switch info.Type {
		case gguf.F16, gguf.BF16:
			var u []uint16
			if u, _, release, err = f.View16(name); err == nil {
				dt := tensor.F16
				if info.Type == gguf.BF16 {
					dt = tensor.BF16
				}
				t, err = tensor.FromU16(dt, u, shape...)
			}
		case gguf.F32:
			var v []float32
			if v, _, release, err = f.View32(name); err == nil {
				t, err = tensor.FromData(v, shape...)
			}
		default:
			var v []float32
			if v, _, err = f.Float32(name); err == nil {
				t, err = tensor.FromData(v, shape...)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", f.Path, name, err)
	}
	if release != nil {
		t.SetRelease(release)
	}
	return t, nil
}

// fp8Tensor returns an F8_E4M3 or F8_E5M2 weight of a safetensors file as
// 8-bit storage over the file's bytes (no copy) with its scale
// (safetensors.File.WeightScale: per tensor or per row), applied as the
// GEMM decodes each row, so both kinds of scale stay fp8 + scale; the
// values are ScaledFloat32's.
func fp8Tensor(f *safetensors.File, name string) (*tensor.Tensor, error) {
	info, raw, err := f.Bytes(name)
	if err != nil {
		return nil, err
	}
	scale, _, err := f.WeightScale(name)
	if err != nil {
		return nil, err
	}
	d := tensor.F8E4M3
	if info.DType == safetensors.F8E5 {
		d = tensor.F8E5M2
	}
	t, err := tensor.FromFP8(d, raw, scale, info.Shape...)
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", f.Path, name, err)
	}
	return t, nil
}

// fp8Scales returns the names of the scale tensors that fp8 weights of f
// take in (see fp8Tensor), so that Load does not report them as unused.
func fp8Scales(f *safetensors.File) map[string]bool {
	out := map[string]bool{}
	for _, info := range f.Tensors() {
		if info.DType != safetensors.F8E4 && info.DType != safetensors.F8E5 {
			continue
		}
		if _, name, err := f.WeightScale(info.Name); err == nil && name != "" {
			out[name] = true
		}
	}
	return out
}
