package safetensors

import (
	"fmt"
	"math"
	"strings"

	"github.com/diffuse-go/diffuse/half"
)

// The 8-bit float dtypes (F8E4, F8E5) as PyTorch defines them:
//
//   - F8_E4M3 is float8_e4m3fn: 1 sign, 4 exponent (bias 7), 3 mantissa
//     bits; no infinities, the only NaNs are 0x7f and 0xff, so the largest
//     finite value is ±448 (0x7e); exponent 0 holds subnormals m·2⁻⁹.
//   - F8_E5M2 is IEEE-like (the top byte of a binary16): 1 sign, 5 exponent
//     (bias 15), 2 mantissa bits; exponent 31 holds ±Inf (mantissa 0) and
//     NaNs; exponent 0 holds subnormals m·2⁻¹⁶; the largest finite value is
//     ±57344.
//
// Every code converts to float32 exactly.

// F8E4M3ToF32 and F8E5M2ToF32 are the conversion tables, indexed by code.
var (
	F8E4M3ToF32 = f8Table(e4m3)
	F8E5M2ToF32 = f8Table(func(c byte) float32 { return half.F16ToF32(uint16(c) << 8) })
)

func f8Table(conv func(byte) float32) *[256]float32 {
	var t [256]float32
	for c := range t {
		t[c] = conv(byte(c))
	}
	return &t
}

func e4m3(c byte) float32 {
	sign := uint32(c>>7) << 31
	exp := uint32(c>>3) & 0xf
	man := uint32(c) & 7
	switch {
	case exp == 0xf && man == 7:
		return math.Float32frombits(sign | 0x7fc00000)
	case exp == 0:
		// Subnormal (or zero): man·2⁻⁹, exact in float32.
		v := float32(man) / 512
		return math.Float32frombits(math.Float32bits(v) | sign)
	}
	return math.Float32frombits(sign | (exp+120)<<23 | man<<20)
}

// f8Float32 widens the bytes of an F8 tensor through the dtype's table.
func f8Float32(dtype DType, b []byte, out []float32) {
	t := F8E4M3ToF32
	if dtype == F8E5 {
		t = F8E5M2ToF32
	}
	for i, c := range b[:len(out)] {
		out[i] = t[c]
	}
}

// The names under which checkpoints keep the dequantisation scale of an
// 8-bit weight "<module>.weight": ComfyUI's current quantised format
// ("comfy_quant", also written by stable-diffusion.cpp's and other
// converters) uses "<module>.weight_scale", its older "scaled_fp8" format
// "<module>.scale_weight" (with a "scaled_fp8" marker tensor). Both hold a
// float32 scalar: weight = float(fp8) · scale. Input scales
// ("input_scale", "scale_input") serve fp8 matmuls and are not needed to
// dequantise.
func weightScaleNames(stem string) []string {
	return []string{stem + ".weight_scale", stem + ".scale_weight"}
}

// WeightScale returns the dequantisation scale stored beside a weight and
// the name of the tensor holding it, or nil and "" when the file has none.
// The scale is one value (per tensor) or one per row (per output channel,
// shape [rows] or [rows, 1]); any other shape is an error.
func (f *File) WeightScale(weight string) (scale []float32, name string, err error) {
	info, ok := f.Info(weight)
	if !ok {
		return nil, "", fmt.Errorf("safetensors: %s: no tensor %q", f.Path, weight)
	}
	stem, ok := strings.CutSuffix(weight, ".weight")
	if !ok {
		return nil, "", nil
	}
	for _, name = range weightScaleNames(stem) {
		if f.Has(name) {
			scale, err = f.scaleValues(name, info)
			return scale, name, err
		}
	}
	return nil, "", nil
}

// scaleValues reads a scale tensor and checks its size against the weight.
func (f *File) scaleValues(name string, weight TensorInfo) ([]float32, error) {
	s, _, err := f.Float32(name)
	if err != nil {
		return nil, err
	}
	rows := 1
	if len(weight.Shape) > 0 {
		rows = weight.Shape[0]
	}
	if len(s) != 1 && len(s) != rows {
		return nil, fmt.Errorf("safetensors: %s: scale %q has %d values; weight %q of shape %v needs 1 or %d", f.Path, name, len(s), weight.Name, weight.Shape, rows)
	}
	return s, nil
}

// ScaledFloat32 returns a weight as float32 with its scale (WeightScale)
// applied, each element multiplied in float32 by the scale of its tensor or
// row; a weight without a scale is returned as Float32 gives it. ComfyUI
// multiplies in the model's compute dtype (bfloat16 or float16) instead, so
// its values may differ from these by that dtype's rounding.
func (f *File) ScaledFloat32(weight string) ([]float32, []int, error) {
	scale, _, err := f.WeightScale(weight)
	if err != nil {
		return nil, nil, err
	}
	v, shape, err := f.Float32(weight)
	if err != nil || scale == nil {
		return v, shape, err
	}
	if len(scale) == 1 {
		for i := range v {
			v[i] *= scale[0]
		}
		return v, shape, nil
	}
	if len(scale) > 0 {
		row := len(v) / len(scale)
		for i := range v {
			v[i] *= scale[i/row]
		}
	}
	return v, shape, nil
}

// F32ToF8E4M3 rounds x to the nearest float8_e4m3fn code, ties to the
// even code, as PyTorch's cast does for values in range. Magnitudes
// beyond the largest finite value saturate to ±448 (PyTorch's cast would
// give NaN from 464 on; converters clamp first, as this does); NaN gives
// NaN (0x7f, with x's sign).
func F32ToF8E4M3(x float32) byte {
	sign := byte(math.Float32bits(x)>>31) << 7
	a := float32(math.Abs(float64(x)))
	switch {
	case a != a:
		return sign | 0x7f
	case a >= F8E4M3ToF32[0x7e]:
		return sign | 0x7e
	}
	// The finite positive codes 0x00…0x7e increase with their values:
	// find the last code not above a.
	lo, hi := 0, 0x7e
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if F8E4M3ToF32[mid] <= a {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	c := lo
	if c < 0x7e {
		below, above := a-F8E4M3ToF32[c], F8E4M3ToF32[c+1]-a
		if above < below || above == below && c&1 == 1 {
			c++
		}
	}
	return sign | byte(c)
}
