package goldentest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/safetensors"
)

// The runners must not depend on the names and the subset of outputs of
// the cases in golden/: hidden cases of the same classes have other
// prompts, batches, variants and sub-case names. TestGoldenVariants builds
// such cases from the real ones, without new reference data: outputs
// renamed consistently (io.safetensors, case.json, the call's keys,
// component files), subsets of the variants, siblings under other folder
// names, and runs the registered runners on them. A runner that looks an
// output, a sibling or a key up by a literal of the original case fails.

// caseEdit describes one derived case folder.
type caseEdit struct {
	from, name string
	// rename maps a tensor name of io.safetensors (inputs, outputs; the
	// __f64 references follow their output) to its new name; "" drops it.
	rename func(string) string
	// edit changes the decoded case.json (after inputs/outputs/tolerance
	// have been renamed).
	edit func(t *testing.T, m map[string]any)
	// files are links to make in the new folder: new name -> file of the
	// source folder.
	files map[string]string
}

// renamePrefix renames the dotted prefix old of a name to new.
func renamePrefix(name string, pairs ...string) string {
	for i := 0; i+1 < len(pairs); i += 2 {
		if rest, ok := strings.CutPrefix(name, pairs[i]+"."); ok {
			return pairs[i+1] + "." + rest
		}
	}
	return name
}

// build writes the derived case under root and returns its folder.
func (e caseEdit) build(t *testing.T, root string) string {
	t.Helper()
	src := filepath.Join(golden.Dir(), e.from)
	dst := filepath.Join(root, e.name)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	rename := e.rename
	if rename == nil {
		rename = func(s string) string { return s }
	}
	renameF64 := func(s string) string {
		if base, ok := strings.CutSuffix(s, "__f64"); ok {
			if n := rename(base); n != "" {
				return n + "__f64"
			}
			return ""
		}
		return rename(s)
	}
	writeRenamedIO(t, filepath.Join(src, "io.safetensors"), filepath.Join(dst, "io.safetensors"), renameF64)
	var m map[string]any
	b, err := os.ReadFile(filepath.Join(src, "case.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"inputs", "outputs"} {
		m[key] = renameKeys(m[key], renameF64)
	}
	if tol, ok := m["tolerance"].(map[string]any); ok {
		tol["per_output"] = renameKeys(tol["per_output"], renameF64)
	}
	m["case"] = e.name
	if e.edit != nil {
		e.edit(t, m)
	}
	if b, err = json.MarshalIndent(m, "", " "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dst, "case.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"weights.safetensors": "weights.safetensors"}
	for k, v := range e.files {
		files[k] = v
	}
	for newName, old := range files {
		if p := filepath.Join(src, old); fileExists(p) {
			if err := os.Symlink(p, filepath.Join(dst, newName)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dst
}

// renameKeys renames (or drops) the keys of a JSON object.
func renameKeys(v any, rename func(string) string) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	out := map[string]any{}
	for k, x := range m {
		if n := rename(k); n != "" {
			out[n] = x
		}
	}
	return out
}

// writeRenamedIO copies a safetensors file with its tensors renamed or dropped.
func writeRenamedIO(t *testing.T, src, dst string, rename func(string) string) {
	t.Helper()
	f, err := safetensors.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []safetensors.Tensor
	for _, info := range f.Tensors() {
		n := rename(info.Name)
		if n == "" {
			continue
		}
		_, data, err := f.Bytes(info.Name)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, safetensors.Tensor{Name: n, DType: info.DType, Shape: info.Shape, Data: append([]byte(nil), data...)})
	}
	if err := safetensors.WriteFile(dst, out, nil); err != nil {
		t.Fatal(err)
	}
}

// linkSibling makes a case folder available under another name.
func linkSibling(t *testing.T, root, name, from string) {
	t.Helper()
	if err := os.Symlink(filepath.Join(golden.Dir(), from), filepath.Join(root, name)); err != nil {
		t.Fatal(err)
	}
}

// jsonObject returns m[key] as an object, failing when it is not one.
func jsonObject(t *testing.T, m map[string]any, key string) map[string]any {
	t.Helper()
	o, ok := m[key].(map[string]any)
	if !ok {
		t.Fatalf("case.json field %s is not an object", key)
	}
	return o
}

// moveKey renames a key of an object.
func moveKey(t *testing.T, o map[string]any, from, to string) {
	t.Helper()
	v, ok := o[from]
	if !ok {
		t.Fatalf("no key %s to rename", from)
	}
	delete(o, from)
	o[to] = v
}

// sd15Siblings renames the SD 1.5 component cases the pipeline cases use.
var sd15Siblings = map[string]string{"unet": "a_unet", "vae": "a_vae", "text_encoder": "an_encoder"}

// renameComponents points uses_weights_of at the renamed sibling folders.
func renameComponents(t *testing.T, m map[string]any, renamed map[string]string) {
	t.Helper()
	uses := jsonObject(t, m, "uses_weights_of")
	for comp, name := range renamed {
		if _, ok := uses[comp]; ok {
			uses[comp] = name
		}
	}
}

// variantCases are the derived cases TestGoldenVariants runs.
func variantCases() []caseEdit {
	keepVariant := func(name string) string {
		// Schedulers: only the 20-step DDPM, DDIM and Euler (renamed
		// "eul"); the add_noise.euler_n20 group follows Euler.
		switch {
		case strings.HasPrefix(name, "ddpm.n20."), strings.HasPrefix(name, "ddim.n20."):
			return name
		case strings.HasPrefix(name, "euler.n20."):
			return "eul" + strings.TrimPrefix(name, "euler")
		case strings.HasPrefix(name, "add_noise.euler_n20"):
			return "add_noise.eul_n20" + strings.TrimPrefix(name, "add_noise.euler_n20")
		case strings.HasPrefix(name, "add_noise."), strings.HasPrefix(name, "table."), !strings.Contains(name, "."):
			return name
		}
		return ""
	}
	return []caseEdit{
		{from: "schedulers", name: "sched_subset", rename: keepVariant, edit: func(t *testing.T, m map[string]any) {
			v := jsonObject(t, m, "variants")
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			for _, k := range keys {
				if n := keepVariant(k + ".x"); n == "" {
					delete(v, k)
				} else if n != k+".x" {
					moveKey(t, v, k, strings.TrimSuffix(n, ".x"))
				}
			}
		}},
		{from: "pipeline_sd15", name: "sd15_renamed",
			rename: func(n string) string {
				switch {
				case strings.HasPrefix(n, "ddim."):
					return ""
				case n == "img2img_init_image":
					return "i2i_init_image"
				}
				return renamePrefix(n, "euler", "k_euler", "img2img", "i2i")
			},
			edit: func(t *testing.T, m map[string]any) {
				renameComponents(t, m, sd15Siblings)
				call := jsonObject(t, m, "config")
				moveKey(t, call, "img2img_strength", "i2i_strength")
				moveKey(t, jsonObject(t, call, "schedulers"), "euler_scheduler_config", "k_euler_scheduler_config")
			}},
		{from: "pipeline_inpaint", name: "inpaint_renamed",
			rename: func(n string) string { return renamePrefix(n, "unet4", "legacy", "unet9", "nine") },
			files:  map[string]string{"nine.safetensors": "unet9.safetensors"},
			edit: func(t *testing.T, m map[string]any) {
				uses := jsonObject(t, m, "uses_weights_of")
				moveKey(t, uses, "unet4", "legacy")
				delete(uses, "unet9")
				uses["nine"] = "inpaint_renamed/nine.safetensors (this case)"
				renameComponents(t, m, map[string]string{"legacy": "a_unet", "vae": "a_vae", "text_encoder": "an_encoder"})
				moveKey(t, m, "unet9_config", "nine_config")
			}},
		{from: "pipeline_controlnet", name: "controlnet_renamed",
			rename: func(n string) string { return renamePrefix(n, "single", "one", "multi", "two") },
			files:  map[string]string{"controlnet_2.safetensors": "controlnet_2.safetensors"},
			edit: func(t *testing.T, m map[string]any) {
				renameComponents(t, m, map[string]string{"unet": "a_unet", "vae": "a_vae", "text_encoder": "an_encoder", "controlnet": "a_controlnet"})
				jsonObject(t, m, "uses_weights_of")["controlnet_2"] = "controlnet_renamed/controlnet_2.safetensors (this case)"
				call := jsonObject(t, m, "config")
				moveKey(t, call, "single", "one")
				moveKey(t, call, "multi", "two")
			}},
		{from: "pipeline_t2i_adapter", name: "adapter_renamed",
			rename: func(n string) string { return renamePrefix(n, "single", "one", "multi", "two") },
			files:  map[string]string{"adapter_2.safetensors": "adapter_2.safetensors"},
			edit: func(t *testing.T, m map[string]any) {
				renameComponents(t, m, map[string]string{"unet": "a_unet", "vae": "a_vae", "text_encoder": "an_encoder", "adapter": "an_adapter"})
				jsonObject(t, m, "uses_weights_of")["adapter_2"] = "adapter_renamed/adapter_2.safetensors (this case)"
				call := jsonObject(t, m, "config")
				moveKey(t, call, "single", "one")
				moveKey(t, call, "multi", "two")
			}},
		{from: "pipeline_sdxl", name: "sdxl_renamed",
			rename: func(n string) string { return renamePrefix(n, "base", "full", "split", "half", "refiner", "ref") },
			files:  map[string]string{"ref_unet.safetensors": "refiner_unet.safetensors"},
			edit: func(t *testing.T, m map[string]any) {
				renameComponents(t, m, map[string]string{"unet": "an_xl_unet", "vae": "a_vae", "text_encoder": "an_encoder", "text_encoder_2": "an_encoder_2"})
				uses := jsonObject(t, m, "uses_weights_of")
				delete(uses, "refiner_unet")
				uses["ref_unet"] = "sdxl_renamed/ref_unet.safetensors (this case)"
				moveKey(t, m, "refiner_unet_config", "ref_unet_config")
			}},
		{from: "controlnet", name: "controlnet_one_scale",
			rename: func(n string) string {
				if strings.HasPrefix(n, "s0p5.") {
					return ""
				}
				return n
			},
			edit: func(t *testing.T, m map[string]any) { renameComponents(t, m, map[string]string{"unet": "a_unet"}) }},
		{from: "cfg", name: "cfg_subset",
			rename: func(n string) string {
				if n == "thresholded_r0p9_max1p5" {
					return ""
				}
				return n
			},
			edit: func(t *testing.T, m map[string]any) { delete(jsonObject(t, m, "config"), "thresholded_r0p9_max1p5") }},
		{from: "t5_tokenizer", name: "t5_tokenizer_16",
			rename: func(n string) string {
				if strings.HasSuffix(n, "_max120") {
					return ""
				}
				return n
			}},
		{from: "clip_tokenizer", name: "clip_tokenizer_hf",
			rename: func(n string) string {
				if n == "ids_openai" {
					return ""
				}
				return n
			}},
	}
}

// TestGoldenVariants runs the registered runners on cases derived from the
// golden ones with other names and subsets (see the comment above).
func TestGoldenVariants(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	root := t.TempDir()
	for name, from := range map[string]string{"a_unet": "unet_sd15", "a_vae": "vae", "an_encoder": "clip_text",
		"an_encoder_2": "clip_text_proj", "an_xl_unet": "unet_sdxl", "a_controlnet": "controlnet", "an_adapter": "t2i_full_adapter"} {
		linkSibling(t, root, name, from)
	}
	for _, e := range variantCases() {
		if !fileExists(filepath.Join(golden.Dir(), e.from, "case.json")) {
			t.Errorf("golden case %s is missing", e.from)
			continue
		}
		dir := e.build(t, root)
		t.Run(e.name, func(t *testing.T) {
			c, err := golden.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			golden.Run(t, c)
		})
	}
}

// TestTextArg checks the diffusers text arguments: a string is one text,
// null is None (not [""]), and a string is broadcast to the batch.
func TestTextArg(t *testing.T) {
	var call struct {
		A, B, C, D textArg
	}
	if err := json.Unmarshal([]byte(`{"A": "x", "B": null, "C": ["p", ""], "D": ""}`), &call); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(call.A, []string{"x"}) || call.B != nil || !slices.Equal(call.C, []string{"p", ""}) || !slices.Equal(call.D, []string{""}) {
		t.Errorf("decoded %q %q %q %q", call.A, call.B, call.C, call.D)
	}
	if got, err := broadcastText(call.A, 3); err != nil || !slices.Equal(got, []string{"x", "x", "x"}) {
		t.Errorf("broadcast of one text to 3 = %q, %v", got, err)
	}
	if _, err := broadcastText(call.C, 3); err == nil {
		t.Error("2 texts for 3 prompts gave no error")
	}
	if err := json.Unmarshal([]byte(`{"A": 3}`), &call); err == nil {
		t.Error("a number was accepted as a text")
	}
}
