// Package nn holds the layers diffusion models are built from (linear, conv,
// norms, attention, transformer and resnet blocks), named as in diffusers so
// weight names map one to one, and the machinery that loads weights into
// them by name with shape checks.
package nn

import (
	"fmt"
	"sort"
	"strings"

	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// Param is one named parameter slot of a model.
type Param struct {
	Name  string
	Shape []int
	Ptr   **tensor.Tensor
	// Optional parameters may be absent from a checkpoint.
	Optional bool
}

// Params collects a model's parameters with their full dotted names.
type Params struct {
	list []Param
}

// Add registers a parameter slot.
func (p *Params) Add(name string, shape []int, ptr **tensor.Tensor) {
	p.list = append(p.list, Param{Name: name, Shape: shape, Ptr: ptr})
}

// AddOptional registers a parameter that checkpoints may omit.
func (p *Params) AddOptional(name string, shape []int, ptr **tensor.Tensor) {
	p.list = append(p.list, Param{Name: name, Shape: shape, Ptr: ptr, Optional: true})
}

// List returns the registered parameters.
func (p *Params) List() []Param { return p.list }

// Module is anything with named parameters.
type Module interface {
	// Params registers the module's parameters under prefix (which is empty
	// or ends with ".").
	Params(prefix string, p *Params)
}

// Join builds a child prefix: Join("down_blocks.", 0, "resnets") = "down_blocks.0.resnets.".
func Join(prefix string, parts ...any) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, p := range parts {
		fmt.Fprint(&b, p)
		b.WriteByte('.')
	}
	return b.String()
}

// Source yields tensors by name.
type Source interface {
	Names() []string
	// Tensor returns the tensor stored under name, in its stored dtype.
	Tensor(name string) (*tensor.Tensor, error)
	// Shape returns the stored shape without reading the data.
	Shape(name string) ([]int, bool)
}

// FileSource reads tensors from a safetensors file. 16-bit floats stay
// 16-bit, 8-bit floats (F8_E4M3/F8_E5M2) stay 8-bit with their scale
// (whose tensors Names then omits); everything else becomes float32 (or
// int64 for integer tensors).
type FileSource struct {
	F *safetensors.File
	// Prefix is prepended to every requested name ("unet." etc.).
	Prefix string
	// InPlace uses the file's data as the tensors' storage where it can
	// (see ViewTensor) instead of copying it: F must then stay open while
	// the loaded model is used.
	InPlace bool
}

// Names lists the tensor names (without Prefix), less the scales of 8-bit
// weights, which the weights take in.
func (s FileSource) Names() []string {
	var out []string
	scales := fp8Scales(s.F)
	for _, n := range s.F.Names() {
		if strings.HasPrefix(n, s.Prefix) && !scales[n] {
			out = append(out, strings.TrimPrefix(n, s.Prefix))
		}
	}
	return out
}

// Shape returns a tensor's stored shape.
func (s FileSource) Shape(name string) ([]int, bool) {
	info, ok := s.F.Info(s.Prefix + name)
	return info.Shape, ok
}

// Tensor reads a tensor.
func (s FileSource) Tensor(name string) (*tensor.Tensor, error) {
	if s.InPlace {
		return ViewTensor(s.F, s.Prefix+name)
	}
	return ReadTensor(s.F, s.Prefix+name)
}

// ReadTensor reads one tensor of a safetensors file into memory, keeping
// F16/BF16 storage, and F8_E4M3/F8_E5M2 storage with the weight's scale
// (safetensors.File.WeightScale, per tensor or per row; tensor.FromFP8).
func ReadTensor(f *safetensors.File, name string) (*tensor.Tensor, error) {
	info, ok := f.Info(name)
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %q", f.Path, name)
	}
	switch info.DType {
	case safetensors.F8E4, safetensors.F8E5:
		t, err := fp8Tensor(f, name)
		if err != nil || !f.Mapped() {
			return t, err
		}
		// A copy, as the other dtypes are: the file may be closed.
		return t.Clone(), nil
	case safetensors.F16, safetensors.BF16:
		u, _, err := f.Uint16(name)
		if err != nil {
			return nil, err
		}
		dt := tensor.F16
		if info.DType == safetensors.BF16 {
			dt = tensor.BF16
		}
		return tensor.FromU16(dt, u, info.Shape...)
	case safetensors.F32, safetensors.F64:
		v, shape, err := f.Float32(name)
		if err != nil {
			return nil, err
		}
		return tensor.FromData(v, shape...)
	default:
		v, shape, err := f.Int64(name)
		if err != nil {
			return nil, err
		}
		return tensor.FromInt64(v, shape...)
	}
}

// ViewTensor is ReadTensor without the copy where the file allows it (see
// safetensors.File.View16): an F16, BF16 or F32 tensor then uses the file's
// mapping as its storage, which must stay open while the tensor is in use,
// and drops its pages from memory once a packed copy is cached (see
// tensor.Tensor.SetRelease), so a model keeps one copy of its weights
// instead of two. An F8_E4M3/F8_E5M2 weight is likewise the file's bytes,
// with its scale (see ReadTensor); the GEMM decodes it on every product.
func ViewTensor(f *safetensors.File, name string) (*tensor.Tensor, error) {
	info, ok := f.Info(name)
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %q", f.Path, name)
	}
	var t *tensor.Tensor
	var release func()
	var err error
	switch info.DType {
	case safetensors.F16, safetensors.BF16:
		var u []uint16
		if u, _, release, err = f.View16(name); err != nil {
			return nil, err
		}
		dt := tensor.F16
		if info.DType == safetensors.BF16 {
			dt = tensor.BF16
		}
		t, err = tensor.FromU16(dt, u, info.Shape...)
	case safetensors.F32:
		var v []float32
		if v, _, release, err = f.View32(name); err != nil {
			return nil, err
		}
		t, err = tensor.FromData(v, info.Shape...)
	case safetensors.F8E4, safetensors.F8E5:
		// Read in place on every product: nothing to release.
		return fp8Tensor(f, name)
	default:
		return ReadTensor(f, name)
	}
	if err != nil {
		return nil, err
	}
	if release != nil {
		t.SetRelease(release)
	}
	return t, nil
}

// LoadOptions tune Load.
type LoadOptions struct {
	// AllowUnused accepts source tensors that no parameter takes.
	AllowUnused bool
	// KeepDType keeps 16-bit and quantised storage (GGUFSource's block
	// types, fp8 with its scale) for matrices (rank >= 2); vectors are
	// always widened to float32 since they are small and read every step.
	// When false every parameter becomes float32 (quantised ones
	// dequantised).
	KeepDType bool
}

// Load fills every parameter of m from src, checking names and shapes. The
// error lists every missing tensor, unexpected tensor and shape mismatch.
func Load(m Module, prefix string, src Source, opt LoadOptions) error {
	var ps Params
	m.Params(prefix, &ps)
	var missing, mismatched []string
	used := map[string]bool{}
	for _, p := range ps.list {
		shape, ok := src.Shape(p.Name)
		if !ok {
			if !p.Optional {
				missing = append(missing, p.Name)
			}
			continue
		}
		used[p.Name] = true
		if !sameShape(shape, p.Shape) {
			mismatched = append(mismatched, fmt.Sprintf("%s: expected shape %v, got %v", p.Name, p.Shape, shape))
			continue
		}
		t, err := src.Tensor(p.Name)
		if err != nil {
			return err
		}
		if !opt.KeepDType || len(p.Shape) < 2 {
			if t.DType() != tensor.F32 {
				t = t.Float32()
			}
		}
		*p.Ptr = t
	}
	var unused []string
	if !opt.AllowUnused {
		for _, n := range src.Names() {
			if !used[n] && strings.HasPrefix(n, prefix) {
				unused = append(unused, n)
			}
		}
	}
	if len(missing)+len(mismatched)+len(unused) == 0 {
		return nil
	}
	sort.Strings(missing)
	sort.Strings(unused)
	var b strings.Builder
	b.WriteString("loading weights:")
	list := func(title string, items []string) {
		if len(items) == 0 {
			return
		}
		fmt.Fprintf(&b, "\n  %s (%d):", title, len(items))
		for i, s := range items {
			if i == 20 {
				fmt.Fprintf(&b, "\n    ... and %d more", len(items)-20)
				break
			}
			b.WriteString("\n    " + s)
		}
	}
	list("missing tensors", missing)
	list("shape mismatches", mismatched)
	list("unexpected tensors", unused)
	return fmt.Errorf("%s", b.String())
}

// Init fills every parameter with deterministic pseudo-random values scaled
// for stable activations (normal·std with std = 1/√fan_in; norm weights 1,
// biases small), for random-weight models at real sizes (benchmarks).
func Init(m Module, seed uint64, dtype tensor.DType) {
	var ps Params
	m.Params("", &ps)
	r := NewRandom(seed)
	for _, p := range ps.list {
		t := tensor.FromSlice(r.Values(p.Name, p.Shape), p.Shape...)
		if len(p.Shape) >= 2 && dtype != tensor.F32 {
			t = t.ToDType(dtype)
		}
		*p.Ptr = t
	}
}

// Random draws the values Init gives parameters, one parameter at a time,
// so that a model larger than memory can be written tensor by tensor.
type Random struct{ state uint64 }

// NewRandom starts the sequence of seed.
func NewRandom(seed uint64) *Random { return &Random{state: seed*0x9E3779B97F4A7C15 + 1} }

// next is a xorshift uniform value in [-1, 1).
func (r *Random) next() float32 {
	r.state ^= r.state << 13
	r.state ^= r.state >> 7
	r.state ^= r.state << 17
	return float32(int64(r.state>>11))/float32(1<<52) - 1
}

// Values returns the next values for the parameter name of shape: norm
// weights 1, norm biases 0, other vectors small, matrices uniform with
// std about 1/√fan_in.
func (r *Random) Values(name string, shape []int) []float32 {
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	switch {
	case len(shape) == 1 && (strings.Contains(name, "norm") || strings.HasSuffix(name, "weight") && !strings.Contains(name, "bias")):
		if !strings.HasSuffix(name, "bias") {
			for i := range v {
				v[i] = 1
			}
		}
	case len(shape) == 1:
		for i := range v {
			v[i] = 0.01 * r.next()
		}
	default:
		fan := n
		if len(shape) > 0 {
			fan = n / max(shape[0], 1)
		}
		if strings.Contains(name, "embedding") && len(shape) == 2 {
			fan = 1
		}
		s := float32(1.7 / sqrt(float64(max(fan, 1))))
		for i := range v {
			v[i] = s * r.next()
		}
	}
	return v
}

func sameShape(a, b []int) bool { return tensor.SameShape(a, b) }
