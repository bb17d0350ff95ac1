package goldentest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/scheduler"
)

// Helpers that read what a runner needs from the case itself: the runners
// are run against case folders with other prompts, batches, sizes, step
// counts, variant and sub-case names, so nothing here may be keyed to the
// contents of one case.

// textArg is a diffusers text argument (prompt, negative_prompt, prompt_2,
// negative_prompt_2): a string, a list of strings, or null (nil here; a
// string "" is [""], which is not the same as None for diffusers).
type textArg []string

// UnmarshalJSON accepts a string, a list of strings or null.
func (a *textArg) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		*a = nil
		return nil
	}
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = textArg{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("text argument %s: want a string, a list of strings or null", b)
	}
	*a = many // nil for null
	return nil
}

// broadcastText repeats one text for each of n prompts, as diffusers turns
// a string argument into [text] * batch_size; a list must have n entries.
func broadcastText(a textArg, n int) ([]string, error) {
	if len(a) == 1 {
		out := make([]string, n)
		for i := range out {
			out[i] = a[0]
		}
		return out, nil
	}
	if len(a) != n {
		return nil, fmt.Errorf("%d texts for a batch of %d prompts", len(a), n)
	}
	return a, nil
}

// mustBroadcast is broadcastText for tests; nil stays nil (None).
func mustBroadcast(t *testing.T, what string, a textArg, n int) []string {
	t.Helper()
	if a == nil {
		return nil
	}
	out, err := broadcastText(a, n)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return out
}

// subCases lists the distinct dotted prefixes of the case's outputs
// (pipeline_sd15's euler/ddim/img2img, pipeline_inpaint's unet4/unet9,
// ...), sorted.
func subCases(c *golden.Case) []string {
	seen := map[string]bool{}
	for name := range c.Outputs {
		if i := strings.IndexByte(name, '.'); i > 0 {
			seen[name[:i]] = true
		}
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// hasOutput reports whether the case records an output of that name.
func hasOutput(c *golden.Case, name string) bool { _, ok := c.Outputs[name]; return ok }

// hasInput reports whether the case has an input of that name.
func hasInput(c *golden.Case, name string) bool { _, ok := c.Inputs[name]; return ok }

// numbered returns base, base_2, base_3, ... as far as have(name) holds:
// the case format's naming of the second and further ControlNets,
// adapters and their images.
func numbered(base string, have func(string) bool) []string {
	var out []string
	for k := 1; ; k++ {
		name := base
		if k > 1 {
			name = fmt.Sprintf("%s_%d", base, k)
		}
		if !have(name) {
			return out
		}
		out = append(out, name)
	}
}

// thisCaseFile resolves a uses_weights_of entry that names a file
// ("<case>/<file>", optionally followed by a remark such as "(this case)")
// to its path: a file of this case folder when the entry says so or names
// this case, else a file of the named case folder.
func thisCaseFile(c *golden.Case, entry string) (path string, own bool) {
	ref := strings.Fields(entry)[0]
	dir, file := filepath.Split(filepath.FromSlash(ref))
	dir = filepath.Clean(dir)
	var caseName string
	_ = c.Field("case", &caseName)
	if strings.Contains(entry, "(this case)") || dir == c.Name || dir == caseName {
		return filepath.Join(c.Dir, file), true
	}
	return filepath.Join(filepath.Dir(c.Dir), dir, file), false
}

// component returns the config and the weights of a component the case
// names in uses_weights_of: another case folder (its config and
// weights.safetensors), or a weights file of this case folder, whose config
// is this case's field "<component>_config".
func component(t *testing.T, c *golden.Case, name string) (json.RawMessage, *safetensors.File) {
	t.Helper()
	entry, ok := c.UsesWeightsOf[name]
	if !ok || strings.TrimSpace(entry) == "" {
		t.Fatalf("case %s: uses_weights_of has no %q", c.Name, name)
	}
	if !strings.Contains(strings.Fields(entry)[0], "/") {
		sib, err := c.Sibling(entry)
		if err != nil {
			t.Fatalf("case %s: component %s: %v", c.Name, name, err)
		}
		t.Cleanup(sib.Close)
		w, err := c.Weights(name)
		if err != nil {
			t.Fatal(err)
		}
		return sib.Config, w
	}
	path, own := thisCaseFile(c, entry)
	var cfg json.RawMessage
	if err := c.Field(name+"_config", &cfg); err != nil {
		t.Fatalf("case %s: component %s is the file %s, but: %v", c.Name, name, path, err)
	}
	if own {
		w, err := c.Open(filepath.Base(path))
		if err != nil {
			t.Fatal(err)
		}
		return cfg, w
	}
	w, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return cfg, w
}

// schedulerClassOf names the diffusers scheduler class a config belongs to:
// its "_class_name" when present, else the class whose own config keys it
// carries (a scheduler's config, as diffusers saves it, holds every
// argument of its class's constructor; keys inherited from the config it
// was built from may come along, so the most specific keys decide first).
func schedulerClassOf(cfgJSON []byte) (string, error) {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(cfgJSON, &keys); err != nil {
		return "", fmt.Errorf("scheduler config: %w", err)
	}
	if raw, ok := keys["_class_name"]; ok {
		var name string
		if err := json.Unmarshal(raw, &name); err == nil && name != "" {
			return name, nil
		}
	}
	for _, sig := range []struct{ key, class string }{
		{"algorithm_type", "DPMSolverMultistepScheduler"},
		{"predict_x0", "UniPCMultistepScheduler"},
		{"original_inference_steps", "LCMScheduler"},
		{"interpolation_type", "EulerDiscreteScheduler"},
		{"variance_type", "DDPMScheduler"},
		{"thresholding", "DDIMScheduler"},
	} {
		if _, ok := keys[sig.key]; ok {
			return sig.class, nil
		}
	}
	return "", fmt.Errorf("scheduler config names no class and carries no class-specific key: %s", cfgJSON)
}

// schedulerFromConfig builds the scheduler a case's config describes (see
// schedulerClassOf).
func schedulerFromConfig(t *testing.T, cfgJSON []byte) scheduler.Scheduler {
	t.Helper()
	class, err := schedulerClassOf(cfgJSON)
	if err != nil {
		t.Fatal(err)
	}
	return newScheduler(t, class, cfgJSON)
}

// callArg reads a numeric keyword argument (name=value) of the case's
// recorded Python call.
func callArg(t *testing.T, c *golden.Case, name string) float64 {
	t.Helper()
	var call string
	if err := c.Field("call", &call); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`\b` + regexp.QuoteMeta(name) + `\s*=\s*([0-9.eE+-]+)`).FindStringSubmatch(call)
	if m == nil {
		t.Fatalf("case %s: call has no %s=", c.Name, name)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// pointName parses a number written in a name with "p" for the decimal
// point ("0p5" = 0.5, "1" = 1), as the case format spells scales in
// output names.
func pointName(s string) (float64, bool) {
	v, err := strconv.ParseFloat(strings.Replace(s, "p", ".", 1), 64)
	return v, err == nil
}

// fileExists reports whether path names an existing file.
func fileExists(path string) bool { _, err := os.Stat(path); return err == nil }

// newScheduler builds a scheduler from its diffusers class name and config.
func newScheduler(t *testing.T, class string, cfgJSON []byte) scheduler.Scheduler {
	t.Helper()
	cfg, err := scheduler.ParseConfig(cfgJSON)
	if err != nil {
		t.Fatal(err)
	}
	s, err := scheduler.NewClass(class, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
