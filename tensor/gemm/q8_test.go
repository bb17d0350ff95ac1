package gemm

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/diffuse-go/diffuse/gguf"
)

// q8Weights quantises an n×k float32 matrix to Q8_0 with gguf's own
// quantiser and returns the blocks and their dequantised values.
func q8Weights(t *testing.T, n, k int, rng *rand.Rand) ([]byte, []float32) {
	t.Helper()
	w := make([]float32, n*k)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	q, err := gguf.Quantize(gguf.Q8_0, []int{n, k}, w)
	if err != nil {
		t.Fatal(err)
	}
	deq := make([]float32, n*k)
	if err := gguf.DequantizeRow(gguf.Q8_0, q, deq); err != nil {
		t.Fatal(err)
	}
	return q, deq
}

// q8Ref is GemmQ8 from its definition: each activation block rounded
// (ties to even) to steps of max|x|/127, each block product an exact
// integer sum, scaled and summed in float64.
func q8Ref(m, n, k int, a []float32, deq []float32, wScale func(j, b int) float64, bias []float32) []float64 {
	out := make([]float64, m*n)
	for i := range m {
		for j := range n {
			var sum float64
			for b := 0; b < k; b += q8Block {
				x := a[i*k+b : i*k+b+q8Block]
				var amax float64
				for _, v := range x {
					amax = math.Max(amax, math.Abs(float64(v)))
				}
				d := float32(amax) / 127
				sw := wScale(j, b/q8Block)
				var isum int64
				for p, v := range x {
					qa := int64(0)
					if d != 0 {
						qa = int64(math.RoundToEven(float64(v * (1 / d))))
					}
					qw := int64(math.Round(float64(deq[j*k+b+p]) / sw))
					isum += qa * qw
				}
				sum += float64(isum) * float64(d) * sw
			}
			if bias != nil {
				sum += float64(bias[j])
			}
			out[i*n+j] = sum
		}
	}
	return out
}

func q8Scale(w []byte, k int) func(j, b int) float64 {
	return func(j, b int) float64 {
		blk := w[(j*(k/q8Block)+b)*q8Bytes:]
		return float64(f16ToF32(uint16(blk[0]) | uint16(blk[1])<<8))
	}
}

func TestGemmQ8(t *testing.T) {
	for name, useGo := range map[string]bool{"best": false, "go": true} {
		t.Run(name, func(t *testing.T) {
			defer func(k q8Kernel, q func(int, []float32, []int32, []float32)) { q8Kern, quantizeRow = k, q }(q8Kern, quantizeRow)
			if useGo {
				q8Kern, quantizeRow = q8KernelGo, quantizeRowGo
			}
			testGemmQ8(t)
		})
	}
}

func testGemmQ8(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 0))
	for _, sz := range [][3]int{{1, 1, 32}, {6, 16, 32}, {7, 17, 64}, {5, 40, 288}, {13, 300, 320}, {100, 33, 96}} {
		m, n, k := sz[0], sz[1], sz[2]
		w, deq := q8Weights(t, n, k, rng)
		a := make([]float32, m*k)
		for i := range a {
			a[i] = float32(rng.NormFloat64()) * 3
		}
		a[0] = 0 // a zero value, and (below) an all-zero block
		if m > 1 && k >= 64 {
			clear(a[k+32 : k+64])
		}
		bias := make([]float32, n)
		for i := range bias {
			bias[i] = float32(i) - 3
		}
		ref := q8Ref(m, n, k, a, deq, q8Scale(w, k), bias)
		var c1 []float32
		for _, threads := range []int{1, 3} {
			c := make([]float32, m*(n+2))
			for i := range c {
				c[i] = float32(math.NaN()) // every element must be written
			}
			GemmQ8(Opts{ColBias: bias, Threads: threads}, m, n, k, a, k, w, c, n+2)
			for i := range m {
				for j := range n {
					got, want := float64(c[i*(n+2)+j]), ref[i*n+j]
					if math.Abs(got-want) > 1e-5*(1+math.Abs(want))*float64(k/q8Block) {
						t.Fatalf("%v threads %d: C[%d,%d] = %v, want %v", sz, threads, i, j, got, want)
					}
				}
			}
			if c1 == nil {
				c1 = c
				continue
			}
			for i := range m {
				for j := range n {
					if math.Float32bits(c[i*(n+2)+j]) != math.Float32bits(c1[i*(n+2)+j]) {
						t.Fatalf("%v: C[%d,%d] differs between 1 and 3 threads", sz, i, j)
					}
				}
			}
		}
		// Against the float32 product of the dequantised weight: the
		// activations' 8-bit rounding is the whole difference, a fraction of
		// a percent of the products' scale.
		var errSum, refSum float64
		for i := range m {
			for j := range n {
				var s float64
				for p := range k {
					s += float64(a[i*k+p]) * float64(deq[j*k+p])
				}
				s += float64(bias[j])
				errSum += math.Abs(s - float64(c1[i*(n+2)+j]))
				refSum += math.Abs(s)
			}
		}
		if rel := errSum / refSum; rel > 0.01 {
			t.Errorf("%v: mean relative error against float32 %.4f", sz, rel)
		}
	}
}

// TestQuantizeBlockTies checks the rounding of exact halves and of the
// values just below them.
func TestQuantizeBlockTies(t *testing.T) {
	x := make([]float32, q8Block)
	x[0] = 127 // step 1
	x[1], x[2], x[3], x[4] = 0.5, 1.5, -2.5, math.Nextafter32(0.5, 0)
	x[5] = -127
	var q [q8Block]int16
	if d := quantizeBlock(x, &q); d != 1 {
		t.Fatalf("step %v, want 1", d)
	}
	want := []int16{127, 0, 2, -2, 0, -127}
	for i, w := range want {
		if q[i] != w {
			t.Errorf("q[%d] = %d for %v, want %d", i, q[i], x[i], w)
		}
	}
	clear(x)
	if d := quantizeBlock(x, &q); d != 0 || q != [q8Block]int16{} {
		t.Errorf("zero block: step %v, values %v", d, q)
	}
}

func TestGemmQ8BadShapes(t *testing.T) {
	for name, f := range map[string]func(){
		"k not a multiple of 32": func() { GemmQ8(Opts{}, 1, 1, 33, make([]float32, 33), 33, make([]byte, 68), make([]float32, 1), 1) },
		"short W":                func() { GemmQ8(Opts{}, 1, 2, 32, make([]float32, 32), 32, make([]byte, 34), make([]float32, 2), 2) },
		"row bias": func() {
			GemmQ8(Opts{RowBias: []float32{1}}, 1, 1, 32, make([]float32, 32), 32, make([]byte, 34), make([]float32, 1), 1)
		},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}
