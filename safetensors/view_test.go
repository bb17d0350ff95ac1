package safetensors

import (
	"encoding/binary"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// viewTensors has float tensors at aligned offsets (e, f, g: sorted first)
// and at odd ones behind a 3-byte tensor (q, r after p).
func viewTensors() []Tensor {
	u16 := func(v ...uint16) []byte {
		b := make([]byte, 2*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint16(b[2*i:], x)
		}
		return b
	}
	f32 := func(v ...float32) []byte {
		b := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
		return b
	}
	return []Tensor{
		{Name: "p", DType: U8, Shape: []int{3}, Data: []byte{1, 2, 3}},
		{Name: "q", DType: F16, Shape: []int{5}, Data: u16(0x3c00, 0x4000, 0xc000, 0x0001, 0x7bff)},
		{Name: "r", DType: F32, Shape: []int{2, 2}, Data: f32(1.5, -2, 3e-38, 7)},
		{Name: "e", DType: F16, Shape: []int{2, 3}, Data: u16(1, 2, 3, 4, 5, 0xffff)},
		{Name: "f", DType: F32, Shape: []int{3}, Data: f32(0.25, -0.5, 1e30)},
		{Name: "g", DType: BF16, Shape: []int{3}, Data: u16(0x3f80, 0xbf80, 0x7f80)},
	}
}

// TestView checks that View16 and View32 return the stored values, in
// place (aliasing the mapping, with a release function) exactly when the
// file is mapped and the tensor aligned, and that released or dropped
// pages still read back the same values.
func TestView(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.safetensors")
	if err := WriteFile(path, viewTensors(), nil); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mem, err := Parse(encode(t, viewTensors(), nil))
	if err != nil {
		t.Fatal(err)
	}
	inPlaceSeen := 0
	for _, file := range []*File{f, mem} {
		for _, name := range []string{"e", "f", "g", "q", "r"} {
			info, b, _ := file.Bytes(name)
			var got []uint32 // the values' bits, read twice: before and after release
			var release func()
			var addr unsafe.Pointer
			read := func() []uint32 {
				if info.DType == F32 {
					v, _, rel, err := file.View32(name)
					if err != nil {
						t.Fatalf("%s: View32(%s): %v", file.Path, name, err)
					}
					release, addr = rel, unsafe.Pointer(unsafe.SliceData(v))
					out := make([]uint32, len(v))
					for i, x := range v {
						out[i] = math.Float32bits(x)
					}
					return out
				}
				v, _, rel, err := file.View16(name)
				if err != nil {
					t.Fatalf("%s: View16(%s): %v", file.Path, name, err)
				}
				release, addr = rel, unsafe.Pointer(unsafe.SliceData(v))
				out := make([]uint32, len(v))
				for i, x := range v {
					out[i] = uint32(x)
				}
				return out
			}
			got = read()
			want := make([]uint32, len(b)/info.DType.Size())
			for i := range want {
				if info.DType == F32 {
					want[i] = binary.LittleEndian.Uint32(b[4*i:])
				} else {
					want[i] = uint32(binary.LittleEndian.Uint16(b[2*i:]))
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s %s: values %x, want %x", file.Path, name, got, want)
			}
			aligned := uintptr(unsafe.Pointer(&b[0]))%uintptr(info.DType.Size()) == 0
			wantInPlace := file == f && mappedFiles && littleEndian && aligned
			if inPlace := addr == unsafe.Pointer(&b[0]); inPlace != wantInPlace || (release != nil) != wantInPlace {
				t.Errorf("%s %s (aligned %v): in place %v, release %v; want in place %v", file.Path, name, aligned, inPlace, release != nil, wantInPlace)
			}
			if wantInPlace {
				inPlaceSeen++
			}
			if release != nil {
				release()
				if again := read(); !slices.Equal(again, want) {
					t.Errorf("%s %s after release: %x, want %x", file.Path, name, again, want)
				}
			}
		}
		for _, name := range []string{"q", "r"} {
			// The odd offsets must really be odd for the copies to be tested.
			if _, b, _ := file.Bytes(name); uintptr(unsafe.Pointer(&b[0]))%2 == 0 {
				t.Errorf("tensor %s is 2-byte aligned; the test needs it not to be", name)
			}
		}
		file.DropPages()
		if v, _, _, err := file.View32("f"); err != nil || v[2] != 1e30 {
			t.Errorf("%s: after DropPages, w = %v, %v", file.Path, v, err)
		}
	}
	if mappedFiles && littleEndian && inPlaceSeen != 3 {
		t.Errorf("%d tensors viewed in place, want the 3 aligned ones", inPlaceSeen)
	}
	if _, _, _, err := f.View16("f"); err == nil || !strings.Contains(err.Error(), `"f"`) {
		t.Errorf("View16 of an F32 tensor: err = %v, want one naming it", err)
	}
	if _, _, _, err := f.View32("e"); err == nil || !strings.Contains(err.Error(), `"e"`) {
		t.Errorf("View32 of an F16 tensor: err = %v, want one naming it", err)
	}
	if _, _, _, err := f.View16("nope"); err == nil {
		t.Errorf("View16 of a missing tensor: no error")
	}
}
