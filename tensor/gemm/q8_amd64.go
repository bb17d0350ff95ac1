package gemm

//go:noescape
func q8KernAVX2(nkb int, a *int32, sa *float32, w *int32, sw *float32, c *float32, ldc int)

// q8KernelAVX2 wraps the assembly kernel; the slice expressions are its
// bounds checks.
func q8KernelAVX2(nkb int, a []int32, sa []float32, w []int32, sw []float32, c []float32, ldc int) {
	if nkb <= 0 {
		return // the assembly loop runs at least once
	}
	_, _, _, _ = a[nkb*q8Pairs*q8MR-1], sa[nkb*q8MR-1], w[nkb*q8Pairs*q8NR-1], sw[nkb*q8NR-1]
	_ = c[(q8MR-1)*ldc+q8NR-1]
	q8KernAVX2(nkb, &a[0], &sa[0], &w[0], &sw[0], &c[0], ldc)
}

func q8Best() q8Kernel {
	if hasAVX2FMA {
		return q8KernelAVX2
	}
	return q8KernelGo
}

//go:noescape
func q8QuantRowAVX2(nkb int, x *float32, q *int32, s *float32)

// quantizeRowAVX2 wraps the assembly quantiser (same arguments as
// quantizeRowGo).
func quantizeRowAVX2(nkb int, x []float32, q []int32, s []float32) {
	if nkb <= 0 {
		return
	}
	_, _, _ = x[nkb*q8Block-1], q[(nkb*q8Pairs-1)*q8MR], s[(nkb-1)*q8MR]
	q8QuantRowAVX2(nkb, &x[0], &q[0], &s[0])
}

func quantizeRowBest() func(nkb int, x []float32, q []int32, s []float32) {
	if hasAVX2FMA {
		return quantizeRowAVX2
	}
	return quantizeRowGo
}
