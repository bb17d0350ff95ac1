package main

import (
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/tensor"
	"github.com/diffuse-go/diffuse/tensor/gemm"
)

// resetOptions puts back the default settings that applying options
// changes, at the end of test t.
func resetOptions(t *testing.T) {
	t.Cleanup(func() {
		if err := (pipeline.Options{}).Apply(); err != nil {
			t.Error(err)
		}
	})
}

// TestEnvOptions checks the mapping of each DIFFUSE_* variable onto
// pipeline.Options, the memory cap of the pack cache, and that a bad value
// is an error naming its variable.
func TestEnvOptions(t *testing.T) {
	const gib = int64(1) << 30
	for _, c := range []struct {
		env    map[string]string
		memory int64
		want   pipeline.Options
	}{
		{nil, 0, pipeline.Options{}},
		{nil, 8 * gib, pipeline.Options{PackCacheMB: pipeline.PackCache(1024)}},
		{nil, 64 * gib, pipeline.Options{PackCacheMB: pipeline.PackCache(tensor.DefaultPackCacheMB)}},
		{map[string]string{"DIFFUSE_PACK_CACHE_MB": "0"}, 8 * gib, pipeline.Options{PackCacheMB: pipeline.PackCache(0)}},
		{map[string]string{"DIFFUSE_PACK_CACHE_MB": "9000"}, 8 * gib, pipeline.Options{PackCacheMB: pipeline.PackCache(9000)}},
		{map[string]string{"DIFFUSE_WINOGRAD": "0"}, 0, pipeline.Options{Winograd: tensor.WinogradOff}},
		{map[string]string{"DIFFUSE_WINOGRAD": "all"}, 0, pipeline.Options{Winograd: tensor.WinogradAll}},
		{map[string]string{"DIFFUSE_BF16": "round"}, 0, pipeline.Options{BF16: gemm.BF16Round}},
		{map[string]string{"DIFFUSE_STREAM": "1"}, 0, pipeline.Options{Stream: gemm.StreamOn}},
		{map[string]string{"DIFFUSE_STREAM": "0"}, 0, pipeline.Options{Stream: gemm.StreamOff}},
		{map[string]string{"DIFFUSE_CONV_INPLACE": "1"}, 0, pipeline.Options{ConvInPlace: true}},
		{map[string]string{"DIFFUSE_INT8": "1"}, 0, pipeline.Options{Int8: true}},
		{map[string]string{"DIFFUSE_INT8": "0"}, 0, pipeline.Options{}},
	} {
		got, err := envOptions(env(c.env), c.memory)
		if err != nil || !sameOptions(got, c.want) {
			t.Errorf("%v, memory %d: %+v, %v; want %+v", c.env, c.memory, got, err, c.want)
		}
	}
	for _, v := range []string{"DIFFUSE_PACK_CACHE_MB", "DIFFUSE_WINOGRAD", "DIFFUSE_BF16", "DIFFUSE_STREAM", "DIFFUSE_CONV_INPLACE", "DIFFUSE_INT8"} {
		if _, err := envOptions(env(map[string]string{v: "-x"}), 0); err == nil || !strings.Contains(err.Error(), v) {
			t.Errorf("%s=-x: error %v, want one naming the variable", v, err)
		}
	}
}

func sameOptions(a, b pipeline.Options) bool {
	if (a.PackCacheMB == nil) != (b.PackCacheMB == nil) || a.PackCacheMB != nil && *a.PackCacheMB != *b.PackCacheMB {
		return false
	}
	a.PackCacheMB, b.PackCacheMB = nil, nil
	return a == b
}

// TestTrainOptions: training turns the packed-weight cache off unless
// DIFFUSE_PACK_CACHE_MB sets it, and keeps the other variables.
func TestTrainOptions(t *testing.T) {
	const gib = int64(1) << 30
	o, err := trainOptions(env(map[string]string{"DIFFUSE_WINOGRAD": "0"}), 16*gib)
	if err != nil || o.PackCacheMB == nil || *o.PackCacheMB != 0 || o.Winograd != tensor.WinogradOff {
		t.Errorf("no cache variable: %+v, %v; want the cache off and Winograd off", o, err)
	}
	o, err = trainOptions(env(map[string]string{"DIFFUSE_PACK_CACHE_MB": "512"}), 16*gib)
	if err != nil || o.PackCacheMB == nil || *o.PackCacheMB != 512 {
		t.Errorf("DIFFUSE_PACK_CACHE_MB=512: %+v, %v", o, err)
	}
	if _, err := trainOptions(env(map[string]string{"DIFFUSE_PACK_CACHE_MB": "x"}), 16*gib); err == nil {
		t.Error("a bad DIFFUSE_PACK_CACHE_MB accepted")
	}
}
