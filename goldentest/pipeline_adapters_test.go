package goldentest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/controlnet"
	"github.com/diffuse-go/diffuse/model/t2iadapter"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
	cliptok "github.com/diffuse-go/diffuse/tokenizer/clip"
)

func init() {
	golden.Register("diffusers.StableDiffusionControlNetPipeline", runPipelineControlNet)
	golden.Register("diffusers.StableDiffusionAdapterPipeline", runPipelineT2IAdapter)
}

// floatsArg reads a diffusers argument that is a number or a list of
// numbers (one per ControlNet / adapter).
func floatsArg(raw json.RawMessage) ([]float64, error) {
	var one float64
	if json.Unmarshal(raw, &one) == nil {
		return []float64{one}, nil
	}
	var many []float64
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, fmt.Errorf("want a number or a list of numbers, got %s", raw)
	}
	return many, nil
}

// perNet reads a per-net argument of a sub-case's arguments and spreads a
// single number over n nets (as diffusers does for
// controlnet_conditioning_scale and the guidance window); def stands in
// for an absent argument.
func perNet(t *testing.T, args map[string]json.RawMessage, key string, n int, def float64) []float64 {
	t.Helper()
	raw, ok := args[key]
	if !ok {
		raw = json.RawMessage(fmt.Sprint(def))
	}
	v, err := floatsArg(raw)
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	if len(v) == 1 && n > 1 {
		for len(v) < n {
			v = append(v, v[0])
		}
	}
	if len(v) != n {
		t.Fatalf("%s has %d values for %d nets", key, len(v), n)
	}
	return v
}

// subCaseArgs returns the call arguments of a sub-case: the call's field
// named like the sub-case, else the call's own arguments.
func subCaseArgs(t *testing.T, call *sdCall, sub string) map[string]json.RawMessage {
	t.Helper()
	raw, ok := call.raw[sub]
	if !ok {
		return call.raw
	}
	var args map[string]json.RawMessage
	if err := json.Unmarshal(raw, &args); err != nil {
		t.Fatalf("arguments of sub-case %s: %v", sub, err)
	}
	return args
}

// netCount is the number of nets a sub-case runs: the length of its scale
// argument when that is a list (a Multi* model), else 1.
func netCount(t *testing.T, args map[string]json.RawMessage, scaleKey string) int {
	t.Helper()
	raw, ok := args[scaleKey]
	if !ok {
		return 1
	}
	v, err := floatsArg(raw)
	if err != nil {
		t.Fatalf("%s: %v", scaleKey, err)
	}
	return len(v)
}

// netsAndImages lists the components base, base_2, ... of the case and its
// images imageBase, imageBase_2, ...: the k-th net takes the k-th image.
func netsAndImages(t *testing.T, c *golden.Case, base, imageBase string, n int) (nets, images []string) {
	t.Helper()
	nets = numbered(base, func(s string) bool { _, ok := c.UsesWeightsOf[s]; return ok })
	images = numbered(imageBase, func(s string) bool { return hasInput(c, s) })
	if len(nets) < n || len(images) < n {
		t.Fatalf("case %s: a sub-case runs %d nets; the case has components %v and images %v", c.Name, n, nets, images)
	}
	return nets[:n], images[:n]
}

func runPipelineControlNet(t *testing.T, c *golden.Case) {
	call := parseSDCall(t, c)
	p := sdComponents(t, c, "unet")
	checkPromptIDs(t, c, "", p.Tokenizer.(*cliptok.Tokenizer), call.prompts, call.negatives)
	loaded := map[string]*controlnet.Model{}
	for _, sub := range subCases(c) {
		t.Run(sub, func(t *testing.T) {
			args := subCaseArgs(t, call, sub)
			n := netCount(t, args, "controlnet_conditioning_scale")
			nets, images := netsAndImages(t, c, "controlnet", "control_image", n)
			scales := perNet(t, args, "controlnet_conditioning_scale", n, 1)
			starts := perNet(t, args, "control_guidance_start", n, 0)
			ends := perNet(t, args, "control_guidance_end", n, 1)
			var units []pipeline.ControlNetUnit
			for i, name := range nets {
				if loaded[name] == nil {
					cfg, w := component(t, c, name)
					loaded[name] = buildControlNet(t, cfg, w)
				}
				units = append(units, pipeline.ControlNetUnit{Net: loaded[name], Image: caseTensor(t, c, images[i]),
					Scale: float32(scales[i]), Start: starts[i], End: ends[i]})
			}
			k := newOutputChecker(c)
			var gotScales []float32
			rec := &stepRecorder{}
			req := call.request()
			req.Scheduler = schedulerFromConfig(t, call.SchedulerCfg)
			req.Latents, req.Noise, req.OnStep = caseTensor(t, c, "latents"), replayNoise{&scheduler.RecordedNoise{}}, rec.record
			req.Adapter = pipeline.ControlNets(units, call.Guidance > 1, func(_ int, s []float32) { gotScales = append(gotScales, s...) })
			res, err := p.Generate(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			k.check(t, sub+".conditioning_scales", gotScales, nil)
			checkSDResult(t, k, sub, res, rec)
			k.allChecked(t, sub+".")
		})
	}
}

// adapterStates runs a sub-case's adapters on their images: one adapter
// times its scale, or the weighted MultiAdapter sum.
func adapterStates(t *testing.T, c *golden.Case, args map[string]json.RawMessage, loaded map[string]*t2iadapter.Model) []*tensor.Tensor {
	t.Helper()
	n := netCount(t, args, "adapter_conditioning_scale")
	names, images := netsAndImages(t, c, "adapter", "adapter_image", n)
	weights := perNet(t, args, "adapter_conditioning_scale", n, 1)
	var models []*t2iadapter.Model
	var imgs []*tensor.Tensor
	for i, name := range names {
		if loaded[name] == nil {
			cfg, w := component(t, c, name)
			loaded[name] = buildT2IAdapter(t, cfg, w)
		}
		models = append(models, loaded[name])
		imgs = append(imgs, caseTensor(t, c, images[i]))
	}
	if n == 1 {
		// One adapter: its features times the scale (MultiAdapter's
		// weighted sum of one adapter is the same).
		feats, err := models[0].Forward(imgs[0])
		if err != nil {
			t.Fatal(err)
		}
		return t2iadapter.Scale(feats, float32(weights[0]))
	}
	ws := make([]float32, len(weights))
	for i, w := range weights {
		ws[i] = float32(w)
	}
	feats, err := t2iadapter.Multi{Adapters: models, Weights: ws}.Forward(imgs)
	if err != nil {
		t.Fatal(err)
	}
	return feats
}

func runPipelineT2IAdapter(t *testing.T, c *golden.Case) {
	call := parseSDCall(t, c)
	p := sdComponents(t, c, "unet")
	checkPromptIDs(t, c, "", p.Tokenizer.(*cliptok.Tokenizer), call.prompts, call.negatives)
	loaded := map[string]*t2iadapter.Model{}
	for _, sub := range subCases(c) {
		t.Run(sub, func(t *testing.T) {
			feats := adapterStates(t, c, subCaseArgs(t, call, sub), loaded)
			hook := pipeline.T2IAdapter(feats, 1)
			var states []*tensor.Tensor
			k := newOutputChecker(c)
			rec := &stepRecorder{}
			req := call.request()
			req.Scheduler = schedulerFromConfig(t, call.SchedulerCfg)
			req.Latents, req.Noise, req.OnStep = caseTensor(t, c, "latents"), replayNoise{&scheduler.RecordedNoise{}}, rec.record
			req.Adapter = func(step, total int, ts float64, x *tensor.Tensor, cond *unet.Cond) error {
				if err := hook(step, total, ts, x, cond); err != nil {
					return err
				}
				if step == 0 {
					states = cond.DownIntrablockAdditionalResidual
				}
				return nil
			}
			res, err := p.Generate(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for hasOutput(c, fmt.Sprintf("%s.adapter_state.%d", sub, n)) {
				n++
			}
			if n != len(states) {
				t.Errorf("%s: the UNet got %d adapter states, the case has %d", sub, len(states), n)
			}
			for i, s := range states {
				k.check(t, fmt.Sprintf("%s.adapter_state.%d", sub, i), s.Data(), s.Shape())
			}
			if hasOutput(c, sub+".step_latents") {
				k.check(t, sub+".step_latents", rec.data, nil)
			}
			k.timesteps(t, sub+".timesteps", res.Timesteps)
			k.check(t, sub+".image", res.Images.Data(), res.Images.Shape())
			k.allChecked(t, sub+".")
		})
	}
}
