package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/diffuse-go/diffuse/pipeline"
)

// isFlowBench reports whether -m is an SD3 or FLUX checkpoint, which
// bench times through whole generations (benchFlow).
func isFlowBench(path string) bool {
	fam, err := pipeline.Detect(path)
	return err == nil && (fam == "sd3" || fam == "flux")
}

// componentHint tells a command-line user how to give a missing
// component (the library's error names Options.Components).
func componentHint(err error) string {
	if errors.Is(err, pipeline.ErrMissingComponent) {
		return "; on the command line: --component NAME=PATH (a file, a component folder or a diffusers folder)"
	}
	return ""
}

// componentOptions sets the --component NAME=PATH flags on opt.
func componentOptions(opt *pipeline.Options, comps []string) error {
	for _, c := range comps {
		name, path, ok := strings.Cut(c, "=")
		if !ok {
			return fmt.Errorf("--component %q: want NAME=PATH", c)
		}
		if err := opt.Components.Set(name, path); err != nil {
			return fmt.Errorf("--component: %w", err)
		}
	}
	return nil
}

// benchFlow times whole generations of an SD3 or FLUX checkpoint (any
// file pipeline.Open takes: folder, single file, GGUF, fp8; weights as
// stored unless opt.DType) at each size, steps+1 steps each: the first
// transformer step apart (it packs what it caches), the median of the
// others (seconds per step, with CFG where the model uses it), and the
// whole generation (text encoders loaded and run, VAE decode). runBench
// prints the peak RSS after.
func benchFlow(ctx context.Context, path string, opt pipeline.Options, sizes string, steps int) error {
	t0 := time.Now()
	m, err := pipeline.Open(ctx, path, opt)
	if err != nil {
		return fmt.Errorf("bench: -m: %w%s", err, componentHint(err))
	}
	defer m.Close()
	in := m.Info()
	fmt.Printf("diffuse bench: %s (%s), loaded in %.1fs, %d threads, %s\n", path, in.Kind, time.Since(t0).Seconds(), runtime.GOMAXPROCS(0), runtime.GOARCH)
	if sizes == "" {
		sizes = strconv.Itoa(in.Width)
	}
	for _, s := range strings.Split(sizes, ",") {
		px, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || px%64 != 0 || px <= 0 {
			return fmt.Errorf("bench: size %q must be a positive multiple of 64", s)
		}
		var at []time.Duration
		p := pipeline.Params{Prompt: "a photograph of a red fox in the snow", Width: px, Height: px, Steps: steps + 1, Seed: 1,
			Guidance: in.Guidance, Sampler: in.Sampler, OnProgress: func(e pipeline.Event) { at = append(at, e.Elapsed) }}
		t := time.Now()
		if _, err := m.Generate(ctx, p); err != nil {
			return err
		}
		total := time.Since(t)
		if len(at) != steps+1 {
			return fmt.Errorf("bench: %d progress events for %d steps", len(at), steps+1)
		}
		d := make([]time.Duration, len(at))
		for i := range at {
			d[i] = at[i]
			if i > 0 {
				d[i] -= at[i-1]
			}
		}
		what := fmt.Sprintf("%s %dx%d", in.Family, px, px)
		report(what+" first step", d[0])
		if steps > 0 {
			report(fmt.Sprintf("%s step (median of %d)", what, steps), median(d[1:]))
		}
		report(fmt.Sprintf("%s generation (text, %d steps, VAE)", what, steps+1), total)
	}
	return nil
}
