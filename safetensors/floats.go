package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/half"
)

// EncodeFloats writes v into dst little-endian as dt (F32, F16 or BF16,
// rounded to nearest even); dst must hold len(v) values of dt.
func EncodeFloats(dst []byte, v []float32, dt DType) error {
	switch dt {
	case F16:
		for i, x := range v {
			binary.LittleEndian.PutUint16(dst[2*i:], half.F32ToF16(x))
		}
	case BF16:
		for i, x := range v {
			binary.LittleEndian.PutUint16(dst[2*i:], half.F32ToBF16(x))
		}
	case F32:
		for i, x := range v {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(x))
		}
	default:
		return fmt.Errorf("safetensors: cannot encode floats as %s", dt)
	}
	return nil
}
