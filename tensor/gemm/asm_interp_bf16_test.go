package gemm

// The interpreter's machine-code decoder (for instructions the Go assembler
// cannot spell, written as BYTE directives) and the test of the AVX512_BF16
// kernel, kern6x32BF16AVX512, which no machine here can run.

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/half"
)

// ---- Machine code ----

var asmDataSizes = map[string]int{"BYTE": 1, "WORD": 2, "LONG": 4}

// asmData returns the bytes a BYTE, WORD or LONG directive emits (little
// endian), and whether text is such a directive.
func asmData(text string) ([]byte, bool, error) {
	f := strings.Fields(text)
	size, ok := asmDataSizes[f[0]]
	if !ok {
		return nil, false, nil
	}
	if len(f) != 2 || !strings.HasPrefix(f[1], "$") {
		return nil, true, fmt.Errorf("%s takes one $constant", f[0])
	}
	v, err := strconv.ParseUint(f[1][1:], 0, 8*size)
	if err != nil {
		return nil, true, fmt.Errorf("%s constant: %v", f[0], err)
	}
	return binary.LittleEndian.AppendUint32(nil, uint32(v))[:size], true, nil
}

// decodeMachineCode decodes bytes gathered from data directives (lines[i]
// is the source line of code[i]) into instructions. It knows one encoding,
// the one gen.py emits: VDPBF16PS zmm, zmm, zmm, that is EVEX.512.F3.0F38.W0
// 52 /r with a register operand, no masking, no zeroing and no broadcast or
// rounding control. Anything else, including trailing or missing bytes, is
// an error.
func decodeMachineCode(code []byte, lines []int) ([]asmInstr, error) {
	var ins []asmInstr
	for i := 0; i < len(code); i += 6 {
		in, err := decodeVDPBF16PS(code[i:])
		if err != nil {
			return nil, fmt.Errorf("%d: machine code % x: %v", lines[i], code[i:min(len(code), i+6)], err)
		}
		in.line = lines[i]
		ins = append(ins, in)
	}
	return ins, nil
}

func decodeVDPBF16PS(b []byte) (asmInstr, error) {
	var in asmInstr
	if b[0] != 0x62 {
		return in, fmt.Errorf("not an EVEX instruction (only VDPBF16PS zmm, zmm, zmm is supported)")
	}
	if len(b) < 6 {
		return in, fmt.Errorf("truncated instruction")
	}
	// EVEX payload: p0 = R X B R' 0 0 m m, p1 = W vvvv 1 p p,
	// p2 = z L'L b V' aaa; R, X, B, R', vvvv and V' are stored inverted.
	p0, p1, p2, op, modrm := b[1], b[2], b[3], b[4], b[5]
	switch {
	case p0&0x0f != 0x02:
		return in, fmt.Errorf("opcode map is not 0F38")
	case p1&0x04 == 0:
		return in, fmt.Errorf("EVEX bit P[10] is clear")
	case p1&0x83 != 0x02:
		return in, fmt.Errorf("not W0 with an F3 prefix")
	case op != 0x52:
		return in, fmt.Errorf("opcode %#02x is not VDPBF16PS", op)
	case p2&0x07 != 0:
		return in, fmt.Errorf("opmask operand")
	case p2&0x80 != 0:
		return in, fmt.Errorf("zeroing-masking")
	case p2&0x10 != 0:
		return in, fmt.Errorf("EVEX.b (broadcast or rounding control)")
	case p2&0x60 != 0x40:
		return in, fmt.Errorf("vector length is not 512 bits")
	case modrm>>6 != 3:
		return in, fmt.Errorf("memory operand")
	}
	bit := func(x byte, n uint) int { return int(^x >> n & 1) } // an inverted bit
	dst := int(modrm>>3&7) | bit(p0, 7)<<3 | bit(p0, 4)<<4
	src1 := int(^p1>>3&15) | bit(p2, 3)<<4
	src2 := int(modrm&7) | bit(p0, 5)<<3 | bit(p0, 6)<<4
	in = asmInstr{
		text:  fmt.Sprintf("VDPBF16PS Z%d, Z%d, Z%d [% x]", src2, src1, dst, b[:6]),
		op:    "VDPBF16PS",
		h:     asmHandlers["VDPBF16PS"],
		width: 64,
	}
	for _, r := range []int{src2, src1, dst} { // Go operand order
		in.args = append(in.args, asmArg{kind: 'v', reg: r, width: 64})
	}
	return in, nil
}

// TestAsmInterpMachineCode runs BYTE-encoded VDPBF16PS instructions whose
// operands exercise every register-extension bit (the encodings were
// checked with objdump -D), and checks that the decoder refuses every other
// encoding and the mnemonic itself.
func TestAsmInterpMachineCode(t *testing.T) {
	const head = "TEXT ·self(SB), NOSPLIT, $0-8\n\tMOVQ buf+0(FP), DI\n"
	run := func(body string, buf []byte) (*asmRegion, error) {
		texts, err := parseAsmTexts("self.s", head+body)
		if err != nil {
			return nil, err
		}
		p, err := decodeAsm(texts["self"], []asmParam{{"buf", 0, 8}}, 8)
		if err != nil {
			return nil, err
		}
		mem := &asmMemory{}
		r := mem.mapRegion("buf", 0x5000, buf)
		m := newAsmMachine(rand.New(rand.NewPCG(12, 13)), mem)
		counts := make([]int, len(p.code))
		if err := asmCall(m, p, counts, map[string]uint64{"buf": r.base}, 1000); err != nil {
			return nil, err
		}
		checkAsmCoverage(t, p, counts)
		return r, nil
	}

	// Seven input registers of random bf16 pairs, three results.
	rng := rand.New(rand.NewPCG(14, 15))
	regs := []int{17, 30, 9, 27, 16, 24, 1}
	in := map[int][]uint32{}
	buf := make([]byte, 64*(len(regs)+3))
	for i, r := range regs {
		v := make([]uint32, 16)
		for j := range v {
			v[j] = uint32(randBF16(rng, 1)) | uint32(randBF16(rng, 1))<<16
			binary.LittleEndian.PutUint32(buf[64*i+4*j:], v[j])
		}
		in[r] = v
	}
	var body strings.Builder
	for i, r := range regs {
		fmt.Fprintf(&body, "\tVMOVUPS %d(DI), Z%d\n", 64*i, r)
	}
	body.WriteString(`	BYTE $0x62; BYTE $0xc2; BYTE $0x0e; BYTE $0x40 // VDPBF16PS Z9, Z30, Z17, split over
	LONG $0x0262c952; WORD $0x407e // lines and directives; VDPBF16PS Z27, Z16, Z24
	BYTE $0x52; BYTE $0xc3
	BYTE $0x62; BYTE $0x32; BYTE $0x76; BYTE $0x48; BYTE $0x52; BYTE $0xc9 // VDPBF16PS Z17, Z1, Z9
	VMOVUPS Z17, 448(DI)
	VMOVUPS Z24, 512(DI)
	VMOVUPS Z9, 576(DI)
	VZEROUPPER
	RET
`)
	r, err := run(body.String(), buf)
	if err != nil {
		t.Fatal(err)
	}
	dp := func(d, s1, s2 []uint32) []uint32 {
		out := make([]uint32, 16)
		for j := range out {
			out[j] = math.Float32bits(dpbf16(math.Float32frombits(d[j]), s1[j], s2[j]))
		}
		return out
	}
	z17 := dp(in[17], in[30], in[9])
	want := [][]uint32{z17, dp(in[24], in[16], in[27]), dp(in[9], in[1], z17)}
	for k, w := range want {
		for j, x := range w {
			if g := binary.LittleEndian.Uint32(r.data[448+64*k+4*j:]); g != x {
				t.Fatalf("result %d lane %d: %#08x, want %#08x", k, j, g, x)
			}
		}
	}

	for _, c := range []struct{ code, want string }{
		{"BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x49; BYTE $0x52; BYTE $0xe0", "opmask"},      // zmm4{k1}
		{"BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0xc8; BYTE $0x52; BYTE $0xe0", "zeroing"},     // {z}
		{"BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x28; BYTE $0x52; BYTE $0xe0", "512 bits"},    // ymm
		{"BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x48; BYTE $0x52; BYTE $0x06", "memory"},      // [rsi]
		{"BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x58; BYTE $0x52; BYTE $0x06", "EVEX.b"},      // [rsi]{1to16}
		{"BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x18; BYTE $0x52; BYTE $0xe0", "EVEX.b"},      // rounding control
		{"BYTE $0x62; BYTE $0xf2; BYTE $0xee; BYTE $0x48; BYTE $0x52; BYTE $0xe0", "W0"},          // W1
		{"BYTE $0x62; BYTE $0xf2; BYTE $0x6d; BYTE $0x48; BYTE $0x52; BYTE $0xe0", "F3"},          // vpdpwssd
		{"BYTE $0x62; BYTE $0xf1; BYTE $0x6e; BYTE $0x48; BYTE $0x52; BYTE $0xe0", "map"},         // map 0F
		{"BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x48; BYTE $0x50; BYTE $0xe0", "opcode 0x50"}, // vpdpbsud
		{"BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x48; BYTE $0x52", "truncated"},
		{"BYTE $0x62; BYTE $0xf2; BYTE $0x6e\nl:\tBYTE $0x48; BYTE $0x52; BYTE $0xe0", "truncated"}, // a label splits it
		{"BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x48; BYTE $0x52; BYTE $0xe0; BYTE $0x90", "not an EVEX"},
		{"BYTE $0x100", "BYTE constant"},
		{"BYTE 0x62", "one $constant"},
		{"VDPBF16PS Z0, Z2, Z4", "Go assembler has no VDPBF16PS"},
	} {
		_, err := run(c.code+"\n\tRET\n", make([]byte, 64))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one saying %q", c.code, err, c.want)
		}
	}
}

// ---- The bf16 kernel ----

var asmBF16Spec = asmKernelSpec{name: "kern6x32BF16AVX512", nr: 32, cols: 32,
	features: []string{"AVX", "AVX512F", "AVX512_BF16"}}

// asmNativeBF16, set on amd64 where the CPU has AVX512_BF16, runs the bf16
// kernel natively.
var asmNativeBF16 asmNativeFn

// randBF16 returns bfloat16 bits of a value in [-scale, scale), or one time
// in eight a zero or a denormal, which VDPBF16PS reads as zero.
func randBF16(rng *rand.Rand, scale float32) uint16 {
	switch rng.IntN(16) {
	case 0:
		return uint16(rng.IntN(2)) << 15
	case 1:
		return uint16(rng.IntN(2))<<15 | uint16(1+rng.IntN(0x7f))
	}
	return half.F32ToBF16((rng.Float32()*2 - 1) * scale)
}

// TestAsmInterpBF16 runs kern6x32BF16AVX512 in the interpreter on the
// cases of the float32 kernels, its slivers filled with bf16 pairs (kc
// counts pairs), and checks it against the Go model of the kernel (bit for
// bit), against a float64 reference, and natively where the CPU has
// AVX512_BF16. Half the cases use values near 2⁻⁶³, whose products and
// partial sums cross the float32 denormal range, so that flushing is
// exercised.
func TestAsmInterpBF16(t *testing.T) {
	spec := asmBF16Spec
	p := loadAsmProgram(t, spec.name)
	checkAsmFeatures(t, p, spec.features...)
	rng := rand.New(rand.NewPCG(16, 17))
	counts := make([]int, len(p.code))
	failures, native := 0, 0
	fail := func(cs *asmCase, what string, err error) {
		t.Helper()
		t.Errorf("%v: %s: %v", cs, what, err)
		if failures++; failures == 5 {
			t.FailNow()
		}
	}
	for _, kc := range asmKCs {
		for n, ab := range asmAlphaBetas {
			for _, scale := range []float32{1, 0x1p-63} {
				ldc := spec.cols + 5*(n%2)
				cs := newAsmCase(rng, spec, kc, ldc, ab[0], ab[1])
				for _, s := range [][]float32{cs.a, cs.b} {
					for i := range s {
						s[i] = math.Float32frombits(uint32(randBF16(rng, scale)) | uint32(randBF16(rng, scale))<<16)
					}
				}
				got, err := interpretKernel(rng, p, spec, cs, counts)
				if err != nil {
					t.Fatalf("%v: %v", cs, err)
				}
				want := slices.Clone(cs.c)
				kern6x32BF16Go(kc, cs.a, cs.b, want[asmGuard:], ldc, cs.alpha, cs.beta)
				if err := asmDiff(cs, got, want); err != nil {
					fail(cs, "interpreter vs Go model", err)
				}
				if err := checkBF16Reference(cs, got); err != nil {
					fail(cs, "interpreter vs float64 reference", err)
				}
				if asmNativeBF16 != nil {
					c := slices.Clone(cs.c)
					asmNativeBF16(kc, cs.a, cs.b, nil, c[asmGuard:], ldc, cs.alpha, cs.beta)
					if err := asmDiff(cs, got, c); err != nil {
						fail(cs, "interpreter vs hardware", err)
					}
					native++
				}
			}
		}
	}
	checkAsmCoverage(t, p, counts)
	if native > 0 {
		t.Logf("%d cases also run natively", native)
	} else {
		t.Log("no AVX512_BF16 here: checked against the Go model and the float64 reference only")
	}
}

// checkBF16Reference compares the tile with alpha·A·B + beta·C computed in
// float64 from the pairs (denormal inputs as zero), within 2kc+3 float32
// roundings and as many flushes of a denormal to zero.
func checkBF16Reference(cs *asmCase, got []float32) error {
	for i := 0; i < 6; i++ {
		for j := 0; j < 32; j++ {
			var sum, mag float64
			for p := 0; p < cs.kc; p++ {
				a, b := math.Float32bits(cs.a[6*p+i]), math.Float32bits(cs.b[32*p+j])
				for _, sh := range []uint32{0, 16} {
					x := float64(bf16In(a>>sh&0xffff)) * float64(bf16In(b>>sh&0xffff))
					sum, mag = sum+x, mag+math.Abs(x)
				}
			}
			al := math.Abs(float64(cs.alpha))
			want, tol := float64(cs.alpha)*sum, float64(2*cs.kc)*(0x1p-24*mag+0x1p-126)*al
			if !asmBetaZero(cs.beta) {
				x := float64(cs.beta) * float64(cs.c[asmGuard+i*cs.ldc+j])
				want, mag = want+x, mag*al+math.Abs(x)
			} else {
				mag *= al
			}
			tol += 3*0x1p-24*mag + 3*0x1p-149
			g := got[asmGuard+i*cs.ldc+j]
			if d := math.Abs(float64(g) - want); !(d <= tol) {
				return fmt.Errorf("C[%d,%d] = %v, want %v ± %.3g", i, j, g, want, tol)
			}
		}
	}
	return nil
}
