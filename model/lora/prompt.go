package lora

import (
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Ref is one LoRA a prompt asks for with A1111's <lora:...> syntax.
type Ref struct {
	Name string
	// UNet and TextEncoder are the weights for the two kinds of component.
	UNet, TextEncoder float32
}

// ParsePrompt removes the <lora:name>, <lora:name:w>,
// <lora:name:te_w:unet_w> and <lora:name:w:unet=x:te=y> tags (A1111
// syntax; "lyco" is accepted for "lora") from a prompt and returns the
// cleaned prompt (whitespace runs the tags leave are collapsed, as the CLIP
// tokenizer does anyway) and the adapters asked for, in order. A single
// weight applies to both the UNet and the text encoders; with no weight both
// are 1. A malformed tag (no name, a weight that is not a finite number, an
// unknown named argument, an unclosed tag) is an error naming it.
func ParsePrompt(prompt string) (string, []Ref, error) {
	var b strings.Builder
	var refs []Ref
	rest := prompt
	for {
		i := indexTag(rest)
		if i < 0 {
			b.WriteString(rest)
			break
		}
		b.WriteString(rest[:i])
		end := strings.IndexByte(rest[i:], '>')
		if end < 0 {
			return "", nil, fmt.Errorf("lora: prompt tag %q is not closed with '>'", rest[i:])
		}
		tag := rest[i : i+end+1]
		rest = rest[i+end+1:]
		r, err := parseTag(tag)
		if err != nil {
			return "", nil, err
		}
		refs = append(refs, r)
		b.WriteByte(' ')
	}
	return strings.Join(strings.Fields(b.String()), " "), refs, nil
}

// indexTag finds the next "<lora:" or "<lyco:" (case-insensitive).
func indexTag(s string) int {
	low := strings.ToLower(s)
	i, j := strings.Index(low, "<lora:"), strings.Index(low, "<lyco:")
	switch {
	case i < 0:
		return j
	case j < 0:
		return i
	}
	return min(i, j)
}

// parseTag parses one "<lora:...>" tag.
func parseTag(tag string) (Ref, error) {
	body := tag[len("<lora:") : len(tag)-1]
	parts := strings.Split(body, ":")
	r := Ref{Name: strings.TrimSpace(parts[0]), UNet: 1, TextEncoder: 1}
	if r.Name == "" {
		return Ref{}, fmt.Errorf("lora: prompt tag %q has no name", tag)
	}
	num := func(s string) (float32, error) {
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 32)
		if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
			return 0, fmt.Errorf("lora: prompt tag %q: weight %q is not a number", tag, s)
		}
		return float32(v), nil
	}
	unetSet := false
	pos := 0
	for _, p := range parts[1:] {
		if k, v, ok := strings.Cut(p, "="); ok {
			w, err := num(v)
			if err != nil {
				return Ref{}, err
			}
			switch strings.TrimSpace(strings.ToLower(k)) {
			case "unet":
				r.UNet, unetSet = w, true
			case "te":
				r.TextEncoder = w
			default:
				return Ref{}, fmt.Errorf("lora: prompt tag %q: unknown argument %q (want unet= or te=)", tag, k)
			}
			continue
		}
		w, err := num(p)
		if err != nil {
			return Ref{}, err
		}
		switch pos {
		case 0: // A1111: the first number is the text-encoder weight, and the UNet's unless given
			r.TextEncoder = w
			if !unetSet {
				r.UNet = w
			}
		case 1:
			r.UNet, unetSet = w, true
		default:
			return Ref{}, fmt.Errorf("lora: prompt tag %q has too many weights", tag)
		}
		pos++
	}
	return r, nil
}

// Find returns the path of the LoRA file called name in dir: dir/name
// (".safetensors" added when missing) or, failing that, a file of that name
// anywhere under dir (as A1111 searches its lora folder). Names may not
// leave dir. The error lists the LoRA files dir has.
func Find(dir, name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("lora: empty LoRA name")
	}
	clean := filepath.Clean(filepath.FromSlash(name))
	if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("lora: LoRA name %q leaves the folder %s", name, dir)
	}
	if !strings.EqualFold(filepath.Ext(clean), ".safetensors") {
		clean += ".safetensors"
	}
	direct := filepath.Join(dir, clean)
	if st, err := os.Stat(direct); err == nil && !st.IsDir() {
		return direct, nil
	}
	var found, all []string
	want := filepath.Base(clean)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir {
				return err
			}
			return nil // unreadable subfolder: skip
		}
		if d.IsDir() || !strings.EqualFold(filepath.Ext(p), ".safetensors") {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		all = append(all, strings.TrimSuffix(filepath.ToSlash(rel), filepath.Ext(rel)))
		if d.Name() == want {
			found = append(found, p)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("lora: LoRA folder: %w", err)
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		sort.Strings(all)
		if len(all) == 0 {
			return "", fmt.Errorf("lora: no LoRA %q in %s (the folder has no .safetensors files)", name, dir)
		}
		return "", fmt.Errorf("lora: no LoRA %q in %s; it has:%s", name, dir, listLines(all, 30))
	}
	sort.Strings(found)
	return "", fmt.Errorf("lora: LoRA name %q is ambiguous in %s:%s", name, dir, listLines(found, 30))
}
