package pipeline

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
)

// base is what every front-door model shares: one generation at a time,
// the model's info and scheduler config, the images loop (one generator
// per image) and the A1111 metadata.
type base struct {
	mu     sync.Mutex
	info   Info
	opt    Options
	sched  scheduler.Config
	hash   string
	hashed bool
	closed bool

	// newScheduler, when set, builds each image's scheduler instead of
	// scheduler.New(p.Sampler, sched) (flow-matching families map the
	// sampler names onto their own scheduler).
	newScheduler func(p *Params) (scheduler.Scheduler, error)
}

func (b *base) Info() Info { return b.info }

// close runs release once.
func (b *base) close(release func()) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		release()
		b.closed = true
	}
	return nil
}

// ready checks the model is open and resolves the request (b.mu held).
func (b *base) ready(p *Params) error {
	if b.closed {
		return errClosed
	}
	return p.resolve(b.info)
}

// modelHash is A1111's short model hash, computed once.
func (b *base) modelHash() string {
	if !b.hashed {
		b.hash, _ = imageio.ModelHash(b.info.Path)
		b.hashed = true
	}
	return b.hash
}

// imageFunc generates image i with its scheduler and generator and
// returns it as [1, H, W, 3] in [0, 1].
type imageFunc func(i int, s scheduler.Scheduler, g *rng.Generator) (*tensor.Tensor, error)

// images generates p.Count images, image i from seed p.Seed+i.
func (b *base) images(ctx context.Context, p *Params, extra []imageio.KV, one imageFunc) (*Output, error) {
	out := &Output{}
	for i := 0; i < p.Count; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		seed := p.Seed + int64(i)
		var s scheduler.Scheduler
		var err error
		if b.newScheduler != nil {
			s, err = b.newScheduler(p)
		} else {
			s, err = scheduler.New(p.Sampler, b.sched)
		}
		if err != nil {
			return nil, fmt.Errorf("pipeline: sampler: %w", err)
		}
		t, err := one(i, s, rng.New(uint64(seed)))
		if err != nil {
			return nil, err
		}
		img, err := imageio.FromNHWC(t.Data(), p.Width, p.Height)
		if err != nil {
			return nil, err
		}
		params := b.params(p, seed)
		params.Extra = append(params.Extra, extra...)
		params.Extra = append(params.Extra, imageio.KV{Key: "Version", Value: "diffuse " + Version})
		out.Images = append(out.Images, Image{Image: img, Seed: seed, Params: params})
	}
	return out, nil
}

// params are the A1111 parameters of one image.
func (b *base) params(p *Params, seed int64) imageio.Params {
	info, _ := scheduler.Lookup(p.Sampler)
	params := imageio.Params{Prompt: p.Prompt, NegativePrompt: p.NegativePrompt, Steps: p.Steps,
		Sampler: A1111Sampler(info), CFGScale: p.Guidance, Seed: seed, Width: p.Width, Height: p.Height,
		ModelHash: b.modelHash(), Model: b.info.Name}
	if strings.Contains(strings.ToLower(info.Name), "karras") {
		params.Scheduler = "Karras"
	}
	if p.ClipSkip > 1 && b.info.Family != "sdxl" || p.ClipSkip > 2 {
		params.ClipSkip = p.ClipSkip
	}
	if p.InitImage != nil {
		params.DenoisingStrength = p.Strength
	}
	if p.GuidanceRescale > 0 {
		params.Extra = append(params.Extra, imageio.KV{Key: "Guidance rescale", Value: formatNum(p.GuidanceRescale)})
	}
	params.Extra = append(params.Extra, p.stepCache().params()...)
	return params
}
