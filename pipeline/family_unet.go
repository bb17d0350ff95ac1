package pipeline

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/model/lora"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
)

// Version is written into the PNG metadata ("Version: diffuse …"); the
// CLI sets it from its build.
var Version = "dev"

// unetVariant is what differs between the UNet families (SD 1.x/2.x and
// SDXL); unetModel runs the flow they share: LoRAs, adapters, seeds,
// metadata.
type unetVariant interface {
	unet() *unet.Model
	vaeFactor() int
	vaeChannels() int
	// loraParts are the components LoRA files may adapt, by diffusers name.
	loraParts() []loraPart
	// run generates one image's latents→images for req.
	run(ctx context.Context, p *Params, req Request, cb func(stage string) Callbacks) (*tensor.Tensor, error)
	// extraParams are the variant's PNG parameters.
	extraParams(p *Params) []imageio.KV
	close()
}

// loraPart is a model component LoRA files may adapt.
type loraPart struct {
	comp string
	m    nn.Module
}

// unetModel is a loaded SD-family model behind the front door.
type unetModel struct {
	base
	v       unetVariant
	adapter adapterCache
}

func (m *unetModel) Close() error {
	return m.close(func() {
		m.adapter.close()
		m.v.close()
	})
}

// Generate runs p: Count images, one generator per image.
func (m *unetModel) Generate(ctx context.Context, p Params) (*Output, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.ready(&p); err != nil {
		return nil, err
	}
	f := m.v.vaeFactor()
	if err := checkSize(p.Width, p.Height, f); err != nil {
		return nil, err
	}
	if err := checkMemory(activationBytes(p.Width, p.Height, 1, m.v.vaeChannels(), f), m.opt.MemoryLimit); err != nil {
		return nil, err
	}
	prompt, refs, err := lora.ParsePrompt(p.Prompt)
	if err != nil {
		return nil, fmt.Errorf("pipeline: prompt: %w", err)
	}
	loras, err := m.applyLoRAs(p.LoRAs, refs, p.LoRADir)
	defer loras.remove()
	if err != nil {
		return nil, err
	}
	ad, err := m.adapters(ctx, &p)
	if err != nil {
		return nil, err
	}
	req := Request{Prompts: []string{prompt}, Width: p.Width, Height: p.Height, Steps: p.Steps,
		Guidance: p.Guidance, GuidanceRescale: p.GuidanceRescale, ClipSkip: p.ClipSkip, Adapter: ad.hook(p.Guidance > 1),
		Cache: p.stepCache()}
	if p.NegativePrompt != "" || p.HasNegative {
		req.NegativePrompts = []string{p.NegativePrompt}
	}
	if p.InitImage != nil {
		if req.InitImage, err = imageTensor(p.InitImage, p.Width, p.Height, false); err != nil {
			return nil, fmt.Errorf("pipeline: init image: %w", err)
		}
		req.Strength = p.Strength
	}
	if p.Mask != nil {
		if req.Mask, err = imageTensor(p.Mask, p.Width, p.Height, true); err != nil {
			return nil, fmt.Errorf("pipeline: mask: %w", err)
		}
	}
	extra := append(m.v.extraParams(&p), ad.params...)
	extra = append(extra, loras.params()...)
	return m.images(ctx, &p, extra, func(i int, s scheduler.Scheduler, g *rng.Generator) (*tensor.Tensor, error) {
		req.Scheduler, req.Noise = s, g
		return m.v.run(ctx, &p, req, func(stage string) Callbacks { return p.progress(i, p.Count, stage) })
	})
}

// A1111Sampler is the sampler name A1111 writes into its metadata.
func A1111Sampler(in scheduler.Info) string {
	for _, a := range in.Aliases {
		if strings.ContainsAny(a, " ") || a == "DDIM" || a == "PLMS" || a == "Euler" || a == "Heun" || a == "LMS" || a == "UniPC" || a == "LCM" || a == "DPM++ 2M" {
			return strings.TrimSuffix(a, " Karras")
		}
	}
	return in.Name
}

// formatNum writes a number as A1111 does: whole numbers without a fraction.
func formatNum(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// ModelName is a checkpoint's name as A1111 writes it: the file or folder
// name without extension.
func ModelName(path string) string {
	base := filepath.Base(filepath.Clean(path))
	return strings.TrimSuffix(base, filepath.Ext(base))
}

// appliedLoRAs are the LoRAs of one request, removed after it.
type appliedLoRAs struct {
	applied       []*lora.Applied
	notes, hashes []string
	warnings      []string
}

func (a *appliedLoRAs) remove() {
	for i := len(a.applied) - 1; i >= 0; i-- {
		a.applied[i].Remove()
	}
	a.applied = nil
}

func (a *appliedLoRAs) params() []imageio.KV {
	var out []imageio.KV
	if len(a.notes) > 0 {
		out = append(out, imageio.KV{Key: "Lora", Value: strings.Join(a.notes, ", ")})
	}
	if len(a.hashes) > 0 {
		out = append(out, imageio.KV{Key: "Lora hashes", Value: strings.Join(a.hashes, ", ")})
	}
	return out
}

// applyLoRAs attaches the request's LoRA files and the prompt's
// <lora:name:weight> tags (looked up in dir). The result must be removed
// (also on error: what was attached is detached).
func (m *unetModel) applyLoRAs(list []LoRA, refs []lora.Ref, dir string) (*appliedLoRAs, error) {
	a := &appliedLoRAs{}
	if len(refs) > 0 && dir == "" {
		return a, fmt.Errorf("pipeline: the prompt uses <lora:%s> but no LoRA folder was given", refs[0].Name)
	}
	for _, l := range list {
		te := l.Weight
		if l.TextEncoderWeight != nil {
			te = *l.TextEncoderWeight
		}
		if err := m.applyLoRA(a, l.Path, float32(l.Weight), float32(te)); err != nil {
			return a, fmt.Errorf("pipeline: LoRA: %w", err)
		}
	}
	for _, r := range refs {
		path, err := lora.Find(dir, r.Name)
		if err != nil {
			return a, fmt.Errorf("pipeline: <lora:%s>: %w", r.Name, err)
		}
		if err := m.applyLoRA(a, path, r.UNet, r.TextEncoder); err != nil {
			return a, fmt.Errorf("pipeline: <lora:%s>: %w", r.Name, err)
		}
	}
	return a, nil
}

func (m *unetModel) applyLoRA(a *appliedLoRAs, path string, unetW, teW float32) error {
	lf, err := lora.Load(path)
	if err != nil {
		return err
	}
	has := map[string]bool{}
	for _, c := range lf.Components() {
		has[c] = true
	}
	n := 0
	for _, part := range m.v.loraParts() {
		if !has[part.comp] && !(part.comp == "unet" && has[""]) {
			continue
		}
		w := teW
		if part.comp == "unet" {
			w = unetW
		}
		ap, err := lora.Apply(part.m, lf, part.comp, w)
		if err != nil {
			return err
		}
		a.applied = append(a.applied, ap)
		if warn := ap.Warning(); warn != "" {
			a.warnings = append(a.warnings, warn)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("%s: no LoRA weights for this model's UNet or text encoders (it has: %s)", path, strings.Join(lf.Components(), ", "))
	}
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	a.notes = append(a.notes, fmt.Sprintf("%s: %g", name, unetW))
	if h, err := lora.AddnetHash(path); err == nil {
		a.hashes = append(a.hashes, name+": "+h)
	}
	return nil
}
