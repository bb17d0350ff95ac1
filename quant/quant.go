// Package quant converts safetensors checkpoints into the quantised files
// people run SD3 and FLUX from on small machines: GGUF (Q8_0, Q6_K, Q5_K,
// Q5_1, Q5_0, Q4_K, Q4_1, Q4_0, or F16/BF16/F32: every type package gguf
// reads), as stable-diffusion.cpp's convert and ComfyUI-GGUF's convert.py
// write them, and fp8 safetensors (float8_e4m3fn, plain or with
// per-tensor scales as ComfyUI's "scaled fp8" files hold them).
//
// Tensor names are kept as they are (original checkpoint names; a GGUF
// file written from a full checkpoint keeps its component prefixes, as
// stable-diffusion.cpp's do). Which tensors are quantised follows the two
// tools: weights ("*.weight") of two or more dimensions whose rows are
// whole blocks take the chosen type; vectors and tensors of at most 1024
// elements stay F32 (as ComfyUI-GGUF keeps them); weights whose rows are
// not whole blocks of the type (32 values, or 256 for the K-quants) stay
// F16 (stable-diffusion.cpp keeps them unquantised); other tensors (SD3's
// pos_embed) keep their stored dtype. The conversion reads and writes one
// tensor at a time, so memory stays at the largest tensor's float32 size,
// and writes the output atomically.
package quant

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/diffuse-go/diffuse/gguf"
	"github.com/diffuse-go/diffuse/safetensors"
)

// Type is an output type: a GGUF tensor type or an fp8 safetensors kind.
type Type struct {
	// Name is the type as given ("q8_0", "fp8", …), lower case.
	Name string
	// GGUF is the GGUF type for a .gguf output.
	GGUF gguf.Type
	// FP8 is set for the safetensors kinds; Scaled adds a per-tensor
	// scale to every fp8 weight.
	FP8, Scaled bool
}

// ggufTypes are the GGUF types Convert writes (those gguf can quantise to).
var ggufTypes = []gguf.Type{gguf.Q8_0, gguf.Q6_K, gguf.Q5_K, gguf.Q5_1, gguf.Q5_0, gguf.Q4_K, gguf.Q4_1, gguf.Q4_0, gguf.F16, gguf.BF16, gguf.F32}

// Types lists the type names ParseType accepts.
func Types() []string {
	out := make([]string, 0, len(ggufTypes)+2)
	for _, t := range ggufTypes {
		out = append(out, strings.ToLower(t.String()))
	}
	return append(out, "fp8", "fp8-scaled")
}

// ErrType is returned (wrapped) for a type Convert cannot write.
var ErrType = errors.New("unsupported output type")

// ParseType reads a type name: a GGUF type ("q8_0", "Q4_K", "f16") or
// "fp8" / "fp8-scaled" (float8_e4m3fn safetensors).
func ParseType(name string) (Type, error) {
	n := strings.ToLower(name)
	switch n {
	case "fp8", "fp8_e4m3fn", "f8_e4m3":
		return Type{Name: "fp8", FP8: true}, nil
	case "fp8-scaled", "fp8_scaled":
		return Type{Name: "fp8-scaled", FP8: true, Scaled: true}, nil
	}
	for _, t := range ggufTypes {
		if strings.EqualFold(t.String(), n) {
			return Type{Name: n, GGUF: t}, nil
		}
	}
	for t := gguf.Type(0); t < 64; t++ {
		if t.Known() && strings.EqualFold(t.String(), n) {
			return Type{}, fmt.Errorf("quant: %s: %w (no quantiser for this GGUF type; write one of %s)", t, ErrType, strings.Join(Types(), ", "))
		}
	}
	return Type{}, fmt.Errorf("quant: %q: %w (want one of %s)", name, ErrType, strings.Join(Types(), ", "))
}

// Report says what a conversion wrote.
type Report struct {
	// Counts is the number of tensors written per stored type ("Q8_0",
	// "F32", "F8_E4M3", …).
	Counts map[string]int
	// Kept lists the tensors of two or more dimensions left unquantised
	// because their rows are not whole blocks of the type.
	Kept []string
	// Bytes is the size of the tensor data written.
	Bytes int64
}

// smallTensor is the element count up to which tensors stay F32, as
// ComfyUI-GGUF's QUANTIZATION_THRESHOLD.
const smallTensor = 1024

// Tensor is one tensor to write: its name and shape, the dtype it is
// stored in (which the tensors that are not quantised keep), and its
// values, produced when the writer reaches it. Values may be called more
// than once (fp8-scaled reads a weight for its scale and again to encode
// it) and must give the same values each time.
type Tensor struct {
	Name   string
	Shape  []int
	DType  safetensors.DType
	Values func() ([]float32, error)
}

// Convert writes the tensors of the safetensors file in to out as typ (see
// Write). fp8 scales in the input are applied first; the scale tensors
// and ComfyUI's scaled_fp8 marker are not written. out must not be in.
func Convert(in, out string, typ Type) (Report, error) {
	if err := checkPath(out, typ); err != nil {
		return Report{}, err
	}
	a, err1 := filepath.Abs(in)
	b, err2 := filepath.Abs(out)
	if err1 == nil && err2 == nil && a == b {
		return Report{}, fmt.Errorf("quant: the output %s is the input", out)
	}
	f, err := safetensors.Open(in)
	if err != nil {
		return Report{}, fmt.Errorf("quant: %w", err)
	}
	defer f.Close()
	ts, err := fileTensors(f)
	if err != nil {
		return Report{}, err
	}
	return Write(out, typ, ts)
}

// Write writes ts to out as typ: a GGUF file for the GGUF types (out must
// end in .gguf), an fp8 safetensors file for fp8 (out must end in
// .safetensors), holding one tensor's values at a time. out is replaced
// atomically.
func Write(out string, typ Type, ts []Tensor) (Report, error) {
	if err := checkPath(out, typ); err != nil {
		return Report{}, err
	}
	if typ.FP8 {
		return writeFP8(ts, out, typ)
	}
	return writeGGUF(ts, out, typ.GGUF)
}

// checkPath refuses an output whose extension does not fit the type.
func checkPath(out string, typ Type) error {
	ext := strings.ToLower(filepath.Ext(out))
	switch {
	case typ.FP8 && ext != ".safetensors":
		return fmt.Errorf("quant: %s: %s is written as safetensors; name the output .safetensors", out, typ.Name)
	case !typ.FP8 && ext != ".gguf":
		return fmt.Errorf("quant: %s: %s is a GGUF type; name the output .gguf", out, typ.Name)
	}
	return nil
}

// fileTensors lists a safetensors file's tensors, less the fp8 scales
// (applied to their weights by ScaledFloat32) and ComfyUI's scaled_fp8
// marker.
func fileTensors(f *safetensors.File) ([]Tensor, error) {
	hidden := map[string]bool{comfyScaledFP8: true}
	for _, info := range f.Tensors() {
		if info.DType == safetensors.F8E4 || info.DType == safetensors.F8E5 {
			_, name, err := f.WeightScale(info.Name)
			if err != nil {
				return nil, fmt.Errorf("quant: %w", err)
			}
			hidden[name] = name != ""
		}
	}
	var out []Tensor
	for _, info := range f.Tensors() {
		if hidden[info.Name] {
			continue
		}
		if !isFloat(info.DType) {
			return nil, fmt.Errorf("quant: %s: tensor %q is %s, not a float tensor: not converted", f.Path, info.Name, info.DType)
		}
		name := info.Name
		out = append(out, Tensor{Name: name, Shape: info.Shape, DType: info.DType, Values: func() ([]float32, error) {
			v, _, err := f.ScaledFloat32(name)
			if err != nil {
				return nil, fmt.Errorf("quant: %w", err)
			}
			return v, nil
		}})
	}
	return out, nil
}

func isFloat(d safetensors.DType) bool {
	switch d {
	case safetensors.F64, safetensors.F32, safetensors.F16, safetensors.BF16, safetensors.F8E4, safetensors.F8E5:
		return true
	}
	return false
}

// isWeight reports a weight tensor, the kind the tools quantise.
func isWeight(name string) bool { return strings.HasSuffix(name, ".weight") }

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}
