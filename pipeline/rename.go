package pipeline

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/diffuse-go/diffuse/checkpoint"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// A renameRule says where an original (non-diffusers) checkpoint keeps a
// diffusers module or parameter. The mapping of a whole model is derived
// from the model's own parameter list (nn.Params, diffusers names) and a
// short list of such rules, as diffusers' convert scripts describe the
// layout: the diffusers-named model stays the one description of the
// architecture.
//
// Patterns are dotted paths where "#" stands for a block index. A module
// rule ("transformer_blocks.#.attn.to_out.0") keeps the parameter's leaf
// name (weight, bias); a parameter rule (full is set) names the source
// tensor itself ("…query_norm.scale" for "…norm_q.weight").
type renameRule struct {
	dst, src string
	full     bool
	// group lists the diffusers patterns fused into src, in their order
	// along its first dimension (q, k, v of a qkv projection); dst is one
	// of them. The row offsets come from the model's own shapes.
	group []string
	// swap exchanges the two halves of the source's first dimension (the
	// original AdaLayerNormContinuous orders shift, scale; diffusers
	// scale, shift).
	swap bool
	// when, if set, restricts the rule to some block indices.
	when func(idx []int) bool
	re   *regexp.Regexp
}

// moved is a module renamed as a whole.
func moved(dst, src string) renameRule { return renameRule{dst: dst, src: src} }

// movedParam is one parameter renamed (leaf included).
func movedParam(dst, src string) renameRule { return renameRule{dst: dst, src: src, full: true} }

// swapped is a module whose source stores the two halves of its output
// rows in the other order.
func swapped(dst, src string) renameRule { return renameRule{dst: dst, src: src, swap: true} }

// fused are modules stored stacked in one source tensor, in order.
func fused(src string, dsts ...string) []renameRule {
	out := make([]renameRule, len(dsts))
	for i, d := range dsts {
		out[i] = renameRule{dst: d, src: src, group: dsts}
	}
	return out
}

// compile builds the rules' matchers: a module rule matches its pattern
// followed by one leaf segment.
func compileRules(rules []renameRule) []renameRule {
	out := slices.Clone(rules)
	for i := range out {
		expr := "^" + strings.ReplaceAll(regexp.QuoteMeta(out[i].dst), "#", `(\d+)`)
		if out[i].full {
			expr += "$"
		} else {
			expr += `\.([A-Za-z_]+)$`
		}
		out[i].re = regexp.MustCompile(expr)
	}
	return out
}

// fillIndex replaces the "#"s of pattern with idx, in order.
func fillIndex(pattern string, idx []int) string {
	var b strings.Builder
	k := 0
	for _, r := range pattern {
		if r == '#' && k < len(idx) {
			b.WriteString(strconv.Itoa(idx[k]))
			k++
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// recipe builds one diffusers tensor from the source: rows of src (all of
// it when rows is empty), concatenated in order.
type recipe struct {
	src  string
	rows [][2]int
	// srcRows is the first dimension the source must have when rows
	// select from it.
	srcRows int
	shape   []int
}

// ruleSource serves a checkpoint's tensors under diffusers names.
type ruleSource struct {
	f *safetensors.File
	m map[string]recipe
}

func (s ruleSource) Names() []string { return sortedKeys(s.m) }

func (s ruleSource) Shape(name string) ([]int, bool) {
	r, ok := s.m[name]
	return r.shape, ok
}

func (s ruleSource) Tensor(name string) (*tensor.Tensor, error) {
	r, ok := s.m[name]
	if !ok {
		return nil, fmt.Errorf("%s: no tensor for %q", s.f.Path, name)
	}
	t, err := nn.ViewTensor(s.f, r.src)
	if err != nil {
		return nil, err
	}
	switch len(r.rows) {
	case 0:
		return t.Reshape(r.shape...), nil
	case 1:
		// A copy, so that q, k and v do not each hold the whole fused tensor.
		return t.Narrow(0, r.rows[0][0], r.rows[0][1]-r.rows[0][0]).Clone().Reshape(r.shape...), nil
	}
	parts := make([]*tensor.Tensor, len(r.rows))
	for i, rw := range r.rows {
		parts[i] = t.Narrow(0, rw[0], rw[1]-rw[0])
	}
	return tensor.Concat(0, parts...).ToDType(t.DType()).Reshape(r.shape...), nil
}

// mapByRules maps every parameter of m onto the tensors of f under prefix
// through rules. Every parameter must find its source with a matching
// shape and every tensor under prefix must be used (ignore lists
// exceptions); otherwise the error is a *checkpoint.LayoutError naming the
// missing, misshapen and unexpected tensors.
func mapByRules(f *safetensors.File, prefix string, m nn.Module, rules []renameRule, ignore func(string) bool) (ruleSource, error) {
	var ps nn.Params
	m.Params("", &ps)
	shapes := map[string][]int{}
	for _, p := range ps.List() {
		shapes[p.Name] = p.Shape
	}
	rules = compileRules(rules)
	src := ruleSource{f: f, m: map[string]recipe{}}
	e := &checkpoint.LayoutError{Layout: prefix + "*"}
	used := map[string]bool{}
	for _, p := range ps.List() {
		r, err := resolveRule(p.Name, rules, shapes)
		if err != nil {
			e.Missing = append(e.Missing, err.Error())
			continue
		}
		r.src = prefix + r.src
		info, ok := f.Info(r.src)
		if !ok {
			if !p.Optional {
				e.Missing = append(e.Missing, r.src)
			}
			continue
		}
		used[r.src] = true
		if want := sourceShape(r, p.Shape); !sameElements(info.Shape, want, len(r.rows) > 0) {
			e.Shapes = append(e.Shapes, checkpoint.ShapeMismatch{Source: r.src, Name: p.Name, Got: info.Shape, Want: want})
			continue
		}
		r.shape = p.Shape
		src.m[p.Name] = r
	}
	for _, n := range f.Names() {
		if strings.HasPrefix(n, prefix) && !used[n] && (ignore == nil || !ignore(n)) {
			e.Unexpected = append(e.Unexpected, n)
		}
	}
	if len(e.Missing)+len(e.Shapes)+len(e.Unexpected) > 0 {
		sort.Strings(e.Missing)
		sort.Strings(e.Unexpected)
		return src, e
	}
	return src, nil
}

// resolveRule finds where parameter name comes from.
func resolveRule(name string, rules []renameRule, shapes map[string][]int) (recipe, error) {
	for _, r := range rules {
		sub := r.re.FindStringSubmatch(name)
		if sub == nil {
			continue
		}
		leaf := ""
		caps := sub[1:]
		if !r.full {
			leaf, caps = "."+caps[len(caps)-1], caps[:len(caps)-1]
		}
		idx := make([]int, len(caps))
		for i, c := range caps {
			idx[i], _ = strconv.Atoi(c)
		}
		if r.when != nil && !r.when(idx) {
			continue
		}
		out := recipe{src: fillIndex(r.src, idx) + leaf}
		rows := shapes[name][0]
		switch {
		case r.swap:
			out.rows, out.srcRows = [][2]int{{rows / 2, rows}, {0, rows / 2}}, rows
		case r.group != nil:
			off := -1
			for _, g := range r.group {
				if g == r.dst {
					off = out.srcRows
				}
				out.srcRows += shapes[fillIndex(g, idx)+leaf][0]
			}
			out.rows = [][2]int{{off, off + rows}}
		}
		return out, nil
	}
	return recipe{}, fmt.Errorf("%s (no renaming rule)", name)
}

// sourceShape is the shape the source tensor must have for r to give a
// parameter of shape want.
func sourceShape(r recipe, want []int) []int {
	if len(r.rows) == 0 {
		return want
	}
	s := slices.Clone(want)
	s[0] = r.srcRows
	return s
}

// sameElements compares a stored shape with the wanted one: the same
// dimensions for a row selection, else the same sizes apart from 1s (a
// reshape).
func sameElements(got, want []int, rows bool) bool {
	if rows {
		return slices.Equal(got, want)
	}
	trim := func(s []int) []int {
		return slices.DeleteFunc(slices.Clone(s), func(d int) bool { return d == 1 })
	}
	return slices.Equal(trim(got), trim(want))
}
