package goldentest

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/safetensors"
)

// weightsRef splits a uses_weights_of entry, "case", "case/file" or either
// followed by a parenthesised note, into the case folder and its file
// (weights.safetensors when the entry names none).
func weightsRef(entry string) (caseName, file string) {
	ref, _, _ := strings.Cut(strings.TrimSpace(entry), " ")
	caseName, file, ok := strings.Cut(ref, "/")
	if !ok {
		file = "weights.safetensors"
	}
	return caseName, file
}

// noteConfig reads where a uses_weights_of entry's config is: its
// "(config: <case> <field>)" note, or else the "config" of the case
// holding the weights.
func noteConfig(entry string) (caseName, field string) {
	caseName, _ = weightsRef(entry)
	field = "config"
	if _, note, ok := strings.Cut(entry, "(config:"); ok {
		note, _, _ = strings.Cut(note, ")")
		if f := strings.Fields(note); len(f) == 2 {
			caseName, field = f[0], f[1]
		}
	}
	return caseName, field
}

// componentFiles opens the weights of a component named in
// uses_weights_of and returns them with the component's config: the
// entry's "(config: CASE FIELD)" note when it has one, else the case's own
// "<component>_config" field, else the config of the case the weights come
// from.
func componentFiles(t *testing.T, c *golden.Case, component string) (*safetensors.File, json.RawMessage) {
	t.Helper()
	entry, ok := c.UsesWeightsOf[component]
	if !ok {
		t.Fatalf("case %s: uses_weights_of has no %q", c.Name, component)
	}
	name, file := weightsRef(entry)
	src, err := c.Sibling(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)
	w, err := src.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(entry, "(config:") {
		cname, field := noteConfig(entry)
		cc, err := c.Sibling(cname)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cc.Close)
		var cfg json.RawMessage
		if err := cc.Field(field, &cfg); err != nil {
			t.Fatal(err)
		}
		return w, cfg
	}
	if own, ok := c.Raw[component+"_config"]; ok {
		return w, own
	}
	return w, src.Config
}
