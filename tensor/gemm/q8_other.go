//go:build !amd64

package gemm

func q8Best() q8Kernel { return q8KernelGo }
