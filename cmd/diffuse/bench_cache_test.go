package main

import (
	"context"
	"testing"
	"time"

	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/tensor"
	"github.com/diffuse-go/diffuse/tensor/gemm"
)

// TestCompareCacheOrder checks that compareCache alternates uncached and
// cached generations ABBA… and hands each the cache it asked for.
func TestCompareCacheOrder(t *testing.T) {
	var got []string
	c := pipeline.StepCache{Mode: pipeline.CacheDeep, Interval: 2}
	gen := func(sc pipeline.StepCache, progress func(int, int, time.Duration)) (*tensor.Tensor, pipeline.CacheStats, error) {
		progress(1, 1, time.Millisecond)
		if sc.Mode == "" {
			got = append(got, "off")
			return tensor.Full(0.5, 1, 2, 2, 3), pipeline.CacheStats{Full: 4}, nil
		}
		if sc != c {
			t.Errorf("cached run got %+v, want %+v", sc, c)
		}
		got = append(got, "on")
		return tensor.Full(0.25, 1, 2, 2, 3), pipeline.CacheStats{Full: 2, Cached: 2}, nil
	}
	if err := compareCache("test", 3, c, gen); err != nil {
		t.Fatal(err)
	}
	want := []string{"off", "on", "on", "off", "off", "on"}
	if len(got) != len(want) {
		t.Fatalf("runs %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("runs %v, want %v", got, want)
		}
	}
}

// TestMedianRun checks that each time is the median of its own field.
func TestMedianRun(t *testing.T) {
	rs := []cacheRun{
		{total: 3, loop: 30, cpu: 100},
		{total: 1, loop: 20, cpu: 300},
		{total: 2, loop: 10, cpu: 200},
	}
	m := medianRun(rs)
	if m.total != 2 || m.loop != 20 || m.cpu != 200 {
		t.Errorf("median run %+v, want total 2 loop 20 cpu 200", m)
	}
}

func TestMaxAbsDiff(t *testing.T) {
	if d := maxAbsDiff([]float32{0, 1, 0.5}, []float32{0.25, 0.5, 0.5}); d != 0.5 {
		t.Errorf("maxAbsDiff = %g, want 0.5", d)
	}
}

// TestBenchBF16Tiny runs `bench -only bf16` on the tiny golden models with
// the emulated mode (any CPU) and checks that it leaves that mode set.
func TestBenchBF16Tiny(t *testing.T) {
	model, _, _ := tinyFolder(t)
	t.Setenv("DIFFUSE_BF16", "round")
	defer gemm.SetBF16Mode(gemm.BF16Off)
	args := []string{"-m", model, "-only", "bf16", "-size", "64", "-steps", "2", "-bf16-gen-steps", "2", "-dtype", "f32"}
	if err := runBench(context.Background(), args); err != nil {
		t.Fatal(err)
	}
	if m := gemm.CurrentBF16Mode(); m != gemm.BF16Round {
		t.Errorf("mode after the bench %v, want round", m)
	}
}

// TestBenchCacheTiny runs `bench -only cache` with repeats on the tiny
// golden models.
func TestBenchCacheTiny(t *testing.T) {
	model, _, _ := tinyFolder(t)
	args := []string{"-m", model, "-only", "cache", "-size", "64", "-cache-steps", "4", "-cache-repeat", "2", "-cache-forwards", "1", "-dtype", "f32"}
	if err := runBench(context.Background(), args); err != nil {
		t.Fatal(err)
	}
}
