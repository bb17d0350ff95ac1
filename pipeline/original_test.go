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

// A BFL file with fp8 matrices (as flux1-dev-fp8.safetensors) maps as
// its float32 values: fused rows cut and halves swapped from the 8-bit
// storage.
func TestOriginalFP8(t *testing.T) {
	specs, err := FluxFileLayout(flowTinyFlux(true))
	flowMust(t, err)
	var ts []safetensors.Tensor
	for i, s := range specs {
		n := 1
		for _, d := range s.Shape {
			n *= d
		}
		if len(s.Shape) < 2 {
			ts = append(ts, safetensors.BF16Tensor(s.Name, s.Shape, make([]float32, n)))
			continue
		}
		b := make([]byte, n)
		state := uint64(i + 1)
		for j := range b {
			state = state*6364136223846793005 + 1442695040888963407
			b[j] = byte(0x20 + state>>58) // pseudo-random positive E4M3 values
		}
		ts = append(ts, safetensors.Tensor{Name: s.Name, DType: safetensors.F8E4, Shape: s.Shape, Data: b})
	}
	path := filepath.Join(t.TempDir(), "fp8.safetensors")
	flowMust(t, safetensors.WriteFile(path, ts, nil))
	m, fs, err := loadFluxTransformer(compSource{name: "transformer", file: path}, Options{})
	flowMust(t, err)
	defer fs.close()
	f, err := safetensors.Open(path)
	flowMust(t, err)
	defer f.Close()
	D := flowTinyFlux(true).InnerDim()
	var ps nn.Params
	m.Params("", &ps)
	for _, c := range []struct {
		param, src  string
		at, from, n int // the parameter's rows [at, at+n) are src's [from, from+n)
	}{
		{"norm_out.linear.weight", "final_layer.adaLN_modulation.1.weight", 0, D, D},
		{"norm_out.linear.weight", "final_layer.adaLN_modulation.1.weight", D, 0, D},
		{"single_transformer_blocks.1.proj_mlp.weight", "single_blocks.1.linear1.weight", 0, 3 * D, 4 * D},
		{"transformer_blocks.0.attn.add_k_proj.weight", "double_blocks.0.txt_attn.qkv.weight", 0, D, D},
	} {
		x, err := nn.ReadTensor(f, c.src)
		flowMust(t, err)
		want := x.Narrow(0, c.from, c.n).Contiguous().Data()
		found := false
		for _, p := range ps.List() {
			if p.Name != c.param {
				continue
			}
			found = true
			if got := (*p.Ptr).Float32().Narrow(0, c.at, c.n).Contiguous().Data(); !slices.Equal(got, want) {
				t.Errorf("%s rows [%d, %d) are not rows [%d, %d) of %s", c.param, c.at, c.at+c.n, c.from, c.from+c.n, c.src)
			}
		}
		if !found {
			t.Fatalf("no parameter %s", c.param)
		}
	}
}
