package safetensors

import (
	"encoding/binary"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/half"
)

// e4m3Def is float8_e4m3fn's value from its definition, in float64:
// (−1)^s · 2^(e−7) · (1 + m/8), subnormals (−1)^s · 2^−6 · m/8, NaN at
// S.1111.111 and no infinities.
func e4m3Def(c byte) float64 {
	s := 1.0
	if c&0x80 != 0 {
		s = -1
	}
	e, m := int(c>>3&0xf), float64(c&7)
	switch {
	case e == 15 && m == 7:
		return math.NaN()
	case e == 0:
		return s * math.Ldexp(m/8, -6)
	}
	return s * math.Ldexp(1+m/8, e-7)
}

// e5m2Def is float8_e5m2's value: (−1)^s · 2^(e−15) · (1 + m/4),
// subnormals (−1)^s · 2^−14 · m/4, ±Inf at exponent 31 with m = 0, NaN
// with m ≠ 0.
func e5m2Def(c byte) float64 {
	s := 1.0
	if c&0x80 != 0 {
		s = -1
	}
	e, m := int(c>>2&0x1f), float64(c&3)
	switch {
	case e == 31 && m == 0:
		return math.Inf(int(s))
	case e == 31:
		return math.NaN()
	case e == 0:
		return s * math.Ldexp(m/4, -14)
	}
	return s * math.Ldexp(1+m/4, e-15)
}

func checkTable(t *testing.T, name string, table *[256]float32, def func(byte) float64) (nans, infs int) {
	t.Helper()
	for c := 0; c < 256; c++ {
		got, want := table[c], def(byte(c))
		if math.IsNaN(want) {
			nans++
			if !math.IsNaN(float64(got)) {
				t.Errorf("%s code %#02x = %v, want NaN", name, c, got)
			}
			continue
		}
		if math.IsInf(want, 0) {
			infs++
		}
		// Exact, sign of zero included.
		if float64(got) != want || math.Signbit(float64(got)) != math.Signbit(want) {
			t.Errorf("%s code %#02x = %v, want %v", name, c, got, want)
		}
	}
	return nans, infs
}

func TestF8E4M3Table(t *testing.T) {
	nans, infs := checkTable(t, "e4m3fn", F8E4M3ToF32, e4m3Def)
	if nans != 2 || infs != 0 {
		t.Errorf("e4m3fn has %d NaN and %d Inf codes, want 2 and 0", nans, infs)
	}
	for c, want := range map[byte]float32{0x7e: 448, 0xfe: -448, 0x78: 256, 0x38: 1, 0xb8: -1, 0x01: 0x1p-9, 0x07: 7 * 0x1p-9, 0x08: 0x1p-6, 0x3c: 1.5} {
		if F8E4M3ToF32[c] != want {
			t.Errorf("e4m3fn %#02x = %v, want %v", c, F8E4M3ToF32[c], want)
		}
	}
	if !math.Signbit(float64(F8E4M3ToF32[0x80])) || F8E4M3ToF32[0x80] != 0 {
		t.Errorf("e4m3fn 0x80 = %v, want -0", F8E4M3ToF32[0x80])
	}
}

func TestF8E5M2Table(t *testing.T) {
	nans, infs := checkTable(t, "e5m2", F8E5M2ToF32, e5m2Def)
	if nans != 6 || infs != 2 {
		t.Errorf("e5m2 has %d NaN and %d Inf codes, want 6 and 2", nans, infs)
	}
	for c, want := range map[byte]float32{0x7b: 57344, 0x3c: 1, 0xc0: -2, 0x01: 0x1p-16, 0x04: 0x1p-14} {
		if F8E5M2ToF32[c] != want {
			t.Errorf("e5m2 %#02x = %v, want %v", c, F8E5M2ToF32[c], want)
		}
	}
	// e5m2 is binary16 with the low byte cut off.
	for c := 0; c < 256; c++ {
		if f := half.F16ToF32(uint16(c) << 8); math.Float32bits(f) != math.Float32bits(F8E5M2ToF32[c]) {
			t.Errorf("e5m2 %#02x = %v, binary16 %#04x = %v", c, F8E5M2ToF32[c], c<<8, f)
		}
	}
}

func scalarF32(name string, v float32) Tensor {
	return Tensor{Name: name, DType: F32, Shape: []int{}, Data: binary.LittleEndian.AppendUint32(nil, math.Float32bits(v))}
}

// fp8File is a ComfyUI-style checkpoint: fp8 weights with per-tensor scales
// in both conventions, a per-row scale, an unscaled fp8 weight and a bad
// scale.
func fp8File(t *testing.T) *File {
	codes := []byte{0x38, 0xb8, 0x7e, 0x01, 0x00, 0x3c} // 1 −1 448 2⁻⁹ 0 1.5 in e4m3fn
	f, err := Parse(encode(t, []Tensor{
		{Name: "a.weight", DType: F8E4, Shape: []int{2, 3}, Data: codes},
		scalarF32("a.weight_scale", 0.5),
		{Name: "b.weight", DType: F8E4, Shape: []int{2, 3}, Data: codes},
		scalarF32("b.scale_weight", 4),
		{Name: "b.scaled_fp8", DType: F8E4, Shape: []int{0}, Data: nil},
		{Name: "c.weight", DType: F8E5, Shape: []int{2, 3}, Data: []byte{0x3c, 0xc0, 0x7b, 0x01, 0x80, 0x3e}},
		BF16Tensor("c.weight_scale", []int{2, 1}, []float32{2, -0.25}),
		{Name: "d.weight", DType: F8E4, Shape: []int{3}, Data: codes[:3]},
		{Name: "e.weight", DType: F8E4, Shape: []int{2, 3}, Data: codes},
		F32Tensor("e.weight_scale", []int{3}, []float32{1, 2, 3}),
		{Name: "f.weight", DType: F8E4, Shape: []int{1}, Data: codes[:1]},
		{Name: "f.weight_scale", DType: I64, Shape: []int{}, Data: make([]byte, 8)},
	}, nil))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return f
}

func TestFP8Float32(t *testing.T) {
	f := fp8File(t)
	v, shape, err := f.Float32("a.weight")
	if err != nil || !reflect.DeepEqual(shape, []int{2, 3}) || !reflect.DeepEqual(v, []float32{1, -1, 448, 0x1p-9, 0, 1.5}) {
		t.Errorf("Float32(a.weight) = %v %v %v", v, shape, err)
	}
	v, _, err = f.Float32("c.weight")
	if err != nil || !reflect.DeepEqual(v, []float32{1, -2, 57344, 0x1p-16, 0, 1.5}) {
		t.Errorf("Float32(c.weight) = %v %v", v, err)
	}
	d, _, err := f.Float64("c.weight")
	if err != nil || d[2] != 57344 {
		t.Errorf("Float64(c.weight) = %v %v", d, err)
	}
}

func TestWeightScale(t *testing.T) {
	f := fp8File(t)
	cases := []struct {
		weight, scaleName string
		scale             []float32
		values            []float32
	}{
		{"a.weight", "a.weight_scale", []float32{0.5}, []float32{0.5, -0.5, 224, 0x1p-10, 0, 0.75}},
		{"b.weight", "b.scale_weight", []float32{4}, []float32{4, -4, 1792, 0x1p-7, 0, 6}},
		{"c.weight", "c.weight_scale", []float32{2, -0.25}, []float32{2, -4, 114688, -0x1p-18, -0, -0.375}},
		{"d.weight", "", nil, []float32{1, -1, 448}},
	}
	for _, c := range cases {
		scale, name, err := f.WeightScale(c.weight)
		if err != nil || name != c.scaleName || !reflect.DeepEqual(scale, c.scale) {
			t.Errorf("WeightScale(%q) = %v %q %v, want %v %q", c.weight, scale, name, err, c.scale, c.scaleName)
		}
		v, _, err := f.ScaledFloat32(c.weight)
		if err != nil || !reflect.DeepEqual(v, c.values) {
			t.Errorf("ScaledFloat32(%q) = %v %v, want %v", c.weight, v, err, c.values)
		}
	}
	for weight, want := range map[string]string{
		"e.weight": `scale "e.weight_scale" has 3 values; weight "e.weight" of shape [2 3] needs 1 or 2`,
		"f.weight": `"f.weight_scale" has dtype I64`,
		"nope":     `no tensor "nope"`,
	} {
		if _, _, err := f.ScaledFloat32(weight); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ScaledFloat32(%q): err = %v, want %q", weight, err, want)
		}
	}
	// A name not ending in ".weight" has no scale.
	if s, name, err := f.WeightScale("b.scaled_fp8"); s != nil || name != "" || err != nil {
		t.Errorf("WeightScale(b.scaled_fp8) = %v %q %v", s, name, err)
	}
}

func TestFP8Malformed(t *testing.T) {
	for hdr, want := range map[string]string{
		`{"w":{"dtype":"F8_E4M3","shape":[3],"data_offsets":[0,2]}}`:   "needs 3 bytes but data_offsets give 2",
		`{"w":{"dtype":"F8_E5M2","shape":[2,2],"data_offsets":[0,2]}}`: "needs 4 bytes",
		`{"w":{"dtype":"F8_E4M3FN","shape":[2],"data_offsets":[0,2]}}`: `unknown dtype "F8_E4M3FN"`,
	} {
		_, err := Parse(rawFile(hdr, make([]byte, 2)))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", hdr, err, want)
		}
	}
}

// F32ToF8E4M3 gives every finite code back from its own value, and for
// values between codes the nearest one (ties to the even code), found
// here by searching all codes; beyond ±448 it saturates.
func TestF32ToF8E4M3(t *testing.T) {
	for c := 0; c < 256; c++ {
		if c&0x7f == 0x7f {
			if got := F32ToF8E4M3(F8E4M3ToF32[c]); got&0x7f != 0x7f {
				t.Errorf("NaN gave code %#x", got)
			}
			continue
		}
		if got := F32ToF8E4M3(F8E4M3ToF32[c]); got != byte(c) {
			t.Errorf("value of code %#x (%g) gave %#x", c, F8E4M3ToF32[c], got)
		}
	}
	nearest := func(x float32) byte {
		best, bestD := byte(0), math.Inf(1)
		for c := 0; c < 256; c++ {
			if c&0x7f == 0x7f || (c>>7 == 1) != math.Signbit(float64(x)) {
				continue
			}
			d := math.Abs(float64(F8E4M3ToF32[c]) - float64(x))
			if d < bestD || d == bestD && c&1 == 0 {
				best, bestD = byte(c), d
			}
		}
		return best
	}
	state := uint64(7)
	for i := 0; i < 20000; i++ {
		state = state*6364136223846793005 + 1442695040888963407
		x := float32(math.Ldexp(float64(state>>40)/float64(1<<24)-0.5, int(state>>20%24)-14))
		if got, want := F32ToF8E4M3(x), nearest(x); got != want {
			t.Fatalf("%g: code %#x, want %#x", x, got, want)
		}
	}
	// A tie between codes 0x00 and 0x01 (2⁻¹⁰) goes to the even one; one
	// between 0x01 and 0x02 to 0x02.
	for _, c := range []struct {
		x    float32
		want byte
	}{{1.0 / 1024, 0x00}, {3.0 / 1024, 0x02}, {1000, 0x7e}, {-1e9, 0xfe}, {float32(math.Inf(1)), 0x7e}} {
		if got := F32ToF8E4M3(c.x); got != c.want {
			t.Errorf("%g: code %#x, want %#x", c.x, got, c.want)
		}
	}
}
