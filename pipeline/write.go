package pipeline

import (
	"fmt"

	"github.com/diffuse-go/diffuse/checkpoint"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// WriteLDM writes the components as a single-file checkpoint in the
// original LDM key layout (what model sites distribute), with matrix
// weights stored as dtype. It is how the project makes full-size
// random-weight checkpoints for tests and benchmarks.
func WriteLDM(path string, layout checkpoint.Model, c *Components, dtype tensor.DType) error {
	var out []safetensors.Tensor
	add := func(prefix string, m nn.Module, params func() ([]checkpoint.Param, error)) error {
		var ps nn.Params
		m.Params("", &ps)
		byName := map[string]*tensor.Tensor{}
		for _, p := range ps.List() {
			byName[p.Name] = *p.Ptr
		}
		list, err := params()
		if err != nil {
			return err
		}
		for _, p := range list {
			t := byName[p.Name]
			if t == nil {
				return fmt.Errorf("write checkpoint: model has no loaded parameter %q", p.Name)
			}
			v := t.Float32().Data()
			name := prefix + p.Source
			switch {
			case len(p.Shape) >= 2 && dtype == tensor.F16:
				out = append(out, safetensors.F16Tensor(name, p.SourceShape, v))
			case len(p.Shape) >= 2 && dtype == tensor.BF16:
				out = append(out, safetensors.BF16Tensor(name, p.SourceShape, v))
			default:
				out = append(out, safetensors.F32Tensor(name, p.SourceShape, v))
			}
		}
		return nil
	}
	if err := add(checkpoint.UNetPrefix, c.UNet, func() ([]checkpoint.Param, error) { return checkpoint.UNetParams(layout.UNet) }); err != nil {
		return err
	}
	if err := add(checkpoint.VAEPrefix, c.VAE, func() ([]checkpoint.Param, error) { return checkpoint.VAEParams(layout.VAE) }); err != nil {
		return err
	}
	if err := add(checkpoint.TextEncoderPrefix, c.TextEncoder, func() ([]checkpoint.Param, error) {
		return checkpoint.TextEncoderParams(layout.TextEncoder)
	}); err != nil {
		return err
	}
	return safetensors.WriteFile(path, out, map[string]string{"format": "pt", "producer": "diffuse"})
}
