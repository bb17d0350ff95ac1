package pipeline

import (
	"errors"

	"github.com/diffuse-go/diffuse/checkpoint"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
)

// mapOriginal maps every parameter of m onto the tensors of an original
// (reference-code) file under prefix by the checkpoint package's naming
// rules: the model's own parameter list renamed, fused rows cut and
// swapped halves put back where the rules say. Every parameter must find
// its source with the right shape and every tensor under prefix must be
// used, except those ignore (when set) reports as another component's;
// otherwise the error is a *checkpoint.LayoutError naming the missing,
// misshapen and unexpected tensors.
func mapOriginal(f *safetensors.File, prefix string, m nn.Module, rules checkpoint.Rules, ignore func(string) bool) (nn.Source, error) {
	params, err := rules.Names(m)
	if err != nil {
		return nil, err
	}
	var src checkpoint.Source = f
	if ignore != nil {
		src = hidingSource{f, ignore}
	}
	comp, err := checkpoint.MapComponent(src, prefix, params)
	var le *checkpoint.LayoutError
	if errors.As(err, &le) {
		le.Layout = rules.String() + " " + le.Layout
	}
	if err != nil {
		return nil, err
	}
	return componentSource{f, comp}, nil
}

// hidingSource hides the tensors hide reports (the other components of
// an all-in-one file whose transformer has no prefix).
type hidingSource struct {
	checkpoint.Source
	hide func(string) bool
}

func (s hidingSource) Names() []string {
	var out []string
	for _, n := range s.Source.Names() {
		if !s.hide(n) {
			out = append(out, n)
		}
	}
	return out
}

// originalTensors lists the tensors an original file holds for m under
// the rules, under prefix, each once (a fused tensor at its whole shape).
func originalTensors(m nn.Module, rules checkpoint.Rules, prefix string) ([]TensorSpec, error) {
	params, err := rules.Names(m)
	if err != nil {
		return nil, err
	}
	var out []TensorSpec
	seen := map[string]bool{}
	for _, p := range params {
		if !seen[p.Source] {
			seen[p.Source] = true
			out = append(out, TensorSpec{Name: prefix + p.Source, Shape: p.SourceShape})
		}
	}
	return out, nil
}
