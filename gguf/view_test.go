package gguf

import (
	"path/filepath"
	"testing"

	"github.com/diffuse-go/diffuse/half"
	"github.com/diffuse-go/diffuse/internal/mmap"
)

func TestView(t *testing.T) {
	tensors, vals := sampleTensors(t)
	bf := []float32{1.5, -2, 0.25, 8}
	bfData, _ := Quantize(BF16, []int{2, 2}, bf)
	tensors = append(tensors, Tensor{Name: "w.bf16", Type: BF16, Shape: []int{2, 2}, Data: bfData})
	vals["w.bf16"] = bf
	path := filepath.Join(t.TempDir(), "v.gguf")
	if err := WriteFile(path, nil, tensors); err != nil {
		t.Fatal(err)
	}
	mapped, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer mapped.Close()
	inMemory, err := Parse(encode(t, nil, tensors))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []*File{mapped, inMemory} {
		wantInPlace := f == mapped && mmap.Mapped && littleEndian
		if f.Mapped() != (f == mapped && mmap.Mapped) {
			t.Errorf("Mapped() = %v", f.Mapped())
		}
		for _, name := range []string{"w.f16", "w.bf16"} {
			u, info, release, err := f.View16(name)
			if err != nil {
				t.Fatalf("View16(%q): %v", name, err)
			}
			if (release != nil) != wantInPlace {
				t.Errorf("View16(%q): release %v, want in place %v", name, release != nil, wantInPlace)
			}
			for i, h := range u {
				got := half.F16ToF32(h)
				if info.Type == BF16 {
					got = half.BF16ToF32(h)
				}
				if got != vals[name][i] {
					t.Errorf("View16(%q)[%d] = %v, want %v", name, i, got, vals[name][i])
				}
			}
			if release != nil {
				release()
				f.DropPages(name)
			}
		}
		v, _, release, err := f.View32("double_blocks.0.img_attn.qkv.bias")
		if err != nil || len(v) != 3 || v[2] != 3.5 || (release != nil) != wantInPlace {
			t.Errorf("View32: %v %v %v", v, release != nil, err)
		}
		if _, _, _, err := f.View32("w.f16"); err == nil {
			t.Errorf("View32 of an F16 tensor succeeded")
		}
		if _, _, _, err := f.View16("w.q4k"); err == nil {
			t.Errorf("View16 of a Q4_K tensor succeeded")
		}
	}
	// Data stays readable after its pages are dropped.
	if v, _, err := mapped.Float32("w.f16"); err != nil || v[5] != vals["w.f16"][5] {
		t.Errorf("after DropPages: %v %v", v, err)
	}
}
