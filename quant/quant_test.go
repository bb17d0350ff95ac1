package quant

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/diffuse-go/diffuse/gguf"
	"github.com/diffuse-go/diffuse/safetensors"
)

// values is a deterministic signal with a few outliers, so quantisers use
// their whole ranges.
func values(n int, seed float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.Sin(float64(i)*0.7311+seed)) * 0.05
		if i%89 == 3 {
			v[i] *= 7
		}
	}
	return v
}

// input writes a small checkpoint with every kind of tensor the rules
// tell apart, named as FLUX's so that the architecture is detected.
func input(t *testing.T, dir string) (string, map[string][]float32) {
	t.Helper()
	vals := map[string][]float32{}
	mk := func(name string, shape []int, seed float64, enc func(string, []int, []float32) safetensors.Tensor) safetensors.Tensor {
		n := 1
		for _, d := range shape {
			n *= d
		}
		v := values(n, seed)
		st := enc(name, shape, v)
		// What the file holds: the values rounded to its dtype.
		f, err := safetensors.Parse(mustEncode(t, st))
		if err != nil {
			t.Fatal(err)
		}
		vals[name], _, _ = f.Float32(name)
		return st
	}
	ts := []safetensors.Tensor{
		mk("double_blocks.0.img_attn.proj.weight", []int{64, 256}, 1, safetensors.F32Tensor),
		mk("double_blocks.0.img_attn.proj.bias", []int{64}, 2, safetensors.F32Tensor),
		mk("img_in.weight", []int{40, 48}, 3, safetensors.BF16Tensor), // rows of 48: not whole blocks of 32
		mk("txt_in.weight", []int{4, 32}, 4, safetensors.F16Tensor),   // 128 elements: small
		mk("pos_embed", []int{1, 64, 64}, 5, safetensors.BF16Tensor),  // not a weight
		mk("final_layer.linear.weight", []int{32, 512}, 6, safetensors.F16Tensor),
		mk("double_blocks.0.txt_mlp.0.weight", []int{8, 160}, 7, safetensors.F32Tensor), // whole 32-blocks, not 256
	}
	path := filepath.Join(dir, "in.safetensors")
	if err := safetensors.WriteFile(path, ts, nil); err != nil {
		t.Fatal(err)
	}
	return path, vals
}

func mustEncode(t *testing.T, st safetensors.Tensor) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "one.safetensors")
	if err := safetensors.WriteFile(path, []safetensors.Tensor{st}, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Every GGUF type: each tensor is stored as the rules say, its bytes are
// the reference quantiser's for the input's values, and the file says
// its architecture.
func TestConvertGGUF(t *testing.T) {
	dir := t.TempDir()
	in, vals := input(t, dir)
	for _, name := range Types() {
		typ, err := ParseType(name)
		if err != nil {
			t.Fatal(err)
		}
		if typ.FP8 {
			continue
		}
		out := filepath.Join(dir, name+".gguf")
		rep, err := Convert(in, out, typ)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		f, err := gguf.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		if f.Architecture() != "flux" {
			t.Errorf("%s: architecture %q", name, f.Architecture())
		}
		want := map[string]gguf.Type{
			"double_blocks.0.img_attn.proj.weight": typ.GGUF, "double_blocks.0.img_attn.proj.bias": gguf.F32,
			"img_in.weight": typ.GGUF, "txt_in.weight": gguf.F32, "pos_embed": gguf.BF16, "final_layer.linear.weight": typ.GGUF,
			"double_blocks.0.txt_mlp.0.weight": typ.GGUF,
		}
		var kept []string // weights whose rows are not whole blocks stay F16
		for _, w := range []struct {
			name string
			cols int
		}{{"double_blocks.0.txt_mlp.0.weight", 160}, {"img_in.weight", 48}} {
			if w.cols%typ.GGUF.BlockSize() != 0 {
				want[w.name] = gguf.F16
				kept = append(kept, w.name)
			}
		}
		if got := slices.Sorted(slices.Values(rep.Kept)); !slices.Equal(got, kept) {
			t.Errorf("%s: kept %v, want %v", name, got, kept)
		}
		var size int64
		for n, wt := range want {
			info, ok := f.Info(n)
			if !ok || info.Type != wt {
				t.Errorf("%s: %s stored as %v, want %v", name, n, info.Type, wt)
				continue
			}
			_, b, err := f.Bytes(n)
			if err != nil {
				t.Fatal(err)
			}
			size += int64(len(b))
			ref, err := gguf.Quantize(wt, info.Shape, vals[n])
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(b, ref) {
				t.Errorf("%s: %s: bytes differ from gguf.Quantize of the input's values", name, n)
			}
		}
		if len(f.Names()) != len(want) || rep.Bytes != size {
			t.Errorf("%s: %d tensors, %d bytes reported for %d written", name, len(f.Names()), rep.Bytes, size)
		}
		f.Close()
	}
	// Q8_0 keeps each value within half a step d = amax/127 of its block,
	// plus the rounding of d to float16 (up to 127 steps of 2⁻¹¹·d).
	f, err := gguf.Open(filepath.Join(dir, "q8_0.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, _, err := f.Float32("final_layer.linear.weight")
	if err != nil {
		t.Fatal(err)
	}
	src := vals["final_layer.linear.weight"]
	for b := 0; b < len(src); b += 32 {
		var amax float64
		for _, x := range src[b : b+32] {
			amax = max(amax, math.Abs(float64(x)))
		}
		for i := b; i < b+32; i++ {
			if d := math.Abs(float64(got[i] - src[i])); d > amax/127*(0.5+127.0/2048) {
				t.Fatalf("Q8_0 value %d: %g for %g, more than half a step (%g) and the scale's rounding", i, got[i], src[i], amax/127/2)
			}
		}
	}
}

// fp8 and fp8-scaled: weights become float8_e4m3fn codes of value/scale
// (scale amax/448 per tensor, or none), the other tensors keep their
// dtype, and a scaled file carries ComfyUI's scale_weight tensors and
// scaled_fp8 marker. Converting that file on to GGUF applies the scales.
func TestConvertFP8(t *testing.T) {
	dir := t.TempDir()
	in, vals := input(t, dir)
	for _, name := range []string{"fp8", "fp8-scaled"} {
		typ, err := ParseType(name)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, name+".safetensors")
		if _, err := Convert(in, out, typ); err != nil {
			t.Fatal(err)
		}
		f, err := safetensors.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		if f.Has("scaled_fp8") != typ.Scaled {
			t.Errorf("%s: marker present %v", name, f.Has("scaled_fp8"))
		}
		for n, v := range vals {
			info, _ := f.Info(n)
			scale, _, err := f.WeightScale(n)
			if err != nil {
				t.Fatal(err)
			}
			if len(info.Shape) < 2 || n == "pos_embed" {
				if info.DType == safetensors.F8E4 || scale != nil {
					t.Errorf("%s: %s made fp8", name, n)
				}
				continue
			}
			s := float32(1)
			if typ.Scaled {
				var amax float32
				for _, x := range v {
					amax = max(amax, float32(math.Abs(float64(x))))
				}
				if len(scale) != 1 || scale[0] != amax/448 {
					t.Fatalf("%s: %s scale %v, want amax/448 = %g", name, n, scale, amax/448)
				}
				s = scale[0]
			}
			_, raw, err := f.Bytes(n)
			if err != nil {
				t.Fatal(err)
			}
			if info.DType != safetensors.F8E4 {
				t.Fatalf("%s: %s is %s", name, n, info.DType)
			}
			for i, x := range v {
				if raw[i] != safetensors.F32ToF8E4M3(x/s) {
					t.Fatalf("%s: %s[%d] code %#x for %g", name, n, i, raw[i], x)
				}
			}
		}
		f.Close()
	}
	// On to GGUF: the fp8 values times their scales, quantised.
	fp8 := filepath.Join(dir, "fp8-scaled.safetensors")
	out := filepath.Join(dir, "from-fp8.gguf")
	if _, err := Convert(fp8, out, Type{Name: "q8_0", GGUF: gguf.Q8_0}); err != nil {
		t.Fatal(err)
	}
	s, err := safetensors.Open(fp8)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	g, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if len(g.Names()) != len(vals) {
		t.Errorf("GGUF from fp8 holds %v: scales and marker should be dropped", g.Names())
	}
	n := "final_layer.linear.weight"
	v, shape, err := s.ScaledFloat32(n)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := gguf.Quantize(gguf.Q8_0, shape, v)
	if err != nil {
		t.Fatal(err)
	}
	if _, b, _ := g.Bytes(n); !slices.Equal(b, ref) {
		t.Error("an fp8 weight converted to Q8_0 without its scale applied")
	}
}

func TestConvertErrors(t *testing.T) {
	dir := t.TempDir()
	in, _ := input(t, dir)
	for _, name := range []string{"q2_k", "q3_k", "iq2_xs", "q7", ""} {
		if _, err := ParseType(name); !errors.Is(err, ErrType) {
			t.Errorf("ParseType(%q): err = %v, want ErrType", name, err)
		}
	}
	q8, _ := ParseType("Q8_0")
	fp8, _ := ParseType("fp8")
	for _, c := range []struct {
		in, out string
		typ     Type
	}{
		{in, filepath.Join(dir, "x.safetensors"), q8},
		{in, filepath.Join(dir, "x.gguf"), fp8},
		{in, in, fp8},
		{filepath.Join(dir, "missing.safetensors"), filepath.Join(dir, "y.gguf"), q8},
		{in, filepath.Join(dir, "no", "such", "dir.gguf"), q8},
	} {
		if _, err := Convert(c.in, c.out, c.typ); err == nil {
			t.Errorf("Convert(%s, %s, %s) succeeded", c.in, c.out, c.typ.Name)
		}
	}
	ints := filepath.Join(dir, "ints.safetensors")
	if err := safetensors.WriteFile(ints, []safetensors.Tensor{{Name: "ids", DType: safetensors.I64, Shape: []int{2}, Data: make([]byte, 16)}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Convert(ints, filepath.Join(dir, "ints.gguf"), q8); err == nil {
		t.Error("an integer tensor was converted")
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// Write asks for each tensor's values only when it reaches the tensor, in
// file order, so a converter holds one tensor at a time (GGUF: once each;
// fp8-scaled: the weight again after its scale, nothing in between).
func TestWriteStreams(t *testing.T) {
	shapes := [][]int{{64, 64}, {64}, {32, 128}, {96, 64}}
	names := []string{"a.weight", "a.bias", "b.weight", "c.weight"}
	for _, typ := range []string{"q8_0", "fp8-scaled"} {
		ty, _ := ParseType(typ)
		var calls []string
		ts := make([]Tensor, len(names))
		for i, n := range names {
			ts[i] = Tensor{Name: n, Shape: shapes[i], DType: safetensors.F32, Values: func() ([]float32, error) {
				calls = append(calls, n)
				return values(numel(shapes[i]), float64(i)), nil
			}}
		}
		ext := ".gguf"
		if ty.FP8 {
			ext = ".safetensors"
		}
		if _, err := Write(filepath.Join(t.TempDir(), "out"+ext), ty, ts); err != nil {
			t.Fatal(err)
		}
		want := names // GGUF: in the order given
		if ty.FP8 {
			// safetensors order (by name), scale_weight before its weight
			want = []string{"a.bias", "a.weight", "a.weight", "b.weight", "b.weight", "c.weight", "c.weight"}
		}
		if !slices.Equal(calls, want) {
			t.Errorf("%s: values asked for in the order %v, want %v", typ, calls, want)
		}
	}
}

// quantize splits rows among the cores and gives gguf.Quantize's bytes,
// whatever the split (7 rows on 4 workers: 2, 2, 2, 1).
func TestQuantizeParallel(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	for _, typ := range []gguf.Type{gguf.Q8_0, gguf.Q4_K, gguf.Q5_K, gguf.Q6_K, gguf.F16} {
		shape := []int{7, 512}
		v := values(7*512, 2)
		got, err := quantize(typ, shape, v)
		if err != nil {
			t.Fatal(err)
		}
		want, err := gguf.Quantize(typ, shape, v)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%v: the split rows' bytes differ from gguf.Quantize's", typ)
		}
	}
	if _, err := quantize(gguf.Q8_0, []int{2, 48}, values(96, 1)); err == nil {
		t.Error("rows of 48 were quantised to 32-blocks")
	}
}

// BenchmarkQuantize times one FLUX attention matrix (3072×3072) per type,
// rows split among the cores.
func BenchmarkQuantize(b *testing.B) {
	shape := []int{3072, 3072}
	v := values(3072*3072, 1)
	for _, typ := range []gguf.Type{gguf.Q8_0, gguf.Q4_K, gguf.Q5_K, gguf.Q6_K} {
		b.Run(typ.String(), func(b *testing.B) {
			b.SetBytes(int64(4 * len(v)))
			for range b.N {
				if _, err := quantize(typ, shape, v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
