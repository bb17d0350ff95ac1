//go:build linux

package gemm

import (
	"runtime"
	"syscall"
	"unsafe"
)

// allocOffHeap maps n zeroed floats outside the Go heap, unmapped when owner
// is collected; nil if the mapping fails (the caller falls back to make).
// MAP_POPULATE has the kernel supply every page at once: faulting in
// gigabytes of cached panels one 4 KiB page at a time costs seconds.
func allocOffHeap(owner *Packed, n int) []float32 {
	if n == 0 {
		return nil
	}
	b, err := syscall.Mmap(-1, 0, n*4, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_POPULATE|syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil
	}
	runtime.AddCleanup(owner, func(b []byte) { _ = syscall.Munmap(b) }, b)
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), n)
}
