package lora

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// host is a layer that can carry adapters: exactly one field is set.
type host struct {
	lin  *nn.Linear
	conv *nn.Conv2d
}

func (h host) slots() (weight, base **tensor.Tensor, list *[]*nn.LoRA) {
	if h.lin != nil {
		return &h.lin.Weight, &h.lin.LoRABase, &h.lin.LoRA
	}
	return &h.conv.Weight, &h.conv.LoRABase, &h.conv.LoRA
}

var (
	linearType = reflect.TypeFor[*nn.Linear]()
	convType   = reflect.TypeFor[*nn.Conv2d]()
	tensorType = reflect.TypeFor[*tensor.Tensor]()
)

// findHosts walks the model's Go values and returns every Linear and Conv2d
// it holds, keyed by the address of its Weight field (which is what the
// layer registers with nn.Params).
func findHosts(m nn.Module) map[**tensor.Tensor]host {
	out := map[**tensor.Tensor]host{}
	w := walker{seen: map[visit]bool{}, holds: map[reflect.Type]bool{}}
	w.walk(reflect.ValueOf(m), func(h host) {
		weight, _, _ := h.slots()
		out[weight] = h
	})
	return out
}

// visit identifies a pointer, slice or map already walked (models are
// graphs: shared and cyclic references are walked once).
type visit struct {
	ptr uintptr
	n   int
	typ reflect.Type
}

// once reports whether v was already walked, marking it walked.
func (w *walker) once(v reflect.Value, n int) bool {
	key := visit{v.Pointer(), n, v.Type()}
	if w.seen[key] {
		return true
	}
	w.seen[key] = true
	return false
}

type walker struct {
	seen  map[visit]bool
	holds map[reflect.Type]bool // memo of mayHoldPointers
}

func (w *walker) walk(v reflect.Value, found func(host)) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return
		}
		switch v.Type() {
		case linearType:
			// The type is checked, so the conversion is sound; it also works
			// for values reached through unexported fields.
			found(host{lin: (*nn.Linear)(v.UnsafePointer())})
			return
		case convType:
			found(host{conv: (*nn.Conv2d)(v.UnsafePointer())})
			return
		case tensorType:
			return
		}
		if w.once(v, 0) {
			return
		}
		w.walk(v.Elem(), found)
	case reflect.Interface:
		if !v.IsNil() {
			w.walk(v.Elem(), found)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if w.mayHoldPointers(v.Type().Field(i).Type) {
				w.walk(v.Field(i), found)
			}
		}
	case reflect.Slice, reflect.Array:
		if !w.mayHoldPointers(v.Type().Elem()) {
			return
		}
		if v.Kind() == reflect.Slice && (v.Len() == 0 || w.once(v, v.Len())) {
			return
		}
		for i := 0; i < v.Len(); i++ {
			w.walk(v.Index(i), found)
		}
	case reflect.Map:
		if !w.mayHoldPointers(v.Type().Elem()) || v.IsNil() || w.once(v, 0) {
			return
		}
		it := v.MapRange()
		for it.Next() {
			w.walk(it.Value(), found)
		}
	}
}

// mayHoldPointers reports whether values of type t can lead to a layer.
func (w *walker) mayHoldPointers(t reflect.Type) bool {
	if r, ok := w.holds[t]; ok {
		return r
	}
	w.holds[t] = true // provisional, for recursive types
	r := false
	switch t.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map:
		r = t != tensorType
	case reflect.Slice, reflect.Array:
		r = w.mayHoldPointers(t.Elem())
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			if w.mayHoldPointers(t.Field(i).Type) {
				r = true
				break
			}
		}
	}
	w.holds[t] = r
	return r
}

// layers maps every adaptable module path of m (a parameter name minus
// ".weight" whose slot belongs to a Linear or Conv2d) to its layer.
func layers(m nn.Module) map[string]host {
	hosts := findHosts(m)
	var ps nn.Params
	m.Params("", &ps)
	out := map[string]host{}
	for _, p := range ps.List() {
		if !strings.HasSuffix(p.Name, ".weight") {
			continue
		}
		if h, ok := hosts[p.Ptr]; ok {
			out[strings.TrimSuffix(p.Name, ".weight")] = h
		}
	}
	return out
}

// Modules lists the module paths of m that adapters can attach to (its
// Linear and Conv2d layers, by diffusers name), sorted.
func Modules(m nn.Module) []string {
	var out []string
	for p := range layers(m) {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// kohyaTable maps kohya module names (dots replaced by underscores) to
// module paths: every path of the model, plus the SGM/LDM name of each UNet
// path. Names that two paths share map to "" (ambiguous).
func kohyaTable(paths []string) map[string]string {
	t := map[string]string{}
	add := func(name, path string) {
		name = strings.ReplaceAll(name, ".", "_")
		if old, ok := t[name]; ok && old != path {
			t[name] = ""
			return
		}
		t[name] = path
	}
	for _, p := range paths {
		add(p, p)
	}
	for sgm, p := range sgmNames(paths) {
		add(sgm, p)
	}
	return t
}

// Applied is one file attached to one component of a model.
type Applied struct {
	// Name is the adapter name (the file's).
	Name      string
	Component string
	// Modules are the module paths that received an adapter, sorted.
	Modules []string
	// Unmatched lists file keys for this component that matched no module
	// of the model (Apply succeeded because others did); see Warning.
	Unmatched []string
	// Unsupported repeats File.Unsupported.
	Unsupported []string

	weight  float32
	removed bool
	items   []item
}

type item struct {
	path  string // module path
	h     host
	a     *nn.LoRA
	scale float64 // alpha/rank
}

// MatchError reports a file none of whose adapters (for a component) fit the
// model, or whose adapters fit a module's name but not its shape.
type MatchError struct {
	File, Component string
	// Unmatched are keys whose module the model does not have.
	Unmatched []string
	// Mismatched describe keys whose shapes do not fit their module.
	Mismatched []string
}

func (e *MatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "lora: %s does not fit component %q:", e.File, e.Component)
	if len(e.Mismatched) > 0 {
		fmt.Fprintf(&b, "\n shape mismatches (%d):%s", len(e.Mismatched), listLines(e.Mismatched, 20))
	}
	if len(e.Unmatched) > 0 {
		fmt.Fprintf(&b, "\n keys matching no module of the model (%d):%s", len(e.Unmatched), listLines(e.Unmatched, 30))
	}
	return b.String()
}

// Apply attaches the file's adapters for component ("unet", "text_encoder",
// "text_encoder_2", ...; entries without a component are tried too) to the
// matching Linear and Conv2d layers of m, each scaled by alpha/rank ·
// weight. Adapters of other components are left for other calls.
//
// It fails, attaching nothing, when the file has no adapter for the
// component, when none of them matches a module of m (the error, a
// *MatchError, lists the keys), or when an adapter's shape does not fit its
// module. When only some match, the rest are listed in Applied.Unmatched
// (and Warning).
//
// Apply, SetWeight, Remove, Fuse and Unfuse change the layers in place: do
// not call them while the model runs.
func Apply(m nn.Module, f *File, component string, weight float32) (*Applied, error) {
	var entries []*Entry
	for _, e := range f.Entries {
		if e.Component == component || e.Component == "" {
			entries = append(entries, e)
		}
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("lora: %s has no adapters for component %q (it has: %s)", f.Path, component, describeComponents(f.Components()))
	}
	mods := layers(m)
	var table map[string]string
	for _, e := range entries {
		if e.Kohya {
			paths := make([]string, 0, len(mods))
			for p := range mods {
				paths = append(paths, p)
			}
			table = kohyaTable(paths)
			break
		}
	}
	merr := &MatchError{File: f.Path, Component: component}
	a := &Applied{Name: f.Name, Component: component, weight: weight, Unsupported: f.Unsupported}
	for _, e := range entries {
		path := e.Module
		if e.Kohya {
			path = table[e.Module]
		}
		h, ok := mods[path]
		if !ok || path == "" {
			merr.Unmatched = append(merr.Unmatched, e.Keys...)
			continue
		}
		down, up, msg := fitShapes(h, e.Down, e.Up)
		if msg != "" {
			merr.Mismatched = append(merr.Mismatched, fmt.Sprintf("%s (module %s): %s", e.Keys[0], path, msg))
			continue
		}
		s := e.Scale()
		a.items = append(a.items, item{path: path, h: h, scale: s, a: &nn.LoRA{Name: f.Name, Down: down, Up: up, Scale: float32(s * float64(weight))}})
		a.Modules = append(a.Modules, path)
	}
	sort.Strings(merr.Unmatched)
	if len(merr.Mismatched) > 0 || len(a.items) == 0 {
		return nil, merr
	}
	a.Unmatched = merr.Unmatched
	sort.Strings(a.Modules)
	for _, it := range a.items {
		_, _, list := it.h.slots()
		*list = append(*list, it.a)
	}
	return a, nil
}

func describeComponents(cs []string) string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c
		if c == "" {
			out[i] = "(no component prefix)"
		}
	}
	return strings.Join(out, ", ")
}

// fitShapes checks an adapter against its layer and reshapes it to the
// layer's form (a linear adapter on a 1×1 convolution and a 1×1 conv adapter
// on a linear layer are the same maths). msg is non-empty on a mismatch.
func fitShapes(h host, down, up *tensor.Tensor) (d, u *tensor.Tensor, msg string) {
	r := down.Dim(0)
	ds, us := down.Shape(), up.Shape()
	if h.lin != nil {
		l := h.lin
		if len(ds) == 4 {
			if ds[2] != 1 || ds[3] != 1 {
				return nil, nil, fmt.Sprintf("convolution adapter down %v on a linear layer", ds)
			}
			down = down.Reshape(r, ds[1])
		}
		if len(us) == 4 {
			up = up.Reshape(us[0], r)
		}
		if down.Dim(1) != l.In || up.Dim(0) != l.Out {
			return nil, nil, fmt.Sprintf("down %v / up %v do not fit a linear layer %d -> %d", ds, us, l.In, l.Out)
		}
		return down, up, ""
	}
	c := h.conv
	if c.Opts.Groups > 1 {
		return nil, nil, "grouped convolutions cannot take adapters"
	}
	if len(ds) == 2 {
		down = down.Reshape(r, ds[1], 1, 1)
	}
	if len(us) == 2 {
		up = up.Reshape(us[0], r, 1, 1)
	}
	if down.Dim(1) != c.In || down.Dim(2) != c.Kernel || down.Dim(3) != c.Kernel || up.Dim(0) != c.Out {
		return nil, nil, fmt.Sprintf("down %v / up %v do not fit a %d×%d convolution %d -> %d", ds, us, c.Kernel, c.Kernel, c.In, c.Out)
	}
	return down, up, ""
}

// Warning describes what the file had that was not applied (keys matching
// no module, unsupported keys); "" when everything was applied.
func (a *Applied) Warning() string {
	var b strings.Builder
	if len(a.Unmatched) > 0 {
		fmt.Fprintf(&b, "lora %s: %d key(s) for %q match no module of the model:%s", a.Name, len(a.Unmatched), a.Component, listLines(a.Unmatched, 30))
	}
	if len(a.Unsupported) > 0 {
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "lora %s: %d key(s) not supported:%s", a.Name, len(a.Unsupported), listLines(a.Unsupported, 30))
	}
	return b.String()
}

// Weight is the adapter's current user weight.
func (a *Applied) Weight() float32 { return a.weight }

// SetWeight changes the adapter's weight (scale = alpha/rank · w) without
// touching the base weights; fused layers are recomputed from their kept
// originals.
func (a *Applied) SetWeight(w float32) {
	a.weight = w
	for _, it := range a.items {
		it.a.Scale = float32(it.scale * float64(w))
		if it.a.Fused {
			sync(it.h)
		}
	}
}

// SetEnabled turns the adapter on or off (a disabled adapter adds nothing,
// fused or not).
func (a *Applied) SetEnabled(on bool) {
	for _, it := range a.items {
		it.a.Disabled = !on
		if it.a.Fused {
			sync(it.h)
		}
	}
}

// Remove detaches the adapter from the model (unfusing it first where it
// was fused). Removing twice does nothing.
func (a *Applied) Remove() {
	if a.removed {
		return
	}
	a.removed = true
	for _, it := range a.items {
		_, _, list := it.h.slots()
		kept := (*list)[:0]
		for _, x := range *list {
			if x != it.a {
				kept = append(kept, x)
			}
		}
		for i := len(kept); i < len(*list); i++ {
			(*list)[i] = nil
		}
		*list = kept
		if len(kept) == 0 {
			*list = nil
		}
		if it.a.Fused {
			it.a.Fused = false
			sync(it.h)
		}
	}
}

// ErrFuseQuantized is the error (wrapped, naming the modules; errors.Is
// also finds tensor.ErrQuantized in it) of fusing an adapter into a layer
// whose weight is quantised (a GGUF or fp8 checkpoint): the sum would need
// the weight dequantised, losing the memory the format saves, and
// requantising it would change the model. Such adapters run unfused, the
// low-rank term added at run time (nn.Linear.Forward), which Apply sets up
// as for any layer.
var ErrFuseQuantized = fmt.Errorf("lora: cannot fuse into a quantized weight (the adapter runs unfused): %w", tensor.ErrQuantized)

// quantized reports whether the layer's weight as loaded is quantised.
func (h host) quantized() bool {
	weight, base, _ := h.slots()
	w := *weight
	if *base != nil {
		w = *base
	}
	return w != nil && w.DType().Quantized()
}

// Fuse merges this adapter into the weights of its layers (at its current
// weight): W ← W + scale·up·down. The original weights are kept, so Unfuse
// restores them exactly. When any of its layers has a quantised weight it
// fuses nothing and returns an error wrapping ErrFuseQuantized; the
// adapter keeps running unfused.
func (a *Applied) Fuse() error {
	if a.removed {
		return nil
	}
	var quant []string
	for _, it := range a.items {
		if it.h.quantized() {
			quant = append(quant, it.path)
		}
	}
	if len(quant) > 0 {
		return fmt.Errorf("%w: adapter %s, modules%s", ErrFuseQuantized, a.Name, listLines(quant, 20))
	}
	for _, it := range a.items {
		if !it.a.Fused {
			it.a.Fused = true
			sync(it.h)
		}
	}
	return nil
}

// Unfuse takes this adapter back out of the weights (it then runs unfused
// again). Layers where no fused adapter is left get back their original
// weight tensors.
func (a *Applied) Unfuse() {
	for _, it := range a.items {
		if it.a.Fused {
			it.a.Fused = false
			sync(it.h)
		}
	}
}

// Fuse merges every attached adapter of m into its layer's weights (as
// diffusers' fuse_lora does) and returns the number of layers changed.
// Layers with quantised weights are left out (see ErrFuseQuantized): their
// adapters keep running unfused; FuseQuantizedCheck lists them.
func Fuse(m nn.Module) int {
	n := 0
	for _, h := range findHosts(m) {
		if h.quantized() {
			continue
		}
		_, _, list := h.slots()
		changed := false
		for _, a := range *list {
			if !a.Fused {
				a.Fused, changed = true, true
			}
		}
		if changed {
			sync(h)
			n++
		}
	}
	return n
}

// FuseQuantizedCheck returns nil when Fuse(m) would fuse every attached
// adapter, else an error wrapping ErrFuseQuantized that names the layers
// with quantised weights whose adapters would stay unfused.
func FuseQuantizedCheck(m nn.Module) error {
	var quant []string
	for path, h := range layers(m) {
		_, _, list := h.slots()
		if len(*list) > 0 && h.quantized() {
			quant = append(quant, path)
		}
	}
	if len(quant) == 0 {
		return nil
	}
	sort.Strings(quant)
	return fmt.Errorf("%w: modules%s", ErrFuseQuantized, listLines(quant, 20))
}

// Unfuse takes every fused adapter of m back out of the weights, restoring
// the original weight tensors bit for bit (they were kept, not recomputed),
// and returns the number of layers restored. The adapters stay attached,
// unfused.
func Unfuse(m nn.Module) int {
	n := 0
	for _, h := range findHosts(m) {
		_, _, list := h.slots()
		changed := false
		for _, a := range *list {
			if a.Fused {
				a.Fused, changed = false, true
			}
		}
		if changed {
			sync(h)
			n++
		}
	}
	return n
}

// sync recomputes a layer's weight from its original and its fused adapters:
// the original tensor itself when none is fused.
func sync(h host) {
	weight, base, list := h.slots()
	var parts []*nn.LoRA
	for _, a := range *list {
		if a.Fused && !a.Disabled && a.Scale != 0 {
			parts = append(parts, a)
		}
	}
	if len(parts) == 0 {
		if *base != nil {
			*weight, *base = *base, nil
		}
		return
	}
	if *base == nil {
		*base = *weight
	}
	orig := *base
	w := orig.Float32()
	if w == orig {
		w = orig.Clone()
	}
	d := w.Data()
	out := orig.Dim(0)
	for _, a := range parts {
		r := a.Down.Dim(0)
		delta := tensor.MatMul(a.Up.Reshape(out, r), a.Down.Reshape(r, len(d)/out)).Data()
		s := a.Scale
		for i := range d {
			d[i] += s * delta[i]
		}
	}
	if orig.DType() != tensor.F32 {
		w = w.ToDType(orig.DType())
	}
	*weight = w
}
