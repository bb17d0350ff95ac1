// Package safetensors reads and writes the safetensors format: an 8-byte
// little-endian header length N, N bytes of JSON describing each tensor
// (dtype, shape, data_offsets relative to the end of the header), then the
// raw little-endian data. Files are memory-mapped and tensors read lazily;
// every header field is validated so a damaged file gives an error naming the
// file and tensor instead of a panic or a silent wrong result.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"sort"

	"github.com/diffuse-go/diffuse/half"
)

// DType is a safetensors dtype name as written in headers ("F32", "F16", ...).
type DType string

// The dtypes safetensors defines.
const (
	F64  DType = "F64"
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
	I64  DType = "I64"
	I32  DType = "I32"
	I16  DType = "I16"
	I8   DType = "I8"
	U64  DType = "U64"
	U32  DType = "U32"
	U16  DType = "U16"
	U8   DType = "U8"
	Bool DType = "BOOL"
	F8E4 DType = "F8_E4M3"
	F8E5 DType = "F8_E5M2"
)

// Size returns the byte size of one element, or 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case F64, I64, U64:
		return 8
	case F32, I32, U32:
		return 4
	case F16, BF16, I16, U16:
		return 2
	case I8, U8, Bool, F8E4, F8E5:
		return 1
	}
	return 0
}

// MaxHeaderSize bounds the JSON header (the reference implementation uses 100 MB).
const MaxHeaderSize = 100 << 20

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	Name  string
	DType DType
	Shape []int
	// Begin and End are byte offsets relative to the start of the data section.
	Begin, End int64
}

// NumElements is the product of the shape (1 for a scalar).
func (t TensorInfo) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// File is an open safetensors file.
type File struct {
	// Path names the file in errors ("<memory>" for Parse).
	Path string
	// Metadata is the optional "__metadata__" string map.
	Metadata map[string]string
	infos    []TensorInfo
	byName   map[string]int
	data     []byte // data section
	unmap    func() error
	mapped   bool // data is a read-only memory mapping of the file
}

// Open memory-maps and validates a safetensors file.
func Open(path string) (*File, error) {
	buf, unmap, err := mapFile(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	f, err := parse(buf, path)
	if err != nil {
		unmap()
		return nil, err
	}
	f.unmap = unmap
	f.mapped = mappedFiles && len(buf) > 0
	return f, nil
}

// Parse validates a safetensors file held in memory. The File refers to buf.
func Parse(buf []byte) (*File, error) { return parse(buf, "<memory>") }

type headerEntry struct {
	DType DType     `json:"dtype"`
	Shape *[]*int64 `json:"shape"`
	// A slice, not an array: decoding into [2] would silently drop extra
	// elements.
	DataOffsets []*int64 `json:"data_offsets"`
}

func parse(buf []byte, path string) (*File, error) {
	errf := func(format string, a ...any) error {
		return fmt.Errorf("safetensors: %s: %s", path, fmt.Sprintf(format, a...))
	}
	if len(buf) < 8 {
		return nil, errf("file is %d bytes, too short for the 8-byte header length", len(buf))
	}
	n := binary.LittleEndian.Uint64(buf[:8])
	if n > MaxHeaderSize {
		return nil, errf("header length %d exceeds the %d-byte limit", n, MaxHeaderSize)
	}
	if n > uint64(len(buf)-8) {
		return nil, errf("header length %d runs past the end of the %d-byte file", n, len(buf))
	}
	hdr := buf[8 : 8+n]
	if len(hdr) == 0 || hdr[0] != '{' {
		return nil, errf("header does not start with '{'")
	}
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(hdr))
	if err := dec.Decode(&raw); err != nil {
		return nil, errf("header is not valid JSON: %v", err)
	}
	// Only trailing spaces may follow the object (the writer pads with spaces).
	if rest := bytes.TrimRight(hdr[dec.InputOffset():], " "); len(rest) != 0 {
		return nil, errf("header has %d bytes of trailing data after the JSON object", len(rest))
	}
	data := buf[8+n:]
	f := &File{Path: path, byName: make(map[string]int, len(raw)), data: data}
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &f.Metadata); err != nil {
				return nil, errf("__metadata__ must map strings to strings: %v", err)
			}
			continue
		}
		var e headerEntry
		d := json.NewDecoder(bytes.NewReader(msg))
		d.DisallowUnknownFields()
		if err := d.Decode(&e); err != nil {
			return nil, errf("tensor %q: bad header entry: %v", name, err)
		}
		size := e.DType.Size()
		if size == 0 {
			return nil, errf("tensor %q: unknown dtype %q", name, e.DType)
		}
		if e.Shape == nil {
			return nil, errf("tensor %q: shape missing", name)
		}
		if e.DataOffsets == nil {
			return nil, errf("tensor %q: data_offsets missing", name)
		}
		if len(e.DataOffsets) != 2 || e.DataOffsets[0] == nil || e.DataOffsets[1] == nil {
			return nil, errf("tensor %q: data_offsets must be a pair of integers", name)
		}
		begin, end := *e.DataOffsets[0], *e.DataOffsets[1]
		if begin < 0 || end < begin {
			return nil, errf("tensor %q: data_offsets [%d, %d] are not an ordered pair of non-negative offsets", name, begin, end)
		}
		if end > int64(len(data)) {
			return nil, errf("tensor %q: data_offsets end %d is past the end of the %d-byte data section", name, end, len(data))
		}
		dims := make([]int64, len(*e.Shape))
		for i, p := range *e.Shape {
			if p == nil {
				return nil, errf("tensor %q: shape has a null dimension", name)
			}
			dims[i] = *p
		}
		shape := make([]int, len(dims))
		count := int64(1)
		for i, s := range dims {
			if s < 0 {
				return nil, errf("tensor %q: negative dimension %d in shape %v", name, s, dims)
			}
			if s != 0 && count > math.MaxInt64/8/s {
				return nil, errf("tensor %q: shape %v overflows", name, dims)
			}
			count *= s
			shape[i] = int(s)
		}
		if want := count * int64(size); want != end-begin {
			return nil, errf("tensor %q: shape %v of %s needs %d bytes but data_offsets give %d", name, dims, e.DType, want, end-begin)
		}
		f.byName[name] = len(f.infos)
		f.infos = append(f.infos, TensorInfo{Name: name, DType: e.DType, Shape: shape, Begin: begin, End: end})
	}
	// Tensors must not overlap, and (as the reference requires) must cover the
	// data section without holes.
	order := make([]TensorInfo, len(f.infos))
	copy(order, f.infos)
	sort.Slice(order, func(i, j int) bool {
		if order[i].Begin != order[j].Begin {
			return order[i].Begin < order[j].Begin
		}
		return order[i].End < order[j].End
	})
	var pos int64
	prev := ""
	for _, t := range order {
		if t.Begin < pos {
			return nil, errf("tensor %q overlaps tensor %q", t.Name, prev)
		}
		if t.Begin > pos {
			return nil, errf("gap of %d bytes in the data section before tensor %q", t.Begin-pos, t.Name)
		}
		pos = t.End
		prev = t.Name
	}
	if pos != int64(len(data)) {
		return nil, errf("data section has %d bytes but tensors cover only %d", len(data), pos)
	}
	sort.Slice(f.infos, func(i, j int) bool { return f.infos[i].Name < f.infos[j].Name })
	for i, t := range f.infos {
		f.byName[t.Name] = i
	}
	return f, nil
}

// Close releases the mapping. Slices returned by Bytes become invalid.
func (f *File) Close() error {
	if f.unmap != nil {
		err := f.unmap()
		f.unmap = nil
		return err
	}
	return nil
}

// Tensors lists the tensors sorted by name.
func (f *File) Tensors() []TensorInfo { return f.infos }

// Names lists the tensor names, sorted.
func (f *File) Names() []string {
	out := make([]string, len(f.infos))
	for i, t := range f.infos {
		out[i] = t.Name
	}
	return out
}

// Info returns a tensor's description.
func (f *File) Info(name string) (TensorInfo, bool) {
	i, ok := f.byName[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.infos[i], true
}

// Has reports whether the file holds a tensor of that name.
func (f *File) Has(name string) bool { _, ok := f.byName[name]; return ok }

// Bytes returns the raw little-endian data of a tensor, without copying.
func (f *File) Bytes(name string) (TensorInfo, []byte, error) {
	info, ok := f.Info(name)
	if !ok {
		return info, nil, fmt.Errorf("safetensors: %s: no tensor %q", f.Path, name)
	}
	return info, f.data[info.Begin:info.End], nil
}

// Float32 returns a tensor converted to float32 (from F32, F16, BF16, F64,
// F8_E4M3 or F8_E5M2; see ScaledFloat32 for scaled 8-bit weights), with its
// shape.
func (f *File) Float32(name string) ([]float32, []int, error) {
	info, b, err := f.Bytes(name)
	if err != nil {
		return nil, nil, err
	}
	n := info.NumElements()
	out := make([]float32, n)
	switch info.DType {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case F16:
		for i := range out {
			out[i] = half.F16ToF32(binary.LittleEndian.Uint16(b[2*i:]))
		}
	case BF16:
		for i := range out {
			out[i] = half.BF16ToF32(binary.LittleEndian.Uint16(b[2*i:]))
		}
	case F64:
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:])))
		}
	case F8E4, F8E5:
		f8Float32(info.DType, b, out)
	default:
		return nil, nil, fmt.Errorf("safetensors: %s: tensor %q has dtype %s, want a float dtype", f.Path, name, info.DType)
	}
	return out, info.Shape, nil
}

// Uint16 returns the raw 16-bit elements of an F16 or BF16 tensor.
func (f *File) Uint16(name string) ([]uint16, TensorInfo, error) {
	info, b, err := f.Bytes(name)
	if err != nil {
		return nil, info, err
	}
	if info.DType != F16 && info.DType != BF16 {
		return nil, info, fmt.Errorf("safetensors: %s: tensor %q has dtype %s, want F16 or BF16", f.Path, name, info.DType)
	}
	out := make([]uint16, info.NumElements())
	for i := range out {
		out[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return out, info, nil
}

// Float64 returns a float tensor converted to float64.
func (f *File) Float64(name string) ([]float64, []int, error) {
	info, b, err := f.Bytes(name)
	if err != nil {
		return nil, nil, err
	}
	if info.DType == F64 {
		out := make([]float64, info.NumElements())
		for i := range out {
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
		}
		return out, info.Shape, nil
	}
	v, shape, err := f.Float32(name)
	if err != nil {
		return nil, nil, err
	}
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out, shape, nil
}

// Int64 returns an integer tensor (I64, I32, I16, I8, U8, U16, U32, BOOL) as int64.
func (f *File) Int64(name string) ([]int64, []int, error) {
	info, b, err := f.Bytes(name)
	if err != nil {
		return nil, nil, err
	}
	out := make([]int64, info.NumElements())
	switch info.DType {
	case I64, U64:
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
		}
	case I32:
		for i := range out {
			out[i] = int64(int32(binary.LittleEndian.Uint32(b[4*i:])))
		}
	case U32:
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case I16:
		for i := range out {
			out[i] = int64(int16(binary.LittleEndian.Uint16(b[2*i:])))
		}
	case U16:
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint16(b[2*i:]))
		}
	case I8:
		for i := range out {
			out[i] = int64(int8(b[i]))
		}
	case U8, Bool:
		for i := range out {
			out[i] = int64(b[i])
		}
	default:
		return nil, nil, fmt.Errorf("safetensors: %s: tensor %q has dtype %s, want an integer dtype", f.Path, name, info.DType)
	}
	return out, info.Shape, nil
}

// Tensor is one tensor to write.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte // little-endian, len = product(Shape) * DType.Size()
}

// F32Tensor builds a Tensor from float32 values.
func F32Tensor(name string, shape []int, v []float32) Tensor {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return Tensor{Name: name, DType: F32, Shape: shape, Data: b}
}

// F16Tensor builds an F16 Tensor, rounding float32 values to binary16.
func F16Tensor(name string, shape []int, v []float32) Tensor {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], half.F32ToF16(x))
	}
	return Tensor{Name: name, DType: F16, Shape: shape, Data: b}
}

// BF16Tensor builds a BF16 Tensor, rounding float32 values to bfloat16.
func BF16Tensor(name string, shape []int, v []float32) Tensor {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], half.F32ToBF16(x))
	}
	return Tensor{Name: name, DType: BF16, Shape: shape, Data: b}
}

// I64Tensor builds an I64 Tensor.
func I64Tensor(name string, shape []int, v []int64) Tensor {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
	}
	return Tensor{Name: name, DType: I64, Shape: shape, Data: b}
}
