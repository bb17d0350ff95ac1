package imageio

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// ParametersKey is the PNG text keyword under which A1111 (and the tools
// that read its images) keep the generation parameters.
const ParametersKey = "parameters"

// Params are the generation parameters in A1111's infotext layout, the
// text stored under the "parameters" PNG keyword.
type Params struct {
	Prompt         string
	NegativePrompt string
	Steps          int
	Sampler        string // e.g. "Euler a", "DPM++ 2M"
	Scheduler      string // A1111's "Schedule type", e.g. "Karras"
	CFGScale       float64
	Seed           int64
	Width, Height  int
	ModelHash      string // see ModelHash
	Model          string
	// DenoisingStrength is written only when positive (img2img,
	// inpainting, hires fix), as A1111 omits it for plain txt2img.
	DenoisingStrength float64
	// ClipSkip is written only when above 1, as A1111 does.
	ClipSkip int
	// Extra holds every other field, in order, after the known ones:
	// "Lora hashes", "ControlNet 0", "Version" and so on.
	Extra []KV
}

// String renders p exactly as A1111's create_infotext does: the prompt, a
// "Negative prompt: " line when there is one, then one line of
// "Key: value" fields joined by ", ". A value containing ',', ':' or a
// newline is written as a JSON string, as A1111's quote does.
func (p Params) String() string {
	var fields []string
	add := func(k, v string) { fields = append(fields, k+": "+quoteParam(v)) }
	add("Steps", strconv.Itoa(p.Steps))
	if p.Sampler != "" {
		add("Sampler", p.Sampler)
	}
	if p.Scheduler != "" {
		add("Schedule type", p.Scheduler)
	}
	add("CFG scale", formatFloat(p.CFGScale))
	add("Seed", strconv.FormatInt(p.Seed, 10))
	if p.Width > 0 && p.Height > 0 {
		add("Size", fmt.Sprintf("%dx%d", p.Width, p.Height))
	}
	if p.ModelHash != "" {
		add("Model hash", p.ModelHash)
	}
	if p.Model != "" {
		add("Model", p.Model)
	}
	if p.DenoisingStrength > 0 {
		add("Denoising strength", formatFloat(p.DenoisingStrength))
	}
	if p.ClipSkip > 1 {
		add("Clip skip", strconv.Itoa(p.ClipSkip))
	}
	for _, kv := range p.Extra {
		if kv.Key == kv.Value {
			// A1111 writes a field whose value equals its name as the
			// bare name (flags such as "Tiling" in some versions).
			fields = append(fields, kv.Key)
			continue
		}
		add(kv.Key, kv.Value)
	}
	s := p.Prompt
	if p.NegativePrompt != "" {
		s += "\nNegative prompt: " + p.NegativePrompt
	}
	return strings.TrimSpace(s + "\n" + strings.Join(fields, ", "))
}

// formatFloat writes whole numbers without a fraction ("7", as A1111's
// sliders give them) and others in their shortest exact form ("7.5").
func formatFloat(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// quoteParam mirrors A1111's quote: json.dumps(v, ensure_ascii=False) when
// v holds ',', ':' or a newline, else v unchanged. Python's JSON escapes
// differ from encoding/json's (no HTML escaping, lowercase \u00xx), hence
// the hand-written encoder.
func quoteParam(v string) string {
	if !strings.ContainsAny(v, ",:\n") {
		return v
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range v {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			if r < 0x20 {
				fmt.Fprintf(&b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// reParam is A1111's re_param, with Python's Unicode \w spelled out.
var reParam = regexp.MustCompile(`\s*([\p{L}\p{N}_][\p{L}\p{N}_ \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)`)

// ParseParams parses A1111 infotext, following parse_generation_parameters:
// the last line holds the fields if at least three "Key: value" pairs are
// found in it, lines up to one starting with "Negative prompt:" form the
// prompt, and the rest the negative prompt (each line trimmed). Known
// fields fill the typed members; the others go to Extra in order, with
// quoted values unquoted. It fails only when a known numeric field does
// not parse.
func ParseParams(s string) (Params, error) {
	var p Params
	lines := strings.Split(strings.TrimSpace(s), "\n")
	last := lines[len(lines)-1]
	lines = lines[:len(lines)-1]
	if len(reParam.FindAllStringSubmatch(last, -1)) < 3 {
		lines = append(lines, last)
		last = ""
	}
	negative := false
	for _, line := range lines {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "Negative prompt:") {
			negative = true
			line = strings.TrimSpace(line[len("Negative prompt:"):])
		}
		dst := &p.Prompt
		if negative {
			dst = &p.NegativePrompt
		}
		if *dst != "" {
			*dst += "\n"
		}
		*dst += line
	}
	for _, m := range reParam.FindAllStringSubmatch(last, -1) {
		k, v := m[1], m[2]
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			var u string
			if json.Unmarshal([]byte(v), &u) == nil {
				v = u
			}
		}
		if err := p.setField(k, v); err != nil {
			return Params{}, fmt.Errorf("imageio: parse parameters: %q: %w", k+": "+v, err)
		}
	}
	return p, nil
}

// setField stores one parsed field, converting the known numeric ones.
func (p *Params) setField(k, v string) error {
	num := strings.TrimSpace(v)
	var err error
	switch k {
	case "Steps":
		p.Steps, err = strconv.Atoi(num)
	case "Sampler":
		p.Sampler = v
	case "Schedule type":
		p.Scheduler = v
	case "CFG scale":
		p.CFGScale, err = strconv.ParseFloat(num, 64)
	case "Seed":
		p.Seed, err = strconv.ParseInt(num, 10, 64)
	case "Size":
		w, h, ok := strings.Cut(num, "x")
		if !ok {
			return fmt.Errorf("size is not WIDTHxHEIGHT")
		}
		if p.Width, err = strconv.Atoi(w); err == nil {
			p.Height, err = strconv.Atoi(h)
		}
	case "Model hash":
		p.ModelHash = v
	case "Model":
		p.Model = v
	case "Denoising strength":
		p.DenoisingStrength, err = strconv.ParseFloat(num, 64)
	case "Clip skip":
		p.ClipSkip, err = strconv.Atoi(num)
	default:
		p.Extra = append(p.Extra, KV{k, v})
	}
	return err
}

// Get returns the value of the Extra field named key.
func (p Params) Get(key string) (string, bool) {
	for _, kv := range p.Extra {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}

// ModelHash returns A1111's "AutoV2" short hash of the file at path: the
// first 10 hex digits of the SHA-256 of the whole file. The file is
// streamed, as checkpoints run to gigabytes.
func ModelHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("imageio: model hash: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		return "", fmt.Errorf("imageio: model hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil))[:10], nil
}
