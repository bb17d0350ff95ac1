package pipeline

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/controlnet"
	"github.com/diffuse-go/diffuse/model/t2iadapter"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
)

// goldenModule loads a golden case's weights into m.
func goldenModule(t *testing.T, name string, build func(cfg []byte) (nn.Module, error)) nn.Module {
	t.Helper()
	gc, err := golden.Find(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gc.Close)
	w, err := gc.Weights("")
	if err != nil {
		t.Fatal(err)
	}
	m, err := build(gc.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := nn.Load(m, "", nn.FileSource{F: w}, nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	return m
}

func paramMap(m nn.Module) map[string][]float32 {
	var ps nn.Params
	m.Params("", &ps)
	out := map[string][]float32{}
	for _, p := range ps.List() {
		out[p.Name] = (*p.Ptr).Float32().Data()
	}
	return out
}

func sameParams(t *testing.T, want, got nn.Module) {
	t.Helper()
	a, b := paramMap(want), paramMap(got)
	if len(a) != len(b) {
		t.Fatalf("%d parameters, want %d", len(b), len(a))
	}
	for name, wv := range a {
		gv, ok := b[name]
		if !ok || len(gv) != len(wv) {
			t.Fatalf("%s: missing or resized after the round trip", name)
		}
		for i := range wv {
			if wv[i] != gv[i] {
				t.Fatalf("%s[%d] = %g, want %g", name, i, gv[i], wv[i])
			}
		}
	}
}

// TestControlNetLDMRoundTrip writes the tiny golden ControlNet under the
// original control_model.* names and loads it back through the mapping.
func TestControlNetLDMRoundTrip(t *testing.T) {
	var cfg controlnet.Config
	cn := goldenModule(t, "controlnet", func(b []byte) (nn.Module, error) {
		var err error
		if cfg, err = controlnet.ParseConfig(b); err != nil {
			return nil, err
		}
		return controlnet.New(cfg)
	}).(*controlnet.Model)
	params, err := ControlNetLDMParams(cfg)
	if err != nil {
		t.Fatal(err)
	}
	vals := paramMap(cn)
	if len(params) != len(vals) {
		t.Fatalf("%d LDM params for %d model params", len(params), len(vals))
	}
	var ts []safetensors.Tensor
	for _, p := range params {
		v, ok := vals[p.Name]
		if !ok {
			t.Fatalf("mapping names %q, which the model lacks", p.Name)
		}
		ts = append(ts, safetensors.F32Tensor(ControlNetLDMPrefix+p.Source, p.SourceShape, v))
	}
	// A few names the issue spells out.
	for _, want := range []string{"control_model.input_hint_block.14.weight", "control_model.zero_convs.8.0.bias",
		"control_model.middle_block_out.0.weight", "control_model.input_blocks.0.0.weight", "control_model.time_embed.2.bias"} {
		found := false
		for _, tt := range ts {
			found = found || tt.Name == want
		}
		if !found {
			t.Errorf("no %s in the LDM names", want)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "control_tiny.safetensors")
	if err := safetensors.WriteFile(path, ts, nil); err != nil {
		t.Fatal(err)
	}
	// The base UNet config is the tiny UNet's; the ControlNet's channels
	// come from the tensors.
	gu, err := golden.Find("unet_sd15")
	if err != nil {
		t.Fatal(err)
	}
	defer gu.Close()
	base, err := unet.ParseConfig(gu.Config)
	if err != nil {
		t.Fatal(err)
	}
	got, done, err := LoadControlNet(path, base, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	if got.Cfg.ConditioningChannels != cfg.ConditioningChannels || len(got.Cfg.ConditioningEmbeddingOutChannels) != len(cfg.ConditioningEmbeddingOutChannels) {
		t.Errorf("inferred condition embedding %d %v, want %d %v", got.Cfg.ConditioningChannels, got.Cfg.ConditioningEmbeddingOutChannels,
			cfg.ConditioningChannels, cfg.ConditioningEmbeddingOutChannels)
	}
	sameParams(t, cn, got)

	// Without the prefix (thibaud's SD 2.1 ControlNets) it loads too.
	bare := make([]safetensors.Tensor, len(ts))
	for i, tt := range ts {
		bare[i] = tt
		bare[i].Name = strings.TrimPrefix(tt.Name, ControlNetLDMPrefix)
	}
	p2 := filepath.Join(dir, "bare.safetensors")
	if err := safetensors.WriteFile(p2, bare, nil); err != nil {
		t.Fatal(err)
	}
	got2, done2, err := LoadControlNet(p2, base, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer done2()
	sameParams(t, cn, got2)

	// A missing tensor is named.
	p3 := filepath.Join(dir, "broken.safetensors")
	if err := safetensors.WriteFile(p3, ts[:len(ts)-1], nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadControlNet(p3, base, LoadOptions{}); err == nil || !strings.Contains(err.Error(), ts[len(ts)-1].Name) {
		t.Errorf("missing tensor: got %v, want an error naming %s", err, ts[len(ts)-1].Name)
	}
	// A pickle is refused.
	p4 := filepath.Join(dir, "control.pth")
	os.WriteFile(p4, []byte("x"), 0o644)
	if _, _, err := LoadControlNet(p4, base, LoadOptions{}); err == nil || !strings.Contains(err.Error(), "pickle") {
		t.Errorf(".pth: got %v, want a pickle refusal", err)
	}
}

// TestT2IAdapterOriginalLight writes the tiny golden light adapter in
// TencentARC's original layout and loads it back.
func TestT2IAdapterOriginalLight(t *testing.T) {
	ad := goldenModule(t, "t2i_light_adapter", func(b []byte) (nn.Module, error) {
		cfg, err := t2iadapter.ParseConfig(b)
		if err != nil {
			return nil, err
		}
		return t2iadapter.New(cfg)
	}).(*t2iadapter.Model)
	var ps nn.Params
	ad.Params("", &ps)
	var ts []safetensors.Tensor
	for _, p := range ps.List() {
		// adapter.body.I.resnets.J.X -> body.I.body.J.X; adapter.body.I.Y -> body.I.Y.
		name := strings.TrimPrefix(p.Name, "adapter.")
		name = strings.Replace(name, ".resnets.", ".body.", 1)
		ts = append(ts, safetensors.F32Tensor(name, (*p.Ptr).Shape(), (*p.Ptr).Float32().Data()))
	}
	path := filepath.Join(t.TempDir(), "t2iadapter_color.safetensors")
	if err := safetensors.WriteFile(path, ts, nil); err != nil {
		t.Fatal(err)
	}
	got, done, err := LoadT2IAdapter(path, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	if got.Cfg.AdapterType != t2iadapter.LightAdapter || got.Cfg.NumResBlocks != ad.Cfg.NumResBlocks || len(got.Cfg.Channels) != len(ad.Cfg.Channels) {
		t.Errorf("inferred config %+v, want %+v", got.Cfg, ad.Cfg)
	}
	sameParams(t, ad, got)

	// Diffusers names without a config are refused with a hint.
	var dn []safetensors.Tensor
	for _, p := range ps.List() {
		dn = append(dn, safetensors.F32Tensor(p.Name, (*p.Ptr).Shape(), (*p.Ptr).Float32().Data()))
	}
	p2 := filepath.Join(t.TempDir(), "adapter.safetensors")
	if err := safetensors.WriteFile(p2, dn, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadT2IAdapter(p2, LoadOptions{}); err == nil || !strings.Contains(err.Error(), "config") {
		t.Errorf("no sidecar config: got %v", err)
	}
}

func TestIsSDXL(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, tensor string) string {
		p := filepath.Join(dir, name)
		if err := safetensors.WriteFile(p, []safetensors.Tensor{safetensors.F32Tensor(tensor, []int{1}, []float32{1})}, nil); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		path string
		want bool
	}{
		{write("xl.safetensors", "conditioner.embedders.0.transformer.text_model.final_layer_norm.bias"), true},
		{write("sd.safetensors", "model.diffusion_model.out.2.bias"), false},
		{dir, false},
	} {
		got, err := IsSDXL(c.path)
		if err != nil || got != c.want {
			t.Errorf("IsSDXL(%s) = %v, %v; want %v", c.path, got, err, c.want)
		}
	}
	if _, err := IsSDXL(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing path: no error")
	}
}
