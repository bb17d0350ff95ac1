package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/model/dit"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
)

// DiTSchedulerConfig is facebook/DiT-XL-2-256's scheduler_config.json,
// used for a folder that has none.
const DiTSchedulerConfig = `{"_class_name": "DDIMScheduler", "beta_end": 0.02, "beta_schedule": "linear",
 "beta_start": 0.0001, "clip_sample": false, "num_train_timesteps": 1000, "set_alpha_to_one": true,
 "steps_offset": 0, "trained_betas": null}`

func init() {
	Register(Family{Name: "dit", Detect: func(src *Source) bool { return src.ClassIs("DiTPipeline") }, Open: openDiT})
}

// ditModel is a DiTPipeline folder behind the front door: ImageNet
// class-conditional generation, one image per class label and count.
type ditModel struct {
	base
	f *folder
	p *DiT
}

func openDiT(_ context.Context, src *Source, opt Options) (Model, error) {
	f := &folder{dir: src.Path, opt: LoadOptions{DType: opt.DType}}
	fail := func(err error) (Model, error) { f.close(); return nil, err }
	tr, tc, err := component(f, "transformer", dit.ParseConfig, dit.New)
	if err != nil {
		return fail(err)
	}
	v, _, err := component(f, "vae", vae.ParseConfig, vae.New)
	if err != nil {
		return fail(err)
	}
	f.done()
	sched, err := f.scheduler(DiTSchedulerConfig)
	if err != nil {
		return fail(err)
	}
	sc, err := scheduler.ParseConfig(sched)
	if err != nil {
		return fail(fmt.Errorf("scheduler config: %w", err))
	}
	labels, err := ditLabels(src.Index)
	if err != nil {
		return fail(fmt.Errorf("%s/model_index.json: %w", src.Path, err))
	}
	size := tc.SampleSize * vaeFactor(v)
	info := Info{Family: "dit", Kind: "DiT", Name: ModelName(src.Path), Path: src.Path, Width: size, Height: size,
		Steps: 50, Guidance: 4, Sampler: defaultSampler(sc, "DDIMScheduler"), Accepts: []string{"class-labels", CacheFirstBlock}, Labels: labels}
	return &ditModel{base: base{info: info, opt: opt, sched: sc}, f: f, p: &DiT{Transformer: tr, VAE: v}}, nil
}

// defaultSampler is the folder's scheduler class (which scheduler.New
// builds with the config as it is), else def.
func defaultSampler(sc scheduler.Config, def string) string {
	if _, ok := scheduler.Lookup(sc.ClassName); ok {
		return sc.ClassName
	}
	return def
}

// ditLabels reads DiTPipeline's id2label table from model_index.json:
// each label is split at commas into synonyms, each naming its id, as
// DiTPipeline.__init__ does. A folder without the table takes ids only.
func ditLabels(index map[string]json.RawMessage) (map[string]int, error) {
	raw, ok := index["id2label"]
	if !ok || string(raw) == "null" {
		return nil, nil
	}
	var table map[string]string
	if err := json.Unmarshal(raw, &table); err != nil {
		return nil, fmt.Errorf("id2label: %w", err)
	}
	labels := map[string]int{}
	for k, v := range table {
		id, err := strconv.Atoi(k)
		if err != nil {
			return nil, fmt.Errorf("id2label key %q is not a class id", k)
		}
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				labels[name] = id
			}
		}
	}
	return labels, nil
}

func (m *ditModel) Close() error { return m.close(m.f.close) }

// Generate makes Count images of each class label (ClassLabels, else the
// prompt read as a comma-separated list of labels), image k from seed
// Seed+k, the images of one label after the other.
func (m *ditModel) Generate(ctx context.Context, p Params) (*Output, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := refuseFields(m.info, &p); err != nil {
		return nil, err
	}
	if err := m.ready(&p); err != nil {
		return nil, err
	}
	if p.Width != m.info.Width || p.Height != m.info.Height {
		return nil, fmt.Errorf("pipeline: %s generates %dx%d only (its transformer's sample size), not %dx%d",
			m.info.Name, m.info.Width, m.info.Height, p.Width, p.Height)
	}
	ids, names, err := m.classLabels(&p)
	if err != nil {
		return nil, err
	}
	per := p.Count
	if len(ids)*per > MaxBatch {
		return nil, fmt.Errorf("pipeline: %d labels × %d images exceeds %d images", len(ids), per, MaxBatch)
	}
	if err := checkMemory(activationBytes(p.Width, p.Height, 1, widest(m.p.VAE), vaeFactor(m.p.VAE)), m.opt.MemoryLimit); err != nil {
		return nil, err
	}
	q := p
	q.Count = len(ids) * per
	out, err := m.images(ctx, &q, nil, func(i int, s scheduler.Scheduler, g *rng.Generator) (*tensor.Tensor, error) {
		cb := q.progress(i, q.Count, "")
		res, err := m.p.Generate(ctx, DiTRequest{ClassLabels: []int64{ids[i/per]}, Steps: q.Steps, Guidance: q.Guidance,
			Scheduler: s, Noise: g, Progress: cb.Progress, OnModelInput: cb.OnModelInput, Cache: q.stepCache()})
		if err != nil {
			return nil, err
		}
		return res.Images, nil
	})
	if err != nil {
		return nil, err
	}
	for i := range out.Images {
		ip := &out.Images[i].Params
		ip.Prompt = names[i/per]
		ip.Extra = insertKV(ip.Extra, imageio.KV{Key: "Class label", Value: strconv.FormatInt(ids[i/per], 10)})
	}
	return out, nil
}

// classLabels resolves the request's labels to ids: numbers are ids,
// other labels are looked up in the folder's id2label synonyms (exactly,
// then ignoring case).
func (m *ditModel) classLabels(p *Params) ([]int64, []string, error) {
	list := p.ClassLabels
	if len(list) > 0 && strings.TrimSpace(p.Prompt) != "" {
		return nil, nil, errors.New("pipeline: give DiT's class labels as ClassLabels or as the prompt, not both")
	}
	if len(list) == 0 {
		for _, s := range strings.Split(p.Prompt, ",") {
			if s = strings.TrimSpace(s); s != "" {
				list = append(list, s)
			}
		}
	}
	if len(list) == 0 {
		return nil, nil, fmt.Errorf("pipeline: %s needs ImageNet class labels (ids 0–%d%s), as ClassLabels or a comma-separated prompt",
			m.info.Name, m.p.Transformer.NullClass()-1, m.namesHint())
	}
	null := m.p.Transformer.NullClass()
	var ids []int64
	var names []string
	for _, s := range list {
		s = strings.TrimSpace(s)
		id, err := m.labelID(s)
		if err != nil {
			return nil, nil, err
		}
		if id < 0 || id >= null {
			return nil, nil, fmt.Errorf("pipeline: class label %d outside [0, %d)", id, null)
		}
		ids, names = append(ids, id), append(names, s)
	}
	return ids, names, nil
}

func (m *ditModel) labelID(s string) (int64, error) {
	if id, err := strconv.ParseInt(s, 10, 64); err == nil {
		return id, nil
	}
	if id, ok := m.info.Labels[s]; ok {
		return int64(id), nil
	}
	var found []string
	for name := range m.info.Labels {
		if strings.EqualFold(name, s) {
			found = append(found, name)
		}
	}
	if len(found) == 1 {
		return int64(m.info.Labels[found[0]]), nil
	}
	sort.Strings(found)
	if len(found) > 1 {
		return 0, fmt.Errorf("pipeline: class %q is ambiguous (%s)", s, strings.Join(found, ", "))
	}
	if m.info.Labels == nil {
		return 0, fmt.Errorf("pipeline: class %q: %s has no id2label table in model_index.json, so give class ids", s, m.info.Name)
	}
	return 0, fmt.Errorf("pipeline: unknown class %q (not in %s's id2label)", s, m.info.Name)
}

func (m *ditModel) namesHint() string {
	if m.info.Labels == nil {
		return ""
	}
	return " or names such as \"golden retriever\""
}

// insertKV adds kv before the closing "Version" entry of A1111's list.
func insertKV(list []imageio.KV, kv imageio.KV) []imageio.KV {
	if n := len(list); n > 0 && list[n-1].Key == "Version" {
		return append(list[:n-1:n-1], kv, list[n-1])
	}
	return append(list, kv)
}

// refuseFields refuses the request fields only other families read, so
// that nothing a user sets is silently ignored; the optional features of
// Info.Accepts are checked by Params.validate.
func refuseFields(in Info, p *Params) error {
	for _, f := range []struct {
		name, feature string
		given         bool
	}{
		{"a negative prompt", "negative-prompt", p.NegativePrompt != "" || p.HasNegative},
		{"second prompts (SDXL)", "prompt-2", p.Prompt2 != "" || p.NegativePrompt2 != ""},
		{"clip skip", "clip-skip", p.ClipSkip > 0},
		{"guidance rescale", "guidance-rescale", p.GuidanceRescale != 0},
		{"SDXL size conditioning", "size-conditioning", p.OriginalSize != nil || p.CropsTopLeft != nil || p.TargetSize != nil ||
			p.NegativeOriginalSize != nil || p.NegativeCropsTopLeft != nil || p.NegativeTargetSize != nil},
		{"aesthetic scores (SDXL refiner)", "aesthetic-score", p.AestheticScore != 0 || p.NegativeAestheticScore != 0},
	} {
		if f.given && !in.accepts(f.feature) {
			return fmt.Errorf("pipeline: %s (%s) does not take %s", in.Name, in.Kind, f.name)
		}
	}
	return nil
}
