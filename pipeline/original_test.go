package pipeline

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/checkpoint"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// An original FLUX or SD3 transformer file loaded through its naming rules
// and written back through them is the same file: fused rows and swapped
// halves go back where they came from.
func TestOriginalRoundTrip(t *testing.T) {
	for _, c := range []struct {
		rules  checkpoint.Rules
		prefix string
		specs  func() ([]TensorSpec, error)
		load   func(compSource) (nn.Module, error)
	}{
		{checkpoint.Flux, "", func() ([]TensorSpec, error) { return FluxFileLayout(flowTinyFlux(true)) },
			func(p compSource) (nn.Module, error) { m, _, err := loadFluxTransformer(p, Options{}); return m, err }},
		{checkpoint.SD3, sd3FileTransformer, func() ([]TensorSpec, error) {
			return SD3FileLayout(flowTinySD3(), flowTinyCLIP(32), flowTinyCLIP(32), nil, flowTinyVAE(SD3VAE()))
		}, func(p compSource) (nn.Module, error) { m, _, err := loadSD3Transformer(p, Options{}); return m, err }},
	} {
		t.Run(c.rules.String(), func(t *testing.T) {
			specs, err := c.specs()
			flowMust(t, err)
			m := loadTagged(t, specs, c.prefix, c.load)
			params, err := c.rules.Names(m)
			flowMust(t, err)
			cp := checkpoint.ComponentParams{Part: checkpoint.Part{Name: "transformer", Prefix: c.prefix, Rules: c.rules}, Params: params}
			ts, err := partTensors(cp, m, tensor.F32)
			flowMust(t, err)
			path := filepath.Join(t.TempDir(), "back.safetensors")
			flowMust(t, writeSafetensors(path, ts, nil))
			back, err := safetensors.Open(path)
			flowMust(t, err)
			defer back.Close()
			n := 0
			for i, s := range specs {
				if !strings.HasPrefix(s.Name, c.prefix) {
					continue
				}
				n++
				x, err := nn.ViewTensor(back, s.Name)
				flowMust(t, err)
				if !slices.Equal(x.Shape(), s.Shape) {
					t.Fatalf("%s written as %v, read as %v", s.Name, x.Shape(), s.Shape)
				}
				if !taggedRows(x.Float32().Data(), s.Shape, i) {
					t.Errorf("%s does not come back as written", s.Name)
				}
			}
			if n != len(back.Names()) {
				t.Errorf("wrote %d tensors, the layout has %d", len(back.Names()), n)
			}
		})
	}
}

// taggedRows reports whether v holds spec i's rows as loadTagged wrote
// them.
func taggedRows(v []float32, shape []int, i int) bool {
	rows := shape[0]
	if shape[0] == 1 && len(shape) > 1 {
		rows = shape[1]
	}
	for j, x := range v {
		if x != rowTag(i, j/(len(v)/rows)) {
			return false
		}
	}
	return true
}

// A BFL file that lacks a tensor, has one misshapen or one too many is
// refused with the tensors named.
func TestOriginalLayoutErrors(t *testing.T) {
	specs, err := FluxFileLayout(flowTinyFlux(false))
	flowMust(t, err)
	for _, c := range []struct {
		what string
		edit func([]TensorSpec) []TensorSpec
		want string
	}{
		{"missing", func(s []TensorSpec) []TensorSpec {
			return slices.DeleteFunc(s, func(x TensorSpec) bool { return x.Name == "single_blocks.1.linear1.bias" })
		}, "1 missing: single_blocks.1.linear1.bias"},
		{"unexpected", func(s []TensorSpec) []TensorSpec {
			return append(s, TensorSpec{Name: "double_blocks.0.img_attn.extra.weight", Shape: []int{2}})
		}, "1 unexpected: double_blocks.0.img_attn.extra.weight"},
		{"shape", func(s []TensorSpec) []TensorSpec {
			for i := range s {
				if s[i].Name == "final_layer.adaLN_modulation.1.weight" {
					s[i].Shape = []int{s[i].Shape[0] + 2, s[i].Shape[1]}
				}
			}
			return s
		}, "final_layer.adaLN_modulation.1.weight is"},
	} {
		path := filepath.Join(t.TempDir(), c.what+".safetensors")
		writeLayout(t, path, c.edit(slices.Clone(specs)))
		_, _, err := loadFluxTransformer(compSource{name: "transformer", file: path}, Options{})
		var le *checkpoint.LayoutError
		if !errors.As(err, &le) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "FLUX") {
			t.Errorf("%s: %v, want a layout error with %q", c.what, err, c.want)
		}
	}
}
