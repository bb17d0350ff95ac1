package main

import (
	"fmt"
	"strconv"

	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/tensor"
	"github.com/diffuse-go/diffuse/tensor/gemm"
)

// envOptions maps the DIFFUSE_* variables, read through getenv, onto
// pipeline.Options: DIFFUSE_PACK_CACHE_MB (MiB, 0 off), DIFFUSE_WINOGRAD
// (auto, 0/off, all), DIFFUSE_BF16 (0, 1/native, exact, round),
// DIFFUSE_STREAM (auto, 0, 1) and DIFFUSE_CONV_INPLACE (0, 1). Without
// DIFFUSE_PACK_CACHE_MB the cache is capped at an eighth of memory (bytes,
// 0 when unknown), so that small machines keep room for activations. A
// value that does not parse is an error naming its variable.
func envOptions(getenv func(string) string, memory int64) (pipeline.Options, error) {
	var o pipeline.Options
	var err error
	if s := getenv("DIFFUSE_PACK_CACHE_MB"); s != "" {
		mb, perr := strconv.Atoi(s)
		if perr != nil || mb < 0 {
			return o, fmt.Errorf("DIFFUSE_PACK_CACHE_MB=%q: want a number of MiB, 0 for off", s)
		}
		o.PackCacheMB = pipeline.PackCache(mb)
	} else if memory > 0 {
		o.PackCacheMB = pipeline.PackCache(int(min(tensor.DefaultPackCacheMB, memory/8>>20)))
	}
	if o.Winograd, err = tensor.ParseWinogradMode(getenv("DIFFUSE_WINOGRAD")); err != nil {
		return o, fmt.Errorf("DIFFUSE_WINOGRAD: %w", err)
	}
	if o.BF16, err = gemm.ParseBF16Mode(getenv("DIFFUSE_BF16")); err != nil {
		return o, fmt.Errorf("DIFFUSE_BF16: %w", err)
	}
	if o.Stream, err = gemm.ParseStreamMode(getenv("DIFFUSE_STREAM")); err != nil {
		return o, fmt.Errorf("DIFFUSE_STREAM: %w", err)
	}
	switch s := getenv("DIFFUSE_INT8"); s {
	case "", "0":
	case "1":
		o.Int8 = true
	default:
		return o, fmt.Errorf("DIFFUSE_INT8=%q: want 0 or 1", s)
	}
	switch s := getenv("DIFFUSE_CONV_INPLACE"); s {
	case "", "0":
	case "1":
		o.ConvInPlace = true
	default:
		return o, fmt.Errorf("DIFFUSE_CONV_INPLACE=%q: want 0 or 1", s)
	}
	return o, nil
}

// setBF16Flag maps the -bf16 flag onto o: when given (flagSet) it wins over
// DIFFUSE_BF16, turning native bf16 on or every bf16 mode off.
func setBF16Flag(o *pipeline.Options, flagOn, flagSet bool) {
	if flagSet {
		o.BF16 = gemm.BF16Off
		if flagOn {
			o.BF16 = gemm.BF16Native
		}
	}
}

// setInt8Flag maps the -int8 flag onto o: when given (flagSet) it wins over
// DIFFUSE_INT8.
func setInt8Flag(o *pipeline.Options, flagOn, flagSet bool) {
	if flagSet {
		o.Int8 = flagOn
	}
}

// trainOptions are envOptions for training: the packed-weight cache is off
// unless DIFFUSE_PACK_CACHE_MB sets it. A training step packs its operands
// afresh anyway, and with the cache `bench --train lora` at 512² (gradient
// checkpointing on, 2-core AMD EPYC, two alternating rounds) ran no faster
// (28.9 vs 33.4 s and 35.3 vs 36.7 s per step without and with it) while
// its peak RSS rose from 5.4–5.5 to 8.0–8.3 GiB.
func trainOptions(getenv func(string) string, memory int64) (pipeline.Options, error) {
	o, err := envOptions(getenv, memory)
	if err == nil && getenv("DIFFUSE_PACK_CACHE_MB") == "" {
		o.PackCacheMB = pipeline.PackCache(0)
	}
	return o, err
}
