package gguf

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func encode(t testing.TB, kv []KV, tensors []Tensor) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Encode(&buf, kv, tensors); err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return buf.Bytes()
}

// sampleMetadata has a value of every type, arrays of every element type,
// an empty array and an array of arrays.
func sampleMetadata() []KV {
	nested := []Value{MustValue([]int32{1, -2}), MustValue([]int32{}), MustValue([]int32{3})}
	vals := []any{
		"flux", uint8(200), int8(-7), uint16(65000), int16(-300), uint32(4000000000), int32(-5),
		float32(1.5), true, uint64(math.MaxUint64), int64(math.MinInt64), float64(-0.125),
		[]uint8{1, 2}, []int8{-1}, []uint16{9}, []int16{-9}, []uint32{7, 8}, []int32{-7}, []float32{0.5, -1},
		[]bool{true, false, true}, []string{"a", "", "ünï"}, []uint64{1 << 40}, []int64{-1 << 40}, []float64{2.5},
		[]string{}, nested,
	}
	keys := []string{
		"general.architecture", "t.u8", "t.i8", "t.u16", "t.i16", "t.u32", "t.i32", "t.f32", "t.bool", "t.u64", "t.i64", "t.f64",
		"a.u8", "a.i8", "a.u16", "a.i16", "a.u32", "a.i32", "a.f32", "a.bool", "a.str", "a.u64", "a.i64", "a.f64", "a.empty", "a.nested",
	}
	kv := make([]KV, len(vals))
	for i, v := range vals {
		kv[i] = KV{keys[i], MustValue(v)}
	}
	return kv
}

func sampleTensors(t testing.TB) ([]Tensor, map[string][]float32) {
	vals := map[string][]float32{}
	ramp := func(n int, scale float32) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(i%17-8) * scale
		}
		return v
	}
	mk := func(name string, typ Type, shape []int, v []float32) Tensor {
		data, err := Quantize(typ, shape, v)
		if err != nil {
			t.Fatalf("Quantize %s: %v", name, err)
		}
		back := make([]float32, len(v))
		DequantizeRow(typ, data, back)
		vals[name] = back
		return Tensor{Name: name, Type: typ, Shape: shape, Data: data}
	}
	return []Tensor{
		mk("double_blocks.0.img_attn.qkv.weight", Q8_0, []int{3, 64}, ramp(192, 0.25)),
		mk("double_blocks.0.img_attn.qkv.bias", F32, []int{3}, []float32{1, -2, 3.5}),
		mk("w.q4k", Q4_K, []int{2, 256}, ramp(512, 0.01)),
		mk("w.f16", F16, []int{1, 2, 1, 3}, ramp(6, 0.5)),
		mk("scalar", F32, nil, []float32{42}),
		mk("empty", BF16, []int{0, 5}, nil),
		mk("w.q5_1", Q5_1, []int{32}, ramp(32, 1)),
	}, vals
}

func checkSample(t *testing.T, f *File, tensors []Tensor, vals map[string][]float32) {
	t.Helper()
	if got, want := f.Names(), []string{"double_blocks.0.img_attn.qkv.weight", "double_blocks.0.img_attn.qkv.bias", "w.q4k", "w.f16", "scalar", "empty", "w.q5_1"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Names = %v, want %v (file order)", got, want)
	}
	for _, tt := range tensors {
		info, ok := f.Info(tt.Name)
		if !ok {
			t.Fatalf("Info(%q) missing", tt.Name)
		}
		shape := tt.Shape
		if shape == nil {
			shape = []int{}
		}
		if info.Type != tt.Type || !reflect.DeepEqual(info.Shape, shape) || info.Size != int64(len(tt.Data)) {
			t.Errorf("%s: %s %v %d bytes, want %s %v %d", tt.Name, info.Type, info.Shape, info.Size, tt.Type, shape, len(tt.Data))
		}
		if info.Offset%int64(f.Alignment) != 0 {
			t.Errorf("%s: offset %d not aligned to %d", tt.Name, info.Offset, f.Alignment)
		}
		if (f.DataOffset+info.Offset)%int64(f.Alignment) != 0 {
			t.Errorf("%s: file offset %d not aligned", tt.Name, f.DataOffset+info.Offset)
		}
		_, b, err := f.Bytes(tt.Name)
		if err != nil || !bytes.Equal(b, tt.Data) {
			t.Errorf("Bytes(%q) differ: %v", tt.Name, err)
		}
		got, gotShape, err := f.Float32(tt.Name)
		if err != nil {
			t.Fatalf("Float32(%q): %v", tt.Name, err)
		}
		if !reflect.DeepEqual(gotShape, shape) || len(got) != len(vals[tt.Name]) {
			t.Fatalf("Float32(%q): shape %v, %d values", tt.Name, gotShape, len(got))
		}
		for i := range got {
			if got[i] != vals[tt.Name][i] {
				t.Fatalf("Float32(%q)[%d] = %v, want %v", tt.Name, i, got[i], vals[tt.Name][i])
			}
		}
	}
	if info, _ := f.Info("w.f16"); !reflect.DeepEqual(info.Dims, []int64{3, 1, 2, 1}) {
		t.Errorf("w.f16 Dims = %v, want the shape reversed", info.Dims)
	}
}

func checkMetadata(t *testing.T, f *File, want []KV) {
	t.Helper()
	if len(f.Metadata) != len(want) {
		t.Fatalf("%d metadata pairs, want %d", len(f.Metadata), len(want))
	}
	for i, kv := range want {
		got := f.Metadata[i]
		if got.Key != kv.Key || !reflect.DeepEqual(got.Value, kv.Value) {
			t.Errorf("metadata %d = %q %#v, want %q %#v", i, got.Key, got.Value, kv.Key, kv.Value)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	kv := sampleMetadata()
	tensors, vals := sampleTensors(t)
	f, err := Parse(encode(t, kv, tensors))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if f.Version != 3 || f.Alignment != DefaultAlignment || f.Path != "<memory>" {
		t.Errorf("Version %d Alignment %d Path %q", f.Version, f.Alignment, f.Path)
	}
	checkMetadata(t, f, kv)
	checkSample(t, f, tensors, vals)
	if f.Architecture() != "flux" {
		t.Errorf("Architecture = %q", f.Architecture())
	}
	v, _ := f.Get("a.nested")
	if v.Len() != 3 || v.ElemType() != TypeArray || v.Index(0).Index(1).Any() != int32(-2) {
		t.Errorf("a.nested = %v", v)
	}
	if ints, ok := v.Index(0).Ints(); !ok || !reflect.DeepEqual(ints, []int64{1, -2}) {
		t.Errorf("a.nested[0].Ints() = %v %v", ints, ok)
	}
	if n, ok := mustGet(t, f, "t.u32").Int(); !ok || n != 4000000000 {
		t.Errorf("t.u32 Int = %d %v", n, ok)
	}
	if _, ok := mustGet(t, f, "t.u64").Int(); ok {
		t.Errorf("t.u64 (MaxUint64) converted to int64")
	}
	if s, ok := mustGet(t, f, "a.str").Strings(); !ok || len(s) != 3 || s[2] != "ünï" {
		t.Errorf("a.str = %v", s)
	}
	if _, ok := f.Get("nope"); ok {
		t.Errorf("Get(nope) found")
	}
	if _, _, err := f.Bytes("nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Bytes(nope): %v", err)
	}
}

func mustGet(t *testing.T, f *File, key string) Value {
	v, ok := f.Get(key)
	if !ok {
		t.Fatalf("metadata %q missing", key)
	}
	return v
}

func TestAlignmentAndVersion2(t *testing.T) {
	tensors, vals := sampleTensors(t)
	for _, a := range []uint32{1, 8, 64, 4096} {
		kv := []KV{{KeyAlignment, MustValue(a)}}
		buf := encode(t, kv, tensors)
		f, err := Parse(buf)
		if err != nil {
			t.Fatalf("alignment %d: %v", a, err)
		}
		if f.Alignment != int(a) || f.DataOffset%int64(a) != 0 {
			t.Errorf("alignment %d: got %d, data at %d", a, f.Alignment, f.DataOffset)
		}
		checkSample(t, f, tensors, vals)
		// Version 2 has the same layout on little-endian machines.
		binary.LittleEndian.PutUint32(buf[4:], 2)
		if f, err := Parse(buf); err != nil || f.Version != 2 {
			t.Errorf("version 2: %v", err)
		}
	}
}

func TestWriteFileOpen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "flux1-dev-Q8_0.gguf")
	tensors, vals := sampleTensors(t)
	kv := sampleMetadata()
	if err := WriteFile(path, kv, tensors); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	checkMetadata(t, f, kv)
	checkSample(t, f, tensors, vals)
	if f.Path != path {
		t.Errorf("Path = %q", f.Path)
	}
	if err := f.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("folder holds %d entries, want 1 (no temp file left)", len(entries))
	}
	// A failing write leaves the old file and no temporary.
	bad := []Tensor{{Name: "x", Type: Q8_0, Shape: []int{32}, Data: make([]byte, 3)}}
	if err := WriteFile(path, nil, bad); err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Errorf("WriteFile of a bad tensor: %v", err)
	}
	entries, _ = os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("folder holds %d entries after a failed write, want 1", len(entries))
	}
	if _, err := Open(path); err != nil {
		t.Errorf("the old file was damaged: %v", err)
	}
	if _, err := Open(filepath.Join(dir, "missing.gguf")); err == nil {
		t.Errorf("Open of a missing file succeeded")
	}
}

func TestLogicalShape(t *testing.T) {
	// ComfyUI-GGUF stores a [320, 4, 3, 3] conv weight as 45 rows of 256 and
	// records the original shape.
	x := make([]float32, 320*4*3*3)
	data, _ := Quantize(Q8_0, []int{45, 256}, x)
	tensors := []Tensor{{Name: "input_blocks.0.0.weight", Type: Q8_0, Shape: []int{45, 256}, Data: data}}
	kv := []KV{{KeyOrigShape + "input_blocks.0.0.weight", MustValue([]int32{320, 4, 3, 3})}}
	f, err := Parse(encode(t, kv, tensors))
	if err != nil {
		t.Fatal(err)
	}
	v, shape, err := f.Float32("input_blocks.0.0.weight")
	if err != nil || !reflect.DeepEqual(shape, []int{320, 4, 3, 3}) || len(v) != len(x) {
		t.Errorf("Float32: shape %v, %d values, %v", shape, len(v), err)
	}
	for _, c := range []struct {
		val  Value
		want string
	}{
		{MustValue([]int32{320, 4, 3}), "original shape [320 4 3] has 3840"},
		{MustValue("320,4,3,3"), "want an integer array"},
		{MustValue([]int32{-1, 4}), "bad shape"},
	} {
		kv[0].Value = c.val
		f, err := Parse(encode(t, kv, tensors))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.LogicalShape("input_blocks.0.0.weight"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("orig_shape %v: err = %v, want %q", c.val, err, c.want)
		}
	}
}

func TestFloat32Unsupported(t *testing.T) {
	tensors := []Tensor{{Name: "w", Type: Q2_K, Shape: []int{256}, Data: make([]byte, 84)}}
	f, err := Parse(encode(t, nil, tensors))
	if err != nil {
		t.Fatalf("a file with a Q2_K tensor must parse: %v", err)
	}
	if _, _, err := f.Float32("w"); err == nil || !strings.Contains(err.Error(), "Q2_K") {
		t.Errorf("Float32 of Q2_K: %v", err)
	}
}

func TestEncodeErrors(t *testing.T) {
	ok := Tensor{Name: "w", Type: F32, Shape: []int{1}, Data: make([]byte, 4)}
	cases := []struct {
		name    string
		kv      []KV
		tensors []Tensor
		want    string
	}{
		{"duplicate key", []KV{{"a", MustValue(uint8(1))}, {"a", MustValue(uint8(2))}}, nil, `duplicate metadata key "a"`},
		{"empty key", []KV{{"", MustValue(uint8(1))}}, nil, "empty metadata key"},
		{"zero value", []KV{{"a", Value{}}}, nil, "no metadata type"},
		{"mistyped value", []KV{{"a", Value{typ: TypeString, v: uint8(1)}}}, nil, "declared as string"},
		{"bad alignment", []KV{{KeyAlignment, MustValue(uint32(48))}}, nil, "power of two"},
		{"alignment type", []KV{{KeyAlignment, MustValue(uint64(32))}}, nil, "uint32 power of two"},
		{"duplicate tensor", nil, []Tensor{ok, ok}, `"w" is empty or repeated`},
		{"five dims", nil, []Tensor{{Name: "w", Type: F32, Shape: []int{1, 1, 1, 1, 1}, Data: make([]byte, 4)}}, "5 dimensions"},
		{"partial block", nil, []Tensor{{Name: "w", Type: Q8_0, Shape: []int{2, 16}, Data: make([]byte, 34)}}, "rows of 16"},
		{"wrong size", nil, []Tensor{{Name: "w", Type: F16, Shape: []int{3}, Data: make([]byte, 4)}}, "needs 6 bytes, got 4"},
		{"unknown type", nil, []Tensor{{Name: "w", Type: Type(99), Shape: []int{1}, Data: make([]byte, 4)}}, "unknown type"},
	}
	for _, c := range cases {
		if err := Encode(&bytes.Buffer{}, c.kv, c.tensors); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := MakeValue([]Value{MustValue(uint8(1))}); err == nil {
		t.Errorf("MakeValue accepted an array of arrays holding a scalar")
	}
	if _, err := MakeValue(3); err == nil {
		t.Errorf("MakeValue accepted an int")
	}
}

// raw assembles GGUF bytes field by field, so tests can build files the
// writer refuses to produce.
type raw struct{ b []byte }

func (r *raw) u32(x uint32) *raw { r.b = binary.LittleEndian.AppendUint32(r.b, x); return r }
func (r *raw) u64(x uint64) *raw { r.b = binary.LittleEndian.AppendUint64(r.b, x); return r }
func (r *raw) str(s string) *raw { r.u64(uint64(len(s))); r.b = append(r.b, s...); return r }
func (r *raw) bytes(b ...byte) *raw {
	r.b = append(r.b, b...)
	return r
}

// header starts a version 3 file with the given counts.
func header(nTensors, nKV uint64) *raw {
	r := &raw{b: []byte(Magic)}
	return r.u32(3).u64(nTensors).u64(nKV)
}

// tensorInfo appends one tensor info (dims in ggml order).
func (r *raw) tensorInfo(name string, typ Type, off uint64, dims ...uint64) *raw {
	r.str(name).u32(uint32(len(dims)))
	for _, d := range dims {
		r.u64(d)
	}
	return r.u32(uint32(typ)).u64(off)
}

// pad aligns to 32 bytes and appends n data bytes.
func (r *raw) data(n int) *raw {
	for len(r.b)%32 != 0 {
		r.b = append(r.b, 0)
	}
	r.b = append(r.b, make([]byte, n)...)
	return r
}

func TestParseMalformed(t *testing.T) {
	cases := []struct {
		name string
		file []byte
		want []string
	}{
		{"empty", nil, []string{"magic", "needs 4 bytes"}},
		{"bad magic", []byte("GGML\x03\x00\x00\x00"), []string{`magic is "GGML"`, "not a GGUF file"}},
		{"no version", []byte("GGUF\x03"), []string{"version", "needs 4 bytes"}},
		{"version 0", (&raw{b: []byte(Magic)}).u32(0).b, []string{"bad version 0"}},
		{"version 1", (&raw{b: []byte(Magic)}).u32(1).u64(0).u64(0).b, []string{"version 1", "no longer supported"}},
		{"version 4", (&raw{b: []byte(Magic)}).u32(4).u64(0).u64(0).b, []string{"version 4 is newer"}},
		{"big-endian", (&raw{b: []byte(Magic)}).u32(3 << 24).u64(0).u64(0).b, []string{"big-endian"}},
		{"truncated counts", header(0, 0).b[:20], []string{"metadata count", "needs 8 bytes"}},
		{"huge tensor count", header(1<<62, 0).b, []string{"tensor count 4611686018427387904", "bytes left"}},
		{"huge metadata count", header(0, math.MaxUint64).b, []string{"metadata count 18446744073709551615", "bytes left"}},
		{"tensor count past data", header(2, 0).tensorInfo("a", F32, 0, 1).b, []string{"tensor count 2"}},
		{"empty key", header(0, 1).str("").u32(uint32(TypeUint8)).bytes(1).b, []string{"metadata key 0 is empty"}},
		{"duplicate key", header(0, 2).str("k").u32(0).bytes(1).str("k").u32(0).bytes(2).b, []string{`duplicate metadata key "k"`}},
		{"key length past end", header(0, 1).u64(1 << 40).bytes(make([]byte, 8)...).b, []string{"metadata key 0 length 1099511627776", "past the end"}},
		{"unknown value type", header(0, 1).str("k").u32(13).bytes(0).b, []string{`metadata "k"`, "unknown value type 13"}},
		{"truncated value", header(0, 1).str("k").u32(uint32(TypeUint64)).bytes(1, 2, 3).b, []string{`metadata "k"`, "uint64 value", "needs 8 bytes"}},
		{"bad bool", header(0, 1).str("k").u32(uint32(TypeBool)).bytes(2).b, []string{`metadata "k"`, "bool value is 2"}},
		{"bad bool in array", header(0, 1).str("k").u32(uint32(TypeArray)).u32(uint32(TypeBool)).u64(2).bytes(1, 7).b, []string{"bool element 1 is 7"}},
		{"string length past end", header(0, 1).str("k").u32(uint32(TypeString)).u64(100).bytes('x').b, []string{`metadata "k"`, "string length 100 runs past"}},
		{"huge array", header(0, 1).str("k").u32(uint32(TypeArray)).u32(uint32(TypeUint32)).u64(1 << 61).bytes(make([]byte, 16)...).b, []string{"array length 2305843009213693952", "bytes left"}},
		{"huge string array", header(0, 1).str("k").u32(uint32(TypeArray)).u32(uint32(TypeString)).u64(3).u64(0).u64(0).b, []string{"array length 3"}},
		{"array of unknown type", header(0, 1).str("k").u32(uint32(TypeArray)).u32(77).u64(0).b, []string{"array of unknown value type 77"}},
		{"deep arrays", deepArrays(maxArrayDepth + 1), []string{"nested more than 16 deep"}},
		{"alignment type", header(0, 1).str(KeyAlignment).u32(uint32(TypeUint64)).u64(32).b, []string{KeyAlignment, "is uint64, want uint32"}},
		{"alignment not power of two", header(0, 1).str(KeyAlignment).u32(uint32(TypeUint32)).u32(24).b, []string{KeyAlignment, "24 is not a power of two"}},
		{"alignment zero", header(0, 1).str(KeyAlignment).u32(uint32(TypeUint32)).u32(0).b, []string{"0 is not a power of two"}},
		{"empty tensor name", header(1, 0).tensorInfo("", F32, 0, 1).data(4).b, []string{"tensor 0 has an empty name"}},
		{"duplicate tensor", header(2, 0).tensorInfo("a", F32, 0, 1).tensorInfo("a", F32, 32, 1).data(36).b, []string{`duplicate tensor name "a"`}},
		{"five dims", header(1, 0).tensorInfo("a", F32, 0, 1, 1, 1, 1, 1).data(4).b, []string{`tensor "a" has 5 dimensions`}},
		{"negative dim", header(1, 0).tensorInfo("a", F32, 0, 1<<63).data(4).b, []string{`tensor "a"`, "too large"}},
		{"dims overflow", header(1, 0).tensorInfo("a", F32, 0, 1<<32, 1<<32).data(4).b, []string{`tensor "a"`, "overflow"}},
		{"bytes overflow", header(1, 0).tensorInfo("a", F64, 0, 1<<62).data(4).b, []string{`tensor "a"`, "overflow"}},
		{"unknown type", header(1, 0).tensorInfo("a", Type(4), 0, 1).data(4).b, []string{`tensor "a" has unknown ggml type 4`}},
		{"partial block", header(1, 0).tensorInfo("a", Q4_0, 0, 16, 2).data(36).b, []string{`tensor "a" of type Q4_0 has rows of 16`, "block size 32"}},
		{"quantised scalar", header(1, 0).tensorInfo("a", Q8_0, 0).data(34).b, []string{"rows of 1"}},
		{"truncated tensor info", header(1, 0).str("a").u32(2).u64(4).b, []string{`dimension 1 of tensor "a"`, "needs 8 bytes"}},
		{"wrong first offset", header(1, 0).tensorInfo("a", F32, 32, 1).data(64).b, []string{`tensor "a" has data offset 32, want 0`}},
		{"unaligned offset", header(2, 0).tensorInfo("a", F32, 0, 1).tensorInfo("b", F32, 4, 1).data(8).b, []string{`tensor "b" has data offset 4, want 32`}},
		{"huge offset", header(1, 0).tensorInfo("a", F32, math.MaxUint64, 1).data(4).b, []string{`tensor "a" has data offset 18446744073709551615`}},
		{"data past end", header(1, 0).tensorInfo("a", F32, 0, 4).data(12).b, []string{`tensor "a": 16 bytes at data offset 0 run past`, "12-byte data section"}},
		{"no data section", header(1, 0).tensorInfo("abc", F32, 0, 0).b, []string{"data section starts at", "past the end"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := Parse(c.file)
			if err == nil {
				t.Fatalf("Parse accepted the file (tensors %v)", f.Names())
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "gguf: <memory>: ") {
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

// deepArrays is a file whose one metadata value nests depth arrays.
func deepArrays(depth int) []byte {
	r := header(0, 1).str("k").u32(uint32(TypeArray))
	for i := 0; i < depth-1; i++ {
		r.u32(uint32(TypeArray)).u64(1)
	}
	return r.u32(uint32(TypeUint8)).u64(0).b
}

func TestParseAcceptsEdgeLayouts(t *testing.T) {
	// No tensors: the header needs no padding. Zero-element tensors share an
	// offset. A tensor may end the file without its trailing padding.
	if _, err := Parse(header(0, 0).b); err != nil {
		t.Errorf("empty file: %v", err)
	}
	if _, err := Parse(deepArrays(maxArrayDepth)); err != nil {
		t.Errorf("arrays nested %d deep: %v", maxArrayDepth, err)
	}
	file := header(3, 0).tensorInfo("z", Q8_0, 0, 32, 0).tensorInfo("y", F32, 0, 0).tensorInfo("x", F16, 0, 3).data(6).b
	f, err := Parse(file)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if info, _ := f.Info("z"); !reflect.DeepEqual(info.Shape, []int{0, 32}) || info.Size != 0 {
		t.Errorf("z = %+v", info)
	}
	if v, shape, err := f.Float32("x"); err != nil || len(v) != 3 || !reflect.DeepEqual(shape, []int{3}) {
		t.Errorf("Float32(x) = %v %v %v", v, shape, err)
	}
}

func FuzzParse(f *testing.F) {
	tensors, _ := sampleTensors(f)
	f.Add(encode(f, sampleMetadata(), tensors))
	f.Add(encode(f, []KV{{KeyAlignment, MustValue(uint32(8))}, {"general.architecture", MustValue("sd3")}}, tensors[:3]))
	f.Add(encode(f, nil, nil))
	f.Add(header(0, 1).str("k").u32(uint32(TypeArray)).u32(uint32(TypeString)).u64(2).str("a").str("bc").b)
	f.Add(deepArrays(3))
	f.Add(header(2, 0).tensorInfo("a", Q4_K, 0, 256).tensorInfo("b", Q6_K, 160, 256, 1).data(400).b)
	f.Add(header(2, 0).tensorInfo("a", Q5_0, 0, 32).tensorInfo("b", Q4_1, 32, 32).data(64).b)
	f.Add(header(1, 0).tensorInfo("a", BF16, 0, 2, 2).data(8).b)
	f.Add([]byte("GGUF"))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse(b)
		if err != nil {
			if file != nil {
				t.Fatal("Parse returned both a File and an error")
			}
			return
		}
		for _, kv := range file.Metadata {
			if v, ok := file.Get(kv.Key); !ok || v.Type() != kv.Value.Type() {
				t.Fatalf("Get(%q) disagrees with Metadata", kv.Key)
			}
			for i := 0; i < kv.Value.Len(); i++ {
				kv.Value.Index(i)
			}
			kv.Value.Ints()
		}
		for _, info := range file.Tensors() {
			_, data, err := file.Bytes(info.Name)
			if err != nil || int64(len(data)) != info.Size {
				t.Fatalf("Bytes(%q): %d bytes for %+v, %v", info.Name, len(data), info, err)
			}
			if n, err := info.Type.RowBytes(int(info.NumElements())); err != nil || int64(n) != info.Size {
				t.Fatalf("%q: size %d, RowBytes %d %v", info.Name, info.Size, n, err)
			}
			if v, _, err := file.Float32(info.Name); err == nil && int64(len(v)) != info.NumElements() {
				t.Fatalf("Float32(%q): %d values for %+v", info.Name, len(v), info)
			}
		}
		// What parsed must encode and parse back the same.
		var ts []Tensor
		for _, info := range file.Tensors() {
			_, data, _ := file.Bytes(info.Name)
			ts = append(ts, Tensor{Name: info.Name, Type: info.Type, Shape: info.Shape, Data: data})
		}
		var buf bytes.Buffer
		if err := Encode(&buf, file.Metadata, ts); err != nil {
			t.Fatalf("Encode of a parsed file: %v", err)
		}
		again, err := Parse(buf.Bytes())
		if err != nil {
			t.Fatalf("Parse of the re-encoded file: %v", err)
		}
		var ts2 []Tensor
		for _, info := range again.Tensors() {
			_, data, _ := again.Bytes(info.Name)
			ts2 = append(ts2, Tensor{Name: info.Name, Type: info.Type, Shape: info.Shape, Data: data})
		}
		var buf2 bytes.Buffer
		if err := Encode(&buf2, again.Metadata, ts2); err != nil || !bytes.Equal(buf.Bytes(), buf2.Bytes()) {
			t.Fatalf("re-encoded file differs (%v)", err)
		}
	})
}

func TestEncodeLoad(t *testing.T) {
	tensors, vals := sampleTensors(t)
	loads := 0
	lazy := make([]Tensor, len(tensors))
	for i, tt := range tensors {
		data := tt.Data
		tt.Data = nil
		tt.Load = func() ([]byte, error) { loads++; return data, nil }
		lazy[i] = tt
	}
	f, err := Parse(encode(t, nil, lazy))
	if err != nil {
		t.Fatal(err)
	}
	checkSample(t, f, tensors, vals)
	if loads != len(tensors) {
		t.Errorf("Load called %d times, want %d", loads, len(tensors))
	}
	dir := t.TempDir()
	for _, c := range []struct {
		load func() ([]byte, error)
		want string
	}{
		{func() ([]byte, error) { return nil, os.ErrPermission }, `tensor "w": permission denied`},
		{func() ([]byte, error) { return make([]byte, 33), nil }, "needs 34 bytes, Load gave 33"},
	} {
		err := WriteFile(filepath.Join(dir, "x.gguf"), nil, []Tensor{{Name: "w", Type: Q8_0, Shape: []int{32}, Load: c.load}})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err = %v, want %q", err, c.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failed writes left %d files", len(entries))
	}
}
