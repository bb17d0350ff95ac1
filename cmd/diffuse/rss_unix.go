//go:build unix

package main

import (
	"runtime"
	"syscall"
	"time"
)

// peakRSS returns the process's peak resident set size in bytes (0 if
// unknown).
func peakRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	if runtime.GOOS == "darwin" || runtime.GOOS == "ios" {
		return int64(ru.Maxrss) // bytes there
	}
	return int64(ru.Maxrss) * 1024 // KiB on Linux and the BSDs (int32 on 32-bit Linux)
}

// cpuTime returns the process's user plus system CPU time so far (0 if
// unknown). On a shared machine the CPU time a run takes moves less with
// the other tenants' load than its wall-clock time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
