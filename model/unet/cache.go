package unet

import (
	"errors"
	"fmt"

	"github.com/diffuse-go/diffuse/tensor"
)

// Cache is DeepCache's state for one generation (Ma et al., "DeepCache:
// Accelerating Diffusion Models for Free"): the deep features of the last
// full UNet step, taken up again on the cached steps after it, which run
// only the shallow layers above one skip connection. Adjacent steps'
// deep features barely change, so a cached step costs a fraction of a
// full one for a small change of the result. Which steps are full is the
// caller's policy (ForwardCached's full argument); a Cache serves one
// generation, its inputs keeping one shape.
type Cache struct {
	// Branch is the skip connection the cached steps keep, counted from
	// the shallowest (0: conv_in's output, the cheapest cached steps): a
	// cached step runs the down path until it has made that skip and the
	// up path from the resnet that reads it, on the feature the last full
	// step gave that resnet. For UNets with two resnets per down block
	// (SD 1.x, 2.x, XL) it is DeepCache's cache_branch_id.
	Branch int
	// Full and Partial count the full and the cached forwards.
	Full, Partial int

	feature *tensor.Tensor // the entry resnet's input at the last full step
	shape   []int          // the sample shape it was computed for
}

// ErrCacheAdapters is returned for a cached step with ControlNet or
// T2I-Adapter residuals: they act on the deep features, which a cached
// step does not compute.
var ErrCacheAdapters = errors.New("unet: DeepCache's cached steps cannot take adapter residuals")

// Skips is the number of skip connections of the UNet (conv_in's output,
// each down resnet's, each downsampler's): the bound of Cache.Branch.
func (m *Encoder) Skips() int {
	n := 1
	for _, b := range m.down {
		n += len(b.resnets)
		if b.downsampler != nil || b.resampler != nil {
			n++
		}
	}
	return n
}

// forward runs the down, mid and up blocks as ForwardCached describes.
func (c *Cache) forward(m *Model, sample, emb, ehs *tensor.Tensor, cond Cond, forwardSizes, full bool) (*tensor.Tensor, error) {
	skips := m.Skips()
	if c.Branch < 0 || c.Branch >= skips {
		return nil, fmt.Errorf("unet: DeepCache branch %d outside [0, %d): the UNet has %d skip connections", c.Branch, skips, skips)
	}
	entry := skips - 1 - c.Branch // the up resnet that reads skip Branch
	mask := cond.EncoderMask
	if !full && c.feature != nil && tensor.SameShape(c.shape, sample.Shape()) {
		if adapterResiduals(cond) {
			return nil, ErrCacheAdapters
		}
		_, sk, _, err := m.downTo(m.ConvIn(sample), emb, ehs, mask, nil, c.Branch+1)
		if err != nil {
			return nil, err
		}
		h, _, err := m.expandFrom(c.feature, sk, emb, ehs, mask, forwardSizes, entry, -1)
		if err != nil {
			return nil, fmt.Errorf("%w (sample %dx%d, cached step)", err, sample.Dim(2), sample.Dim(3))
		}
		c.Partial++
		return h, nil
	}
	h, sk, err := m.contract(m.ConvIn(sample), emb, ehs, cond)
	if err != nil {
		return nil, err
	}
	h, kept, err := m.expandFrom(h, sk, emb, ehs, mask, forwardSizes, 0, entry)
	if err != nil {
		return nil, fmt.Errorf("%w (sample %dx%d)", err, sample.Dim(2), sample.Dim(3))
	}
	c.feature, c.shape = kept, sample.Shape()
	c.Full++
	return h, nil
}

// adapterResiduals reports whether cond carries ControlNet or T2I-Adapter
// residuals.
func adapterResiduals(cond Cond) bool {
	return cond.DownBlockAdditionalResiduals != nil || cond.MidBlockAdditionalResidual != nil ||
		len(cond.DownIntrablockAdditionalResidual) > 0
}
