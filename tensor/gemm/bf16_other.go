//go:build !amd64

package gemm

// hasBF16 is a variable, as on amd64, for the tests.
var hasBF16 = false

// bf16AsmKernel does not exist here; SetBF16Mode never selects it.
var bf16AsmKernel microKernel

func packPairsAsm(dst []uint32, src []float32, w, kc int) int { return 0 }
