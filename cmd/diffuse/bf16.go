package main

import (
	"os"

	"github.com/diffuse-go/diffuse/tensor/gemm"
)

// configureBF16 applies the DIFFUSE_* variables (see envOptions) with the
// -bf16 flag, which wins over DIFFUSE_BF16 when given (flagSet). It
// returns a line describing the bf16 outcome, empty when bf16 was not
// asked for: native bf16 runs only where the CPU has AVX512_BF16 and
// otherwise has no effect, which the line says.
func configureBF16(flagOn, flagSet bool) (string, error) {
	return applyBF16(os.Getenv, flagOn, flagSet)
}

// applyBF16 is configureBF16 with the environment read through getenv.
func applyBF16(getenv func(string) string, flagOn, flagSet bool) (string, error) {
	o, err := envOptions(getenv, systemMemory())
	if err != nil {
		return "", err
	}
	setBF16Flag(&o, flagOn, flagSet)
	if err := o.Apply(); err != nil {
		return "", err
	}
	return bf16Note(o.BF16, gemm.CurrentBF16Mode()), nil
}

// bf16Note describes the bf16 mode got when mode was asked for.
func bf16Note(mode, got gemm.BF16Mode) string {
	switch {
	case mode == gemm.BF16Off:
		return ""
	case got != mode:
		return "bf16: requested, but this CPU has no AVX512_BF16: computing in float32 (no effect)"
	case got == gemm.BF16Native:
		return "bf16: on (AVX512_BF16 VDPBF16PS kernel, float32 accumulation)"
	case got == gemm.BF16Exact:
		return "bf16: exact (pure-Go model of the VDPBF16PS kernel; very slow, for measuring)"
	}
	return "bf16: round (operands rounded to bfloat16, float32 kernel; for measuring)"
}
