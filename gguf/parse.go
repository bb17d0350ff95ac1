package gguf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
)

// reader walks the file's header; every read checks the bytes left, so a
// count or length is never trusted beyond what the file can hold.
type reader struct {
	buf []byte
	pos int
}

func (r *reader) left() int { return len(r.buf) - r.pos }

func (r *reader) bytes(n int, what string) ([]byte, error) {
	if n < 0 || n > r.left() {
		return nil, fmt.Errorf("%s at offset %d: needs %d bytes, the file has %d left", what, r.pos, n, r.left())
	}
	b := r.buf[r.pos : r.pos+n]
	r.pos += n
	return b, nil
}

func (r *reader) u32(what string) (uint32, error) {
	b, err := r.bytes(4, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (r *reader) u64(what string) (uint64, error) {
	b, err := r.bytes(8, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// count reads a uint64 element count and checks that count elements of at
// least minSize bytes each fit in the rest of the file.
func (r *reader) count(what string, minSize int) (int, error) {
	n, err := r.u64(what)
	if err != nil {
		return 0, err
	}
	if minSize > 0 && n > uint64(r.left()/minSize) {
		return 0, fmt.Errorf("%s %d is more than the %d bytes left in the file can hold", what, n, r.left())
	}
	return int(n), nil
}

func (r *reader) str(what string) (string, error) {
	n, err := r.u64(what + " length")
	if err != nil {
		return "", err
	}
	if n > uint64(r.left()) {
		return "", fmt.Errorf("%s length %d runs past the end of the file (%d bytes left)", what, n, r.left())
	}
	b, _ := r.bytes(int(n), what)
	return string(b), nil
}

func parse(buf []byte, path string) (*File, error) {
	f, err := parseHeader(buf)
	if err != nil {
		return nil, fmt.Errorf("gguf: %s: %w", path, err)
	}
	f.Path = path
	return f, nil
}

func parseHeader(buf []byte) (*File, error) {
	r := &reader{buf: buf}
	magic, err := r.bytes(4, "magic")
	if err != nil {
		return nil, err
	}
	if string(magic) != Magic {
		return nil, fmt.Errorf("magic is %q, not %q: not a GGUF file", magic, Magic)
	}
	f := &File{}
	if f.Version, err = r.u32("version"); err != nil {
		return nil, err
	}
	if err := checkVersion(f.Version); err != nil {
		return nil, err
	}
	// A tensor info takes at least 24 bytes (name length, dimension count,
	// type, offset), a key-value pair at least 13 (key length, type, a byte).
	nTensors, err := r.count("tensor count", 24)
	if err != nil {
		return nil, err
	}
	nKV, err := r.count("metadata count", 13)
	if err != nil {
		return nil, err
	}
	if err := f.readMetadata(r, nKV); err != nil {
		return nil, err
	}
	if err := f.setAlignment(); err != nil {
		return nil, err
	}
	if err := f.readTensorInfos(r, nTensors); err != nil {
		return nil, err
	}
	return f, f.locateData(r)
}

func checkVersion(v uint32) error {
	switch {
	case v == 2 || v == 3:
		return nil
	case v == 0:
		return fmt.Errorf("bad version 0")
	case v&0xffff == 0:
		// Version 3 read with the other byte order is 0x03000000.
		return fmt.Errorf("version %#x: the file looks big-endian, which is not supported", v)
	case v == 1:
		return fmt.Errorf("version 1 (32-bit counts) is no longer supported; convert the file again")
	}
	return fmt.Errorf("version %d is newer than the supported versions 2 and 3", v)
}

func (f *File) readMetadata(r *reader, n int) error {
	f.Metadata = make([]KV, 0, n)
	f.meta = make(map[string]int, n)
	for i := 0; i < n; i++ {
		key, err := r.str(fmt.Sprintf("metadata key %d", i))
		if err != nil {
			return err
		}
		if key == "" {
			return fmt.Errorf("metadata key %d is empty", i)
		}
		if _, dup := f.meta[key]; dup {
			return fmt.Errorf("duplicate metadata key %q", key)
		}
		t, err := r.u32(fmt.Sprintf("type of metadata %q", key))
		if err != nil {
			return err
		}
		v, err := readValue(r, ValueType(t), 0)
		if err != nil {
			return fmt.Errorf("metadata %q: %w", key, err)
		}
		f.meta[key] = len(f.Metadata)
		f.Metadata = append(f.Metadata, KV{Key: key, Value: v})
	}
	return nil
}

func readValue(r *reader, t ValueType, depth int) (Value, error) {
	if t == TypeArray {
		return readArray(r, depth)
	}
	if t == TypeString {
		s, err := r.str("string")
		return Value{typ: t, v: s}, err
	}
	size := t.fixedSize()
	if size <= 0 {
		return Value{}, fmt.Errorf("unknown value type %d", uint32(t))
	}
	b, err := r.bytes(size, t.String()+" value")
	if err != nil {
		return Value{}, err
	}
	v, err := scalar(t, b)
	return Value{typ: t, v: v}, err
}

// scalar decodes one fixed-size value.
func scalar(t ValueType, b []byte) (any, error) {
	le := binary.LittleEndian
	switch t {
	case TypeUint8:
		return b[0], nil
	case TypeInt8:
		return int8(b[0]), nil
	case TypeBool:
		// The specification makes any byte but 0 and 1 invalid.
		if b[0] > 1 {
			return nil, fmt.Errorf("bool value is %d, not 0 or 1", b[0])
		}
		return b[0] == 1, nil
	case TypeUint16:
		return le.Uint16(b), nil
	case TypeInt16:
		return int16(le.Uint16(b)), nil
	case TypeUint32:
		return le.Uint32(b), nil
	case TypeInt32:
		return int32(le.Uint32(b)), nil
	case TypeFloat32:
		return math.Float32frombits(le.Uint32(b)), nil
	case TypeUint64:
		return le.Uint64(b), nil
	case TypeInt64:
		return int64(le.Uint64(b)), nil
	case TypeFloat64:
		return math.Float64frombits(le.Uint64(b)), nil
	}
	return nil, fmt.Errorf("unknown value type %d", uint32(t))
}

func readArray(r *reader, depth int) (Value, error) {
	if depth >= maxArrayDepth {
		return Value{}, fmt.Errorf("arrays nested more than %d deep", maxArrayDepth)
	}
	et, err := r.u32("array element type")
	if err != nil {
		return Value{}, err
	}
	elem := ValueType(et)
	min := elem.minSize()
	if min < 0 {
		return Value{}, fmt.Errorf("array of unknown value type %d", et)
	}
	n, err := r.count("array length", min)
	if err != nil {
		return Value{}, err
	}
	switch elem {
	case TypeString:
		s := make([]string, n)
		for i := range s {
			if s[i], err = r.str(fmt.Sprintf("string %d of the array", i)); err != nil {
				return Value{}, err
			}
		}
		return Value{typ: TypeArray, elem: elem, v: s}, nil
	case TypeArray:
		a := make([]Value, n)
		for i := range a {
			if a[i], err = readArray(r, depth+1); err != nil {
				return Value{}, fmt.Errorf("element %d: %w", i, err)
			}
		}
		return Value{typ: TypeArray, elem: elem, v: a}, nil
	}
	b, _ := r.bytes(n*min, "array")
	v, err := fixedArray(elem, b)
	return Value{typ: TypeArray, elem: elem, v: v}, err
}

// fixedArray decodes the fixed-size values in b into a typed slice.
func fixedArray(t ValueType, b []byte) (any, error) {
	le := binary.LittleEndian
	switch t {
	case TypeUint8:
		return bytes.Clone(b), nil
	case TypeInt8:
		return decode(b, 1, func(b []byte) int8 { return int8(b[0]) }), nil
	case TypeBool:
		for i, c := range b {
			if c > 1 {
				return nil, fmt.Errorf("bool element %d is %d, not 0 or 1", i, c)
			}
		}
		return decode(b, 1, func(b []byte) bool { return b[0] == 1 }), nil
	case TypeUint16:
		return decode(b, 2, le.Uint16), nil
	case TypeInt16:
		return decode(b, 2, func(b []byte) int16 { return int16(le.Uint16(b)) }), nil
	case TypeUint32:
		return decode(b, 4, le.Uint32), nil
	case TypeInt32:
		return decode(b, 4, func(b []byte) int32 { return int32(le.Uint32(b)) }), nil
	case TypeFloat32:
		return decode(b, 4, func(b []byte) float32 { return math.Float32frombits(le.Uint32(b)) }), nil
	case TypeUint64:
		return decode(b, 8, le.Uint64), nil
	case TypeInt64:
		return decode(b, 8, func(b []byte) int64 { return int64(le.Uint64(b)) }), nil
	case TypeFloat64:
		return decode(b, 8, func(b []byte) float64 { return math.Float64frombits(le.Uint64(b)) }), nil
	}
	return nil, fmt.Errorf("unknown value type %d", uint32(t))
}

func decode[T any](b []byte, size int, elem func([]byte) T) []T {
	out := make([]T, len(b)/size)
	for i := range out {
		out[i] = elem(b[i*size:])
	}
	return out
}

// setAlignment applies general.alignment, which ggml requires to be a
// uint32 power of two.
func (f *File) setAlignment() error {
	f.Alignment = DefaultAlignment
	v, ok := f.Get(KeyAlignment)
	if !ok {
		return nil
	}
	a, ok := v.Any().(uint32)
	if !ok {
		return fmt.Errorf("%s is %s, want uint32", KeyAlignment, v.Type())
	}
	if a == 0 || a&(a-1) != 0 || a > 1<<30 {
		return fmt.Errorf("%s %d is not a power of two", KeyAlignment, a)
	}
	f.Alignment = int(a)
	return nil
}

func (f *File) readTensorInfos(r *reader, n int) error {
	f.infos = make([]TensorInfo, 0, n)
	f.byName = make(map[string]int, n)
	for i := 0; i < n; i++ {
		t, err := readTensorInfo(r, i)
		if err != nil {
			return err
		}
		if _, dup := f.byName[t.Name]; dup {
			return fmt.Errorf("duplicate tensor name %q", t.Name)
		}
		f.byName[t.Name] = len(f.infos)
		f.infos = append(f.infos, t)
	}
	return nil
}

func readTensorInfo(r *reader, i int) (TensorInfo, error) {
	name, err := r.str(fmt.Sprintf("name of tensor %d", i))
	if err != nil {
		return TensorInfo{}, err
	}
	if name == "" {
		return TensorInfo{}, fmt.Errorf("tensor %d has an empty name", i)
	}
	t := TensorInfo{Name: name}
	nd, err := r.u32(fmt.Sprintf("dimension count of tensor %q", name))
	if err != nil {
		return t, err
	}
	if nd > MaxDims {
		return t, fmt.Errorf("tensor %q has %d dimensions, more than %d", name, nd, MaxDims)
	}
	t.Dims = make([]int64, nd)
	for j := range t.Dims {
		d, err := r.u64(fmt.Sprintf("dimension %d of tensor %q", j, name))
		if err != nil {
			return t, err
		}
		t.Dims[j] = int64(d)
	}
	typ, err := r.u32(fmt.Sprintf("type of tensor %q", name))
	if err != nil {
		return t, err
	}
	t.Type = Type(typ)
	off, err := r.u64(fmt.Sprintf("data offset of tensor %q", name))
	if err != nil {
		return t, err
	}
	t.Offset = int64(off)
	if off > math.MaxInt64 {
		t.Offset = -1 // rejected by locateData
	}
	return t, t.checkShape()
}

// checkShape validates the dimensions against the type and sets Shape and
// Size, as ggml's gguf reader does.
func (t *TensorInfo) checkShape() error {
	if !t.Type.Known() {
		return fmt.Errorf("tensor %q has unknown ggml type %d", t.Name, uint32(t.Type))
	}
	n := int64(1)
	for j, d := range t.Dims {
		if d < 0 {
			return fmt.Errorf("tensor %q: dimension %d is %d, too large", t.Name, j, uint64(d))
		}
		if d != 0 && n > math.MaxInt64/d {
			return fmt.Errorf("tensor %q: dimensions %v overflow", t.Name, t.Dims)
		}
		n *= d
	}
	bs := int64(t.Type.BlockSize())
	row := int64(1) // a scalar is one row of one element
	if len(t.Dims) > 0 {
		row = t.Dims[0]
	}
	if row%bs != 0 {
		return fmt.Errorf("tensor %q of type %s has rows of %d elements, not a multiple of the block size %d", t.Name, t.Type, row, bs)
	}
	if n/bs > math.MaxInt64/int64(t.Type.TypeSize()) {
		return fmt.Errorf("tensor %q: %d elements of %s overflow", t.Name, n, t.Type)
	}
	t.Size = n / bs * int64(t.Type.TypeSize())
	t.Shape = make([]int, len(t.Dims))
	for j, d := range t.Dims {
		t.Shape[len(t.Dims)-1-j] = int(d)
	}
	return nil
}

// locateData finds the data section (after the header, padded to the
// alignment) and checks that the tensors follow each other in file order,
// each at the running offset rounded up to the alignment (as ggml requires),
// and lie inside the file.
func (f *File) locateData(r *reader) error {
	start := int64(r.pos)
	if len(f.infos) > 0 {
		start = alignUp(start, int64(f.Alignment))
	}
	if start > int64(len(r.buf)) {
		return fmt.Errorf("data section starts at %d, past the end of the %d-byte file", start, len(r.buf))
	}
	f.DataOffset = start
	f.data = r.buf[start:]
	var want int64
	for _, t := range f.infos {
		if t.Offset != want {
			return fmt.Errorf("tensor %q has data offset %d, want %d (tensors follow each other, each padded to %d bytes)", t.Name, uint64(t.Offset), want, f.Alignment)
		}
		if t.Size > int64(len(f.data))-t.Offset {
			return fmt.Errorf("tensor %q: %d bytes at data offset %d run past the end of the %d-byte data section", t.Name, t.Size, t.Offset, len(f.data))
		}
		want = alignUp(t.Offset+t.Size, int64(f.Alignment))
	}
	return nil
}

// alignUp rounds n up to a multiple of a (a power of two); n+a must not
// overflow, which holds for offsets inside a file.
func alignUp(n, a int64) int64 { return (n + a - 1) &^ (a - 1) }
