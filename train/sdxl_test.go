package train

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/model/lora"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/safetensors"
)

// TestCropTimeIDs: compute_time_ids is original_size + crops_coords_top_left
// + (resolution, resolution), and LoadCrop records the size before resizing
// and where the crop was cut.
func TestCropTimeIDs(t *testing.T) {
	got := Crop{OriginalHeight: 768, OriginalWidth: 1024, Top: 0, Left: 171}.TimeIDs(512)
	want := []float32{768, 1024, 0, 171, 512, 512}
	if !sameBits(got, want) {
		t.Errorf("time ids %v, want %v", got, want)
	}
	path := writeImages(t, t.TempDir(), 1, 80, 64, 1)[0]
	for _, c := range []struct {
		pre  Preprocess
		want Crop
	}{
		{Preprocess{Resolution: 32, CenterCrop: true}, Crop{64, 80, 0, 4}},                   // resized to 40×32, 8 spare columns
		{Preprocess{Resolution: 32, CenterCrop: true, RandomFlip: true}, Crop{64, 80, 0, 4}}, // symmetric either way
	} {
		_, crop, err := c.pre.LoadCrop(path, rng.New(1))
		if err != nil {
			t.Fatal(err)
		}
		if crop != c.want {
			t.Errorf("%+v: crop %+v, want %+v", c.pre, crop, c.want)
		}
	}
	// Random crops: a flipped one's corner is where its pixels sit in the
	// flipped 40-pixel-wide image.
	flips := 0
	for seed := uint64(1); seed <= 8; seed++ {
		plain, c1, err1 := Preprocess{Resolution: 32}.LoadCrop(path, rng.New(seed))
		got, c2, err2 := Preprocess{Resolution: 32, RandomFlip: true}.LoadCrop(path, rng.New(seed))
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		want := c1
		if !sameBits(got, plain) {
			flips++
			want.Left = 8 - c1.Left
			if !sameBits(got, mirror(plain, 32)) {
				t.Fatalf("seed %d: the flipped crop is not the plain one mirrored", seed)
			}
		}
		if c2 != want {
			t.Errorf("seed %d: crop %+v, want %+v", seed, c2, want)
		}
	}
	if flips == 0 {
		t.Error("no seed flipped")
	}
}

// mirror flips [3, res, res] pixels horizontally.
func mirror(v []float32, res int) []float32 {
	out := make([]float32, len(v))
	for i := range v {
		row, x := i/res, i%res
		out[i] = v[row*res+res-1-x]
	}
	return out
}

// TestSDXLLoRALearns: on the tiny SDXL (two text encoders, pooled text and
// time ids), the UNet's adapters on to_q/k/v/out.0 and both encoders'
// adapters learn: the loss goes down and every network's lora_B leaves
// zero, while the base weights stay frozen.
func TestSDXLLoRALearns(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	tr := xlTrainer(t, 5, 30, 3e-2, true)
	nets := tr.LoRAs()
	if len(nets) != 3 || nets[1].Component != lora.TextEncoder || nets[2].Component != lora.TextEncoder2 {
		t.Fatalf("networks %v", nets)
	}
	for _, mod := range nets[0].Modules {
		if !targeted(mod, SDXLTargets) {
			t.Fatalf("UNet adapter on %s", mod)
		}
	}
	lossGoesDown(t, tr, xlBatch(1, 2, 64), 30, 0.05)
	for _, n := range nets {
		if allZero(n.Up[n.Modules[0]].Data()) {
			t.Errorf("%s %s: lora_B is still zero", n.Component, n.Modules[0])
		}
	}
	frozen(t, "UNet", paramMap(tr.Models.UNet))
	frozen(t, "text encoder 2", paramMap(tr.Models.TextEncoder2))
}

// TestSDXLLoRAExports: an SDXL run's files hold the UNet's and both text
// encoders' adapters under diffusers' (unet., text_encoder.,
// text_encoder_2.) and kohya's (lora_unet_, lora_te1_, lora_te2_) names,
// and load through model/lora into fresh models that reproduce the
// trained ones' outputs bit for bit.
func TestSDXLLoRAExports(t *testing.T) {
	tr := xlTrainer(t, 5, 3, 1e-2, true)
	run(t, tr, xlBatch(1, 2, 64), 3)
	nets := tr.LoRAs()
	m := tr.Models
	wantTE, wantTE2 := teOut(t, m.TextEncoder), teOut(t, m.TextEncoder2)
	fresh := tinyXLModels(t)
	if sameBits(teOut(t, fresh.TextEncoder2), wantTE2) {
		t.Fatal("training left text_encoder_2's output unchanged")
	}
	const mod = "text_model.encoder.layers.0.self_attn.out_proj"
	const attn = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		save func(string) error
		keys []string
	}{
		{"pytorch_lora_weights.safetensors", nets.SaveDiffusers, []string{"unet." + attn + ".lora.down.weight",
			"text_encoder." + mod + ".lora_linear_layer.down.weight", "text_encoder_2." + mod + ".lora_linear_layer.up.weight"}},
		{"kohya.safetensors", func(p string) error { return nets.SaveKohya(p, "sdxl_base_v1-0") }, []string{
			"lora_unet_" + underscores(attn) + ".lora_down.weight", "lora_te1_" + underscores(mod) + ".lora_up.weight",
			"lora_te2_" + underscores(mod) + ".alpha"}},
	} {
		path := filepath.Join(dir, c.name)
		if err := c.save(path); err != nil {
			t.Fatal(err)
		}
		hasKeys(t, path, c.keys)
		f, err := lora.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		fresh := tinyXLModels(t)
		for _, p := range []struct {
			component string
			module    nn.Module
			n         int
		}{{lora.UNet, fresh.UNet, len(nets[0].Modules)}, {lora.TextEncoder, fresh.TextEncoder, len(nets[1].Modules)},
			{lora.TextEncoder2, fresh.TextEncoder2, len(nets[2].Modules)}} {
			a, err := lora.Apply(p.module, f, p.component, 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(a.Modules) != p.n || a.Warning() != "" {
				t.Errorf("%s: %d %s modules adapted, trained %d; %s", c.name, len(a.Modules), p.component, p.n, a.Warning())
			}
		}
		if !sameBits(teOut(t, fresh.TextEncoder), wantTE) || !sameBits(teOut(t, fresh.TextEncoder2), wantTE2) {
			t.Errorf("%s: the loaded text encoders' outputs differ from the trained ones'", c.name)
		}
	}
}

func underscores(s string) string { return strings.ReplaceAll(s, ".", "_") }

// hasKeys fails for each of keys that the safetensors file lacks.
func hasKeys(t *testing.T, path string, keys []string) {
	t.Helper()
	sf, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	for _, k := range keys {
		if !sf.Has(k) {
			t.Errorf("%s has no %s", filepath.Base(path), k)
		}
	}
}

// TestSDXLBatch: an SDXL run's batches carry both tokenizers' ids (the
// second padded with "!", id 0) and each row's time ids from its own
// image: (64, 80) original size and the crop of the instance row, (64, 64)
// and no crop for the square class row.
func TestSDXLBatch(t *testing.T) {
	root := t.TempDir()
	inst, err := ImageFolder(filepath.Dir(writeImages(t, filepath.Join(root, "i"), 1, 80, 64, 1)[0]), "")
	if err != nil {
		t.Fatal(err)
	}
	class, err := ImageFolder(filepath.Dir(writeImages(t, filepath.Join(root, "c"), 1, 64, 64, 2)[0]), "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := dreamBoothConfig(root, 1)
	l := newLoader(cfg, runXLModels(t), Data{Train: inst, Class: class})
	b, err := l.batch([]int{0})
	if err != nil {
		t.Fatal(err)
	}
	ids := b.TimeIDs.Data()
	if len(ids) != 12 || ids[0] != 64 || ids[1] != 80 || ids[2] != 0 || ids[3] < 0 || ids[3] > 16 || ids[4] != 64 || ids[5] != 64 ||
		!sameBits(ids[6:], []float32{64, 64, 0, 0, 64, 64}) {
		t.Errorf("time ids %v", ids)
	}
	if len(b.InputIDs2) != len(b.InputIDs) || b.InputIDs2[len(b.InputIDs2)-1] != 0 || b.InputIDs[len(b.InputIDs)-1] == 0 {
		t.Errorf("second tokenizer's ids end %v, the first's %v", b.InputIDs2[70:77], b.InputIDs[70:77])
	}
}
