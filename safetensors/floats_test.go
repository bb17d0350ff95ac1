package safetensors

import (
	"encoding/binary"
	"math"
	"testing"
)

func TestEncodeFloats(t *testing.T) {
	v := []float32{1, -2.5, 0}
	f32 := make([]byte, 12)
	if err := EncodeFloats(f32, v, F32); err != nil || math.Float32frombits(binary.LittleEndian.Uint32(f32[4:])) != -2.5 {
		t.Errorf("F32: %v %x", err, f32)
	}
	f16 := make([]byte, 6)
	if err := EncodeFloats(f16, v, F16); err != nil || binary.LittleEndian.Uint16(f16) != 0x3c00 || binary.LittleEndian.Uint16(f16[2:]) != 0xc100 {
		t.Errorf("F16: %v %x", err, f16)
	}
	bf := make([]byte, 6)
	if err := EncodeFloats(bf, v, BF16); err != nil || binary.LittleEndian.Uint16(bf) != 0x3f80 || binary.LittleEndian.Uint16(bf[2:]) != 0xc020 {
		t.Errorf("BF16: %v %x", err, bf)
	}
	if err := EncodeFloats(make([]byte, 3), v, I8); err == nil {
		t.Error("I8 accepted")
	}
}
