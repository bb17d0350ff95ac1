package main

import (
	"fmt"
	"os"

	"github.com/diffuse-go/diffuse/tensor/gemm"
)

// configureBF16 sets gemm's bfloat16 compute mode from DIFFUSE_BF16 (see
// gemm.ParseBF16Mode: 1 or native turns it on; exact and round are the
// software modes for measuring its error) and the -bf16 flag, which wins
// when given (flagSet). It returns a line describing the outcome, empty
// when bf16 was not asked for: native bf16 runs only where the CPU has
// AVX512_BF16 and otherwise has no effect, which the line says.
func configureBF16(flagOn, flagSet bool) (string, error) {
	mode, err := gemm.ParseBF16Mode(os.Getenv("DIFFUSE_BF16"))
	if err != nil {
		return "", fmt.Errorf("DIFFUSE_BF16: %w", err)
	}
	if flagSet {
		mode = gemm.BF16Off
		if flagOn {
			mode = gemm.BF16Native
		}
	}
	got := gemm.SetBF16Mode(mode)
	switch {
	case mode == gemm.BF16Off:
		return "", nil
	case got != mode:
		return "bf16: requested, but this CPU has no AVX512_BF16: computing in float32 (no effect)", nil
	case got == gemm.BF16Native:
		return "bf16: on (AVX512_BF16 VDPBF16PS kernel, float32 accumulation)", nil
	case got == gemm.BF16Exact:
		return "bf16: exact (pure-Go model of the VDPBF16PS kernel; very slow, for measuring)", nil
	}
	return "bf16: round (operands rounded to bfloat16, float32 kernel; for measuring)", nil
}
