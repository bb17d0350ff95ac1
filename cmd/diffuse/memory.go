package main

import (
	"bufio"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/diffuse-go/diffuse/tensor"
)

// configureMemory applies the DIFFUSE_* variables (see envOptions) and fits
// the process to the machine: Go's soft memory limit is set to three
// quarters of the machine's (or the container's) memory less the
// packed-weight cache, which lives outside the Go heap, so the garbage
// collector works harder before the kernel would kill the process (a 1024²
// SDXL decode otherwise peaks above 24 GiB with the default GOGC).
// GOMEMLIMIT, when set, wins.
func configureMemory() error {
	total := systemMemory()
	o, err := envOptions(os.Getenv, total)
	if err != nil {
		return err
	}
	if err := o.Apply(); err != nil {
		return err
	}
	if total <= 0 || os.Getenv("GOMEMLIMIT") != "" {
		return nil
	}
	budget := int64(tensor.DefaultPackCacheMB) << 20
	if o.PackCacheMB != nil {
		budget = int64(*o.PackCacheMB) << 20
	}
	if limit := total*3/4 - budget; limit > 1<<30 {
		debug.SetMemoryLimit(limit)
	}
	return nil
}

// systemMemory returns the memory available to the process: the cgroup
// limit when one is set, else MemTotal (Linux); 0 when unknown.
func systemMemory() int64 {
	var total int64
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) >= 2 && fields[0] == "MemTotal:" {
				if kb, err := strconv.ParseInt(fields[1], 10, 64); err == nil {
					total = kb << 10
				}
				break
			}
		}
		f.Close()
	}
	for _, p := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && v > 0 && (total == 0 || v < total) {
			total = v
		}
	}
	return total
}
