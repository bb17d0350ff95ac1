// Package rng reproduces the random draws of torch's CPU generator
// (torch.Generator("cpu")), so that seeds give the same noise as diffusers
// pipelines running on the CPU: the MT19937 engine seeded like
// torch.manual_seed, torch.rand and torch.randn for float32, float64 and
// float16 (both the serial Box-Muller path of tensors under 16 elements, with
// its cached second value, and the 16-element block path of larger tensors),
// the generator's get_state bytes, and diffusers' randn_tensor with a list of
// generators.
//
// Large float32 randn draws depend on torch's CPU kernel: x86-64 CPUs with
// AVX2 (what most diffusers users run) use vectorised polynomial
// approximations of log, sin and cos, other CPUs use libm in float32. The two
// differ by a few float32 ulps. KernelAVX2 is the default here; KernelScalar
// gives the other values.
package rng

import (
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/half"
)

// Kernel selects which of torch's CPU normal kernels the float32 draws of 16
// or more elements reproduce.
type Kernel int

const (
	// KernelAVX2 reproduces torch's AVX2 kernel (normal_fill_AVX2, with the
	// avx_mathfun polynomials), the default on x86-64 CPUs with AVX2.
	KernelAVX2 Kernel = iota
	// KernelScalar reproduces torch's portable kernel (normal_fill with
	// float32 libm log/sin/cos), used on CPUs without AVX2 such as ARM.
	KernelScalar
)

// String names the kernel.
func (k Kernel) String() string {
	switch k {
	case KernelAVX2:
		return "avx2"
	case KernelScalar:
		return "scalar"
	}
	return fmt.Sprintf("Kernel(%d)", int(k))
}

// blockSize is the numel from which torch.randn switches from the serial
// Box-Muller path to the 16-element block path.
const blockSize = 16

// Generator is a torch-compatible CPU random generator. It is not safe for
// concurrent use.
type Generator struct {
	mt     mt19937
	kernel Kernel
	// Cached second Box-Muller value of the serial (double) normal path.
	cached    float64
	hasCached bool
}

// New returns a generator seeded as torch.Generator("cpu").manual_seed(seed).
// A negative Python seed s corresponds to uint64(s) (torch takes it mod 2^64).
func New(seed uint64) *Generator {
	g := &Generator{}
	g.ManualSeed(seed)
	return g
}

// NewWithKernel is New with the float32 kernel chosen.
func NewWithKernel(seed uint64, k Kernel) *Generator {
	g := New(seed)
	g.kernel = k
	return g
}

// ManualSeed reseeds the generator as torch's manual_seed does: the seed is
// kept as given, only its low 32 bits seed the engine, and the cached normal
// value is dropped.
func (g *Generator) ManualSeed(seed uint64) {
	g.mt.reseed(seed)
	g.hasCached = false
	g.cached = 0
}

// InitialSeed returns the seed last given to ManualSeed (torch's initial_seed).
func (g *Generator) InitialSeed() uint64 { return g.mt.seed }

// Kernel returns the float32 kernel the generator reproduces.
func (g *Generator) Kernel() Kernel { return g.kernel }

// SetKernel chooses the float32 kernel the generator reproduces.
func (g *Generator) SetKernel(k Kernel) { g.kernel = k }

// Clone returns an independent copy of the generator in its current state.
func (g *Generator) Clone() *Generator {
	c := *g
	return &c
}

// Uint32 returns the next 32-bit output of the engine (torch's random()).
func (g *Generator) Uint32() uint32 { return g.mt.uint32() }

// Uint64 returns two outputs joined, the first in the high half (torch's
// random64()).
func (g *Generator) Uint64() uint64 {
	hi := g.mt.uint32()
	lo := g.mt.uint32()
	return uint64(hi)<<32 | uint64(lo)
}

// uniform32 is torch's float uniform in [0, 1): 24 random bits.
func (g *Generator) uniform32() float32 {
	return float32(g.mt.uint32()&(1<<24-1)) * (1.0 / (1 << 24))
}

// uniform64 is torch's double uniform in [0, 1): 53 random bits.
func (g *Generator) uniform64() float64 {
	return float64(g.Uint64()&(1<<53-1)) * (1.0 / (1 << 53))
}

// uniform16 is torch's half uniform in [0, 1): 11 random bits.
func (g *Generator) uniform16() float32 {
	return float32(g.mt.uint32()&(1<<11-1)) * (1.0 / (1 << 11))
}

// normal64 is torch's serial normal_distribution<double> with the cached
// second Box-Muller value.
func (g *Generator) normal64() float64 {
	if g.hasCached {
		g.hasCached = false
		return g.cached
	}
	u1 := g.uniform64()
	u2 := g.uniform64()
	r := math.Sqrt(-2 * math.Log(1-u2)) // torch 1.13; newer torch uses log1p(-u2)
	theta := 2 * math.Pi * u1
	g.cached = r * math.Sin(theta)
	g.hasCached = true
	return r * math.Cos(theta)
}

// Numel returns the number of elements of a shape, or an error when a
// dimension is negative or the product overflows.
func Numel(shape []int) (int, error) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("rng: negative dimension in shape %v", shape)
		}
		if d != 0 && n > math.MaxInt/d {
			return 0, fmt.Errorf("rng: shape %v has too many elements", shape)
		}
		n *= d
	}
	return n, nil
}

// Rand returns n float32 uniforms in [0, 1) as torch.rand(n) draws them.
// A negative n gives nil.
func (g *Generator) Rand(n int) []float32 {
	if n < 0 {
		return nil
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = g.uniform32()
	}
	return out
}

// RandF64 returns n float64 uniforms in [0, 1) as torch.rand(n,
// dtype=torch.float64) draws them. A negative n gives nil.
func (g *Generator) RandF64(n int) []float64 {
	if n < 0 {
		return nil
	}
	out := make([]float64, n)
	for i := range out {
		out[i] = g.uniform64()
	}
	return out
}

// RandnN returns n float32 standard normal values as torch.randn(n) (or any
// contiguous shape of n elements) draws them. A negative n gives nil.
func (g *Generator) RandnN(n int) []float32 {
	if n < 0 {
		return nil
	}
	out := make([]float32, n)
	g.FillRandn(out)
	return out
}

// Randn returns numel(shape) float32 standard normal values as
// torch.randn(shape, generator=g) draws them. It implements the scheduler
// package's NoiseSource. A shape with a negative dimension gives nil.
func (g *Generator) Randn(shape []int) []float32 {
	n, err := Numel(shape)
	if err != nil {
		return nil
	}
	return g.RandnN(n)
}

// RandnShape is Randn.
func (g *Generator) RandnShape(shape []int) []float32 { return g.Randn(shape) }

// FillRandn fills dst as torch.randn of len(dst) elements would.
func (g *Generator) FillRandn(dst []float32) {
	n := len(dst)
	if n < blockSize {
		for i := range dst {
			dst[i] = float32(g.normal64())
		}
		return
	}
	for i := range dst {
		dst[i] = g.uniform32()
	}
	block := normal16Scalar
	if g.kernel == KernelAVX2 {
		block = normal16AVX2
	}
	for i := 0; i+blockSize <= n; i += blockSize {
		block(dst[i : i+blockSize])
	}
	if n%blockSize != 0 {
		tail := dst[n-blockSize:]
		for i := range tail {
			tail[i] = g.uniform32()
		}
		block(tail)
	}
}

// normal16Scalar is torch's normal_fill_16 for float32: Box-Muller on pairs
// (j, j+8) with float32 libm functions.
func normal16Scalar(d []float32) {
	for j := 0; j < 8; j++ {
		u1 := 1 - d[j]
		u2 := d[j+8]
		radius := sqrtf(-2 * logf(u1))
		theta := float32(2 * math.Pi * float64(u2))
		d[j] = float32(radius * cosf(theta))
		d[j+8] = float32(radius * sinf(theta))
	}
}

// Correctly rounded float32 versions of libm functions (glibc's logf, cosf,
// sinf and sqrtf are correctly rounded, or within an ulp).
func logf(x float32) float32  { return float32(math.Log(float64(x))) }
func sqrtf(x float32) float32 { return float32(math.Sqrt(float64(x))) }
func cosf(x float32) float32  { return float32(math.Cos(float64(x))) }
func sinf(x float32) float32  { return float32(math.Sin(float64(x))) }

// RandnF64 returns n float64 standard normal values as torch.randn(n,
// dtype=torch.float64) draws them. A negative n gives nil.
func (g *Generator) RandnF64(n int) []float64 {
	if n < 0 {
		return nil
	}
	out := make([]float64, n)
	if n < blockSize {
		for i := range out {
			out[i] = g.normal64()
		}
		return out
	}
	for i := range out {
		out[i] = g.uniform64()
	}
	for i := 0; i+blockSize <= n; i += blockSize {
		normal16F64(out[i : i+blockSize])
	}
	if n%blockSize != 0 {
		tail := out[n-blockSize:]
		for i := range tail {
			tail[i] = g.uniform64()
		}
		normal16F64(tail)
	}
	return out
}

func normal16F64(d []float64) {
	for j := 0; j < 8; j++ {
		u1 := 1 - d[j]
		u2 := d[j+8]
		radius := math.Sqrt(-2 * math.Log(u1))
		theta := 2 * math.Pi * u2
		d[j] = radius * math.Cos(theta)
		d[j+8] = radius * math.Sin(theta)
	}
}

// RandnF16 returns n standard normal values as torch.randn(n,
// dtype=torch.float16) draws them, as IEEE binary16 bits (see package half).
// A negative n gives nil.
func (g *Generator) RandnF16(n int) []uint16 {
	if n < 0 {
		return nil
	}
	out := make([]uint16, n)
	if n < blockSize {
		for i := range out {
			out[i] = f64ToF16(g.normal64())
		}
		return out
	}
	u := make([]float32, n)
	for i := range u {
		u[i] = g.uniform16()
	}
	for i := 0; i+blockSize <= n; i += blockSize {
		normal16F16(u[i : i+blockSize])
	}
	if n%blockSize != 0 {
		tail := u[n-blockSize:]
		for i := range tail {
			tail[i] = g.uniform16()
		}
		normal16F16(tail)
	}
	for i, v := range u {
		out[i] = half.F32ToF16(v)
	}
	return out
}

// roundHalf rounds a float32 to the nearest binary16 value.
func roundHalf(x float32) float32 { return half.F16ToF32(half.F32ToF16(x)) }

// f64ToF16 rounds a float64 to binary16 (through float32; the double rounding
// this implies is at most one half ulp off in rare ties).
func f64ToF16(x float64) uint16 { return half.F32ToF16(float32(x)) }

// normal16F16 is torch's normal_fill_16 for c10::Half: each intermediate held
// in a Half variable is rounded to binary16, the libm calls run in float32.
func normal16F16(d []float32) {
	for j := 0; j < 8; j++ {
		u1 := roundHalf(1 - d[j])
		u2 := d[j+8]
		radius := roundHalf(sqrtf(-2 * logf(u1)))
		theta := roundHalf(float32(2 * math.Pi * float64(u2)))
		d[j] = roundHalf(radius * cosf(theta))
		d[j+8] = roundHalf(radius * sinf(theta))
	}
}
