package safetensors

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// rawFile assembles a safetensors file from a literal header and data
// section, so tests can build files the writer would refuse to produce.
func rawFile(header string, data []byte) []byte {
	b := make([]byte, 8, 8+len(header)+len(data))
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

func encode(t testing.TB, tensors []Tensor, meta map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Encode(&buf, tensors, meta); err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return buf.Bytes()
}

func sampleTensors() []Tensor {
	return []Tensor{
		F32Tensor("w.f32", []int{2, 3}, []float32{1, -2, 3.5, 0, float32(math.Inf(1)), -1e-3}),
		F16Tensor("w.f16", []int{4}, []float32{1, -0.5, 65504, 0.25}),
		BF16Tensor("w.bf16", []int{2, 1}, []float32{3, -128}),
		I64Tensor("ids", []int{3}, []int64{0, -1, math.MaxInt64}),
		F32Tensor("scalar", []int{}, []float32{42}),
		F32Tensor("empty", []int{0, 5}, nil),
	}
}

func checkSample(t *testing.T, f *File) {
	t.Helper()
	wantNames := []string{"empty", "ids", "scalar", "w.bf16", "w.f16", "w.f32"}
	if got := f.Names(); !reflect.DeepEqual(got, wantNames) {
		t.Fatalf("Names() = %v, want %v", got, wantNames)
	}
	floats := []struct {
		name  string
		dtype DType
		shape []int
		want  []float32
	}{
		{"w.f32", F32, []int{2, 3}, []float32{1, -2, 3.5, 0, float32(math.Inf(1)), -1e-3}},
		{"w.f16", F16, []int{4}, []float32{1, -0.5, 65504, 0.25}},
		{"w.bf16", BF16, []int{2, 1}, []float32{3, -128}},
		{"scalar", F32, []int{}, []float32{42}},
		{"empty", F32, []int{0, 5}, []float32{}},
	}
	for _, c := range floats {
		info, ok := f.Info(c.name)
		if !ok {
			t.Fatalf("Info(%q) not found", c.name)
		}
		if info.DType != c.dtype || !reflect.DeepEqual(info.Shape, c.shape) {
			t.Errorf("%s: dtype %s shape %v, want %s %v", c.name, info.DType, info.Shape, c.dtype, c.shape)
		}
		got, shape, err := f.Float32(c.name)
		if err != nil {
			t.Fatalf("Float32(%q): %v", c.name, err)
		}
		if !reflect.DeepEqual(shape, c.shape) || !reflect.DeepEqual(got, c.want) {
			t.Errorf("Float32(%q) = %v %v, want %v %v", c.name, got, shape, c.want, c.shape)
		}
	}
	if info, _ := f.Info("scalar"); info.NumElements() != 1 {
		t.Errorf("scalar NumElements = %d, want 1", info.NumElements())
	}
	ids, shape, err := f.Int64("ids")
	if err != nil || !reflect.DeepEqual(ids, []int64{0, -1, math.MaxInt64}) || !reflect.DeepEqual(shape, []int{3}) {
		t.Errorf("Int64(ids) = %v %v %v", ids, shape, err)
	}
	u, info, err := f.Uint16("w.bf16")
	if err != nil || len(u) != 2 || u[0] != 0x4040 || info.DType != BF16 {
		t.Errorf("Uint16(w.bf16) = %#x %v %v", u, info, err)
	}
	d, _, err := f.Float64("w.f16")
	if err != nil || !reflect.DeepEqual(d, []float64{1, -0.5, 65504, 0.25}) {
		t.Errorf("Float64(w.f16) = %v %v", d, err)
	}
	if _, _, err := f.Int64("w.f32"); err == nil || !strings.Contains(err.Error(), `"w.f32"`) {
		t.Errorf("Int64 of an F32 tensor: err = %v, want an error naming it", err)
	}
	if _, _, err := f.Float32("ids"); err == nil || !strings.Contains(err.Error(), `"ids"`) {
		t.Errorf("Float32 of an I64 tensor: err = %v, want an error naming it", err)
	}
	if _, _, err := f.Bytes("nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Bytes of a missing tensor: err = %v, want an error naming it", err)
	}
	if f.Has("nope") || !f.Has("ids") {
		t.Errorf("Has is wrong")
	}
}

func TestRoundTripParse(t *testing.T) {
	meta := map[string]string{"format": "pt", "note": "ünïcode \"quoted\""}
	buf := encode(t, sampleTensors(), meta)
	hlen := binary.LittleEndian.Uint64(buf)
	if (8+hlen)%8 != 0 {
		t.Errorf("data section starts at %d, not 8-byte aligned", 8+hlen)
	}
	f, err := Parse(buf)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	checkSample(t, f)
	if !reflect.DeepEqual(f.Metadata, meta) {
		t.Errorf("Metadata = %v, want %v", f.Metadata, meta)
	}
	if f.Path != "<memory>" {
		t.Errorf("Path = %q", f.Path)
	}
}

func TestRoundTripFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.safetensors")
	if err := WriteFile(path, sampleTensors(), nil); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer f.Close()
	checkSample(t, f)
	if f.Metadata != nil {
		t.Errorf("Metadata = %v, want none", f.Metadata)
	}
	if f.Path != path {
		t.Errorf("Path = %q, want %q", f.Path, path)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("folder holds %d entries after WriteFile, want 1 (no temp file left)", len(entries))
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestWriteFileReplaces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.safetensors")
	if err := WriteFile(path, []Tensor{F32Tensor("x", []int{1}, []float32{1})}, nil); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []Tensor{F32Tensor("y", []int{1}, []float32{2})}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := f.Names(); !reflect.DeepEqual(got, []string{"y"}) {
		t.Errorf("Names after overwrite = %v", got)
	}
}

func TestWriteFileEncodingErrorLeavesNothing(t *testing.T) {
	bad := map[string][]Tensor{
		"unknown dtype":  {{Name: "t", DType: "F7", Shape: []int{1}, Data: []byte{0}}},
		"short data":     {{Name: "t", DType: F32, Shape: []int{2}, Data: make([]byte, 4)}},
		"negative dim":   {{Name: "t", DType: F32, Shape: []int{-1}, Data: nil}},
		"duplicate name": {F32Tensor("t", nil, []float32{1}), F32Tensor("t", nil, []float32{2})},
		"reserved name":  {F32Tensor("__metadata__", nil, []float32{1})},
	}
	for what, ts := range bad {
		t.Run(what, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "out.safetensors")
			err := WriteFile(path, ts, nil)
			if err == nil {
				t.Fatal("WriteFile succeeded, want an error")
			}
			if !strings.Contains(err.Error(), ts[0].Name) {
				t.Errorf("error %q does not name tensor %q", err, ts[0].Name)
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				t.Errorf("left behind %s", e.Name())
			}
		})
	}
}

func TestWriteFileMissingFolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "dir", "x.safetensors")
	if err := WriteFile(path, nil, nil); err == nil {
		t.Error("WriteFile into a missing folder succeeded")
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing.safetensors")); err == nil {
		t.Error("Open of a missing file succeeded")
	}
	empty := filepath.Join(dir, "empty.safetensors")
	os.WriteFile(empty, nil, 0o644)
	_, err := Open(empty)
	if err == nil || !strings.Contains(err.Error(), "too short") || !strings.Contains(err.Error(), empty) {
		t.Errorf("Open of an empty file: err = %v, want 'too short' naming the file", err)
	}
}

func TestEmptyFile(t *testing.T) {
	f, err := Parse(encode(t, nil, nil))
	if err != nil {
		t.Fatalf("Parse of a file with no tensors: %v", err)
	}
	if len(f.Names()) != 0 || len(f.Tensors()) != 0 {
		t.Errorf("want no tensors, got %v", f.Names())
	}
}

func TestParseAcceptsReferenceLayouts(t *testing.T) {
	// Unpadded header, zero-sized tensors sharing an offset, keys out of order.
	hdr := `{"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"z":{"shape":[0],"dtype":"I8","data_offsets":[4,4]},"a":{"dtype":"U8","shape":[0,3],"data_offsets":[4,4]},"__metadata__":{}}`
	f, err := Parse(rawFile(hdr, make([]byte, 4)))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got := f.Names(); !reflect.DeepEqual(got, []string{"a", "b", "z"}) {
		t.Errorf("Names = %v", got)
	}
}

func TestParseMalformed(t *testing.T) {
	f32 := func(name string, shape string, b, e int) string {
		return `"` + name + `":{"dtype":"F32","shape":` + shape + `,"data_offsets":[` + strconv.Itoa(b) + `,` + strconv.Itoa(e) + `]}`
	}
	lenOnly := func(n uint64, rest string) []byte {
		b := make([]byte, 8)
		binary.LittleEndian.PutUint64(b, n)
		return append(b, rest...)
	}
	cases := []struct {
		name string
		file []byte
		want []string // substrings the error must contain
	}{
		{"empty file", nil, []string{"too short"}},
		{"shorter than 8 bytes", []byte{1, 0, 0}, []string{"3 bytes", "too short"}},
		{"header length past EOF", lenOnly(100, "{}"), []string{"header length 100", "past the end"}},
		{"header length over MaxHeaderSize", lenOnly(MaxHeaderSize+1, "{}"), []string{"exceeds", "limit"}},
		{"header length huge", lenOnly(math.MaxUint64, "{}"), []string{"exceeds"}},
		{"empty header", rawFile("", nil), []string{"does not start with '{'"}},
		{"header not an object", rawFile(`[1,2]`, nil), []string{"does not start with '{'"}},
		{"invalid JSON", rawFile(`{"a":{"dtype":"F32",`, nil), []string{"not valid JSON"}},
		{"trailing garbage", rawFile(`{}xyz`, nil), []string{"trailing data"}},
		{"second object", rawFile(`{} {}`, nil), []string{"trailing data"}},
		{"unknown dtype", rawFile(`{"t.w":{"dtype":"F7","shape":[1],"data_offsets":[0,1]}}`, []byte{0}), []string{`"t.w"`, `unknown dtype "F7"`}},
		{"missing dtype", rawFile(`{"t.w":{"shape":[1],"data_offsets":[0,1]}}`, []byte{0}), []string{`"t.w"`, "unknown dtype"}},
		{"missing shape", rawFile(`{"t.w":{"dtype":"U8","data_offsets":[0,1]}}`, []byte{0}), []string{`"t.w"`, "shape missing"}},
		{"null dimension", rawFile(`{"t.w":{"dtype":"U8","shape":[null],"data_offsets":[0,0]}}`, nil), []string{`"t.w"`, "null dimension"}},
		{"fractional dimension", rawFile(`{"t.w":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}}`, []byte{0}), []string{`"t.w"`, "bad header entry"}},
		{"missing data_offsets", rawFile(`{"t.w":{"dtype":"F32","shape":[1]}}`, make([]byte, 4)), []string{`"t.w"`, "data_offsets missing"}},
		{"one data_offset", rawFile(`{"t.w":{"dtype":"F32","shape":[1],"data_offsets":[0]}}`, make([]byte, 4)), []string{`"t.w"`, "data_offsets must be a pair"}},
		{"three data_offsets", rawFile(`{"t.w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, make([]byte, 4)), []string{`"t.w"`, "data_offsets must be a pair"}},
		{"null data_offset", rawFile(`{"t.w":{"dtype":"F32","shape":[1],"data_offsets":[0,null]}}`, make([]byte, 4)), []string{`"t.w"`, "data_offsets must be a pair"}},
		{"negative offset", rawFile(`{`+f32("t.w", "[1]", -4, 0)+`}`, make([]byte, 4)), []string{`"t.w"`, "[-4, 0]", "non-negative"}},
		{"unordered offsets", rawFile(`{`+f32("t.w", "[1]", 4, 0)+`}`, make([]byte, 4)), []string{`"t.w"`, "[4, 0]", "ordered"}},
		{"offsets past end", rawFile(`{`+f32("t.w", "[2]", 0, 8)+`}`, make([]byte, 4)), []string{`"t.w"`, "end 8", "past the end"}},
		{"shape × dtype ≠ bytes", rawFile(`{`+f32("t.w", "[3]", 0, 8)+`}`, make([]byte, 8)), []string{`"t.w"`, "needs 12 bytes", "give 8"}},
		{"shape overflow", rawFile(`{`+f32("t.w", "[4611686018427387904,4]", 0, 8)+`}`, make([]byte, 8)), []string{`"t.w"`, "overflows"}},
		{"overlapping tensors", rawFile(`{`+f32("a", "[2]", 0, 8)+`,`+f32("b", "[2]", 4, 12)+`}`, make([]byte, 12)), []string{`"b" overlaps tensor "a"`}},
		{"duplicate region", rawFile(`{`+f32("a", "[1]", 0, 4)+`,`+f32("b", "[1]", 0, 4)+`}`, make([]byte, 4)), []string{"overlaps", `"a"`, `"b"`}},
		{"gap", rawFile(`{`+f32("a", "[1]", 0, 4)+`,`+f32("b", "[1]", 8, 12)+`}`, make([]byte, 12)), []string{"gap of 4 bytes", `"b"`}},
		{"gap at start", rawFile(`{`+f32("a", "[1]", 4, 8)+`}`, make([]byte, 8)), []string{"gap of 4 bytes", `"a"`}},
		{"uncovered trailing bytes", rawFile(`{`+f32("a", "[1]", 0, 4)+`}`, make([]byte, 6)), []string{"6 bytes", "cover only 4"}},
		{"negative dim", rawFile(`{`+f32("t.w", "[-1,2]", 0, 0)+`}`, nil), []string{`"t.w"`, "negative dimension -1"}},
		{"unknown header field", rawFile(`{"t.w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"offset":0}}`, make([]byte, 4)), []string{`"t.w"`, "bad header entry", `"offset"`}},
		{"entry not an object", rawFile(`{"t.w":[1,2]}`, nil), []string{`"t.w"`, "bad header entry"}},
		{"bad __metadata__ value", rawFile(`{"__metadata__":{"k":1}}`, nil), []string{"__metadata__", "strings"}},
		{"bad __metadata__ type", rawFile(`{"__metadata__":"x"}`, nil), []string{"__metadata__"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := Parse(c.file)
			if err == nil {
				t.Fatalf("Parse accepted the file (tensors %v)", f.Names())
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "safetensors: <memory>: ") {
				t.Errorf("error %q does not name the file", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	var valid bytes.Buffer
	Encode(&valid, sampleTensors(), map[string]string{"format": "pt"})
	f.Add(valid.Bytes())
	var ints bytes.Buffer
	Encode(&ints, []Tensor{
		{Name: "i8", DType: I8, Shape: []int{3}, Data: []byte{1, 2, 255}},
		{Name: "u16", DType: U16, Shape: []int{1}, Data: []byte{1, 2}},
		{Name: "i32", DType: I32, Shape: []int{1}, Data: []byte{1, 2, 3, 4}},
		{Name: "f64", DType: F64, Shape: []int{1}, Data: make([]byte, 8)},
		{Name: "b", DType: Bool, Shape: []int{2}, Data: []byte{0, 1}},
		{Name: "f8", DType: F8E4, Shape: []int{1}, Data: []byte{7}},
	}, nil)
	f.Add(ints.Bytes())
	f.Add([]byte{})
	f.Add([]byte{2, 0, 0, 0, 0, 0, 0, 0, '{', '}'})
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F16","shape":[0,9],"data_offsets":[4,4]}}`, make([]byte, 4)))
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, make([]byte, 12)))
	f.Add(rawFile(`{"a":{"dtype":"I64","shape":[],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, make([]byte, 4)))
	f.Add(rawFile(`{"__metadata__":{"a":"b"}}`, nil))
	f.Add(rawFile(`{"a.weight":{"dtype":"F8_E4M3","shape":[2,2],"data_offsets":[0,4]},"a.weight_scale":{"dtype":"F32","shape":[],"data_offsets":[4,8]},"b.weight":{"dtype":"F8_E5M2","shape":[2],"data_offsets":[8,10]},"b.scale_weight":{"dtype":"BF16","shape":[2,1],"data_offsets":[10,14]}}`, []byte{0x7f, 0xff, 0x7e, 1, 0, 0, 0, 0x3f, 0x7c, 0x7d, 0x80, 0x3f, 0, 0xc0}))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse(b)
		if err != nil {
			if file != nil {
				t.Fatal("Parse returned both a File and an error")
			}
			return
		}
		for _, name := range file.Names() {
			info, data, err := file.Bytes(name)
			if err != nil {
				t.Fatalf("Bytes(%q): %v", name, err)
			}
			if int64(len(data)) != info.End-info.Begin || len(data) != info.NumElements()*info.DType.Size() {
				t.Fatalf("Bytes(%q): %d bytes for %v", name, len(data), info)
			}
			_ = bytes.Count(data, []byte{0}) // reads every byte
			if v, _, err := file.Float32(name); err == nil && len(v) != info.NumElements() {
				t.Fatalf("Float32(%q): %d values for %v", name, len(v), info)
			}
			if v, _, err := file.Int64(name); err == nil && len(v) != info.NumElements() {
				t.Fatalf("Int64(%q): %d values for %v", name, len(v), info)
			}
			file.Float64(name)
			file.Uint16(name)
			if v, _, err := file.ScaledFloat32(name); err == nil && len(v) != info.NumElements() {
				t.Fatalf("ScaledFloat32(%q): %d values for %v", name, len(v), info)
			}
		}
	})
}
