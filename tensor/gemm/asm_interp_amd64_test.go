package gemm

import "unsafe"

// The native side of the interpreter tests (asm_interp_test.go): the kernels
// are run through the microKernel wrappers of kernel_amd64.go where this CPU
// can execute them.

func init() {
	asmNativeKernel = func(name string) (asmNativeFn, int, int) {
		var k microKernel
		var fn, raw asmNativeFn
		can := hasAVX2FMA
		switch name {
		case "kern6x16AVX2", "kern6x8AVX2", "kern6x16IndAVX2", "kern6x16DirAVX2", "kern6x8DirAVX2", "kern6x16NTAVX2":
			k = avx2Kernel
		case "kern6x32AVX512", "kern6x16AVX512", "kern6x32IndAVX512", "kern6x32DirAVX512", "kern6x16DirAVX512", "kern6x32NTAVX512":
			k, can = avx512Kernel, hasAVX512
		default:
			return nil, 0, 0
		}
		if !can {
			return nil, k.mr, k.nr
		}
		packed := func(f func(kc int, a, b, c []float32, ldc int, alpha, beta float32)) asmNativeFn {
			return func(kc int, a, b []float32, _ []int, c []float32, ldc int, alpha, beta float32) {
				f(kc, a, b, c, ldc, alpha, beta)
			}
		}
		packedRaw := func(f func(kc int, a, b, c *float32, ldc int, alpha, beta float32)) asmNativeFn {
			return func(kc int, a, b []float32, _ []int, c []float32, ldc int, alpha, beta float32) {
				var dummy float32
				f(kc, &dummy, &dummy, &c[0], ldc, alpha, beta)
			}
		}
		direct := func(f directFn, g func(kc int, a, b, c *float32, ldc int, alpha, beta float32, lda int)) {
			// A laid out in rows with a stride longer than kc.
			fn = func(kc int, a, b []float32, _ []int, c []float32, ldc int, alpha, beta float32) {
				lda := kc + 5
				f(kc, asmRows(a, kc, lda, 0), lda, b, c, ldc, alpha, beta)
			}
			raw = func(kc int, a, b []float32, _ []int, c []float32, ldc int, alpha, beta float32) {
				var dummy float32
				g(kc, &dummy, &dummy, &c[0], ldc, alpha, beta, 1)
			}
		}
		stream := func(f func(kc int, a, b, c []float32, ldc int, alpha, beta float32), g func(kc int, a, b, c *float32, ldc int, alpha, beta float32)) {
			// C is copied to a 64-byte aligned buffer and back: the stores
			// fault on an unaligned address, and Go does not align slices.
			onAligned := func(c []float32, run func(c []float32)) {
				buf := make([]float32, len(c)+16)
				off := int(16-uintptr(unsafe.Pointer(&buf[0]))%64/4) % 16
				copy(buf[off:], c)
				run(buf[off : off+len(c)])
				copy(c, buf[off:])
			}
			fn = func(kc int, a, b []float32, _ []int, c []float32, ldc int, alpha, beta float32) {
				onAligned(c, func(c []float32) { f(kc, a, b, c, ldc, alpha, beta) })
			}
			raw = func(kc int, a, b []float32, _ []int, c []float32, ldc int, alpha, beta float32) {
				var dummy float32
				onAligned(c, func(c []float32) { g(kc, &dummy, &dummy, &c[0], ldc, alpha, beta) })
			}
		}
		switch name {
		case "kern6x16NTAVX2":
			stream(k.stream, kern6x16NTAVX2)
		case "kern6x32NTAVX512":
			stream(k.stream, kern6x32NTAVX512)
		case "kern6x16DirAVX2":
			direct(k.direct, kern6x16DirAVX2)
		case "kern6x8DirAVX2":
			direct(k.directHalf, kern6x8DirAVX2)
		case "kern6x32DirAVX512":
			direct(k.direct, kern6x32DirAVX512)
		case "kern6x16DirAVX512":
			direct(k.directHalf, kern6x16DirAVX512)
		case "kern6x16AVX2":
			fn, raw = packed(k.fn), packedRaw(kern6x16AVX2)
		case "kern6x8AVX2":
			fn, raw = packed(k.half), packedRaw(kern6x8AVX2)
		case "kern6x32AVX512":
			fn, raw = packed(k.fn), packedRaw(kern6x32AVX512)
		case "kern6x16AVX512":
			fn, raw = packed(k.half), packedRaw(kern6x16AVX512)
		case "kern6x16IndAVX2", "kern6x32IndAVX512":
			ind := kern6x16IndAVX2
			if name == "kern6x32IndAVX512" {
				ind = kern6x32IndAVX512
			}
			fn = k.indirect
			raw = func(kc int, a, b []float32, _ []int, c []float32, ldc int, alpha, beta float32) {
				var dummy float32
				var noOffs int
				ind(kc, &dummy, &dummy, &noOffs, &c[0], ldc, alpha, beta)
			}
		}
		return func(kc int, a, b []float32, offs []int, c []float32, ldc int, alpha, beta float32) {
			if kc == 0 {
				// The wrappers need kc ≥ 1 (they bounds-check a[6*kc-1]);
				// the assembly itself allows kc = 0 and must not read a, b
				// or offs, which here point at dummies.
				raw(0, nil, nil, nil, c, ldc, alpha, beta)
				return
			}
			fn(kc, a, b, offs, c, ldc, alpha, beta)
		}, k.mr, k.nr
	}
}
