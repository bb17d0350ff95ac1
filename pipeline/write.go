package pipeline

import (
	"fmt"

	"github.com/diffuse-go/diffuse/checkpoint"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// WriteLDM writes the components as a single-file checkpoint in the
// original LDM key layout (what model sites distribute for SD 1.x and
// 2.x), with matrix weights stored as dtype (F32, F16 or BF16) and vectors
// as F32. It is how the project makes full-size random-weight checkpoints
// for tests and benchmarks.
func WriteLDM(path string, m checkpoint.Model, c *Components, dtype tensor.DType) error {
	if m.SGM() {
		return fmt.Errorf("write checkpoint %s: %s is an SDXL model; use WriteSGM", path, m.Name)
	}
	modules := map[string]nn.Module{}
	for _, p := range c.parts() {
		modules[p.name] = p.m
	}
	return writeSingleFile(path, m, modules, dtype)
}

// writeSingleFile writes the modules, by part name, under the names and
// shapes of m's parts.
func writeSingleFile(path string, m checkpoint.Model, modules map[string]nn.Module, dtype tensor.DType) error {
	switch dtype {
	case tensor.F32, tensor.F16, tensor.BF16:
	default:
		return fmt.Errorf("write checkpoint %s: dtype %v is not F32, F16 or BF16", path, dtype)
	}
	cps, err := m.Components()
	if err != nil {
		return err
	}
	var out []lazyTensor
	for _, cp := range cps {
		mod := modules[cp.Name]
		if mod == nil {
			return fmt.Errorf("write checkpoint %s: no %s model", path, cp.Name)
		}
		ts, err := partTensors(cp, mod, dtype)
		if err != nil {
			return fmt.Errorf("write checkpoint %s: %s: %w", path, cp.Name, err)
		}
		out = append(out, ts...)
	}
	return writeSafetensors(path, out, map[string]string{"format": "pt", "producer": "diffuse"})
}
