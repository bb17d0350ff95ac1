package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/diffuse-go/diffuse/scheduler"
)

// ErrUnsupported is returned (wrapped) for a checkpoint or request feature
// that is recognised but not implemented (a sampler a flow-matching model
// cannot use, ...).
var ErrUnsupported = errors.New("not supported")

// flowSamplers are the sampler names the flow-matching families (SD3,
// FLUX) take: all mean the Euler method on the flow, which is what their
// FlowMatchEulerDiscreteScheduler integrates (ComfyUI's and Forge's
// "euler" for these models).
var flowSamplers = map[string]bool{"euler": true, "FlowMatchEulerDiscreteScheduler": true}

// flowScheduler builds the flow-matching scheduler of a request.
func flowScheduler(cfg scheduler.Config) func(p *Params) (scheduler.Scheduler, error) {
	return func(p *Params) (scheduler.Scheduler, error) {
		if err := checkFlowSampler(p.Sampler); err != nil {
			return nil, err
		}
		return scheduler.NewFlowMatchEuler(cfg)
	}
}

// checkFlowSampler refuses a sampler other than flow-matching Euler.
func checkFlowSampler(name string) error {
	if flowSamplers[name] {
		return nil
	}
	if in, ok := scheduler.Lookup(name); ok && in.Name == "euler" {
		return nil
	}
	return fmt.Errorf("pipeline: sampler %q: %w for flow-matching models (they take \"euler\", the flow-matching Euler scheduler)", name, ErrUnsupported)
}

// checkFlowRequest refuses the request features the flow-matching
// pipelines do not have: guidance rescale, and clip skip where the model
// reads no CLIP hidden states (FLUX uses only the pooled output).
func checkFlowRequest(p *Params, clipSkip bool) error {
	if err := checkFlowSampler(p.Sampler); err != nil {
		return err
	}
	if p.GuidanceRescale > 0 {
		return fmt.Errorf("pipeline: guidance rescale: %w by the SD3 and FLUX pipelines", ErrUnsupported)
	}
	if !clipSkip && p.ClipSkip > 1 {
		return fmt.Errorf("pipeline: clip skip: %w by FLUX (it uses CLIP's pooled output only)", ErrUnsupported)
	}
	return nil
}

// schedulerConfig reads a folder's scheduler/scheduler_config.json, or
// returns def (single files carry none).
func schedulerConfig(src *Source, def string) (scheduler.Config, error) {
	b := []byte(def)
	if src.Dir {
		got, err := os.ReadFile(filepath.Join(src.Path, "scheduler", "scheduler_config.json"))
		switch {
		case err == nil:
			b = got
		case !errors.Is(err, os.ErrNotExist):
			return scheduler.Config{}, err
		}
	}
	c, err := scheduler.ParseConfig(b)
	if err != nil {
		return c, fmt.Errorf("scheduler config: %w", err)
	}
	return c, nil
}

// encoders are a flow model's text encoders: loaded by load, used for one
// request's prompts, then released (unless Options.KeepTextEncoders) so
// that the transformer has the memory while it samples.
type encoders struct {
	keep   bool
	loaded bool
	fs     openFiles
	load   func() (openFiles, error)
	clear  func() // drops the models' references
}

// ready loads the encoders when they are not loaded.
func (e *encoders) ready() error {
	if e.loaded {
		return nil
	}
	fs, err := e.load()
	if err != nil {
		e.clear()
		return err
	}
	e.fs, e.loaded = fs, true
	return nil
}

// done releases the encoders after encoding unless they are kept.
func (e *encoders) done() {
	if !e.keep {
		e.release()
	}
}

func (e *encoders) release() {
	if e.loaded {
		e.clear()
		e.fs.close()
		e.loaded = false
		// Converted weights (Options.DType) and widened vectors are heap
		// copies: hand them back now, before the transformer's activations
		// need the room.
		debug.FreeOSMemory()
	}
}

// flowMemory estimates a flow model's working memory for one image: the
// VAE decoder's activations and the transformer's attention over tokens
// (scores of one head at a time, float32) and its activations.
func flowMemory(w, h, vaeChannels, factor, tokens, width int) int64 {
	att := int64(tokens) * int64(tokens) * 4
	act := int64(tokens) * int64(width) * 4 * 8
	return activationBytes(w, h, 1, vaeChannels, factor) + att + act
}

// rows1 is a one-row prompt list (nil for an empty optional prompt).
func rows1(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}
