package gemm

// An interpreter for the micro-kernels of gemm_amd64.s, run on their source
// text.
//
// Why it exists: the AVX-512 kernels (kern6x32AVX512, kern6x16AVX512,
// kern6x32IndAVX512) cannot be executed on the machines this package is
// developed on, which have no AVX-512, and no emulator is at hand (no Intel
// SDE; QEMU's TCG has no AVX-512). The Go assembler's instruction encoding is trusted; what can go
// wrong in a generated kernel is its logic: register use, addressing, loop
// counts and tails, the beta == 0 path, stores outside the tile. Those are
// checked here by reading the TEXT blocks as Plan 9 assembly and executing
// them on a simulated machine: general registers and flags, 32 vector
// registers of 512 bits with X/Y/Z views, and a byte-addressed memory made of
// separate regions with unmapped gaps between them, which records how often
// every byte is read and written.
//
// The interpreter knows only the instructions the kernels use (see
// asmHandlers); any other instruction, operand form (opmask registers, SB
// symbols, register blocks, suffixes such as .Z or .BCST) or mismatched
// register width is an error, never skipped. Arithmetic is IEEE single
// precision with round-to-nearest-even and no flush-to-zero (Go's MXCSR);
// FMA rounds once (fma32). NaN payloads are not modelled: every input of the
// arithmetic here is finite.
//
// The interpreter is itself validated against the hardware: the AVX2 kernels,
// which this machine runs, must give bit-identical results natively and
// interpreted (TestAsmInterpAVX2). The AVX-512 kernels are then interpreted
// on the same cases (TestAsmInterpAVX512) and compared with a float64
// reference GEMM, with a scalar model of their operation order (bit for
// bit), and natively where the CPU has AVX-512.
//
// Instructions that the Go assembler has no mnemonic for are written as
// BYTE directives (VDPBF16PS in kern6x32BF16AVX512). Consecutive BYTE, WORD
// and LONG directives are gathered and decoded as x86 machine code
// (decodeMachineCode in asm_interp_bf16_test.go), which accepts only the
// encodings listed there: the bytes themselves are checked, not a comment
// beside them. VDPBF16PS executes through the Go model of its numerics
// (dpbf16 in bf16.go), and the bf16 kernel is compared bit for bit with the
// Go model of the whole kernel (kern6x32BF16Go).
//
// Go assembler operand order is the reverse of Intel's: "VFMADD231PS Z0, Z2,
// Z4" is Intel's "vfmadd231ps zmm4, zmm2, zmm0" (zmm4 += zmm2·zmm0), and
// "VADDPS Z10, Z4, Z6" is zmm6 = zmm4 + zmm10, as objdump -M intel of the
// assembled kernels shows. CMPQ is the exception: "CMPQ a, b" compares a
// with b, setting flags as for a - b.

import (
	"encoding/binary"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// ---- Source: TEXT blocks and Go signatures ----

// asmText is one TEXT block of an assembly file, split into statements.
type asmText struct {
	name        string
	file        string
	line        int // line of the TEXT directive
	frame, args int // from $frame-args
	body        []asmStmt
}

type asmStmt struct {
	line int
	text string
}

var asmTextRE = regexp.MustCompile(`^TEXT\s+·(\w+)\(SB\)\s*,(?:\s*[A-Z|]+\s*,)?\s*\$(-?\d+)-(\d+)\s*$`)

// parseAsmTexts splits assembly source into its TEXT blocks. Statements
// outside any TEXT block (other than #include and DATA/GLOBL) are errors.
func parseAsmTexts(file, src string) (map[string]*asmText, error) {
	texts := map[string]*asmText{}
	var cur *asmText
	for i, raw := range strings.Split(src, "\n") {
		line := raw
		if j := strings.Index(line, "//"); j >= 0 {
			line = line[:j]
		}
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#include"):
			continue
		case strings.HasPrefix(line, "TEXT"):
			m := asmTextRE.FindStringSubmatch(line)
			if m == nil {
				return nil, fmt.Errorf("%s:%d: cannot parse %q", file, i+1, raw)
			}
			frame, _ := strconv.Atoi(m[2])
			args, _ := strconv.Atoi(m[3])
			cur = &asmText{name: m[1], file: file, line: i + 1, frame: frame, args: args}
			if texts[cur.name] != nil {
				return nil, fmt.Errorf("%s:%d: second TEXT %s", file, i+1, cur.name)
			}
			texts[cur.name] = cur
			continue
		case strings.HasPrefix(line, "DATA") || strings.HasPrefix(line, "GLOBL"):
			cur = nil
			continue
		}
		if cur == nil {
			return nil, fmt.Errorf("%s:%d: statement outside TEXT: %q", file, i+1, raw)
		}
		for _, s := range strings.Split(line, ";") {
			if s = strings.TrimSpace(s); s != "" {
				cur.body = append(cur.body, asmStmt{i + 1, s})
			}
		}
	}
	return texts, nil
}

// asmParam is one argument slot of an ABI0 frame.
type asmParam struct {
	name      string
	off, size int
}

// asmSignatures returns the ABI0 argument layout (and its total size) of
// every function declared without a body in the non-test Go files of dir:
// the //go:noescape declarations of the assembly routines.
func asmSignatures(dir string) (map[string][]asmParam, map[string]int, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, nil, err
	}
	sigs, sizes := map[string][]asmParam{}, map[string]int{}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, nil, err
		}
		for _, d := range af.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Body != nil || fd.Recv != nil {
				continue
			}
			var ps []asmParam
			off := 0
			add := func(fields *ast.FieldList, dflt string) error {
				if fields == nil {
					return nil
				}
				for _, fl := range fields.List {
					size := abi0Size(fl.Type)
					if size == 0 {
						return fmt.Errorf("%s: %s: unsupported parameter type", fset.Position(fl.Pos()), fd.Name.Name)
					}
					names := []string{dflt}
					if len(fl.Names) > 0 {
						names = names[:0]
						for _, n := range fl.Names {
							names = append(names, n.Name)
						}
					}
					for _, n := range names {
						off = (off + size - 1) / size * size
						ps = append(ps, asmParam{n, off, size})
						off += size
					}
				}
				return nil
			}
			if err := add(fd.Type.Params, "arg"); err != nil {
				return nil, nil, err
			}
			off = (off + 7) &^ 7 // results start pointer-aligned
			if err := add(fd.Type.Results, "ret"); err != nil {
				return nil, nil, err
			}
			sigs[fd.Name.Name] = ps
			sizes[fd.Name.Name] = (off + 7) &^ 7
		}
	}
	return sigs, sizes, nil
}

// abi0Size is the size (and alignment) of a scalar parameter type, or 0.
func abi0Size(e ast.Expr) int {
	switch t := e.(type) {
	case *ast.StarExpr:
		return 8
	case *ast.Ident:
		switch t.Name {
		case "int", "uint", "int64", "uint64", "uintptr", "float64":
			return 8
		case "int32", "uint32", "float32", "rune":
			return 4
		case "int16", "uint16":
			return 2
		case "int8", "uint8", "byte", "bool":
			return 1
		}
	}
	return 0
}

// ---- Decoding ----

var asmGPRs = map[string]int{
	"AX": 0, "CX": 1, "DX": 2, "BX": 3, "SP": 4, "BP": 5, "SI": 6, "DI": 7,
	"R8": 8, "R9": 9, "R10": 10, "R11": 11, "R12": 12, "R13": 13, "R14": 14, "R15": 15,
}

const (
	asmRegSP = 4
	asmRegBP = 5
	asmRegFP = 16 // the FP pseudo-register, as a memory base
)

// asmArg is a decoded operand. kind is one of 'i' (immediate), 'g' (general
// register), 'v' (vector register), 'm' (memory) and 'l' (label).
type asmArg struct {
	kind        byte
	imm         int64
	reg         int // general or vector register number
	width       int // vector register width in bytes: 16 (X), 32 (Y), 64 (Z)
	base, index int // memory: general registers (index -1: none; base may be asmRegFP)
	scale       int
	disp        int64
	param       *asmParam // the argument an FP-relative operand names
	label       string
}

var (
	asmVecRE = regexp.MustCompile(`^([XYZ])([0-9]+)$`)
	asmMemRE = regexp.MustCompile(`^(?:([A-Za-z_]\w*)([+-][0-9]+)|([+-]?(?:0[xX][0-9a-fA-F]+|[0-9]+)))?\((\w+)\)(?:\((\w+)\*([1248])\))?$`)
	asmSymRE = regexp.MustCompile(`^[A-Za-z_]\w*$`)
	asmKRE   = regexp.MustCompile(`^K[0-7]$`)
)

func parseAsmArg(s string, params map[string]*asmParam) (asmArg, error) {
	if strings.HasPrefix(s, "$") {
		v, err := strconv.ParseInt(s[1:], 0, 64)
		if err != nil {
			return asmArg{}, fmt.Errorf("unsupported immediate %q", s)
		}
		return asmArg{kind: 'i', imm: v}, nil
	}
	if r, ok := asmGPRs[s]; ok {
		return asmArg{kind: 'g', reg: r}, nil
	}
	if m := asmVecRE.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[2])
		if n > 31 {
			return asmArg{}, fmt.Errorf("no register %s", s)
		}
		return asmArg{kind: 'v', reg: n, width: map[string]int{"X": 16, "Y": 32, "Z": 64}[m[1]]}, nil
	}
	if m := asmMemRE.FindStringSubmatch(s); m != nil {
		a := asmArg{kind: 'm', index: -1}
		if m[4] == "FP" {
			if m[1] == "" || m[5] != "" {
				return asmArg{}, fmt.Errorf("FP operand %q must be name+offset(FP)", s)
			}
			off, _ := strconv.ParseInt(m[2], 10, 64)
			p := params[m[1]]
			if p == nil {
				return asmArg{}, fmt.Errorf("%q: the Go declaration has no argument %s", s, m[1])
			}
			if int64(p.off) != off {
				return asmArg{}, fmt.Errorf("%q: argument %s is at offset %d", s, p.name, p.off)
			}
			a.base, a.disp, a.param = asmRegFP, off, p
			return a, nil
		}
		if m[1] != "" {
			return asmArg{}, fmt.Errorf("symbolic offset in %q is only supported with FP", s)
		}
		b, ok := asmGPRs[m[4]]
		if !ok {
			return asmArg{}, fmt.Errorf("unsupported base register in %q", s)
		}
		a.base = b
		if m[3] != "" {
			a.disp, _ = strconv.ParseInt(m[3], 0, 64)
		}
		if m[5] != "" {
			x, ok := asmGPRs[m[5]]
			if !ok || x == asmRegSP {
				return asmArg{}, fmt.Errorf("unsupported index register in %q", s)
			}
			a.index = x
			a.scale, _ = strconv.Atoi(m[6])
		}
		return a, nil
	}
	if asmKRE.MatchString(s) {
		return asmArg{}, fmt.Errorf("opmask operand %s is not supported", s)
	}
	if asmSymRE.MatchString(s) && s != "SB" && s != "FP" && s != "PC" {
		return asmArg{kind: 'l', label: s}, nil
	}
	return asmArg{}, fmt.Errorf("unsupported operand %q", s)
}

// asmInstr is a decoded instruction.
type asmInstr struct {
	line   int
	text   string
	op     string
	args   []asmArg
	h      *asmHandler
	width  int // vector instructions: register width in bytes
	target int // jumps: index of the target instruction
}

// asmProgram is a decoded TEXT block.
type asmProgram struct {
	name   string
	file   string
	params []asmParam
	args   int
	code   []asmInstr
}

func (p *asmProgram) param(name string) (asmParam, error) {
	for _, q := range p.params {
		if q.name == name {
			return q, nil
		}
	}
	return asmParam{}, fmt.Errorf("%s has no argument %s", p.name, name)
}

// where formats the source position of instruction pc.
func (p *asmProgram) where(pc int) string {
	in := &p.code[pc]
	return fmt.Sprintf("%s:%d: %s", p.file, in.line, in.text)
}

var asmLabelRE = regexp.MustCompile(`^([A-Za-z_]\w*):\s*(.*)$`)

// decodeAsm decodes a TEXT block whose Go declaration has the ABI0 argument
// layout sig (of total size args). It fails on the first instruction or
// operand form the interpreter does not implement.
func decodeAsm(t *asmText, sig []asmParam, args int) (*asmProgram, error) {
	if t.frame != 0 {
		return nil, fmt.Errorf("%s:%d: %s has a $%d frame; only frameless functions are supported", t.file, t.line, t.name, t.frame)
	}
	if t.args != args {
		return nil, fmt.Errorf("%s:%d: %s declares $%d-%d but its Go signature has %d bytes of arguments", t.file, t.line, t.name, t.frame, t.args, args)
	}
	params := map[string]*asmParam{}
	for i := range sig {
		params[sig[i].name] = &sig[i]
	}
	p := &asmProgram{name: t.name, file: t.file, params: sig, args: args}
	labels := map[string]int{}
	// Machine code in BYTE/WORD/LONG directives, gathered until the next
	// instruction or label, with the source line of every byte.
	var code []byte
	var codeLines []int
	flush := func() error {
		if len(code) == 0 {
			return nil
		}
		ins, err := decodeMachineCode(code, codeLines)
		if err != nil {
			return fmt.Errorf("%s:%v", t.file, err)
		}
		p.code = append(p.code, ins...)
		code, codeLines = nil, nil
		return nil
	}
	for _, st := range t.body {
		text := st.text
		for {
			m := asmLabelRE.FindStringSubmatch(text)
			if m == nil {
				break
			}
			if err := flush(); err != nil {
				return nil, err
			}
			if _, dup := labels[m[1]]; dup {
				return nil, fmt.Errorf("%s:%d: label %s defined twice", t.file, st.line, m[1])
			}
			labels[m[1]] = len(p.code)
			text = m[2]
		}
		if text == "" {
			continue
		}
		if b, ok, err := asmData(text); ok {
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %q: %v", t.file, st.line, text, err)
			}
			code = append(code, b...)
			for range b {
				codeLines = append(codeLines, st.line)
			}
			continue
		}
		if err := flush(); err != nil {
			return nil, err
		}
		in, err := decodeAsmInstr(text, params)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %q: %v", t.file, st.line, text, err)
		}
		in.line = st.line
		p.code = append(p.code, in)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	for i := range p.code {
		in := &p.code[i]
		if len(in.args) == 1 && in.args[0].kind == 'l' {
			tgt, ok := labels[in.args[0].label]
			if !ok {
				return nil, fmt.Errorf("%s: undefined label %s", p.where(i), in.args[0].label)
			}
			in.target = tgt
		}
	}
	return p, nil
}

func decodeAsmInstr(text string, params map[string]*asmParam) (asmInstr, error) {
	op, rest := text, ""
	if i := strings.IndexAny(text, " \t"); i >= 0 {
		op, rest = text[:i], text[i+1:]
	}
	in := asmInstr{text: text, op: op, h: asmHandlers[op]}
	if in.h == nil {
		return in, fmt.Errorf("unsupported instruction %s", op)
	}
	if in.h.encoded {
		return in, fmt.Errorf("the Go assembler has no %s: it must be encoded in BYTE directives", op)
	}
	var shape []byte
	if rest = strings.TrimSpace(rest); rest != "" {
		for _, s := range strings.Split(rest, ",") {
			a, err := parseAsmArg(strings.TrimSpace(s), params)
			if err != nil {
				return in, err
			}
			in.args = append(in.args, a)
			shape = append(shape, a.kind)
		}
	}
	if !slices.Contains(in.h.shapes, string(shape)) {
		return in, fmt.Errorf("unsupported operand form %q for %s (supported: %q)", shape, op, in.h.shapes)
	}
	if !in.h.vector {
		return in, nil // shapes admit no vector registers here
	}
	// All vector registers of an instruction have one width, except the
	// source of a register VBROADCASTSS, which is an X register.
	for i, a := range in.args {
		if a.kind != 'v' {
			continue
		}
		if op == "VBROADCASTSS" && i == 0 {
			if a.width != 16 {
				return in, fmt.Errorf("broadcast source must be an X register")
			}
			continue
		}
		if in.width != 0 && a.width != in.width {
			return in, fmt.Errorf("mixed register widths")
		}
		in.width = a.width
	}
	return in, nil
}

// asmHandler implements one mnemonic. shapes lists the operand forms it
// accepts, as strings of asmArg kinds in source order.
type asmHandler struct {
	shapes  []string
	vector  bool
	encoded bool // reached only through machine code (decodeMachineCode)
	exec    func(m *asmMachine, in *asmInstr) error
}

// asmHandlers holds every instruction the interpreter implements.
var asmHandlers map[string]*asmHandler

func init() {
	alu := []string{"gg", "ig", "mg", "gm", "im"}
	arith := func(f func(m *asmMachine, d, s uint64) uint64, store bool) *asmHandler {
		return &asmHandler{shapes: alu, exec: func(m *asmMachine, in *asmInstr) error {
			s, err := m.get64(&in.args[0])
			if err != nil {
				return err
			}
			d, err := m.get64(&in.args[1])
			if err != nil {
				return err
			}
			r := f(m, d, s)
			if !store {
				return nil
			}
			return m.set64(&in.args[1], r)
		}}
	}
	unary := func(f func(m *asmMachine, d uint64) uint64) *asmHandler {
		return &asmHandler{shapes: []string{"g"}, exec: func(m *asmMachine, in *asmInstr) error {
			m.gpr[in.args[0].reg] = f(m, m.gpr[in.args[0].reg])
			return nil
		}}
	}
	shift := func(f func(m *asmMachine, d uint64, n uint) uint64) *asmHandler {
		return &asmHandler{shapes: []string{"ig"}, exec: func(m *asmMachine, in *asmInstr) error {
			if n := uint(in.args[0].imm) & 63; n != 0 { // a zero count leaves the flags alone
				m.gpr[in.args[1].reg] = f(m, m.gpr[in.args[1].reg], n)
			}
			return nil
		}}
	}
	sub := func(m *asmMachine, d, s uint64) uint64 {
		r := d - s
		m.setZS(r)
		m.cf, m.of = d < s, ((d^s)&(d^r))>>63 != 0
		return r
	}
	logic := func(op func(d, s uint64) uint64) func(m *asmMachine, d, s uint64) uint64 {
		return func(m *asmMachine, d, s uint64) uint64 {
			r := op(d, s)
			m.setZS(r)
			m.cf, m.of = false, false
			return r
		}
	}
	and := logic(func(d, s uint64) uint64 { return d & s })
	asmHandlers = map[string]*asmHandler{
		"MOVQ": {shapes: alu, exec: func(m *asmMachine, in *asmInstr) error {
			v, err := m.get64(&in.args[0])
			if err != nil {
				return err
			}
			return m.set64(&in.args[1], v)
		}},
		"MOVL": {shapes: []string{"gg", "ig", "mg", "gm"}, exec: func(m *asmMachine, in *asmInstr) error {
			v, err := m.get32(&in.args[0])
			if err != nil {
				return err
			}
			return m.set32(&in.args[1], v)
		}},
		"ANDL": {shapes: []string{"gg", "ig"}, exec: func(m *asmMachine, in *asmInstr) error {
			s, _ := m.get32(&in.args[0])
			r := uint32(m.gpr[in.args[1].reg]) & s
			m.gpr[in.args[1].reg] = uint64(r) // 32-bit results zero the upper half
			m.zf, m.sf, m.cf, m.of = r == 0, int32(r) < 0, false, false
			return nil
		}},
		"ADDQ": arith(func(m *asmMachine, d, s uint64) uint64 {
			r := d + s
			m.setZS(r)
			m.cf, m.of = r < d, ((d^r)&(s^r))>>63 != 0
			return r
		}, true),
		"SUBQ": arith(sub, true),
		// "CMPQ a, b" sets the flags of a - b (Go keeps Intel's order here).
		"CMPQ": &asmHandler{shapes: []string{"gg", "gi", "mg", "gm", "mi"}, exec: func(m *asmMachine, in *asmInstr) error {
			a, err := m.get64(&in.args[0])
			if err != nil {
				return err
			}
			b, err := m.get64(&in.args[1])
			if err != nil {
				return err
			}
			sub(m, a, b)
			return nil
		}},
		"ANDQ":  arith(and, true),
		"ORQ":   arith(logic(func(d, s uint64) uint64 { return d | s }), true),
		"XORQ":  arith(logic(func(d, s uint64) uint64 { return d ^ s }), true),
		"TESTQ": arith(and, false),
		"INCQ": unary(func(m *asmMachine, d uint64) uint64 { // CF is left alone
			r := d + 1
			m.setZS(r)
			m.of = r == 1<<63
			return r
		}),
		"DECQ": unary(func(m *asmMachine, d uint64) uint64 { // CF is left alone
			r := d - 1
			m.setZS(r)
			m.of = d == 1<<63
			return r
		}),
		"SHLQ": shift(func(m *asmMachine, d uint64, n uint) uint64 {
			r := d << n
			m.setZS(r)
			m.cf = d>>(64-n)&1 != 0
			m.of = (r>>63 != 0) != m.cf // defined for n == 1 only
			return r
		}),
		"SHRQ": shift(func(m *asmMachine, d uint64, n uint) uint64 {
			r := d >> n
			m.setZS(r)
			m.cf = d>>(n-1)&1 != 0
			m.of = d>>63 != 0 // defined for n == 1 only
			return r
		}),
		"LEAQ": {shapes: []string{"mg"}, exec: func(m *asmMachine, in *asmInstr) error {
			m.gpr[in.args[1].reg] = m.addr(&in.args[0])
			return nil
		}},
		"RET": {shapes: []string{""}, exec: func(m *asmMachine, in *asmInstr) error {
			m.next = -1
			return nil
		}},
		// Vector instructions. A write to an X or Y register zeroes the rest
		// of the Z register, as all VEX and EVEX encodings do.
		"VMOVUPS": {vector: true, shapes: []string{"mv", "vm", "vv"}, exec: func(m *asmMachine, in *asmInstr) error {
			v, err := m.vsrc(&in.args[0], in.width)
			if err != nil {
				return err
			}
			return m.vdst(&in.args[1], in.width, v)
		}},
		// The non-temporal store faults unless its address is aligned to
		// the vector's size.
		"VMOVNTPS": {vector: true, shapes: []string{"vm"}, exec: func(m *asmMachine, in *asmInstr) error {
			if ad := m.addr(&in.args[1]); ad%uint64(in.width) != 0 {
				return fmt.Errorf("VMOVNTPS to %#x, not %d-byte aligned (general protection fault)", ad, in.width)
			}
			v, err := m.vsrc(&in.args[0], in.width)
			if err != nil {
				return err
			}
			return m.vdst(&in.args[1], in.width, v)
		}},
		"VBROADCASTSS": {vector: true, shapes: []string{"mv", "vv"}, exec: broadcast32},
		// The same dword broadcast from memory (the bf16 kernel's pairs).
		"VPBROADCASTD": {vector: true, shapes: []string{"mv"}, exec: broadcast32},
		// "VFMADD231PS s2, s1, d": d = s1·s2 + d, rounded once.
		"VFMADD231PS": lanes3(func(s2, s1, d float32) float32 { return fma32(s1, s2, d) }),
		// "VADDPS s2, s1, d": d = s1 + s2; likewise VMULPS.
		"VADDPS": lanes3(func(s2, s1, _ float32) float32 { return asmAdd(s1, s2) }),
		"VMULPS": lanes3(func(s2, s1, _ float32) float32 { return asmMul(s1, s2) }),
		"VXORPS": bitwise3(func(x, y uint32) uint32 { return x ^ y }),
		"VPXORD": bitwise3(func(x, y uint32) uint32 { return x ^ y }),
		// "VDPBF16PS s2, s1, d" (machine code only): per lane, d plus the
		// products of the bf16 pairs of s1 and s2, as dpbf16 computes it.
		"VDPBF16PS": {vector: true, encoded: true, exec: func(m *asmMachine, in *asmInstr) error {
			s2, s1, d := m.vec[in.args[0].reg], m.vec[in.args[1].reg], m.vec[in.args[2].reg]
			for i := 0; i < in.width/4; i++ {
				d[i] = math.Float32bits(dpbf16(math.Float32frombits(d[i]), s1[i], s2[i]))
			}
			return m.vdst(&in.args[2], in.width, d)
		}},
		"VZEROUPPER": {vector: true, shapes: []string{""}, exec: func(m *asmMachine, in *asmInstr) error {
			for r := 0; r < 16; r++ { // ZMM16-31 are not affected
				clear(m.vec[r][4:])
			}
			return nil
		}},
	}
	// Store ordering is not modelled: the interpreter runs one thread.
	asmHandlers["SFENCE"] = &asmHandler{shapes: []string{""}, exec: func(m *asmMachine, in *asmInstr) error { return nil }}
	// Prefetches never fault: only the address is computed.
	for _, op := range []string{"PREFETCHT0", "PREFETCHT1", "PREFETCHT2", "PREFETCHNTA"} {
		asmHandlers[op] = &asmHandler{shapes: []string{"m"}, exec: func(m *asmMachine, in *asmInstr) error {
			m.addr(&in.args[0])
			return nil
		}}
	}
	// Go's names for the branches, and the Intel aliases it also accepts.
	conds := map[string]func(m *asmMachine) bool{
		"JMP": func(m *asmMachine) bool { return true },
		"JEQ": func(m *asmMachine) bool { return m.zf }, "JZ": func(m *asmMachine) bool { return m.zf },
		"JNE": func(m *asmMachine) bool { return !m.zf }, "JNZ": func(m *asmMachine) bool { return !m.zf },
		"JLT": func(m *asmMachine) bool { return m.sf != m.of }, "JL": func(m *asmMachine) bool { return m.sf != m.of },
		"JGE": func(m *asmMachine) bool { return m.sf == m.of },
		"JLE": func(m *asmMachine) bool { return m.zf || m.sf != m.of },
		"JGT": func(m *asmMachine) bool { return !m.zf && m.sf == m.of }, "JG": func(m *asmMachine) bool { return !m.zf && m.sf == m.of },
		"JCS": func(m *asmMachine) bool { return m.cf }, "JLO": func(m *asmMachine) bool { return m.cf }, "JB": func(m *asmMachine) bool { return m.cf },
		"JCC": func(m *asmMachine) bool { return !m.cf }, "JHS": func(m *asmMachine) bool { return !m.cf }, "JAE": func(m *asmMachine) bool { return !m.cf },
		"JLS": func(m *asmMachine) bool { return m.cf || m.zf }, "JBE": func(m *asmMachine) bool { return m.cf || m.zf },
		"JHI": func(m *asmMachine) bool { return !m.cf && !m.zf }, "JA": func(m *asmMachine) bool { return !m.cf && !m.zf },
	}
	for op, cond := range conds {
		asmHandlers[op] = &asmHandler{shapes: []string{"l"}, exec: func(m *asmMachine, in *asmInstr) error {
			if cond(m) {
				m.next = in.target
			}
			return nil
		}}
	}
}

// broadcast32 copies a dword (the low one of an X register, or one in
// memory) into every lane of the destination.
func broadcast32(m *asmMachine, in *asmInstr) error {
	var x uint32
	if a := &in.args[0]; a.kind == 'v' {
		x = m.vec[a.reg][0]
	} else {
		b, err := m.read(a, 4)
		if err != nil {
			return err
		}
		x = binary.LittleEndian.Uint32(b)
	}
	var v asmVec
	for i := range v {
		v[i] = x
	}
	return m.vdst(&in.args[1], in.width, v)
}

// lanes3 makes a float32 lane-wise instruction "OP s2, s1, d" (s2 may be a
// memory operand of the register width).
func lanes3(f func(s2, s1, d float32) float32) *asmHandler {
	return &asmHandler{vector: true, shapes: []string{"vvv", "mvv"}, exec: func(m *asmMachine, in *asmInstr) error {
		s2, err := m.vsrc(&in.args[0], in.width)
		if err != nil {
			return err
		}
		s1, d := m.vec[in.args[1].reg], m.vec[in.args[2].reg]
		for i := 0; i < in.width/4; i++ {
			d[i] = math.Float32bits(f(math.Float32frombits(s2[i]), math.Float32frombits(s1[i]), math.Float32frombits(d[i])))
		}
		return m.vdst(&in.args[2], in.width, d)
	}}
}

func bitwise3(f func(x, y uint32) uint32) *asmHandler {
	return &asmHandler{vector: true, shapes: []string{"vvv", "mvv"}, exec: func(m *asmMachine, in *asmInstr) error {
		s2, err := m.vsrc(&in.args[0], in.width)
		if err != nil {
			return err
		}
		s1 := m.vec[in.args[1].reg]
		var d asmVec
		for i := range d {
			d[i] = f(s1[i], s2[i])
		}
		return m.vdst(&in.args[2], in.width, d)
	}}
}

// asmFeature names the ISA extension an instruction needs ("" for baseline
// x86-64), so that a kernel can be checked against the CPUID test that
// guards it.
func asmFeature(in *asmInstr) string {
	if !in.h.vector {
		return ""
	}
	if in.op == "VDPBF16PS" { // the 512-bit form; AVX512_BF16 implies AVX512F
		return "AVX512_BF16"
	}
	for _, a := range in.args {
		if a.kind == 'v' && a.reg >= 16 {
			if in.width == 64 {
				return "AVX512F"
			}
			return "AVX512VL"
		}
	}
	switch op := in.op; {
	case in.width == 64 && op == "VXORPS":
		return "AVX512DQ"
	case in.width == 64:
		return "AVX512F"
	case op == "VPXORD":
		return "AVX512VL"
	case op == "VFMADD231PS":
		return "FMA"
	case op == "VBROADCASTSS" && in.args[0].kind == 'v', op == "VPBROADCASTD":
		return "AVX2"
	}
	return "AVX"
}

// ---- Execution ----

// asmVec holds the 16 float32 lanes of a ZMM register as bits.
type asmVec [16]uint32

type asmMachine struct {
	gpr            [16]uint64
	vec            [32]asmVec
	zf, sf, cf, of bool
	mem            *asmMemory
	fp             uint64 // address of the first argument
	next           int    // index of the next instruction; -1 after RET
}

func (m *asmMachine) setZS(r uint64) { m.zf, m.sf = r == 0, int64(r) < 0 }

func (m *asmMachine) addr(a *asmArg) uint64 {
	if a.base == asmRegFP {
		return m.fp + uint64(a.disp)
	}
	ad := m.gpr[a.base] + uint64(a.disp)
	if a.index >= 0 {
		ad += m.gpr[a.index] * uint64(a.scale)
	}
	return ad
}

func (m *asmMachine) read(a *asmArg, n int) ([]byte, error) {
	if a.param != nil && a.param.size != n {
		return nil, fmt.Errorf("%d-byte read of the %d-byte argument %s", n, a.param.size, a.param.name)
	}
	return m.mem.access(m.addr(a), n, false)
}

func (m *asmMachine) write(a *asmArg, b []byte) error {
	if a.param != nil && a.param.size != len(b) {
		return fmt.Errorf("%d-byte write of the %d-byte argument %s", len(b), a.param.size, a.param.name)
	}
	d, err := m.mem.access(m.addr(a), len(b), true)
	copy(d, b)
	return err
}

func (m *asmMachine) get64(a *asmArg) (uint64, error) {
	switch a.kind {
	case 'i':
		return uint64(a.imm), nil
	case 'g':
		return m.gpr[a.reg], nil
	}
	b, err := m.read(a, 8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

func (m *asmMachine) set64(a *asmArg, v uint64) error {
	if a.kind == 'g' {
		m.gpr[a.reg] = v
		return nil
	}
	return m.write(a, binary.LittleEndian.AppendUint64(nil, v))
}

func (m *asmMachine) get32(a *asmArg) (uint32, error) {
	switch a.kind {
	case 'i':
		return uint32(a.imm), nil
	case 'g':
		return uint32(m.gpr[a.reg]), nil
	}
	b, err := m.read(a, 4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (m *asmMachine) set32(a *asmArg, v uint32) error {
	if a.kind == 'g' {
		m.gpr[a.reg] = uint64(v) // 32-bit results zero the upper half
		return nil
	}
	return m.write(a, binary.LittleEndian.AppendUint32(nil, v))
}

// vsrc returns a vector operand of width bytes (lanes beyond it are junk).
func (m *asmMachine) vsrc(a *asmArg, width int) (asmVec, error) {
	if a.kind == 'v' {
		return m.vec[a.reg], nil
	}
	var v asmVec
	b, err := m.read(a, width)
	if err != nil {
		return v, err
	}
	for i := 0; i < width/4; i++ {
		v[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return v, nil
}

// vdst stores the low width bytes of v into a register, zeroing the rest of
// it, or into memory.
func (m *asmMachine) vdst(a *asmArg, width int, v asmVec) error {
	if a.kind == 'v' {
		clear(v[width/4:])
		m.vec[a.reg] = v
		return nil
	}
	b := make([]byte, width)
	for i := 0; i < width/4; i++ {
		binary.LittleEndian.PutUint32(b[4*i:], v[i])
	}
	return m.write(a, b)
}

// run executes p from its first instruction until RET, counting in counts
// how often each instruction ran.
func (m *asmMachine) run(p *asmProgram, counts []int, maxSteps int) error {
	pc := 0
	for step := 0; ; step++ {
		if pc < 0 || pc >= len(p.code) {
			return fmt.Errorf("%s: execution ran off the end of the TEXT block", p.name)
		}
		if step == maxSteps {
			return fmt.Errorf("%s: no RET after %d instructions; now at %s", p.name, maxSteps, p.where(pc))
		}
		in := &p.code[pc]
		counts[pc]++
		m.next = pc + 1
		if err := in.h.exec(m, in); err != nil {
			return fmt.Errorf("%s: %v", p.where(pc), err)
		}
		if m.next < 0 {
			return nil
		}
		pc = m.next
	}
}

// asmRegion is a mapped range of simulated memory; reads and writes count
// the accesses to each byte.
type asmRegion struct {
	name          string
	base          uint64
	data          []byte
	reads, writes []uint16
}

type asmMemory struct{ regions []*asmRegion }

// mapRegion maps data (copied) at base.
func (mem *asmMemory) mapRegion(name string, base uint64, data []byte) *asmRegion {
	r := &asmRegion{name: name, base: base, data: slices.Clone(data),
		reads: make([]uint16, len(data)), writes: make([]uint16, len(data))}
	if r.data == nil {
		r.data = []byte{}
	}
	mem.regions = append(mem.regions, r)
	return r
}

// access returns the n bytes at addr, which must lie within one region,
// and counts the access.
func (mem *asmMemory) access(addr uint64, n int, write bool) ([]byte, error) {
	for _, r := range mem.regions {
		if addr < r.base || addr-r.base > uint64(len(r.data)) || uint64(n) > uint64(len(r.data))-(addr-r.base) {
			continue
		}
		off := int(addr - r.base)
		cnt := r.reads
		if write {
			cnt = r.writes
		}
		for i := off; i < off+n; i++ {
			if cnt[i] < math.MaxUint16 {
				cnt[i]++
			}
		}
		return r.data[off : off+n], nil
	}
	what := "read"
	if write {
		what = "write"
	}
	return nil, fmt.Errorf("%d-byte %s at %#x outside every mapped region%s", n, what, addr, mem.describe(addr))
}

// describe locates addr relative to the nearest region, for error messages.
func (mem *asmMemory) describe(addr uint64) string {
	best, bestD := "", uint64(math.MaxUint64)
	for _, r := range mem.regions {
		end := r.base + uint64(len(r.data))
		switch {
		case addr < r.base && r.base-addr < bestD:
			best, bestD = fmt.Sprintf(" (%d bytes before %s)", r.base-addr, r.name), r.base-addr
		case addr >= end && addr-end < bestD:
			best, bestD = fmt.Sprintf(" (%d bytes past the end of %s, which has %d)", addr-end, r.name, len(r.data)), addr-end
		case addr >= r.base && addr < end:
			return fmt.Sprintf(" (straddles the end of %s at offset %d of %d)", r.name, addr-r.base, len(r.data))
		}
	}
	return best
}

// ---- Arithmetic ----

// asmAdd and asmMul round to float32 after each operation; the explicit
// conversions forbid the compiler to fuse them into an FMA.
func asmAdd(x, y float32) float32 { return float32(x + y) }
func asmMul(x, y float32) float32 { return float32(x * y) }

// fma32 returns a·b + c rounded once to float32, as VFMADD231PS does.
//
// float32(math.FMA(a, b, c)) is not always right: a·b is exact in float64
// (two 24-bit significands), but the sum is rounded to float64 and then to
// float32, and the first rounding can land exactly on a float32 midpoint that
// the exact sum was not on (see TestAsmInterpFMA32). That is the only way the
// double rounding can go wrong: every float32 midpoint, and the float32
// overflow threshold, is a float64, and rounding is monotonic, so an r
// strictly between two midpoints rounds like the exact sum. Those rare cases
// are recomputed exactly with math/big.
func fma32(a, b, c float32) float32 {
	r := math.FMA(float64(a), float64(b), float64(c))
	f := float32(r)
	if float64(f) == r || math.IsNaN(r) || math.IsInf(r, 0) {
		return f // no second rounding (or special values, computed as in IEEE)
	}
	if !math.IsInf(float64(f), 0) {
		dir := float32(math.Inf(1))
		if r < float64(f) {
			dir = -dir
		}
		g := math.Nextafter32(f, dir) // f and g bracket r
		if mid := (float64(f) + float64(g)) / 2; r != mid && !math.IsInf(float64(g), 0) {
			return f
		}
	}
	return fma32Exact(a, b, c)
}

// fma32Exact computes a·b + c exactly (1100 bits cover the exponent range
// of float32 products and sums) and rounds it once, subnormals included.
func fma32Exact(a, b, c float32) float32 {
	var p, s big.Float
	p.SetPrec(1100).Mul(big.NewFloat(float64(a)), big.NewFloat(float64(b)))
	s.SetPrec(1100).Add(&p, big.NewFloat(float64(c)))
	f, _ := s.Float32()
	return f
}

// ---- Loading ----

// asmSource is gemm_amd64.s split into TEXT blocks, with the ABI0 layouts
// of the package's body-less Go declarations.
var asmSource = sync.OnceValues(func() (src struct {
	texts    map[string]*asmText
	sigs     map[string][]asmParam
	argSizes map[string]int
}, err error) {
	b, err := os.ReadFile("gemm_amd64.s")
	if err != nil {
		return src, err
	}
	if src.texts, err = parseAsmTexts("gemm_amd64.s", string(b)); err != nil {
		return src, err
	}
	src.sigs, src.argSizes, err = asmSignatures(".")
	return src, err
})

// loadAsmProgram decodes TEXT block name of gemm_amd64.s against the Go
// declaration of the same name.
func loadAsmProgram(t *testing.T, name string) *asmProgram {
	t.Helper()
	src, err := asmSource()
	if err != nil {
		t.Fatal(err)
	}
	text, ok := src.texts[name]
	if !ok {
		t.Fatalf("gemm_amd64.s has no TEXT ·%s", name)
	}
	sig, ok := src.sigs[name]
	if !ok {
		t.Fatalf("no Go declaration of %s", name)
	}
	p, err := decodeAsm(text, sig, src.argSizes[name])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// checkAsmFeatures fails if p uses an instruction from an ISA extension
// outside allowed: the CPUID test in front of the call would not cover it.
func checkAsmFeatures(t *testing.T, p *asmProgram, allowed ...string) {
	t.Helper()
	for i := range p.code {
		if f := asmFeature(&p.code[i]); f != "" && !slices.Contains(allowed, f) {
			t.Errorf("%s needs %s; the dispatch only checks %v", p.where(i), f, allowed)
		}
	}
}

// checkAsmCoverage fails if some instruction of p never ran.
func checkAsmCoverage(t *testing.T, p *asmProgram, counts []int) {
	t.Helper()
	for i, n := range counts {
		if n == 0 {
			t.Errorf("never executed: %s", p.where(i))
		}
	}
}

// newAsmMachine returns a machine whose registers and flags hold random
// junk, so that a program relying on an uninitialised value goes wrong.
func newAsmMachine(rng *rand.Rand, mem *asmMemory) *asmMachine {
	m := &asmMachine{mem: mem}
	for i := range m.gpr {
		m.gpr[i] = rng.Uint64()
	}
	for r := range m.vec {
		for i := range m.vec[r] {
			m.vec[r][i] = rng.Uint32()
		}
	}
	m.zf, m.sf, m.cf, m.of = rng.IntN(2) == 0, rng.IntN(2) == 0, rng.IntN(2) == 0, rng.IntN(2) == 0
	return m
}

// asmCall runs p as an ABI0 call: the frame (return address, then the
// arguments at their FP offsets) is mapped at frameBase with SP pointing at
// it. args maps argument names to their values (sizes from the signature).
// It checks that SP and BP are preserved and that the upper halves of
// Y/ZMM0-15 are clean at RET.
func asmCall(m *asmMachine, p *asmProgram, counts []int, args map[string]uint64, maxSteps int) error {
	const frameBase = 0x1000
	frame := make([]byte, 8+p.args)
	binary.LittleEndian.PutUint64(frame, 0xdead_beef_dead_beef) // return address
	for name, v := range args {
		q, err := p.param(name)
		if err != nil {
			return err
		}
		switch q.size {
		case 8:
			binary.LittleEndian.PutUint64(frame[8+q.off:], v)
		case 4:
			binary.LittleEndian.PutUint32(frame[8+q.off:], uint32(v))
		default:
			return fmt.Errorf("argument %s: unsupported size %d", name, q.size)
		}
	}
	if len(args) != len(p.params) {
		return fmt.Errorf("%s takes %d arguments, given %d", p.name, len(p.params), len(args))
	}
	m.mem.mapRegion("the argument frame", frameBase, frame)
	m.gpr[asmRegSP], m.fp = frameBase, frameBase+8
	bp := m.gpr[asmRegBP]
	if err := m.run(p, counts, maxSteps); err != nil {
		return err
	}
	if m.gpr[asmRegSP] != frameBase || m.gpr[asmRegBP] != bp {
		return fmt.Errorf("%s: SP or BP not preserved", p.name)
	}
	for r := 0; r < 16; r++ {
		for _, x := range m.vec[r][4:] {
			if x != 0 {
				return fmt.Errorf("%s: returns with dirty upper half of register %d (VZEROUPPER missing?)", p.name, r)
			}
		}
	}
	return nil
}

// ---- GEMM kernel harness ----

// asmKernelSpec describes a micro-kernel of gemm_amd64.s (see microKernel):
// it reads a packed 6×kc sliver of A and a kc×nr sliver of B and writes the
// left cols columns of a 6-row tile of C. B is packed (row p at b + 4·nr·p)
// or, for an indirect kernel, read in place (row p at b + 4·offs[p]); a
// direct kernel reads A in place instead (row i at a + 4·i·lda); a stream
// kernel needs C and its row stride vector-aligned.
type asmKernelSpec struct {
	name     string
	nr, cols int
	indirect bool
	features []string // what the Go dispatch's CPUID test guarantees
	direct   bool
	stream   bool
}

var (
	asmAVX2 = []string{"AVX", "AVX2", "FMA"}
	// hasAVX512 tests AVX512F only (AVX is implied).
	asmAVX512 = []string{"AVX", "AVX512F"}

	asmAVX2Specs = []asmKernelSpec{
		{"kern6x16AVX2", 16, 16, false, asmAVX2, false, false},
		{"kern6x8AVX2", 16, 8, false, asmAVX2, false, false},
		{"kern6x16IndAVX2", 16, 16, true, asmAVX2, false, false},
		{"kern6x16DirAVX2", 16, 16, false, asmAVX2, true, false},
		{"kern6x8DirAVX2", 16, 8, false, asmAVX2, true, false},
		{"kern6x16NTAVX2", 16, 16, false, asmAVX2, false, true},
	}
	asmAVX512Specs = []asmKernelSpec{
		{"kern6x32AVX512", 32, 32, false, asmAVX512, false, false},
		{"kern6x16AVX512", 32, 16, false, asmAVX512, false, false},
		{"kern6x32IndAVX512", 32, 32, true, asmAVX512, false, false},
		{"kern6x32DirAVX512", 32, 32, false, asmAVX512, true, false},
		{"kern6x16DirAVX512", 32, 16, false, asmAVX512, true, false},
		{"kern6x32NTAVX512", 32, 32, false, asmAVX512, false, true},
	}
)

// asmNativeFn runs a kernel natively; offs is ignored by packed kernels. A
// is passed packed; the runner of a direct kernel lays it out in rows.
type asmNativeFn func(kc int, a, b []float32, offs []int, c []float32, ldc int, alpha, beta float32)

// asmNativeKernel, set on amd64, returns a way to run kernel name on this
// CPU (nil where it cannot) together with the geometry of the microKernel
// that wraps it.
var asmNativeKernel func(name string) (fn asmNativeFn, mr, nr int)

const (
	asmGuard    = 16         // floats of guard band on either side of C
	asmSentinel = 0x7FBADBAD // a signalling NaN, in C's guard bands and padding
	asmNaNC     = 0xFFC0FFEE // a quiet NaN, in the tile when beta == 0
)

// asmCase is one kernel call: a packed sliver a (6·kc), b (a packed sliver
// of nr·kc, or for an indirect kernel a source array that row p of the
// sliver starts offs[p] into) and a C buffer with the tile (6 rows of stride
// ldc) at offset asmGuard.
type asmCase struct {
	kc, ldc     int
	alpha, beta float32
	a, b, c     []float32
	offs        []int
	// For a direct kernel, A as it reads it: arows[i*lda+p] = a[6*p+i],
	// each row followed by lda-kc sentinels that it must not read.
	arows []float32
	lda   int
}

// asmRows lays out a packed 6×kc sliver as 6 rows of stride lda, the
// padding filled with fill.
func asmRows(a []float32, kc, lda int, fill float32) []float32 {
	rows := make([]float32, 6*lda)
	for i := range rows {
		rows[i] = fill
	}
	for p := 0; p < kc; p++ {
		for i := 0; i < 6; i++ {
			rows[i*lda+p] = a[6*p+i]
		}
	}
	return rows
}

// brow is the index in b of row p of the B sliver.
func (cs *asmCase) brow(spec asmKernelSpec, p int) int {
	if spec.indirect {
		return cs.offs[p]
	}
	return spec.nr * p
}

func (cs *asmCase) String() string {
	return fmt.Sprintf("kc=%d ldc=%d alpha=%v beta=%v", cs.kc, cs.ldc, cs.alpha, cs.beta)
}

// asmBetaZero reports whether a kernel must leave C unread: beta == 0 of
// either sign.
func asmBetaZero(beta float32) bool { return math.Float32bits(beta)&0x7fffffff == 0 }

func newAsmCase(rng *rand.Rand, spec asmKernelSpec, kc, ldc int, alpha, beta float32) *asmCase {
	cs := &asmCase{kc: kc, ldc: ldc, alpha: alpha, beta: beta,
		a: make([]float32, 6*kc), b: make([]float32, spec.nr*kc), c: make([]float32, 2*asmGuard+6*ldc)}
	if spec.indirect {
		// Rows at arbitrary (unaligned, overlapping, repeated, unordered)
		// offsets, the first at the start of b and the last at its end.
		cs.b = make([]float32, spec.nr+4*kc+3)
		cs.offs = make([]int, kc)
		for p := range cs.offs {
			cs.offs[p] = rng.IntN(len(cs.b) - spec.nr + 1)
		}
		if kc > 1 {
			cs.offs[0], cs.offs[kc-1] = 0, len(cs.b)-spec.nr
		}
	}
	for _, s := range [][]float32{cs.a, cs.b} {
		for i := range s {
			s[i] = rng.Float32()*2 - 1
		}
	}
	if spec.direct {
		cs.lda = kc + 3
		cs.arows = asmRows(cs.a, kc, cs.lda, math.Float32frombits(asmSentinel))
	}
	for i := range cs.c {
		cs.c[i] = math.Float32frombits(asmSentinel)
	}
	for i := 0; i < 6; i++ {
		for j := 0; j < spec.cols; j++ {
			if asmBetaZero(beta) {
				cs.c[asmGuard+i*ldc+j] = math.Float32frombits(asmNaNC)
			} else {
				cs.c[asmGuard+i*ldc+j] = rng.Float32()*2 - 1
			}
		}
	}
	return cs
}

func asmBytes(f []float32) []byte {
	b := make([]byte, 4*len(f))
	for i, x := range f {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func asmFloats(b []byte) []float32 {
	f := make([]float32, len(b)/4)
	for i := range f {
		f[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return f
}

// interpretKernel runs a kernel on cs in the interpreter and returns the C
// buffer afterwards. Besides running the code it checks, from the access
// counts, that the kernel
//   - reads all of A (and offs), and of B exactly the used columns of the
//     sliver's rows (a half kernel never touches B's right half), and writes
//     none of them;
//   - writes every tile element exactly once and nothing else of C;
//   - reads C only within the tile, and not at all when beta == 0.
func interpretKernel(rng *rand.Rand, p *asmProgram, spec asmKernelSpec, cs *asmCase, counts []int) ([]float32, error) {
	mem := &asmMemory{}
	// Separate regions with unmapped gaps: any access outside them faults.
	// The bases are 4-byte but not vector aligned, like Go slices may be.
	aData := cs.a
	if spec.direct {
		aData = cs.arows
	}
	ra := mem.mapRegion("A", 0x10_0004, asmBytes(aData))
	rb := mem.mapRegion("B", 0x20_0008, asmBytes(cs.b))
	cBase := uint64(0x30_000c)
	if spec.stream {
		cBase = 0x30_0000 // with the guard band, the tile starts 64-byte aligned
	}
	rc := mem.mapRegion("C", cBase, asmBytes(cs.c))
	args := map[string]uint64{
		"kc": uint64(cs.kc), "a": ra.base, "b": rb.base, "c": rc.base + 4*asmGuard,
		"ldc": uint64(cs.ldc), "alpha": uint64(math.Float32bits(cs.alpha)), "beta": uint64(math.Float32bits(cs.beta)),
	}
	if spec.direct {
		args["lda"] = uint64(cs.lda)
	}
	read := []*asmRegion{}
	if !spec.direct {
		read = append(read, ra)
	}
	if spec.indirect {
		offs := make([]byte, 0, 8*cs.kc)
		for _, o := range cs.offs {
			offs = binary.LittleEndian.AppendUint64(offs, uint64(o))
		}
		ro := mem.mapRegion("offs", 0x40_0010, offs)
		args["offs"] = ro.base
		read = append(read, ro)
	}
	m := newAsmMachine(rng, mem)
	if err := asmCall(m, p, counts, args, 1<<20); err != nil {
		return nil, err
	}
	for _, r := range read {
		for i := range r.data {
			if r.reads[i] == 0 || r.writes[i] != 0 {
				return nil, fmt.Errorf("%s byte %d: read %d times, written %d times", r.name, i, r.reads[i], r.writes[i])
			}
		}
	}
	if spec.direct {
		// Every element of the rows is read, the padding after them never.
		for i := range ra.data {
			e := i / 4
			if used := e%cs.lda < cs.kc; used != (ra.reads[i] != 0) || ra.writes[i] != 0 {
				return nil, fmt.Errorf("A row %d element %d (used: %v): byte read %d times, written %d times",
					e/cs.lda, e%cs.lda, used, ra.reads[i], ra.writes[i])
			}
		}
	}
	used := make([]bool, len(cs.b))
	for p := 0; p < cs.kc; p++ {
		for j := 0; j < spec.cols; j++ {
			used[cs.brow(spec, p)+j] = true
		}
	}
	for i := range rb.data {
		if used[i/4] != (rb.reads[i] != 0) || rb.writes[i] != 0 {
			return nil, fmt.Errorf("B element %d (used: %v): byte read %d times, written %d times",
				i/4, used[i/4], rb.reads[i], rb.writes[i])
		}
	}
	for i := range rc.data {
		e := i/4 - asmGuard
		inTile := e >= 0 && e < 6*cs.ldc && e%cs.ldc < spec.cols
		wantReads := !asmBetaZero(cs.beta) && inTile
		if inTile && rc.writes[i] != 1 || !inTile && rc.writes[i] != 0 || (rc.reads[i] != 0) != wantReads {
			return nil, fmt.Errorf("C element %d (tile row %d, column %d; in tile: %v): byte read %d times, written %d times",
				e, e/cs.ldc, e%cs.ldc, inTile, rc.reads[i], rc.writes[i])
		}
	}
	return asmFloats(rc.data), nil
}

// asmKernelModel returns the C buffer that the kernel should leave, computed
// in the order of operations gen.py emits: per element, a chain of FMAs over
// k from +0 (a half kernel keeps even and odd k in separate chains and adds
// them), then a multiply by alpha, then, unless beta == 0, one FMA with
// beta·C.
func asmKernelModel(spec asmKernelSpec, cs *asmCase) []float32 {
	c := slices.Clone(cs.c)
	for i := 0; i < 6; i++ {
		for j := 0; j < spec.cols; j++ {
			var acc [2]float32
			for p := 0; p < cs.kc; p++ {
				chain := 0
				if spec.cols < spec.nr {
					chain = p % 2
				}
				acc[chain] = fma32(cs.a[6*p+i], cs.b[cs.brow(spec, p)+j], acc[chain])
			}
			v := acc[0]
			if spec.cols < spec.nr {
				v = asmAdd(acc[0], acc[1])
			}
			v = asmMul(v, cs.alpha)
			e := &c[asmGuard+i*cs.ldc+j]
			if !asmBetaZero(cs.beta) {
				v = fma32(cs.beta, *e, v)
			}
			*e = v
		}
	}
	return c
}

// checkAsmReference compares the tile of got with alpha·A·B + beta·C in
// float64, within a bound on float32 rounding error (kc+3 roundings of
// relative size 2⁻²⁴, plus as many of the subnormal spacing).
func checkAsmReference(spec asmKernelSpec, cs *asmCase, got []float32) error {
	for i := 0; i < 6; i++ {
		for j := 0; j < spec.cols; j++ {
			var sum, mag float64
			for p := 0; p < cs.kc; p++ {
				x := float64(cs.a[6*p+i]) * float64(cs.b[cs.brow(spec, p)+j])
				sum, mag = sum+x, mag+math.Abs(x)
			}
			want := float64(cs.alpha) * sum
			mag *= math.Abs(float64(cs.alpha))
			if !asmBetaZero(cs.beta) {
				x := float64(cs.beta) * float64(cs.c[asmGuard+i*cs.ldc+j])
				want, mag = want+x, mag+math.Abs(x)
			}
			tol := float64(cs.kc+3) * (0x1p-24*mag + 0x1p-149)
			g := got[asmGuard+i*cs.ldc+j]
			if d := math.Abs(float64(g) - want); !(d <= tol) {
				return fmt.Errorf("C[%d,%d] = %v, want %v ± %.3g", i, j, g, want, tol)
			}
		}
	}
	return nil
}

// asmDiff reports the first element where got and want differ in bits.
func asmDiff(cs *asmCase, got, want []float32) error {
	for k := range want {
		if math.Float32bits(got[k]) != math.Float32bits(want[k]) {
			e := k - asmGuard
			return fmt.Errorf("C buffer element %d (tile row %d, column %d) = %v (%#08x), want %v (%#08x)",
				e, e/cs.ldc, e%cs.ldc, got[k], math.Float32bits(got[k]), want[k], math.Float32bits(want[k]))
		}
	}
	return nil
}

// asmKCs and asmAlphaBetas are the cases every kernel is run on.
var (
	asmKCs        = []int{0, 1, 2, 3, 4, 5, 7, 8, 17, 256}
	asmAlphaBetas = [][2]float32{
		{1, 0},                                // C not read: the tile holds NaN
		{-1.5, float32(math.Copysign(0, -1))}, // negative zero is zero too (a Go constant -0 is +0)
		{0.5, 1},
		{2, -0.5},
		{0.75, math.SmallestNonzeroFloat32}, // subnormal, so not zero: C is read
	}
)

// testAsmKernel runs spec's kernel on every case in the interpreter and
// checks it against the scalar model (bit for bit), the float64 reference
// and, where this CPU can run the kernel, the hardware (bit for bit). It
// returns how many cases ran natively.
func testAsmKernel(t *testing.T, spec asmKernelSpec) (native int) {
	p := loadAsmProgram(t, spec.name)
	checkAsmFeatures(t, p, spec.features...)
	var fn asmNativeFn
	if asmNativeKernel != nil {
		var mr, nr int
		fn, mr, nr = asmNativeKernel(spec.name)
		if mr != 6 || nr != spec.nr {
			t.Fatalf("%s: the Go wrapper's microKernel is %d×%d; the test assumes 6×%d", spec.name, mr, nr, spec.nr)
		}
	}
	rng := rand.New(rand.NewPCG(1, uint64(len(spec.name))))
	counts := make([]int, len(p.code))
	failures := 0
	fail := func(cs *asmCase, what string, err error) {
		t.Helper()
		t.Errorf("%s %v: %s: %v", spec.name, cs, what, err)
		if failures++; failures == 5 {
			t.FailNow()
		}
	}
	for _, kc := range asmKCs {
		for n, ab := range asmAlphaBetas {
			ldc := spec.cols + 5*(n%2) // tight rows, and rows with odd padding
			if spec.stream {
				ldc = spec.cols + spec.nr/2*(n%2) // rows stay vector-aligned
			}
			cs := newAsmCase(rng, spec, kc, ldc, ab[0], ab[1])
			got, err := interpretKernel(rng, p, spec, cs, counts)
			if err != nil {
				t.Fatalf("%s %v: %v", spec.name, cs, err)
			}
			if err := asmDiff(cs, got, asmKernelModel(spec, cs)); err != nil {
				fail(cs, "interpreter vs scalar model", err)
			}
			if err := checkAsmReference(spec, cs, got); err != nil {
				fail(cs, "interpreter vs float64 reference", err)
			}
			if fn != nil {
				c := slices.Clone(cs.c)
				fn(kc, cs.a, cs.b, cs.offs, c[asmGuard:], ldc, cs.alpha, cs.beta)
				if err := asmDiff(cs, got, c); err != nil {
					fail(cs, "interpreter vs hardware", err)
				}
				native++
			}
		}
	}
	checkAsmCoverage(t, p, counts)
	return native
}

// ---- Tests ----

// TestAsmInterpAVX2 validates the interpreter: the AVX2 kernels, which this
// machine can execute, must give the same bits interpreted and natively.
func TestAsmInterpAVX2(t *testing.T) {
	for _, spec := range asmAVX2Specs {
		t.Run(spec.name, func(t *testing.T) {
			if n := testAsmKernel(t, spec); n == 0 {
				t.Log("no AVX2+FMA here: checked against the model and reference only")
			}
		})
	}
}

// TestAsmInterpAVX2DoubleRounding runs the case of TestAsmInterpFMA32 on the
// hardware, through the beta FMA of kern6x16AVX2's store: the CPU must round
// once, as fma32 does.
func TestAsmInterpAVX2DoubleRounding(t *testing.T) {
	spec := asmAVX2Specs[0]
	var fn asmNativeFn
	if asmNativeKernel != nil {
		fn, _, _ = asmNativeKernel(spec.name)
	}
	if fn == nil {
		t.Skip("no AVX2+FMA here")
	}
	a, b, c, want, naive := asmDoubleRoundingCase()
	cs := newAsmCase(rand.New(rand.NewPCG(3, 4)), spec, 1, spec.cols, 1, a)
	cs.a[0], cs.b[0], cs.c[asmGuard] = c, 1, b // C[0,0] = 1·(c·1) + a·b
	got := slices.Clone(cs.c)
	fn(1, cs.a, cs.b, nil, got[asmGuard:], cs.ldc, cs.alpha, cs.beta)
	if g := got[asmGuard]; g != want {
		t.Fatalf("hardware: %v, want %v (double rounding gives %v)", g, want, naive)
	}
	p := loadAsmProgram(t, spec.name)
	ip, err := interpretKernel(rand.New(rand.NewPCG(5, 6)), p, spec, cs, make([]int, len(p.code)))
	if err != nil {
		t.Fatal(err)
	}
	if err := asmDiff(cs, ip, got); err != nil {
		t.Fatalf("interpreter vs hardware: %v", err)
	}
}

// TestAsmInterpAVX512 checks the AVX-512 kernels' logic in the interpreter
// (and natively, on a CPU with AVX-512).
func TestAsmInterpAVX512(t *testing.T) {
	for _, spec := range asmAVX512Specs {
		t.Run(spec.name, func(t *testing.T) {
			if n := testAsmKernel(t, spec); n > 0 {
				t.Logf("%d cases also run natively", n)
			}
		})
	}
}

// TestAsmInterpFMALoop runs the peak-rate loops: they must decode, use only
// the extensions their dispatch checks, and execute 12 FMAs per iteration.
func TestAsmInterpFMALoop(t *testing.T) {
	for _, c := range []struct {
		name     string
		width    int
		features []string
	}{
		{"fmaLoopAVX2", 32, []string{"AVX", "AVX2", "FMA"}},
		{"fmaLoopAVX512", 64, []string{"AVX", "AVX512F"}},
	} {
		p := loadAsmProgram(t, c.name)
		checkAsmFeatures(t, p, c.features...)
		for _, n := range []int{1, 3} {
			counts := make([]int, len(p.code))
			m := newAsmMachine(rand.New(rand.NewPCG(7, uint64(n))), &asmMemory{})
			if err := asmCall(m, p, counts, map[string]uint64{"n": uint64(n)}, 1000); err != nil {
				t.Fatal(err)
			}
			fmas := 0
			for i, k := range counts {
				in := &p.code[i]
				if in.op == "VFMADD231PS" {
					if in.width != c.width {
						t.Errorf("%s: width %d, want %d", p.where(i), in.width, c.width)
					}
					fmas += k
				}
			}
			if fmas != 12*n {
				t.Errorf("%s(%d): %d FMAs, want %d", c.name, n, fmas, 12*n)
			}
			if n == 3 {
				checkAsmCoverage(t, p, counts)
			}
		}
	}
}

// asmDoubleRoundingCase returns a, b, c with a·b + c just below a float32
// midpoint whose even neighbour is above it, but within half a float64 ulp:
// rounding to float64 first lands on the midpoint, which then rounds up.
//
//	a·b + c = (1+2⁻²³)(1-2⁻²³)·2⁻²⁴ + (1+2⁻²³) = 1 + 2⁻²³ + 2⁻²⁴ - 2⁻⁷⁰
func asmDoubleRoundingCase() (a, b, c, want, naive float32) {
	a = 1 + 0x1p-23
	b = (1 - 0x1p-23) * 0x1p-24
	c = 1 + 0x1p-23
	return a, b, c, 1 + 0x1p-23, 1 + 0x1p-22
}

func TestAsmInterpFMA32(t *testing.T) {
	a, b, c, want, naive := asmDoubleRoundingCase()
	if g := float32(math.FMA(float64(a), float64(b), float64(c))); g != naive {
		t.Fatalf("float64 FMA then float32: %v; the test case expects it to give %v", g, naive)
	}
	if g := fma32(a, b, c); g != want {
		t.Fatalf("fma32 = %v, want %v", g, want)
	}
	if g := fma32Exact(a, b, c); g != want {
		t.Fatalf("fma32Exact = %v, want %v", g, want)
	}
	// The fast path agrees with the exact one, on random operands and on
	// operands built to land near midpoints, subnormal results and overflow.
	rng := rand.New(rand.NewPCG(8, 9))
	rnd := func() float32 {
		switch rng.IntN(4) {
		case 0:
			return math.Float32frombits(rng.Uint32()) // any finite value, subnormals included
		case 1:
			return float32(rng.IntN(1<<24)) * 0x1p-24 * float32(math.Ldexp(1, rng.IntN(40)-20))
		}
		return rng.Float32()*2 - 1
	}
	for i := 0; i < 20000; i++ {
		x, y, z := rnd(), rnd(), rnd()
		if i%2 == 1 { // c is the float32 nearest -x·y plus a small offset
			z = -float32(float64(x)*float64(y)) + float32(rng.IntN(5)-2)*float32(math.Ldexp(1, rng.IntN(60)-200))
		}
		if isInfNaN32(x) || isInfNaN32(y) || isInfNaN32(z) {
			continue
		}
		if g, w := fma32(x, y, z), fma32Exact(x, y, z); math.Float32bits(g) != math.Float32bits(w) {
			t.Fatalf("fma32(%g, %g, %g) = %g, exact %g", x, y, z, g, w)
		}
	}
	for _, tc := range [][3]float32{
		{math.MaxFloat32, 1, math.MaxFloat32},    // overflows
		{0x1p-126, 0x1p-23, 0x1p-149},            // subnormal
		{0x1p-149, 0.5, 0},                       // a tie that rounds to zero
		{0x1p-149, 0.75, 0},                      // rounds up to the smallest subnormal
		{0x1p-148 + 0x1p-149, 0.5, 0},            // a subnormal tie
		{1 + 0x1p-23, 0x1p104 - 0x1p80, 0x1p127}, // near the overflow threshold
		{-(1 + 0x1p-23), 0x1p104 - 0x1p80, -0x1p127},
	} {
		if g, w := fma32(tc[0], tc[1], tc[2]), fma32Exact(tc[0], tc[1], tc[2]); math.Float32bits(g) != math.Float32bits(w) {
			t.Errorf("fma32(%g, %g, %g) = %g, exact %g", tc[0], tc[1], tc[2], g, w)
		}
	}
}

func isInfNaN32(x float32) bool { return math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) }

// TestAsmInterpSelf checks the interpreter's general-purpose instructions,
// flags and branches on a small program, and that it refuses what it does
// not implement, naming the instruction.
func TestAsmInterpSelf(t *testing.T) {
	sig := []asmParam{{"x", 0, 8}, {"y", 8, 8}, {"f", 16, 4}}
	run := func(body string) (*asmMachine, *asmRegion, error) {
		texts, err := parseAsmTexts("self.s", "TEXT ·self(SB), NOSPLIT, $0-24\n"+body)
		if err != nil {
			return nil, nil, err
		}
		p, err := decodeAsm(texts["self"], slices.Clone(sig), 24)
		if err != nil {
			return nil, nil, err
		}
		mem := &asmMemory{}
		buf := mem.mapRegion("buf", 0x5000, make([]byte, 64))
		m := newAsmMachine(rand.New(rand.NewPCG(10, 11)), mem)
		args := map[string]uint64{"x": 7, "y": 1<<63 + 5, "f": 0x80000000}
		return m, buf, asmCall(m, p, make([]int, len(p.code)), args, 1000)
	}
	m, buf, err := run(`
	MOVQ x+0(FP), AX     // 7
	MOVQ y+8(FP), BX     // 1<<63 + 5
	MOVQ $0, R8          // one bit per group of checks passed
	CMPQ AX, $8          // 7 < 8
	JGE bad
	JLT l1
	JMP bad
l1:	ORQ $1, R8
	CMPQ BX, AX          // signed: BX < AX; unsigned: BX > AX
	JLS bad
	JGE bad
	JGT bad
	ORQ $2, R8
	MOVQ AX, CX
	SUBQ $7, CX          // 0
	JNZ bad
	ADDQ $-1, CX         // all ones, no carry
	JCS bad
	ADDQ $1, CX          // 0, carry
	JCC bad
	JNZ bad
	ORQ $4, R8
	MOVQ $3, DX
	SHLQ $4, DX          // 48
	LEAQ 2(DX)(AX*4), SI // 78
	TESTQ $1, SI
	JNZ bad
	DECQ DX
	INCQ DX
	ANDQ $0xf0, DX
	XORQ $0x30, DX
	JNZ bad
	MOVL f+16(FP), R9    // -0.0
	ANDL $0x7fffffff, R9
	JNZ bad
	ORQ $8, R8
	MOVQ $0x5000, DI
	MOVQ SI, 8(DI)
	MOVQ $-1, R11
	MOVL R11, 16(DI)
	MOVL R11, R12        // zero-extends
	MOVQ $2, R13
	MOVQ (DI)(R13*4), R10 // 78
	SHRQ $1, R10         // 39, no carry
	JCS bad
	SHRQ $1, R10         // 19, carry
	JCC bad
	MOVQ $5, CX
	MOVQ $0, R14
loop:
	ADDQ $3, R14
	DECQ CX
	JNZ loop
	CMPQ R14, $15
	JNE bad
	MOVL $0x3f800000, R15 // 1.0
	MOVL R15, 32(DI)
	VBROADCASTSS 32(DI), X1
	VBROADCASTSS X1, Y2
	VADDPS Y2, Y2, Y3    // 2
	VFMADD231PS Y3, Y3, Y2 // 1 + 2·2
	VMOVUPS Y2, 32(DI)
	VZEROUPPER
	RET
bad:
	MOVQ $-1, R8
	VZEROUPPER
	RET
`)
	if err != nil {
		t.Fatal(err)
	}
	if m.gpr[8] != 15 || m.gpr[10] != 19 || m.gpr[12] != 0xffffffff || m.gpr[14] != 15 {
		t.Errorf("R8, R10, R12, R14 = %d, %d, %#x, %d; want 15, 19, 0xffffffff, 15", m.gpr[8], m.gpr[10], m.gpr[12], m.gpr[14])
	}
	if g, h := binary.LittleEndian.Uint64(buf.data[8:]), binary.LittleEndian.Uint32(buf.data[16:]); g != 78 || h != 0xffffffff {
		t.Errorf("buf[8:16], buf[16:20] = %#x, %#x; want 0x4e, 0xffffffff", g, h)
	}
	for i, f := range asmFloats(buf.data[32:]) {
		if f != 5 {
			t.Errorf("buf float %d = %v, want 5", 8+i, f)
		}
	}

	for _, c := range []struct{ body, want string }{
		{"VUNPCKLPS X1, X0, X4", "unsupported instruction"},
		{"VADDPS.Z Z1, Z2, Z3", "unsupported instruction"},
		{"VADDPS Z1, Z2, K1, Z3", "opmask"},
		{"VADDPS Y1, Z2, Z3", "mixed register widths"},
		{"VADDPS Z1, Z2, (DI)", "unsupported operand form"},
		{"MOVQ x+8(FP), AX", "argument x is at offset 0"},
		{"MOVQ z+0(FP), AX", "no argument z"},
		{"MOVQ ·sym(SB), AX", "unsupported operand"},
		{"JMP 2(PC)", "unsupported"},
		{"JMP nowhere", "undefined label"},
		{"MOVQ X0, AX", "unsupported operand form"},
	} {
		_, _, err := run(c.body + "\n\tRET\n")
		if err == nil || !strings.Contains(err.Error(), c.body) && !strings.Contains(err.Error(), "nowhere") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one naming the instruction and %q", c.body, err, c.want)
		}
	}
	for _, c := range []struct{ body, want string }{
		{"MOVQ $0x5030, DI\n\tVMOVUPS (DI), Y0", "straddles the end of buf"},
		{"MOVQ $0x4ff8, DI\n\tMOVQ AX, (DI)", "8 bytes before buf"},
		{"MOVL x+0(FP), AX", "4-byte read of the 8-byte argument x"},
		{"l: JMP l", "no RET"},
		{"VXORPS Y0, Y0, Y0", "dirty upper half"},
	} {
		if _, _, err := run(c.body + "\n\tRET\n"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.body, err, c.want)
		}
	}
}
