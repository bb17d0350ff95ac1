package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/diffuse-go/diffuse/quant"
)

// runConvert writes a safetensors checkpoint as GGUF or fp8 safetensors
// (package quant).
func runConvert(args []string) error {
	fs := flag.NewFlagSet("convert", flag.ContinueOnError)
	in := fs.String("i", "", "input .safetensors checkpoint (an SD3/FLUX transformer, or a whole original-layout file)")
	out := fs.String("o", "", "output: .gguf for the GGUF types, .safetensors for fp8")
	typ := fs.String("type", "q8_0", "output type: "+strings.Join(quant.Types(), ", ")+
		" (the K-quants q6_k, q5_k, q4_k take rows of whole 256-value blocks, the others of 32; weights whose rows are not stay F16)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *in == "" || *out == "" || fs.NArg() > 0 {
		return errors.New("convert: want -i IN.safetensors -o OUT.gguf|OUT.safetensors [--type TYPE]")
	}
	t, err := quant.ParseType(*typ)
	if err != nil {
		return err
	}
	t0 := time.Now()
	rep, err := quant.Convert(*in, *out, t)
	if err != nil {
		return err
	}
	printReport(os.Stdout, *out, t, rep, time.Since(t0))
	return nil
}

// printReport says what was written: tensors per stored type and the
// weights left unquantised.
func printReport(w io.Writer, out string, t quant.Type, rep quant.Report, took time.Duration) {
	types := make([]string, 0, len(rep.Counts))
	for k := range rep.Counts {
		types = append(types, k)
	}
	sort.Strings(types)
	parts := make([]string, len(types))
	for i, k := range types {
		parts[i] = fmt.Sprintf("%d %s", rep.Counts[k], k)
	}
	fmt.Fprintf(w, "wrote %s (%s, %.1f MiB of tensors: %s) in %.1fs\n", out, t.Name, float64(rep.Bytes)/(1<<20), strings.Join(parts, ", "), took.Seconds())
	if len(rep.Kept) > 0 {
		shown := rep.Kept[:min(len(rep.Kept), 5)]
		more := ""
		if len(rep.Kept) > len(shown) {
			more = fmt.Sprintf(" and %d more", len(rep.Kept)-len(shown))
		}
		fmt.Fprintf(w, "kept F16 (rows not whole %s blocks): %s%s\n", t.Name, strings.Join(shown, ", "), more)
	}
}
