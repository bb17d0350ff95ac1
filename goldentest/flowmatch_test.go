package goldentest

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/scheduler"
)

func init() { golden.Register("diffusers.FlowMatchEulerDiscreteScheduler", runFlowMatch) }

// flowVariant is one entry of the flowmatch_schedulers case's "variants".
type flowVariant struct {
	Config        json.RawMessage `json:"config"`
	NumSteps      int             `json:"num_inference_steps"`
	PipelineStyle string          `json:"pipeline_style"`
	ImageSeqLen   *int            `json:"image_seq_len"`
	Mu            *float64        `json:"mu"`
}

// flowImg2Img is the case's "img2img" entry.
type flowImg2Img struct {
	Config   json.RawMessage `json:"config"`
	NumSteps int             `json:"num_inference_steps"`
	Strength float64         `json:"strength"`
	TStart   int             `json:"t_start"`
}

// flowBuild builds a FlowMatchEulerDiscreteScheduler from a JSON config.
func flowBuild(t *testing.T, raw json.RawMessage) *scheduler.FlowMatchEuler {
	t.Helper()
	cfg, err := scheduler.ParseConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	s, err := scheduler.NewFlowMatchEuler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// flowNamedConfig returns the case's top-level config of that name.
func flowNamedConfig(t *testing.T, c *golden.Case, name string) json.RawMessage {
	t.Helper()
	var cfgs map[string]json.RawMessage
	if err := c.Field("config", &cfgs); err != nil {
		t.Fatal(err)
	}
	raw, ok := cfgs[name]
	if !ok {
		t.Fatalf("case config has no entry %q", name)
	}
	return raw
}

// f32of converts timesteps to float32 values for comparison.
func f32of(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// flowLoop runs the step loop from latents with model_outputs[i] at the
// i-th executed step, starting at step index start, and returns the
// stacked samples.
func flowLoop(t *testing.T, s *scheduler.FlowMatchEuler, latents, outputs []float32, start int) []float32 {
	t.Helper()
	per := len(latents)
	var all []float32
	x := latents
	for i := 0; start+i < len(s.Timesteps()); i++ {
		if (i+1)*per > len(outputs) {
			t.Fatalf("model_outputs hold %d steps, %d needed", len(outputs)/per, len(s.Timesteps())-start)
		}
		out, err := s.Step(outputs[i*per:(i+1)*per], start+i, x, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		x = out.PrevSample
		all = append(all, x...)
	}
	return all
}

func runFlowMatch(t *testing.T, c *golden.Case) {
	latents, _ := c.MustF32(t, "latents")
	outputs, _ := c.MustF32(t, "model_outputs")
	var variants map[string]flowVariant
	if err := c.Field("variants", &variants); err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(variants))
	for k := range variants {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		v := variants[name]
		t.Run(name, func(t *testing.T) { flowVariantRun(t, c, name, v, latents, outputs) })
	}
	t.Run("img2img", func(t *testing.T) { flowImg2ImgRun(t, c, outputs) })
	t.Run("scale_noise_lookup", func(t *testing.T) { flowLookupRun(t, c) })
	t.Run("tables", func(t *testing.T) { flowTablesRun(t, c) })
	t.Run("calculate_shift", func(t *testing.T) { flowShiftRun(t, c) })
}

func flowVariantRun(t *testing.T, c *golden.Case, name string, v flowVariant, latents, outputs []float32) {
	s := flowBuild(t, v.Config)
	switch v.PipelineStyle {
	case "sd3":
		if err := s.SetTimesteps(v.NumSteps); err != nil {
			t.Fatal(err)
		}
	case "flux":
		if v.ImageSeqLen == nil {
			t.Fatal("flux-style variant without image_seq_len")
		}
		mu := s.Mu(*v.ImageSeqLen)
		if v.Mu != nil && math.Abs(mu-*v.Mu) > 1e-12 {
			t.Errorf("mu = %v, want %v", mu, *v.Mu)
		}
		if err := s.SetSchedule(v.NumSteps, scheduler.LinspaceSigmas(v.NumSteps), &mu); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("unknown pipeline_style %q", v.PipelineStyle)
	}
	c.Check(t, name+".timesteps", f32of(s.Timesteps()), nil)
	c.Check(t, name+".sigmas", s.Sigmas(), nil)
	c.Check(t, name+".prev_sample", flowLoop(t, s, latents, outputs, 0), nil)
}

// flowImg2ImgRun follows StableDiffusion3Img2ImgPipeline: the schedule is
// cut at the strength's start, the image noised at its sigma, then stepped.
func flowImg2ImgRun(t *testing.T, c *golden.Case, outputs []float32) {
	var im flowImg2Img
	if err := c.Field("img2img", &im); err != nil {
		t.Fatal(err)
	}
	sample, shape := c.MustF32(t, "sample")
	noise, _ := c.MustF32(t, "noise")
	s := flowBuild(t, im.Config)
	if err := s.SetTimesteps(im.NumSteps); err != nil {
		t.Fatal(err)
	}
	start, err := scheduler.FlowStrengthStart(im.NumSteps, im.Strength)
	if err != nil {
		t.Fatal(err)
	}
	if start != im.TStart {
		t.Errorf("t_start = %d, want %d", start, im.TStart)
	}
	if err := s.SetBeginIndex(start); err != nil {
		t.Fatal(err)
	}
	ts := s.Timesteps()[start:]
	c.Check(t, "img2img.timesteps", f32of(ts), nil)
	rows := make([]float64, shape[0])
	for i := range rows {
		rows[i] = ts[0]
	}
	noised, err := s.AddNoise(sample, noise, rows)
	if err != nil {
		t.Fatal(err)
	}
	c.Check(t, "img2img.noised", noised, nil)
	c.Check(t, "img2img.prev_sample", flowLoop(t, s, noised, outputs, start), nil)
}

// flowLookupRun is scale_noise without a begin index: each row's timestep
// is looked up in a fresh SD3 schedule.
func flowLookupRun(t *testing.T, c *golden.Case) {
	var rowIdx []int
	var n int
	if err := c.Field("scale_noise_lookup_rows", &rowIdx); err != nil {
		t.Fatal(err)
	}
	if err := c.Field("scale_noise_lookup_num_inference_steps", &n); err != nil {
		t.Fatal(err)
	}
	sample, _ := c.MustF32(t, "sample")
	noise, _ := c.MustF32(t, "noise")
	s := flowBuild(t, flowNamedConfig(t, c, "sd3"))
	if err := s.SetTimesteps(n); err != nil {
		t.Fatal(err)
	}
	ts := make([]float64, len(rowIdx))
	for i, r := range rowIdx {
		ts[i] = s.Timesteps()[r]
	}
	c.Check(t, "scale_noise_lookup.timesteps", f32of(ts), nil)
	noised, err := s.AddNoise(sample, noise, ts)
	if err != nil {
		t.Fatal(err)
	}
	c.Check(t, "scale_noise_lookup.noised", noised, nil)
}

// flowTablesRun checks the constructor tables: outputs table.shift<s>.*
// name the shift they were built with.
func flowTablesRun(t *testing.T, c *golden.Case) {
	seen := map[string]bool{}
	for out := range c.Outputs {
		rest, ok := strings.CutPrefix(out, "table.")
		if !ok {
			continue
		}
		tab, _, _ := strings.Cut(rest, ".")
		if seen[tab] {
			continue
		}
		seen[tab] = true
		shift, err := strconv.ParseFloat(strings.TrimPrefix(tab, "shift"), 64)
		if err != nil {
			t.Fatalf("table %q does not name its shift", tab)
		}
		s := flowBuild(t, json.RawMessage(fmt.Sprintf(`{"shift": %v}`, shift)))
		c.Check(t, "table."+tab+".sigmas", s.TrainSigmas(), nil)
		c.Check(t, "table."+tab+".timesteps", s.TrainTimesteps(), nil)
	}
	if len(seen) == 0 {
		t.Skip("no table outputs")
	}
}

func flowShiftRun(t *testing.T, c *golden.Case) {
	var cs struct {
		ImageSeqLen []int     `json:"image_seq_len"`
		Mu          []float64 `json:"mu_float64"`
		Config      string    `json:"config"`
	}
	if err := c.Field("calculate_shift", &cs); err != nil {
		t.Fatal(err)
	}
	s := flowBuild(t, flowNamedConfig(t, c, cs.Config))
	lens, _ := c.MustI64(t, "calculate_shift.image_seq_len")
	got := make([]float32, len(lens))
	for i, l := range lens {
		mu := s.Mu(int(l))
		got[i] = float32(mu)
		if i < len(cs.Mu) && mu != cs.Mu[i] {
			t.Errorf("calculate_shift(%d) = %v, want %v (float64)", l, mu, cs.Mu[i])
		}
	}
	c.Check(t, "calculate_shift.mu", got, nil)
}
