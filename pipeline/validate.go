package pipeline

import (
	"errors"
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
)

// Limits on one request. They keep a typo from allocating the machine
// away; real use stays far below them.
const (
	MaxSide     = 16384 // pixels per side
	MaxSteps    = 10000
	MaxBatch    = 256 // prompts, or images per prompt
	MaxGuidance = 1000
)

// checkCommon validates what every family's request has.
func checkCommon(s scheduler.Scheduler, steps int, guidance, rescale float64) error {
	if s == nil {
		return errors.New("pipeline: no scheduler")
	}
	if steps <= 0 || steps > MaxSteps {
		return fmt.Errorf("pipeline: steps must be in [1, %d], got %d", MaxSteps, steps)
	}
	if math.IsNaN(guidance) || math.IsInf(guidance, 0) || guidance < 0 || guidance > MaxGuidance {
		return fmt.Errorf("pipeline: guidance scale %v must be a number in [0, %d]", guidance, MaxGuidance)
	}
	if math.IsNaN(rescale) || rescale < 0 || rescale > 1 {
		return fmt.Errorf("pipeline: guidance rescale %v must be in [0, 1]", rescale)
	}
	return nil
}

// checkSize validates an output size: positive multiples of the model's
// granularity (the VAE's factor, times the patch size for transformers),
// at most MaxSide.
func checkSize(w, h, multiple int) error {
	if w <= 0 || h <= 0 || w%multiple != 0 || h%multiple != 0 {
		return fmt.Errorf("pipeline: size %dx%d must be positive multiples of %d", w, h, multiple)
	}
	if w > MaxSide || h > MaxSide {
		return fmt.Errorf("pipeline: size %dx%d exceeds %d pixels a side", w, h, MaxSide)
	}
	return nil
}

// checkFraction validates a fraction in (0, 1]; with open, 0 is refused
// too (a strength of 0 would run no step).
func checkFraction(name string, v float64, open bool) error {
	if math.IsNaN(v) || v < 0 || v > 1 || (open && v == 0) {
		return fmt.Errorf("pipeline: %s %v must be in (0, 1]", name, v)
	}
	return nil
}

// finiteData refuses a tensor holding NaN or infinite values.
func finiteData(name string, t *tensor.Tensor) error {
	for _, v := range t.Data() {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("pipeline: %s holds NaN or infinite values", name)
		}
	}
	return nil
}

// ErrTooLarge is returned (wrapped, with the estimate) when a request
// would need more memory than Options.MemoryLimit allows.
var ErrTooLarge = errors.New("request needs more memory than allowed")

// checkMemory refuses a request whose estimated working memory exceeds
// limit bytes (0: no limit).
func checkMemory(estimate, limit int64) error {
	if limit > 0 && estimate > limit {
		return fmt.Errorf("pipeline: %w: about %.1f GiB for its activations, limit %.1f GiB", ErrTooLarge,
			float64(estimate)/(1<<30), float64(limit)/(1<<30))
	}
	return nil
}

// activationBytes estimates the peak working memory of a latent-diffusion
// generation: the VAE decoder's full-resolution stage (about four float32
// buffers of its widest channel count per pixel, per image) or the
// denoiser's attention at the latent size, whichever is larger.
func activationBytes(w, h, batch, vaeChannels, factor int) int64 {
	px := int64(w) * int64(h)
	vae := px * int64(vaeChannels) * 4 * 4
	lat := px / int64(factor*factor)
	// Attention scores are computed in blocks of 128 queries per worker;
	// the rest of the step holds a few feature maps of the latent size.
	unet := lat * 320 * 4 * 8 * 2
	return int64(batch) * max(vae, unet)
}
