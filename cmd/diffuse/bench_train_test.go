package main

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diffuse-go/diffuse/model/unet"
)

// TestUNetForwardFLOPs: SD 1.5's UNet at 512² (a 64×64 latent, 77 text
// tokens) counts 803 GFLOP a forward, the ~0.8 TFLOP usually quoted; the
// decoder (skip concatenations, three resnets a block) outweighs the
// encoder; the count grows faster than the pixels (self-attention).
func TestUNetForwardFLOPs(t *testing.T) {
	c := unet.SD15(4)
	enc, dec := unetForwardFLOPs(c, 64, 64, 77)
	if got := (enc + dec) / 1e9; math.Abs(got-803.2) > 1 {
		t.Errorf("SD 1.5 forward at 512px: %.1f GFLOP, want 803.2", got)
	}
	if dec <= enc {
		t.Errorf("decoder %.0f GFLOP <= encoder %.0f", dec/1e9, enc/1e9)
	}
	e2, d2 := unetForwardFLOPs(c, 128, 128, 77)
	if r := (e2 + d2) / (enc + dec); r <= 4 {
		t.Errorf("4× the pixels gives %.2f× the work, want more than 4×", r)
	}
	if l, cn := trainStepFLOPs(c, "lora", 512), trainStepFLOPs(c, "controlnet", 512); l != 2*(enc+dec) || cn <= l+3*enc {
		t.Errorf("step work: lora %.0f, controlnet %.0f GFLOP", l/1e9, cn/1e9)
	}
}

func TestBenchTrainFlagErrors(t *testing.T) {
	for _, c := range []struct {
		method, size, ckpt, dtype, want string
	}{
		{"dreambooth", "", "both", "f32", `--train "dreambooth"`},
		{"lora", "512,768", "both", "f32", "one --size"},
		{"lora", "500", "both", "f32", "multiple of 64"},
		{"lora", "", "sometimes", "f32", "--gradient-checkpointing"},
		{"lora", "", "both", "f8", "f8"},
	} {
		err := benchTrainFlags(context.Background(), c.method, "", c.size, c.ckpt, c.dtype, "", 1)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want an error containing %q", c, err, c.want)
		}
	}
}

// TestCPURateLine: the work per CPU-second and its share of one core's
// peak, and no rate when the CPU time is unknown.
func TestCPURateLine(t *testing.T) {
	got := cpuRateLine(300e9, 4*time.Second, 100)
	for _, want := range []string{"CPU 4.00 s/step", "75.0 GFLOP per CPU-second", "75.0% of one core's peak"} {
		if !strings.Contains(got, want) {
			t.Errorf("cpuRateLine = %q, want it to contain %q", got, want)
		}
	}
	if got := cpuRateLine(300e9, 4*time.Second, 0); strings.Contains(got, "peak") {
		t.Errorf("no peak known: %q mentions a peak", got)
	}
	if got := cpuRateLine(300e9, 0, 100); strings.Contains(got, "GFLOP") {
		t.Errorf("unknown CPU time: %q reports a rate", got)
	}
}

// TestCPUTimeAdvances: busy work shows up in the process's CPU time
// (where the system reports it).
func TestCPUTimeAdvances(t *testing.T) {
	c0 := cpuTime()
	if c0 == 0 {
		t.Skip("CPU time not reported on this system")
	}
	x := 1.0
	for t0 := time.Now(); time.Since(t0) < 200*time.Millisecond; {
		x = math.Sqrt(x + 1)
	}
	if c1 := cpuTime(); c1 <= c0 {
		t.Errorf("CPU time %v -> %v after busy work (x=%v)", c0, c1, x)
	}
}

// TestWithCPUProfile: no profile without a path, the run's error comes
// back, a profile file is written, and an unwritable path fails before the
// run.
func TestWithCPUProfile(t *testing.T) {
	ran := 0
	boom := errors.New("boom")
	if err := withCPUProfile("", func() error { ran++; return boom }); err != boom || ran != 1 {
		t.Fatalf("no path: err %v, ran %d", err, ran)
	}
	path := filepath.Join(t.TempDir(), "cpu.prof")
	if err := withCPUProfile(path, func() error { ran++; return nil }); err != nil || ran != 2 {
		t.Fatalf("profile: err %v, ran %d", err, ran)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("profile file: %v", err)
	}
	if err := withCPUProfile(filepath.Join(t.TempDir(), "missing", "cpu.prof"), func() error { ran++; return nil }); err == nil || ran != 2 {
		t.Fatalf("unwritable path: err %v, ran %d", err, ran)
	}
}

// TestBenchInt8NeedsQ8Model: -int8 without an SD3/FLUX file is refused,
// not ignored.
func TestBenchInt8NeedsQ8Model(t *testing.T) {
	err := runBench(context.Background(), []string{"-int8", "-only", "unet"})
	if err == nil || !strings.Contains(err.Error(), "-int8 applies to Q8_0 weights") {
		t.Errorf("bench -int8 without -m: %v", err)
	}
}
