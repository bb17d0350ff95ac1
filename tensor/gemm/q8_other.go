//go:build !amd64

package gemm

func q8Best() q8Kernel { return q8KernelGo }

func quantizeRowBest() func(nkb int, x []float32, q []int32, s []float32) { return quantizeRowGo }
