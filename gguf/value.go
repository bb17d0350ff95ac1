package gguf

import (
	"fmt"
	"math"
	"reflect"
)

// ValueType is the type of a metadata value (enum gguf_metadata_value_type).
type ValueType uint32

// The metadata value types.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"}

// String names the type as the specification does ("uint32", "array").
func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("value_type(%d)", uint32(t))
}

// fixedSize is the encoded size of a scalar of the type, 0 for strings and
// arrays (variable) and -1 for an unknown type.
func (t ValueType) fixedSize() int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	case TypeString, TypeArray:
		return 0
	}
	return -1
}

// minSize is the fewest bytes one encoded value of the type takes: it
// bounds element counts by the bytes left in the file before allocating.
func (t ValueType) minSize() int {
	switch t {
	case TypeString:
		return 8 // the length
	case TypeArray:
		return 12 // element type and count
	}
	return t.fixedSize()
}

// KV is one metadata key-value pair.
type KV struct {
	Key   string
	Value Value
}

// Value is a metadata value. Scalars hold the Go type of the same width
// (uint8 … float64, bool, string); an array holds a typed slice ([]uint32,
// []string, …), or []Value for an array of arrays.
type Value struct {
	typ  ValueType
	elem ValueType // element type of an array
	v    any
}

// Type is the value's type.
func (v Value) Type() ValueType { return v.typ }

// ElemType is the element type of an array (meaningless otherwise).
func (v Value) ElemType() ValueType { return v.elem }

// Any returns the Go value: a scalar, a typed slice or []Value.
func (v Value) Any() any { return v.v }

// String formats the value for messages.
func (v Value) String() string { return fmt.Sprint(v.v) }

// Int returns an integer value of any width as int64; ok is false for other
// types and for a uint64 above math.MaxInt64.
func (v Value) Int() (int64, bool) {
	switch x := v.v.(type) {
	case uint8:
		return int64(x), true
	case int8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case int16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x), true
		}
	}
	return 0, false
}

// Float returns a float32 or float64 value as float64.
func (v Value) Float() (float64, bool) {
	switch x := v.v.(type) {
	case float32:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// Str returns a string value.
func (v Value) Str() (string, bool) { s, ok := v.v.(string); return s, ok }

// Bool returns a bool value.
func (v Value) Bool() (bool, bool) { b, ok := v.v.(bool); return b, ok }

// Len is the number of elements of an array, 0 for a scalar.
func (v Value) Len() int {
	if v.typ != TypeArray {
		return 0
	}
	return reflect.ValueOf(v.v).Len()
}

// Ints returns an array of integers of any width as []int64; ok is false
// for other values and for uint64 elements above math.MaxInt64.
func (v Value) Ints() ([]int64, bool) {
	if v.typ != TypeArray {
		return nil, false
	}
	out := make([]int64, v.Len())
	for i := range out {
		x, ok := v.Index(i).Int()
		if !ok {
			return nil, false
		}
		out[i] = x
	}
	return out, true
}

// Strings returns an array of strings.
func (v Value) Strings() ([]string, bool) { s, ok := v.v.([]string); return s, ok }

// Index returns element i of an array as a Value (the zero Value when out of
// range or not an array).
func (v Value) Index(i int) Value {
	if v.typ != TypeArray || i < 0 || i >= v.Len() {
		return Value{}
	}
	e := reflect.ValueOf(v.v).Index(i).Interface()
	if a, ok := e.(Value); ok { // an array of arrays
		return a
	}
	return Value{typ: v.elem, v: e}
}

// MakeValue builds a metadata value from a Go value: uint8, int8, uint16,
// int16, uint32, int32, float32, bool, string, uint64, int64, float64, a
// slice of one of those (an array), or []Value whose elements are all arrays
// (an array of arrays).
func MakeValue(x any) (Value, error) {
	switch x := x.(type) {
	case uint8:
		return Value{typ: TypeUint8, v: x}, nil
	case int8:
		return Value{typ: TypeInt8, v: x}, nil
	case uint16:
		return Value{typ: TypeUint16, v: x}, nil
	case int16:
		return Value{typ: TypeInt16, v: x}, nil
	case uint32:
		return Value{typ: TypeUint32, v: x}, nil
	case int32:
		return Value{typ: TypeInt32, v: x}, nil
	case float32:
		return Value{typ: TypeFloat32, v: x}, nil
	case bool:
		return Value{typ: TypeBool, v: x}, nil
	case string:
		return Value{typ: TypeString, v: x}, nil
	case uint64:
		return Value{typ: TypeUint64, v: x}, nil
	case int64:
		return Value{typ: TypeInt64, v: x}, nil
	case float64:
		return Value{typ: TypeFloat64, v: x}, nil
	case []uint8:
		return Value{typ: TypeArray, elem: TypeUint8, v: x}, nil
	case []int8:
		return Value{typ: TypeArray, elem: TypeInt8, v: x}, nil
	case []uint16:
		return Value{typ: TypeArray, elem: TypeUint16, v: x}, nil
	case []int16:
		return Value{typ: TypeArray, elem: TypeInt16, v: x}, nil
	case []uint32:
		return Value{typ: TypeArray, elem: TypeUint32, v: x}, nil
	case []int32:
		return Value{typ: TypeArray, elem: TypeInt32, v: x}, nil
	case []float32:
		return Value{typ: TypeArray, elem: TypeFloat32, v: x}, nil
	case []bool:
		return Value{typ: TypeArray, elem: TypeBool, v: x}, nil
	case []string:
		return Value{typ: TypeArray, elem: TypeString, v: x}, nil
	case []uint64:
		return Value{typ: TypeArray, elem: TypeUint64, v: x}, nil
	case []int64:
		return Value{typ: TypeArray, elem: TypeInt64, v: x}, nil
	case []float64:
		return Value{typ: TypeArray, elem: TypeFloat64, v: x}, nil
	case []Value:
		for i, e := range x {
			if e.typ != TypeArray {
				return Value{}, fmt.Errorf("gguf: array of arrays: element %d is a %s", i, e.typ)
			}
		}
		return Value{typ: TypeArray, elem: TypeArray, v: x}, nil
	}
	return Value{}, fmt.Errorf("gguf: no metadata type for Go type %T", x)
}

// MustValue is MakeValue for values known to be valid (literals); it panics
// on a type MakeValue refuses.
func MustValue(x any) Value {
	v, err := MakeValue(x)
	if err != nil {
		panic(err)
	}
	return v
}
