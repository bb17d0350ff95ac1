package gemm

import "testing"

// TestStreamMode checks ParseStreamMode's spellings and that the mode set
// decides streamStores.
func TestStreamMode(t *testing.T) {
	defer SetStreamMode(CurrentStreamMode())
	for s, want := range map[string]StreamMode{"": StreamAuto, "auto": StreamAuto, "1": StreamOn, "on": StreamOn, "0": StreamOff, "off": StreamOff} {
		if got, err := ParseStreamMode(s); got != want || err != nil {
			t.Errorf("ParseStreamMode(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	if _, err := ParseStreamMode("2"); err == nil {
		t.Error("ParseStreamMode(\"2\"): no error")
	}
	for m, want := range map[StreamMode]bool{StreamAuto: isIntel, StreamOn: true, StreamOff: false} {
		SetStreamMode(m)
		if got := streamStores(); got != want {
			t.Errorf("%v: streamStores %v, want %v", m, got, want)
		}
	}
}

// TestSetPeakGFLOPS checks that a pinned peak is reported and that
// unpinning returns to the measured one.
func TestSetPeakGFLOPS(t *testing.T) {
	defer SetPeakGFLOPS(SetPeakGFLOPS(123.5))
	if got := PeakGFLOPS(); got != 123.5 {
		t.Errorf("pinned peak %v, want 123.5", got)
	}
	SetPeakGFLOPS(0)
	if got := PeakGFLOPS(); got != peakOnce() {
		t.Errorf("unpinned peak %v, want the measured %v", got, peakOnce())
	}
}
