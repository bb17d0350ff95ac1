package gguf

import "fmt"

// Type is a tensor's ggml type (enum ggml_type): a plain element type or a
// block quantisation that stores BlockSize elements in TypeSize bytes.
type Type uint32

// The ggml types. Values are fixed by the file format; the gaps are types
// ggml has removed.
const (
	F32     Type = 0
	F16     Type = 1
	Q4_0    Type = 2
	Q4_1    Type = 3
	Q5_0    Type = 6
	Q5_1    Type = 7
	Q8_0    Type = 8
	Q8_1    Type = 9
	Q2_K    Type = 10
	Q3_K    Type = 11
	Q4_K    Type = 12
	Q5_K    Type = 13
	Q6_K    Type = 14
	Q8_K    Type = 15
	IQ2_XXS Type = 16
	IQ2_XS  Type = 17
	IQ3_XXS Type = 18
	IQ1_S   Type = 19
	IQ4_NL  Type = 20
	IQ3_S   Type = 21
	IQ2_S   Type = 22
	IQ4_XS  Type = 23
	I8      Type = 24
	I16     Type = 25
	I32     Type = 26
	I64     Type = 27
	F64     Type = 28
	IQ1_M   Type = 29
	BF16    Type = 30
	TQ1_0   Type = 34
	TQ2_0   Type = 35
	MXFP4   Type = 39
	NVFP4   Type = 40
	Q1_0    Type = 41
	Q2_0    Type = 42
)

// qk is the number of elements in a K-quant super-block (ggml's QK_K).
const qk = 256

// typeTraits is ggml's type_traits table (name, elements per block, bytes per
// block) for every type a GGUF file may hold, so that files holding types
// this package cannot dequantise still parse and their other tensors load.
// Sizes are sizeof(block_*) from ggml-common.h.
var typeTraits = map[Type]struct {
	name        string
	block, size int
}{
	F32: {"F32", 1, 4}, F16: {"F16", 1, 2}, BF16: {"BF16", 1, 2}, F64: {"F64", 1, 8},
	I8: {"I8", 1, 1}, I16: {"I16", 1, 2}, I32: {"I32", 1, 4}, I64: {"I64", 1, 8},
	Q4_0: {"Q4_0", 32, 18}, Q4_1: {"Q4_1", 32, 20},
	Q5_0: {"Q5_0", 32, 22}, Q5_1: {"Q5_1", 32, 24},
	Q8_0: {"Q8_0", 32, 34}, Q8_1: {"Q8_1", 32, 36},
	Q2_K: {"Q2_K", qk, 84}, Q3_K: {"Q3_K", qk, 110}, Q4_K: {"Q4_K", qk, 144},
	Q5_K: {"Q5_K", qk, 176}, Q6_K: {"Q6_K", qk, 210}, Q8_K: {"Q8_K", qk, 292},
	IQ2_XXS: {"IQ2_XXS", qk, 66}, IQ2_XS: {"IQ2_XS", qk, 74}, IQ3_XXS: {"IQ3_XXS", qk, 98},
	IQ1_S: {"IQ1_S", qk, 50}, IQ4_NL: {"IQ4_NL", 32, 18}, IQ3_S: {"IQ3_S", qk, 110},
	IQ2_S: {"IQ2_S", qk, 82}, IQ4_XS: {"IQ4_XS", qk, 136}, IQ1_M: {"IQ1_M", qk, 56},
	TQ1_0: {"TQ1_0", qk, 54}, TQ2_0: {"TQ2_0", qk, 66},
	MXFP4: {"MXFP4", 32, 17}, NVFP4: {"NVFP4", 64, 36},
	Q1_0: {"Q1_0", 128, 18}, Q2_0: {"Q2_0", 64, 18},
}

// String returns ggml's name of the type in upper case ("Q4_K"), or
// "type(N)" for a value ggml does not define.
func (t Type) String() string {
	if tr, ok := typeTraits[t]; ok {
		return tr.name
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// Known reports whether ggml defines the type (a file may hold it).
func (t Type) Known() bool { _, ok := typeTraits[t]; return ok }

// BlockSize is the number of elements one block holds (1 for plain types),
// or 0 for an unknown type.
func (t Type) BlockSize() int { return typeTraits[t].block }

// TypeSize is the byte size of one block, or 0 for an unknown type.
func (t Type) TypeSize() int { return typeTraits[t].size }

// RowBytes returns the bytes that n elements of the type take, or an error
// when n is negative or not a whole number of blocks.
func (t Type) RowBytes(n int) (int, error) {
	bs := t.BlockSize()
	if bs == 0 {
		return 0, fmt.Errorf("gguf: unknown tensor type %s", t)
	}
	if n < 0 || n%bs != 0 {
		return 0, fmt.Errorf("gguf: %d elements of %s are not a whole number of %d-element blocks", n, t, bs)
	}
	return n / bs * t.TypeSize(), nil
}
