package vec

import "testing"

// TestPureGoPaths runs the public functions with the assembly switched off,
// so the Go fallbacks used on other CPUs and architectures are covered too.
func TestPureGoPaths(t *testing.T) {
	if !useAVX2 {
		t.Skip("assembly not in use: the other tests already ran the Go paths")
	}
	useAVX2, useAVX512 = false, false
	defer func(v bool) { useAVX2, useAVX512 = true, v }(useAVX512)
	t.Run("exp", TestExpAccuracy)
	t.Run("exp-lengths", TestExpLengths)
	t.Run("sigmoid-silu", TestSigmoidSiLU)
	t.Run("softmax", TestSoftmaxRow)
	t.Run("max", TestMax)
	t.Run("erf", TestErf)
	t.Run("gelu", TestGELU)
	t.Run("gelu-mul", TestGELUMul)
	t.Run("gelu-tanh", TestGELUTanh)
	t.Run("reductions", TestReductions)
	t.Run("columns", TestColumnKernels)
	t.Run("norm-affine", TestNormAffine)
	t.Run("norm-affine-row", TestNormAffineRow)
}
