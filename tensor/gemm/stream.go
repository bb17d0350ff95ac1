package gemm

import (
	"fmt"
	"sync/atomic"
)

// StreamMode selects whether Gemm writes huge outputs with non-temporal
// (streaming) stores, which skip reading each cache line of C before it is
// overwritten (see useStream).
type StreamMode int32

const (
	// StreamAuto streams on Intel CPUs only (the default): on an Intel Xeon
	// (AVX-512) they made (4096, 4096, 40) 1.3–1.5× faster at 1 and 2
	// threads; on an AMD Zen 3 (AVX2) 0.9× (BenchmarkGemmStream).
	StreamAuto StreamMode = iota
	// StreamOn streams on every CPU whose kernel has streaming stores.
	StreamOn
	// StreamOff never streams.
	StreamOff
)

func (m StreamMode) String() string {
	switch m {
	case StreamAuto:
		return "auto"
	case StreamOn:
		return "on"
	case StreamOff:
		return "off"
	}
	return fmt.Sprintf("StreamMode(%d)", int32(m))
}

// ParseStreamMode reads a mode as the CLI's DIFFUSE_STREAM writes it: ""
// or "auto" (StreamAuto), "1" or "on" (StreamOn), "0" or "off" (StreamOff).
func ParseStreamMode(s string) (StreamMode, error) {
	switch s {
	case "", "auto":
		return StreamAuto, nil
	case "1", "on", "true":
		return StreamOn, nil
	case "0", "off", "false":
		return StreamOff, nil
	}
	return StreamAuto, fmt.Errorf("stream mode %q: want auto, 1, on, 0 or off", s)
}

var streamMode atomic.Int32 // a StreamMode

// SetStreamMode sets when later Gemm calls use streaming stores and
// returns the previous mode; a value other than the three modes acts as
// StreamAuto. Calls already running finish as they started.
func SetStreamMode(m StreamMode) StreamMode {
	return StreamMode(streamMode.Swap(int32(m)))
}

// CurrentStreamMode returns the streaming-store mode in effect.
func CurrentStreamMode() StreamMode { return StreamMode(streamMode.Load()) }

// streamStores reports whether the current mode streams on this CPU.
func streamStores() bool {
	switch CurrentStreamMode() {
	case StreamOn:
		return true
	case StreamOff:
		return false
	}
	return isIntel
}
