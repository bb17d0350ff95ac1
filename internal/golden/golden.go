// Package golden loads the reference cases produced by running upstream
// diffusers/transformers (see golden/MANIFEST.md) and compares results with
// them. Cases are read from $DIFFUSE_GOLDEN_DIR when set, else from the
// repository's golden/ folder.
package golden

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/safetensors"
)

// Dir returns the folder holding the cases.
func Dir() string {
	if d := os.Getenv("DIFFUSE_GOLDEN_DIR"); d != "" {
		return d
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "golden"
	}
	// internal/golden/golden.go -> repo root
	return filepath.Join(filepath.Dir(file), "..", "..", "golden")
}

// Case is one reference case folder.
type Case struct {
	Name  string // folder name
	Dir   string
	Class string
	// Raw holds every case.json field, for case-specific parameters.
	Raw    map[string]json.RawMessage
	Config json.RawMessage
	// UsesWeightsOf maps a component ("unet", "vae", ...) to the case whose
	// weights.safetensors it uses.
	UsesWeightsOf map[string]string
	Inputs        map[string]TensorSpec
	Outputs       map[string]TensorSpec
	atol          map[string]float64
	io            *safetensors.File
	opened        []*safetensors.File
}

// TensorSpec is an input or output entry of case.json.
type TensorSpec struct {
	Shape []int  `json:"shape"`
	DType string `json:"dtype"`
}

// Cases loads every case folder (a folder holding case.json) under Dir.
func Cases() ([]*Case, error) {
	root := Dir()
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("golden: reading %s: %w", root, err)
	}
	var out []*Case
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "case.json")); err != nil {
			continue
		}
		c, err := Load(dir)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Find loads the case folder of that name under Dir.
func Find(name string) (*Case, error) { return Load(filepath.Join(Dir(), name)) }

// Load reads one case folder. The io file is opened lazily.
func Load(dir string) (*Case, error) {
	b, err := os.ReadFile(filepath.Join(dir, "case.json"))
	if err != nil {
		return nil, fmt.Errorf("golden: %w", err)
	}
	c := &Case{Name: filepath.Base(dir), Dir: dir}
	if err := json.Unmarshal(b, &c.Raw); err != nil {
		return nil, fmt.Errorf("golden: %s/case.json: %w", dir, err)
	}
	var tol struct {
		Atol      float64 `json:"atol"`
		PerOutput map[string]struct {
			Atol float64 `json:"atol"`
		} `json:"per_output"`
	}
	fields := []struct {
		key string
		dst any
	}{
		{"class", &c.Class}, {"uses_weights_of", &c.UsesWeightsOf},
		{"inputs", &c.Inputs}, {"outputs", &c.Outputs}, {"tolerance", &tol},
	}
	for _, f := range fields {
		if raw, ok := c.Raw[f.key]; ok {
			if err := json.Unmarshal(raw, f.dst); err != nil {
				return nil, fmt.Errorf("golden: %s/case.json field %q: %w", dir, f.key, err)
			}
		}
	}
	c.Config = c.Raw["config"]
	c.atol = map[string]float64{}
	for k, v := range tol.PerOutput {
		c.atol[k] = v.Atol
	}
	c.atol[""] = tol.Atol
	return c, nil
}

// Field decodes a case.json field into dst.
func (c *Case) Field(key string, dst any) error {
	raw, ok := c.Raw[key]
	if !ok {
		return fmt.Errorf("golden: case %s has no field %q", c.Name, key)
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("golden: case %s field %q: %w", c.Name, key, err)
	}
	return nil
}

// Atol returns the tolerance of an output: its per-output atol, else the
// case-wide one.
func (c *Case) Atol(output string) float64 {
	if a, ok := c.atol[output]; ok {
		return a
	}
	return c.atol[""]
}

// HasAtol reports whether the output has its own tolerance entry.
func (c *Case) HasAtol(output string) bool { _, ok := c.atol[output]; return ok }

// Open opens a safetensors file of the case folder by file name.
func (c *Case) Open(file string) (*safetensors.File, error) {
	f, err := safetensors.Open(filepath.Join(c.Dir, file))
	if err != nil {
		return nil, err
	}
	c.opened = append(c.opened, f)
	return f, nil
}

// IO returns the case's io.safetensors.
func (c *Case) IO() (*safetensors.File, error) {
	if c.io == nil {
		f, err := c.Open("io.safetensors")
		if err != nil {
			return nil, err
		}
		c.io = f
	}
	return c.io, nil
}

// Weights opens the weights of a component: the case's own
// weights.safetensors for component "", else the weights.safetensors of the
// case named by uses_weights_of[component].
func (c *Case) Weights(component string) (*safetensors.File, error) {
	if component == "" {
		return c.Open("weights.safetensors")
	}
	other, ok := c.UsesWeightsOf[component]
	if !ok {
		return nil, fmt.Errorf("golden: case %s: uses_weights_of has no %q", c.Name, component)
	}
	f, err := safetensors.Open(filepath.Join(filepath.Dir(c.Dir), other, "weights.safetensors"))
	if err != nil {
		return nil, err
	}
	c.opened = append(c.opened, f)
	return f, nil
}

// Sibling loads another case of the same folder (for uses_weights_of configs).
func (c *Case) Sibling(name string) (*Case, error) {
	return Load(filepath.Join(filepath.Dir(c.Dir), name))
}

// Close closes every file the case opened.
func (c *Case) Close() {
	for _, f := range c.opened {
		f.Close()
	}
	c.opened = nil
	c.io = nil
}

// F32 reads a float tensor of io.safetensors.
func (c *Case) F32(name string) ([]float32, []int, error) {
	io, err := c.IO()
	if err != nil {
		return nil, nil, err
	}
	return io.Float32(name)
}

// I64 reads an integer tensor of io.safetensors.
func (c *Case) I64(name string) ([]int64, []int, error) {
	io, err := c.IO()
	if err != nil {
		return nil, nil, err
	}
	return io.Int64(name)
}

// MustF32 is F32 for tests: it fails the test on error.
func (c *Case) MustF32(t testing.TB, name string) ([]float32, []int) {
	t.Helper()
	v, s, err := c.F32(name)
	if err != nil {
		t.Fatal(err)
	}
	return v, s
}

// MustI64 is I64 for tests.
func (c *Case) MustI64(t testing.TB, name string) ([]int64, []int) {
	t.Helper()
	v, s, err := c.I64(name)
	if err != nil {
		t.Fatal(err)
	}
	return v, s
}

// Result is the outcome of comparing one output.
type Result struct {
	Name     string
	MaxErr   float64 // max |got - expected|
	Atol     float64
	Bad      int // elements outside tolerance of both references
	First    int // index of the first bad element
	Got, Exp float64
}

// OK reports whether every element was within tolerance.
func (r Result) OK() bool { return r.Bad == 0 }

func (r Result) String() string {
	if r.OK() {
		return fmt.Sprintf("%s: max err %.3g <= atol %.3g", r.Name, r.MaxErr, r.Atol)
	}
	return fmt.Sprintf("%s: %d elements outside atol %.3g (max err %.3g; first at %d: got %g, want %g)",
		r.Name, r.Bad, r.Atol, r.MaxErr, r.First, r.Got, r.Exp)
}

// Compare checks got against output name with the case's tolerance. An
// element also passes when it is within atol of the float64 reference
// (<name>__f64), which means it is rounding noise, not an error.
func (c *Case) Compare(name string, got []float32, shape []int) (Result, error) {
	io, err := c.IO()
	if err != nil {
		return Result{}, err
	}
	info, ok := io.Info(name)
	if !ok {
		return Result{}, fmt.Errorf("golden: %s: no output %q", c.Name, name)
	}
	exact := strings.HasPrefix(string(info.DType), "I") || strings.HasPrefix(string(info.DType), "U")
	var exp []float64
	var eshape []int
	if exact {
		iv, s, err := io.Int64(name)
		if err != nil {
			return Result{}, err
		}
		exp, eshape = make([]float64, len(iv)), s
		for i, v := range iv {
			exp[i] = float64(v)
		}
	} else if exp, eshape, err = io.Float64(name); err != nil {
		return Result{}, err
	}
	if shape != nil && !sameShape(shape, eshape) {
		return Result{}, fmt.Errorf("golden: %s/%s: shape %v, want %v", c.Name, name, shape, eshape)
	}
	if len(got) != len(exp) {
		return Result{}, fmt.Errorf("golden: %s/%s: %d values, want %d", c.Name, name, len(got), len(exp))
	}
	var ref64 []float64
	if io.Has(name + "__f64") {
		ref64, _, _ = io.Float64(name + "__f64")
	}
	r := Result{Name: name, Atol: c.Atol(name), First: -1}
	for i, e := range exp {
		g := float64(got[i])
		d := math.Abs(g - e)
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		if d > r.MaxErr {
			r.MaxErr = d
		}
		tol := r.Atol
		if exact {
			tol = 0
		}
		if d <= tol {
			continue
		}
		if ref64 != nil && math.Abs(g-ref64[i]) <= tol {
			continue
		}
		if r.Bad == 0 {
			r.First, r.Got, r.Exp = i, g, e
		}
		r.Bad++
	}
	return r, nil
}

// Check is Compare for tests: it reports the result and fails the test on a
// mismatch.
func (c *Case) Check(t testing.TB, name string, got []float32, shape []int) bool {
	t.Helper()
	r, err := c.Compare(name, got, shape)
	if err != nil {
		t.Error(err)
		return false
	}
	if !r.OK() {
		t.Errorf("%s: %s", c.Name, r)
		return false
	}
	t.Logf("%s", r)
	return true
}

// CheckI64 compares an integer output exactly.
func (c *Case) CheckI64(t testing.TB, name string, got []int64, shape []int) bool {
	t.Helper()
	exp, eshape, err := c.I64(name)
	if err != nil {
		t.Error(err)
		return false
	}
	if shape != nil && !sameShape(shape, eshape) {
		t.Errorf("%s/%s: shape %v, want %v", c.Name, name, shape, eshape)
		return false
	}
	if len(got) != len(exp) {
		t.Errorf("%s/%s: %d values, want %d", c.Name, name, len(got), len(exp))
		return false
	}
	for i := range exp {
		if got[i] != exp[i] {
			t.Errorf("%s/%s: element %d = %d, want %d", c.Name, name, i, got[i], exp[i])
			return false
		}
	}
	t.Logf("%s: %d integers exact", name, len(exp))
	return true
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Runner runs one case's checks.
type Runner func(t *testing.T, c *Case)

var runners = map[string]Runner{}

// Register installs the runner for a case class (case.json "class").
func Register(class string, r Runner) { runners[class] = r }

// Run runs one case with the runner registered for its class. A case whose
// class has no runner fails, naming the case and its class: a case folder
// that nothing checks must not pass silently.
func Run(t *testing.T, c *Case) {
	t.Helper()
	r, err := runnerFor(c)
	if err != nil {
		t.Error(err)
		return
	}
	r(t, c)
}

// runnerFor returns the runner of the case's class.
func runnerFor(c *Case) (Runner, error) {
	r, ok := runners[c.Class]
	if !ok {
		return nil, fmt.Errorf("case %s: no runner registered for class %q", c.Name, c.Class)
	}
	return r, nil
}

// RunAll runs every case found under Dir (see Run).
func RunAll(t *testing.T) {
	cases, err := Cases()
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatalf("no golden cases under %s", Dir())
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			defer c.Close()
			Run(t, c)
		})
	}
}
