package goldentest

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/half"
	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/rng"
)

func init() {
	golden.Register("torch.Generator / torch.randn / torch.rand / diffusers.utils.torch_utils.randn_tensor", runTorchRandn)
}

type torchRandnConfig struct {
	Seeds       []uint64 `json:"seeds"`
	Shapes      [][]int  `json:"shapes"`
	RandShapes  [][]int  `json:"rand_shapes"`
	F64Shapes   [][]int  `json:"f64_shapes"`
	F16Shapes   [][]int  `json:"f16_shapes"`
	RandSeeds   []uint64 `json:"rand_seeds"`
	SeqSeed     uint64   `json:"seq_seed"`
	ListSeeds   []uint64 `json:"list_seeds"`
	ListShape   []int    `json:"list_shape"`
	SingleShape []int    `json:"single_shape"`
}

func shapeName(s []int) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
	}
	return strings.Join(parts, "x")
}

func numel(s []int) int {
	n, err := rng.Numel(s)
	if err != nil {
		panic(err)
	}
	return n
}

// checkExact32 requires bit-identical float32 values (uniform draws).
func checkExact32(t *testing.T, k *outputChecker, name string, got []float32) {
	t.Helper()
	k.use(name)
	c := k.c
	exp, _ := c.MustF32(t, name)
	if len(exp) != len(got) {
		t.Errorf("%s: %d values, want %d", name, len(got), len(exp))
		return
	}
	for i := range exp {
		if math.Float32bits(exp[i]) != math.Float32bits(got[i]) {
			t.Errorf("%s: element %d = %g, want %g (exact)", name, i, got[i], exp[i])
			return
		}
	}
	t.Logf("%s: %d values exact", name, len(exp))
}

// checkF64 compares float64 draws with atol (0 for exact).
func checkF64(t *testing.T, k *outputChecker, name string, got []float64, atol float64) {
	t.Helper()
	k.use(name)
	c := k.c
	io, err := c.IO()
	if err != nil {
		t.Fatal(err)
	}
	exp, _, err := io.Float64(name)
	if err != nil {
		t.Error(err)
		return
	}
	if len(exp) != len(got) {
		t.Errorf("%s: %d values, want %d", name, len(got), len(exp))
		return
	}
	maxErr := 0.0
	for i := range exp {
		d := math.Abs(got[i] - exp[i])
		if d > atol || math.IsNaN(d) {
			t.Errorf("%s: element %d = %.17g, want %.17g (atol %g)", name, i, got[i], exp[i], atol)
			return
		}
		maxErr = math.Max(maxErr, d)
	}
	t.Logf("%s: max err %.3g <= atol %g", name, maxErr, atol)
}

// checkNormal32 compares float32 normal draws with the case tolerance and
// reports how many are bit-identical.
func checkNormal32(t *testing.T, k *outputChecker, name string, got []float32, shape []int) {
	t.Helper()
	k.use(name)
	c := k.c
	if !c.Check(t, name, got, shape) {
		return
	}
	exp, _ := c.MustF32(t, name)
	same := 0
	for i := range exp {
		if math.Float32bits(exp[i]) == math.Float32bits(got[i]) {
			same++
		}
	}
	t.Logf("%s: %d of %d bit-identical", name, same, len(exp))
}

func (cfg torchRandnConfig) dependsOnKernel(c *golden.Case, name string) bool {
	var list []string
	if err := c.Field("outputs_that_depend_on_kernel", &list); err != nil {
		return false
	}
	for _, s := range list {
		if s == name {
			return true
		}
	}
	return false
}

func runTorchRandn(t *testing.T, c *golden.Case) {
	var cfg torchRandnConfig
	if err := c.Field("config", &cfg); err != nil {
		t.Fatal(err)
	}
	k := newOutputChecker(c)
	defer k.allChecked(t, "")
	kernels := []struct {
		k      rng.Kernel
		suffix string
	}{{rng.KernelScalar, ""}, {rng.KernelAVX2, "_avx2"}}

	// State bytes right after manual_seed.
	for _, seed := range cfg.Seeds {
		name := fmt.Sprintf("state_after_manual_seed.s%d", seed)
		if _, ok := c.Outputs[name]; !ok {
			continue
		}
		b := rng.New(seed).State()
		got := make([]int64, len(b))
		for i, v := range b {
			got[i] = int64(v)
		}
		k.use(name)
		c.CheckI64(t, name, got, nil)
	}

	// Float32 normals for every seed and shape, both kernels.
	for _, seed := range cfg.Seeds {
		for _, shape := range cfg.Shapes {
			for _, kern := range kernels {
				base := fmt.Sprintf("randn.s%d.%s", seed, shapeName(shape))
				name := fmt.Sprintf("randn%s.s%d.%s", kern.suffix, seed, shapeName(shape))
				if kern.suffix != "" && !cfg.dependsOnKernel(c, base) {
					name = base // identical in both kernels
				}
				g := rng.NewWithKernel(seed, kern.k)
				checkNormal32(t, k, name, g.Randn(shape), shape)
			}
		}
	}

	// Uniforms and float64 draws.
	for _, seed := range cfg.RandSeeds {
		for _, shape := range cfg.RandShapes {
			checkExact32(t, k, fmt.Sprintf("rand.s%d.%s", seed, shapeName(shape)), rng.New(seed).Rand(numel(shape)))
			checkF64(t, k, fmt.Sprintf("rand_f64.s%d.%s", seed, shapeName(shape)), rng.New(seed).RandF64(numel(shape)), 0)
		}
		for _, shape := range cfg.F64Shapes {
			name := fmt.Sprintf("randn_f64.s%d.%s", seed, shapeName(shape))
			checkF64(t, k, name, rng.New(seed).RandnF64(numel(shape)), c.Atol(name))
		}
		for _, shape := range cfg.F16Shapes {
			name := fmt.Sprintf("randn_f16.s%d.%s", seed, shapeName(shape))
			h := rng.New(seed).RandnF16(numel(shape))
			got := make([]float32, len(h))
			half.F16sToF32s(got, h)
			checkNormal32(t, k, name, got, shape)
		}
	}

	// One generator drawing a sequence (outputs seq.<i>_<call>, in the
	// order i): the serial path's cached value survives between calls;
	// rand and the block path leave it alone.
	steps := seqSteps(t, c)
	for _, kern := range kernels {
		g := rng.NewWithKernel(cfg.SeqSeed, kern.k)
		for _, st := range steps {
			name := "seq" + kern.suffix + "." + st.name
			if _, ok := c.Outputs[name]; !ok {
				name = "seq." + st.name
			}
			switch st.call {
			case "randn_f64_":
				checkF64(t, k, name, g.RandnF64(st.n), c.Atol(name))
			case "randn":
				checkNormal32(t, k, name, g.RandnN(st.n), []int{st.n})
			case "rand":
				checkNormal32(t, k, name, g.Rand(st.n), []int{st.n})
			}
		}
	}

	// diffusers randn_tensor.
	for _, kern := range kernels {
		prefix := "randn_tensor" + kern.suffix + "."
		gens := make([]*rng.Generator, len(cfg.ListSeeds))
		for i, s := range cfg.ListSeeds {
			gens[i] = rng.NewWithKernel(s, kern.k)
		}
		v, err := rng.RandnTensor(cfg.ListShape, gens...)
		if err != nil {
			t.Fatal(err)
		}
		checkNormal32(t, k, prefix+"generator_list", v, cfg.ListShape)
		v, err = rng.RandnTensor(cfg.SingleShape, rng.NewWithKernel(cfg.ListSeeds[0], kern.k))
		if err != nil {
			t.Fatal(err)
		}
		checkNormal32(t, k, prefix+"single_generator", v, cfg.SingleShape)
		v = rng.Generators{rng.NewWithKernel(cfg.ListSeeds[0], kern.k)}.Randn(cfg.SingleShape)
		checkNormal32(t, k, prefix+"generator_list_of_one", v, cfg.SingleShape)
	}
}

// seqStep is one call of the generator sequence: seq.<i>_<call><n>.
type seqStep struct {
	name, call string
	i, n       int
}

// seqSteps parses the sequence outputs seq.<i>_randn<n>, seq.<i>_rand<n>
// and seq.<i>_randn_f64_<n>, in the order of i.
func seqSteps(t *testing.T, c *golden.Case) []seqStep {
	t.Helper()
	re := regexp.MustCompile(`^(\d+)_(randn_f64_|randn|rand)(\d+)$`)
	var steps []seqStep
	for name := range c.Outputs {
		rest, ok := strings.CutPrefix(name, "seq.")
		if !ok {
			continue
		}
		m := re.FindStringSubmatch(rest)
		if m == nil {
			t.Errorf("sequence output %s: want seq.<i>_<randn|rand|randn_f64_><n>", name)
			continue
		}
		i, _ := strconv.Atoi(m[1])
		n, _ := strconv.Atoi(m[3])
		steps = append(steps, seqStep{name: rest, call: m[2], i: i, n: n})
	}
	sort.Slice(steps, func(a, b int) bool { return steps[a].i < steps[b].i })
	for i, st := range steps {
		if st.i != i {
			t.Fatalf("sequence outputs skip call %d (have %s)", i, st.name)
		}
	}
	return steps
}
