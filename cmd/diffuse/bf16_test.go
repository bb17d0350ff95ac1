package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/tensor/gemm"
)

// env returns a getenv reading the variables of m.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// TestConfigureBF16 checks DIFFUSE_BF16 and -bf16: the flag wins when
// given, native bf16 says it has no effect without AVX512_BF16, and a bad
// value is an error.
func TestConfigureBF16(t *testing.T) {
	resetOptions(t)
	f, err := parseGenFlags([]string{"-m", "m", "-bf16"}, &bytes.Buffer{})
	if err != nil || !f.bf16 || !f.set["bf16"] {
		t.Fatalf("-bf16: %v, flag %v, set %v", err, f != nil && f.bf16, f != nil && f.set["bf16"])
	}
	native := "no AVX512_BF16"
	if gemm.HasBF16() {
		native = "bf16: on"
	}
	for _, c := range []struct {
		env           string
		flagOn, given bool
		mode          gemm.BF16Mode
		note          string
	}{
		{"", false, false, gemm.BF16Off, ""},
		{"0", false, false, gemm.BF16Off, ""},
		{"1", false, false, gemm.BF16Native, native},
		{"", true, true, gemm.BF16Native, native},
		{"round", false, false, gemm.BF16Round, "round"},
		{"exact", false, false, gemm.BF16Exact, "exact"},
		{"round", false, true, gemm.BF16Off, ""}, // -bf16=false overrides the environment
	} {
		note, err := applyBF16(env(map[string]string{"DIFFUSE_BF16": c.env}), c.flagOn, c.given)
		want := c.mode
		if want == gemm.BF16Native && !gemm.HasBF16() {
			want = gemm.BF16Off
		}
		if err != nil || gemm.CurrentBF16Mode() != want || !strings.Contains(note, c.note) || (c.note == "") != (note == "") {
			t.Errorf("DIFFUSE_BF16=%q flag %v (given %v): mode %v, note %q, err %v; want %v and a note with %q",
				c.env, c.flagOn, c.given, gemm.CurrentBF16Mode(), note, err, want, c.note)
		}
	}
	if _, err := applyBF16(env(map[string]string{"DIFFUSE_BF16": "fast"}), false, false); err == nil || !strings.Contains(err.Error(), "DIFFUSE_BF16") {
		t.Errorf("DIFFUSE_BF16=fast: error %v", err)
	}
}
