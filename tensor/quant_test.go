package tensor

import (
	"errors"
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/diffuse-go/diffuse/gguf"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor/gemm"
)

// quantDTypes are the block dtypes, each with a shape-friendly block size.
var quantDTypes = []DType{Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K}

// wave fills n values with a smooth signal plus a few large outliers, so
// that the quantisers use their whole ranges.
func wave(n int, seed float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.Sin(float64(i)*0.731+seed) * math.Cos(float64(i)*0.013*seed))
		if i%97 == 5 {
			v[i] *= 9
		}
	}
	return v
}

// quantWeight quantises an out×in weight to d, or for a dtype gguf cannot
// quantise to (none at present) fills the blocks with pseudo-random bytes
// under small finite scales.
func quantWeight(t *testing.T, d DType, out, in int, seed float64) *Tensor {
	t.Helper()
	gt, _ := d.GGUFType()
	if !gguf.CanQuantize(gt) {
		return randomBlocks(t, d, out, in, seed)
	}
	w, err := Quantize(FromSlice(wave(out*in, seed), out, in), d)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func randomBlocks(t *testing.T, d DType, out, in int, seed float64) *Tensor {
	t.Helper()
	gt, _ := d.GGUFType()
	ts := gt.TypeSize()
	raw := make([]byte, out*in/gt.BlockSize()*ts)
	state := uint32(seed*1000) + 1
	for i := range raw {
		state = state*1664525 + 1013904223
		raw[i] = byte(state >> 24)
	}
	// The f16 scales: d and dmin at the front of a Q5_K block, d at the
	// end of a Q6_K block; exponents kept near 2⁻⁶.
	for b := 0; b < len(raw); b += ts {
		switch d {
		case Q5_K:
			raw[b+1], raw[b+3] = 0x24|raw[b+1]&0x80, 0x23
		case Q6_K:
			raw[b+ts-1] = 0x22 | raw[b+ts-1]&0x80
		}
	}
	w, err := FromBlocks(d, raw, out, in)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// fp8Weight makes an out×in fp8 weight from every code in turn, with the
// given scale.
func fp8Weight(t *testing.T, d DType, out, in int, scale []float32) *Tensor {
	t.Helper()
	codes := make([]byte, out*in)
	for i := range codes {
		codes[i] = byte(i*37 + i/7)
		if d == F8E4M3 && codes[i]&0x7f == 0x7f {
			codes[i] = 0x42 // NaN codes would make every product NaN
		}
		if d == F8E5M2 && codes[i]&0x7c == 0x7c {
			codes[i] = 0x3a // infinities and NaNs likewise
		}
	}
	w, err := FromFP8(d, codes, scale, out, in)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: element %d is %v, want %v", what, i, got[i], want[i])
		}
	}
}

// TestQuantFloat32 checks that Float32 gives gguf.DequantizeRow's values
// for the block dtypes and ScaledFloat32's arithmetic for the fp8 ones,
// and At the same element by element.
func TestQuantFloat32(t *testing.T) {
	for _, d := range quantDTypes {
		w := quantWeight(t, d, 3, 512, 1)
		raw, _ := w.Blocks()
		gt, _ := d.GGUFType()
		want := make([]float32, 3*512)
		if err := gguf.DequantizeRow(gt, raw, want); err != nil {
			t.Fatal(err)
		}
		sameBits(t, d.String(), w.Float32().Data(), want)
		for _, i := range []int{0, 31, 33, 255, 256, 700, 3*512 - 1} {
			if got := w.At(i/512, i%512); math.Float32bits(got) != math.Float32bits(want[i]) {
				t.Errorf("%v At %d = %v, want %v", d, i, got, want[i])
			}
		}
	}
	for _, d := range []DType{F8E4M3, F8E5M2} {
		table := safetensors.F8E4M3ToF32
		if d == F8E5M2 {
			table = safetensors.F8E5M2ToF32
		}
		for _, scale := range [][]float32{nil, {0.37}, {0.5, 3, 1e-3}} {
			w := fp8Weight(t, d, 3, 40, scale)
			raw, _ := w.Blocks()
			want := make([]float32, len(raw))
			for i, c := range raw {
				want[i] = table[c]
				if len(scale) == 1 {
					want[i] *= scale[0]
				} else if scale != nil {
					want[i] *= scale[i/40]
				}
			}
			sameBits(t, d.String(), w.Float32().Data(), want)
		}
	}
}

// TestLinearQuant checks that Linear with a quantised weight gives the
// bits Linear gives with that weight dequantised first, for every dtype,
// shapes with edges (rows and outputs that fill no tile, inner sizes over
// one k block and not cut on block boundaries), with and without bias, on
// one and two threads, and that the pack cache holds nothing for it.
func TestLinearQuant(t *testing.T) {
	defer gemm.SetThreads(0)
	type shape struct{ rows, out, in int }
	shapes := []shape{{1, 5, 32}, {7, 33, 96}, {37, 70, 288}, {20, 17, 320}, {9, 40, 512}, {50, 3, 768}}
	weights := func(sh shape, i int) []*Tensor {
		var ws []*Tensor
		for _, d := range quantDTypes {
			if sh.in%d.BlockSize() == 0 {
				ws = append(ws, quantWeight(t, d, sh.out, sh.in, float64(i+1)))
			}
		}
		ws = append(ws, fp8Weight(t, F8E4M3, sh.out, sh.in, []float32{0.25}))
		scale := wave(sh.out, 2)
		ws = append(ws, fp8Weight(t, F8E5M2, sh.out, sh.in, scale))
		return ws
	}
	for _, threads := range []int{1, 2} {
		gemm.SetThreads(threads)
		for i, sh := range shapes {
			x := FromSlice(wave(sh.rows*sh.in, 0.3), sh.rows, sh.in)
			bias := FromSlice(wave(sh.out, 5), sh.out)
			for _, w := range weights(sh, i) {
				for _, b := range []*Tensor{nil, bias} {
					got := Linear(x, w, b)
					want := Linear(x, w.Float32(), b)
					sameBits(t, w.DType().String(), got.Data(), want.Data())
				}
			}
		}
	}
	// The pack cache gains nothing from quantised weights.
	w := quantWeight(t, Q8_0, 64, 256, 9)
	x := FromSlice(wave(8*256, 1), 8, 256)
	before := PackCacheBytes()
	Linear(x, w, nil)
	Linear(x, w, nil)
	// (Only growth counts: entries of earlier tests' weights may leave the
	// cache meanwhile, as the collector frees those weights.)
	if after := PackCacheBytes(); after > before {
		t.Errorf("pack cache grew by %d bytes for a quantised weight", after-before)
	}
}

// TestQuantOps runs the ops a quantised tensor may meet besides Linear:
// views, matrix products on either side, 1×1 and 3×3 convolutions with a
// reshaped weight, token projections, clones and lookups, each against the
// same op on the dequantised tensor.
func TestQuantOps(t *testing.T) {
	w := quantWeight(t, Q4_K, 6, 256, 3)
	f := w.Float32()
	check := func(what string, got, want *Tensor) {
		t.Helper()
		if !SameShape(got.Shape(), want.Shape()) {
			t.Fatalf("%s: shape %v, want %v", what, got.Shape(), want.Shape())
		}
		sameBits(t, what, got.Contiguous().Data(), want.Contiguous().Data())
	}
	check("Reshape", w.Reshape(12, 128), f.Reshape(12, 128))
	check("Transpose", w.Transpose(0, 1).Contiguous(), f.Transpose(0, 1).Contiguous())
	check("Narrow", w.Narrow(1, 40, 100), f.Narrow(1, 40, 100))
	check("Narrow rows", w.Narrow(0, 2, 3), f.Narrow(0, 2, 3))
	check("Clone", w.Narrow(0, 2, 3).Clone(), f.Narrow(0, 2, 3))
	if c := w.Narrow(0, 2, 3).Clone(); c.DType() != Q4_K {
		t.Errorf("Clone of whole rows is %v, want Q4_K", c.DType())
	}
	check("Clone unaligned", w.Narrow(1, 3, 5).Clone(), f.Narrow(1, 3, 5))
	check("Add", Add(w, f), Add(f, f))
	x := FromSlice(wave(5*256, 0.1), 5, 256)
	check("MatMulT", MatMulT(x, w), MatMulT(x, f))
	check("MatMul A", MatMul(w.Transpose(0, 1).Contiguous(), FromSlice(wave(6*4, 2), 6, 4)), MatMul(f.Transpose(0, 1).Contiguous(), FromSlice(wave(6*4, 2), 6, 4)))
	check("MatMul B", MatMul(FromSlice(wave(3*6, 2), 3, 6), w), MatMul(FromSlice(wave(3*6, 2), 3, 6), f))
	img := FromSlice(wave(2*256*3*4, 0.7), 2, 256, 3, 4)
	check("Conv2d 1×1", Conv2d(img, w.Reshape(6, 256, 1, 1), nil, Conv2dOpts{}), Conv2d(img, f.Reshape(6, 256, 1, 1), nil, Conv2dOpts{}))
	w3 := quantWeight(t, Q8_0, 4, 32*9, 4).Reshape(4, 32, 3, 3)
	img3 := FromSlice(wave(32*5*6, 0.9), 1, 32, 5, 6)
	o := Conv2dOpts{Padding: [2]int{1, 1}}
	check("Conv2d 3×3", Conv2d(img3, w3, nil, o), Conv2d(img3, w3.Float32(), nil, o))
	check("ChannelsToTokens", ChannelsToTokens(img, w, nil), ChannelsToTokens(img, f, nil))
	hs := FromSlice(wave(2*12*256, 0.4), 2, 12, 256)
	check("TokensToChannels", TokensToChannels(hs, w, nil, nil, 3, 4), TokensToChannels(hs, f, nil, nil, 3, 4))
	e, err := Embedding(w, []int64{5, 0, 2}, 3)
	if err != nil {
		t.Fatal(err)
	}
	ef, _ := Embedding(f, []int64{5, 0, 2}, 3)
	check("Embedding", e, ef)
	if w.String() != "Tensor[6 256] Q4_K" {
		t.Errorf("String = %q", w.String())
	}
}

// TestConvQuantWinograd runs a 3×3 convolution with a quantised weight
// through the Winograd path, twice (when a float32 weight's transform
// would be cached): the bits are those of the dequantised weight, and the
// pack cache keeps nothing for the quantised one.
func TestConvQuantWinograd(t *testing.T) {
	defer SetWinograd(SetWinograd(WinogradAll))
	w := quantWeight(t, Q4_0, 8, 32*9, 6).Reshape(8, 32, 3, 3)
	f := w.Float32()
	img := FromSlice(wave(2*32*7*9, 0.5), 2, 32, 7, 9)
	o := Conv2dOpts{Padding: [2]int{1, 1}, Stride: [2]int{1, 1}}
	before := settledPackCache()
	var got [][]float32
	for range 3 {
		got = append(got, Conv2d(img, w, nil, o).Data())
	}
	if after := PackCacheBytes(); after > before {
		t.Errorf("pack cache grew by %d bytes for a quantised 3×3 weight", after-before)
	}
	for i := range got {
		sameBits(t, "Winograd", got[i], Conv2d(img, f, nil, o).Data())
	}
	if PackCacheBytes() <= before {
		t.Error("the float32 weight's transform was not cached: the test no longer covers the cached path")
	}
}

// TestQuantErrors checks the constructors' refusals and the named error.
func TestQuantErrors(t *testing.T) {
	if _, err := FromBlocks(Q8_0, make([]byte, 34), 1, 31); err == nil {
		t.Error("FromBlocks accepted a row that is not whole blocks")
	}
	if _, err := FromBlocks(Q8_0, make([]byte, 33), 1, 32); err == nil {
		t.Error("FromBlocks accepted short data")
	}
	if _, err := FromBlocks(F16, nil, 1, 32); err == nil {
		t.Error("FromBlocks accepted F16")
	}
	if _, err := FromFP8(F8E4M3, make([]byte, 6), []float32{1, 2}, 3, 2); err == nil {
		t.Error("FromFP8 accepted 2 scales for 3 rows")
	}
	if _, err := Quantize(Zeros(2, 30), Q4_0); err == nil {
		t.Error("Quantize accepted rows of 30")
	}
	if _, err := Quantize(Zeros(2, 32), F8E4M3); err == nil {
		t.Error("Quantize to fp8 did not refuse")
	}
	if _, err := FromU16(Q8_0, nil, 0); err == nil {
		t.Error("FromU16 accepted Q8_0")
	}
	var err error = &QuantizedError{Op: "fuse", DType: Q6_K}
	if !errors.Is(err, ErrQuantized) {
		t.Error("QuantizedError does not match ErrQuantized")
	}
	for _, d := range append(quantDTypes, F8E4M3, F8E5M2) {
		if !d.Quantized() {
			t.Errorf("%v is not Quantized", d)
		}
	}
	if F16.Quantized() || I64.Quantized() {
		t.Error("plain dtypes report Quantized")
	}
}

// settledPackCache collects garbage until the pack cache stops shrinking
// (earlier tests' weights release their panels in cleanups, which would
// otherwise run during a measurement) and returns its size.
func settledPackCache() int64 {
	n := PackCacheBytes()
	for range 20 {
		runtime.GC()
		time.Sleep(time.Millisecond)
		m := PackCacheBytes()
		if m == n {
			return m
		}
		n = m
	}
	return n
}

// TestLinearInt8 checks the integer path of Linear (SetInt8): it gives
// gemm.GemmQ8's bits for a Q8_0 weight and for a view of whole rows of
// one, stays near the float32 product, and is not taken for other dtypes
// or for products that record gradients.
func TestLinearInt8(t *testing.T) {
	defer SetInt8(SetInt8(true))
	w := quantWeight(t, Q8_0, 48, 96, 2)
	x := FromSlice(wave(7*96, 0.7), 7, 96)
	bias := FromSlice(wave(40, 3), 40)
	view := w.Narrow(0, 8, 40) // rows 8…47: a block-aligned offset
	got := Linear(x, view, bias)
	data, _ := w.Blocks()
	want := make([]float32, 7*40)
	gemm.GemmQ8(gemm.Opts{ColBias: bias.Data()}, 7, 40, 96, x.Data(), 96, data[8*3*34:], want, 40)
	sameBits(t, "int8 view", got.Data(), want)
	f := Linear(x, view.Float32(), bias).Data()
	var diff, norm float64
	for i := range f {
		diff += math.Abs(float64(f[i] - got.Data()[i]))
		norm += math.Abs(float64(f[i]))
	}
	if diff == 0 || diff/norm > 0.01 {
		t.Errorf("int8 against float32: relative difference %.5f, want in (0, 0.01]", diff/norm)
	}
	// Other block dtypes, and products that record gradients, stay float32.
	q4 := quantWeight(t, Q4_0, 40, 96, 2)
	sameBits(t, "Q4_0", Linear(x, q4, bias).Data(), Linear(x, q4.Float32(), bias).Data())
	xg := x.Clone()
	xg.SetRequiresGrad(true)
	sameBits(t, "with gradients", Linear(xg, view, bias).Data(), f)
}
