package pipeline

import (
	"errors"
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/nn"
)

// The step cache modes (StepCache.Mode, Params.CacheMode).
const (
	// CacheDeep is DeepCache for UNets: a full UNet step every Interval
	// steps, and in between only the shallow layers above skip Branch on
	// the full step's deep features.
	CacheDeep = "deepcache"
	// CacheFirstBlock is the first-block residual cache for diffusion
	// transformers (FBCache, as cache-dit and ParaAttention have it): the
	// blocks after the first are skipped while the first block's residual
	// changes by less than Threshold.
	CacheFirstBlock = "fbcache"
)

// Defaults of the step cache settings.
const (
	// DefaultCacheInterval is DeepCache's usual cache_interval.
	DefaultCacheInterval = 3
	// DefaultCacheThreshold is the relative L1 change of the first block's
	// residual under which FBCache skips the other blocks (ParaAttention
	// suggests 0.08 to 0.12 for FLUX).
	DefaultCacheThreshold = 0.1
	// maxCacheThreshold bounds the threshold: a relative change of 1 is
	// the residual's own size, beyond which every step would be skipped.
	maxCacheThreshold = 1
)

// ErrCacheMode is what every refusal of a step cache wraps (errors.Is): a
// mode the model cannot use, an unknown mode, settings out of range, or a
// combination the cache cannot serve (DeepCache with adapters).
var ErrCacheMode = errors.New("step cache refused")

// StepCache asks for training-free step caching: faster generation for a
// small change of the image. The zero value is off, and the result is then
// exactly the uncached one.
type StepCache struct {
	Mode string // "" (off), CacheDeep or CacheFirstBlock
	// Interval is DeepCache's full-step interval: steps 0, Interval,
	// 2·Interval, ... run the whole UNet (0: DefaultCacheInterval; 1: all).
	Interval int
	// Branch is DeepCache's cache_branch_id: the skip connection the
	// cached steps keep, from the shallowest (0, the fastest) up.
	Branch int
	// Threshold is FBCache's relative L1 change of the first block's
	// residual below which the other blocks are skipped
	// (0: DefaultCacheThreshold).
	Threshold float64
}

// CacheStats counts a generation's network forwards by kind.
type CacheStats struct {
	Full   int // forwards that ran the whole network
	Cached int // forwards that took the deep features or blocks from the cache
}

// check validates the settings for a model that takes the modes in takes.
func (c StepCache) check(what string, takes ...string) error {
	if c.Mode == "" {
		return nil
	}
	known := c.Mode == CacheDeep || c.Mode == CacheFirstBlock
	if !known {
		return fmt.Errorf("pipeline: %w: unknown cache mode %q (want %q or %q)", ErrCacheMode, c.Mode, CacheDeep, CacheFirstBlock)
	}
	ok := false
	for _, t := range takes {
		ok = ok || t == c.Mode
	}
	if !ok {
		can := "no step cache"
		if len(takes) > 0 {
			can = fmt.Sprintf("only %q", takes[0])
		}
		return fmt.Errorf("pipeline: %w: %s cannot use cache mode %q (it takes %s)", ErrCacheMode, what, c.Mode, can)
	}
	if c.Interval < 0 || c.Interval > MaxSteps {
		return fmt.Errorf("pipeline: %w: cache interval %d outside [0, %d]", ErrCacheMode, c.Interval, MaxSteps)
	}
	if c.Branch < 0 {
		return fmt.Errorf("pipeline: %w: cache branch %d is negative", ErrCacheMode, c.Branch)
	}
	if math.IsNaN(c.Threshold) || c.Threshold < 0 || c.Threshold > maxCacheThreshold {
		return fmt.Errorf("pipeline: %w: cache threshold %v outside [0, %v]", ErrCacheMode, c.Threshold, maxCacheThreshold)
	}
	return nil
}

// interval is the DeepCache interval with its default.
func (c StepCache) interval() int {
	if c.Interval == 0 {
		return DefaultCacheInterval
	}
	return c.Interval
}

// unetCache is the UNet's DeepCache state for one generation (nil: off).
func (c StepCache) unetCache(u *unet.Model) (*unet.Cache, error) {
	if c.Mode != CacheDeep {
		return nil, nil
	}
	if n := u.Skips(); c.Branch >= n {
		return nil, fmt.Errorf("pipeline: %w: cache branch %d, this UNet has skips 0 to %d", ErrCacheMode, c.Branch, n-1)
	}
	return &unet.Cache{Branch: c.Branch}, nil
}

// full reports whether DeepCache runs step i of the window in full.
func (c StepCache) full(i int) bool { return i%c.interval() == 0 }

// blockCache is a transformer's first-block cache for one generation
// (nil: off).
func (c StepCache) blockCache() *nn.BlockCache {
	if c.Mode != CacheFirstBlock {
		return nil
	}
	t := c.Threshold
	if t == 0 {
		t = DefaultCacheThreshold
	}
	return &nn.BlockCache{Threshold: t}
}

// unetStats and blockStats read a cache's counts (zero when off).
func unetStats(c *unet.Cache) CacheStats {
	if c == nil {
		return CacheStats{}
	}
	return CacheStats{Full: c.Full, Cached: c.Partial}
}

func blockStats(c *nn.BlockCache) CacheStats {
	if c == nil {
		return CacheStats{}
	}
	return CacheStats{Full: c.Full, Cached: c.Reused}
}

// stepCache is the request's step cache settings.
func (p *Params) stepCache() StepCache {
	return StepCache{Mode: p.CacheMode, Interval: p.CacheInterval, Branch: p.CacheBranch, Threshold: p.CacheThreshold}
}

// cacheParams are the PNG parameters of a step cache (none when off).
func (c StepCache) params() []imageio.KV {
	switch c.Mode {
	case CacheDeep:
		return []imageio.KV{{Key: "Cache", Value: fmt.Sprintf("deepcache interval %d branch %d", c.interval(), c.Branch)}}
	case CacheFirstBlock:
		return []imageio.KV{{Key: "Cache", Value: "fbcache threshold " + formatNum(c.blockCache().Threshold)}}
	}
	return nil
}

// checkCache validates the request's step cache against the model: the
// modes it takes are in its Accepts.
func (p *Params) checkCache(in Info) error {
	var takes []string
	for _, m := range []string{CacheDeep, CacheFirstBlock} {
		if in.accepts(m) {
			takes = append(takes, m)
		}
	}
	if err := p.stepCache().check(fmt.Sprintf("%s (%s)", in.Name, in.Kind), takes...); err != nil {
		return err
	}
	if p.CacheMode == CacheDeep && (len(p.ControlNets) > 0 || len(p.Adapters) > 0) {
		return fmt.Errorf("pipeline: %w: deepcache cannot serve ControlNets or T2I-Adapters (their residuals act on the features it reuses)", ErrCacheMode)
	}
	return nil
}
