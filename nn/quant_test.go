package nn

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/diffuse-go/diffuse/gguf"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// quantNet is a module with the layer kinds a quantised checkpoint feeds.
type quantNet struct {
	A, B *Linear
	C    *Conv2d
}

func (n *quantNet) Params(prefix string, p *Params) {
	n.A.Params(prefix+"a.", p)
	n.B.Params(prefix+"b.", p)
	n.C.Params(prefix+"c.", p)
}

func newQuantNet() *quantNet {
	return &quantNet{A: NewLinear(64, 5, true), B: NewLinear(256, 64, false), C: NewConv2d(32, 4, 3, 1, 1, true)}
}

func (n *quantNet) forward(x, img *tensor.Tensor) []*tensor.Tensor {
	h := n.A.Forward(n.B.Forward(x))
	return []*tensor.Tensor{h, n.C.Forward(img)}
}

func waveVals(n int, seed float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.Sin(float64(i)*0.61+seed)) * 0.5
	}
	return v
}

func quantBytes(t *testing.T, typ gguf.Type, v []float32) []byte {
	t.Helper()
	b, err := gguf.Quantize(typ, []int{len(v)}, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLoadGGUF loads a module from a GGUF file with Q8_0 and Q4_K
// matrices, a Q8_0 convolution stored as ComfyUI-GGUF stores one (rows of
// 32 with its original shape in the metadata) and float32 biases: with
// KeepDType the matrices stay quantised and the outputs are, bit for bit,
// those of the same module loaded dequantised.
func TestLoadGGUF(t *testing.T) {
	conv := waveVals(4*32*9, 3)
	tensors := []gguf.Tensor{
		{Name: "a.weight", Type: gguf.Q8_0, Shape: []int{5, 64}, Data: quantBytes(t, gguf.Q8_0, waveVals(5*64, 1))},
		{Name: "a.bias", Type: gguf.F32, Shape: []int{5}, Data: quantBytes(t, gguf.F32, waveVals(5, 2))},
		{Name: "b.weight", Type: gguf.Q4_K, Shape: []int{64, 256}, Data: quantBytes(t, gguf.Q4_K, waveVals(64*256, 4))},
		{Name: "c.weight", Type: gguf.Q8_0, Shape: []int{len(conv) / 32, 32}, Data: quantBytes(t, gguf.Q8_0, conv)},
		{Name: "c.bias", Type: gguf.F16, Shape: []int{4}, Data: quantBytes(t, gguf.F16, waveVals(4, 5))},
	}
	meta := []gguf.KV{{Key: gguf.KeyOrigShape + "c.weight", Value: gguf.MustValue([]int32{4, 32, 3, 3})}}
	path := filepath.Join(t.TempDir(), "net.gguf")
	if err := gguf.WriteFile(path, meta, tensors); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kept, plain := newQuantNet(), newQuantNet()
	if err := Load(kept, "", GGUFSource{F: f}, LoadOptions{KeepDType: true}); err != nil {
		t.Fatal(err)
	}
	if err := Load(plain, "", GGUFSource{F: f}, LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		w    *tensor.Tensor
		want tensor.DType
	}{{kept.A.Weight, tensor.Q8_0}, {kept.B.Weight, tensor.Q4_K}, {kept.C.Weight, tensor.Q8_0}, {kept.C.Bias, tensor.F32}, {plain.B.Weight, tensor.F32}} {
		if c.w.DType() != c.want {
			t.Errorf("loaded %v, want %v", c.w.DType(), c.want)
		}
	}
	x := tensor.FromSlice(waveVals(3*256, 0.2), 3, 256)
	img := tensor.FromSlice(waveVals(32*5*6, 0.3), 1, 32, 5, 6)
	got, want := kept.forward(x, img), plain.forward(x, img)
	for i := range got {
		g, w := got[i].Data(), want[i].Data()
		for j := range w {
			if math.Float32bits(g[j]) != math.Float32bits(w[j]) {
				t.Fatalf("output %d element %d: %v, dequantised weights give %v", i, j, g[j], w[j])
			}
		}
	}
	if _, err := GGUFTensor(f, "nope"); err == nil {
		t.Error("GGUFTensor found a missing tensor")
	}
}

// TestLoadFP8 loads 8-bit float weights from safetensors, one with a
// per-row weight_scale and one with a scalar scale_weight: they stay 8-bit
// with their scales (which Names omits, so Load does not call them
// unexpected), and their values are ScaledFloat32's.
func TestLoadFP8(t *testing.T) {
	codes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*29) & 0x77 // finite in both formats
		}
		return b
	}
	rowScale := safetensors.F32Tensor("a.weight_scale", []int{5}, []float32{0.5, 2, 0.125, 3, 1e-2})
	tensors := []safetensors.Tensor{
		{Name: "a.weight", DType: safetensors.F8E4, Shape: []int{5, 64}, Data: codes(5 * 64)},
		rowScale,
		safetensors.F32Tensor("a.bias", []int{5}, waveVals(5, 1)),
		{Name: "b.weight", DType: safetensors.F8E5, Shape: []int{64, 256}, Data: codes(64 * 256)},
		safetensors.F32Tensor("b.scale_weight", []int{}, []float32{0.75}),
		safetensors.F32Tensor("c.weight", []int{4, 32, 3, 3}, waveVals(4*32*9, 2)),
		safetensors.F32Tensor("c.bias", []int{4}, waveVals(4, 3)),
	}
	path := filepath.Join(t.TempDir(), "net.safetensors")
	if err := safetensors.WriteFile(path, tensors, nil); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, inPlace := range []bool{false, true} {
		n := newQuantNet()
		if err := Load(n, "", FileSource{F: f, InPlace: inPlace}, LoadOptions{KeepDType: true}); err != nil {
			t.Fatal(err)
		}
		if n.A.Weight.DType() != tensor.F8E4M3 || n.B.Weight.DType() != tensor.F8E5M2 {
			t.Fatalf("in place %v: loaded %v and %v", inPlace, n.A.Weight.DType(), n.B.Weight.DType())
		}
		for _, name := range []string{"a.weight", "b.weight"} {
			want, _, err := f.ScaledFloat32(name)
			if err != nil {
				t.Fatal(err)
			}
			w := n.A.Weight
			if name == "b.weight" {
				w = n.B.Weight
			}
			got := w.Float32().Data()
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%s element %d: %v, ScaledFloat32 gives %v", name, i, got[i], want[i])
				}
			}
		}
	}
}
