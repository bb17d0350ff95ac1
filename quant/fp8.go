package quant

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/diffuse-go/diffuse/safetensors"
)

// fp8Max is float8_e4m3fn's largest finite value.
const fp8Max = 448

// comfyScaledFP8 is the empty tensor by which ComfyUI recognises a
// checkpoint whose fp8 weights have scale_weight tensors.
const comfyScaledFP8 = "scaled_fp8"

// scaleName is the tensor ComfyUI keeps a weight's scale in.
func scaleName(weight string) string { return strings.TrimSuffix(weight, ".weight") + ".scale_weight" }

// fp8Plan is what writeFP8 writes for each output tensor.
type fp8Plan struct {
	src    map[string]Tensor
	from   map[string]string // output tensor → input tensor
	kind   map[string]string // "fp8", "scale", "marker" or "" (stored dtype)
	scales map[string]float32
}

// writeFP8 writes weights of two or more dimensions as float8_e4m3fn
// (with a per-tensor scale, amax/448, when typ.Scaled), the other tensors
// in their stored dtype (F32 for F64 and fp8 inputs).
func writeFP8(ts []Tensor, out string, typ Type) (Report, error) {
	rep := Report{Counts: map[string]int{}}
	p := &fp8Plan{src: map[string]Tensor{}, from: map[string]string{}, kind: map[string]string{}, scales: map[string]float32{}}
	var infos []safetensors.TensorInfo
	add := func(name, from, kind string, dt safetensors.DType, shape []int) {
		p.from[name], p.kind[name] = from, kind
		infos = append(infos, safetensors.TensorInfo{Name: name, DType: dt, Shape: shape})
		rep.Counts[string(dt)]++
		rep.Bytes += int64(numel(shape) * dt.Size())
	}
	for _, info := range ts {
		name := info.Name
		p.src[name] = info
		if len(info.Shape) < 2 || !isWeight(name) {
			add(name, name, "", storedDType(info.DType), info.Shape)
			continue
		}
		add(name, name, "fp8", safetensors.F8E4, info.Shape)
		if typ.Scaled {
			add(scaleName(name), name, "scale", safetensors.F32, []int{})
		}
	}
	if typ.Scaled {
		add(comfyScaledFP8, "", "marker", safetensors.F8E4, []int{0})
	}
	meta := map[string]string{"format": "pt"}
	return rep, safetensors.WriteStream(out, infos, meta, p.fill)
}

// storedDType is the dtype a tensor that is not made fp8 keeps.
func storedDType(d safetensors.DType) safetensors.DType {
	switch d {
	case safetensors.F16, safetensors.BF16:
		return d
	}
	return safetensors.F32
}

// fill encodes one output tensor.
func (p *fp8Plan) fill(t safetensors.TensorInfo, dst []byte) error {
	kind, from := p.kind[t.Name], p.from[t.Name]
	if kind == "marker" {
		return nil
	}
	v, err := p.src[from].Values()
	if err != nil {
		return err
	}
	if n := numel(p.src[from].Shape); len(v) != n {
		return fmt.Errorf("%d values for shape %v", len(v), p.src[from].Shape)
	}
	switch kind {
	case "scale":
		binary.LittleEndian.PutUint32(dst, math.Float32bits(p.scale(from, v)))
	case "fp8":
		s := float32(1)
		if p.kind[scaleName(from)] == "scale" {
			s = p.scale(from, v)
		}
		for i, x := range v {
			dst[i] = safetensors.F32ToF8E4M3(x / s)
		}
	default:
		if err := safetensors.EncodeFloats(dst, v, t.DType); err != nil {
			return err
		}
	}
	return nil
}

// scale is a weight's per-tensor scale, amax/448 (1 for a zero weight),
// remembered so that the weight written after its scale uses the same.
func (p *fp8Plan) scale(weight string, v []float32) float32 {
	if s, ok := p.scales[weight]; ok {
		return s
	}
	var amax float32
	for _, x := range v {
		amax = max(amax, float32(math.Abs(float64(x))))
	}
	s := amax / fp8Max
	if s == 0 || math.IsInf(float64(s), 0) || s != s {
		s = 1
	}
	p.scales[weight] = s
	return s
}
