// Package clip is the byte-level BPE tokenizer of CLIP text encoders
// (Stable Diffusion 1.x/2.x, both SDXL encoders), on openai's vocabulary,
// which is embedded in the binary (gzipped) and decoded on first use.
//
// It reproduces transformers' CLIPTokenizer as diffusers pipelines call it
// (padding to max_length 77, truncation): the text is cleaned as with ftfy
// installed (ftfy.fix_text repairs, whitespace folding, lower case), split by
// CLIP's pre-tokenizer pattern, each piece BPE-encoded; <|startoftext|> and
// <|endoftext|> surround at most 75 tokens, and the row is padded. SD 1.x
// pads with <|endoftext|>; SDXL's second tokenizer pads with "!" (id 0),
// which it registers as a special token, so every "!" of a prompt also
// becomes id 0.
package clip

import (
	"errors"
	"fmt"
	"html"
	"strings"
)

// PadStyle selects the padding convention.
type PadStyle int

const (
	// PadEOS pads with <|endoftext|> (SD 1.x/2.x, SDXL tokenizer).
	PadEOS PadStyle = iota
	// PadExclamation is SDXL's tokenizer_2: pad token "!" (id 0), registered
	// as a special token so that each "!" in the text is its own id 0.
	PadExclamation
	// PadZero pads with id 0 and tokenizes "!" normally, as openai's
	// clip.tokenize does.
	PadZero
)

// Cleaner selects the text normalisation.
type Cleaner int

const (
	// CleanFTFY is transformers' CLIPTokenizer with the ftfy package
	// installed (the usual diffusers setup): ftfy.fix_text-style repairs,
	// whitespace folding, lower case.
	CleanFTFY Cleaner = iota
	// CleanBasic is transformers' CLIPTokenizer without ftfy: BERT's basic
	// clean-up (control characters dropped, spaces around CJK ideographs,
	// NFC, lower case), no HTML unescaping.
	CleanBasic
	// CleanOpenAI is openai's SimpleTokenizer: the ftfy repairs, HTML
	// unescaped twice more, whitespace folding, lower case.
	CleanOpenAI
)

// Options configures a Tokenizer. The zero value is the SD 1.x tokenizer.
type Options struct {
	Pad     PadStyle
	Cleaner Cleaner
	// MaxLength is the encoded length (default ContextLength, 77); it must be
	// at least 2.
	MaxLength int
}

// Tokenizer encodes prompts to CLIP token ids. It is safe for concurrent use.
type Tokenizer struct {
	v    *vocab
	opts Options
}

// New returns a tokenizer; it decodes the embedded vocabulary on first use.
func New(opts Options) (*Tokenizer, error) {
	if opts.MaxLength == 0 {
		opts.MaxLength = ContextLength
	}
	if opts.MaxLength < 2 {
		return nil, fmt.Errorf("clip: MaxLength %d is below 2", opts.MaxLength)
	}
	switch opts.Pad {
	case PadEOS, PadExclamation, PadZero:
	default:
		return nil, fmt.Errorf("clip: unknown pad style %d", opts.Pad)
	}
	switch opts.Cleaner {
	case CleanFTFY, CleanBasic, CleanOpenAI:
	default:
		return nil, fmt.Errorf("clip: unknown cleaner %d", opts.Cleaner)
	}
	v, err := loadVocab()
	if err != nil {
		return nil, err
	}
	return &Tokenizer{v: v, opts: opts}, nil
}

// MaxLength returns the encoded length.
func (t *Tokenizer) MaxLength() int { return t.opts.MaxLength }

// PadID returns the padding id.
func (t *Tokenizer) PadID() int64 {
	if t.opts.Pad == PadEOS {
		return EOS
	}
	return 0
}

// clean normalises one text piece.
func (t *Tokenizer) clean(s string) string {
	switch t.opts.Cleaner {
	case CleanBasic:
		return basicClean(s)
	case CleanOpenAI:
		s = html.UnescapeString(html.UnescapeString(fixText(s)))
	default:
		s = fixText(s)
	}
	return pyLower(whitespaceClean(s))
}

// Tokens returns the BPE ids of text without <|startoftext|>, <|endoftext|>,
// truncation or padding. Special-token strings in the text map to their ids.
func (t *Tokenizer) Tokens(text string) []int {
	var ids []int
	for _, piece := range t.splitSpecial(text) {
		switch piece {
		case bosText:
			ids = append(ids, BOS)
			continue
		case eosText:
			ids = append(ids, EOS)
			continue
		case "!":
			if t.opts.Pad == PadExclamation {
				ids = append(ids, 0)
				continue
			}
		}
		for _, w := range preTokenize(t.clean(piece)) {
			switch w {
			case bosText:
				ids = append(ids, BOS)
				continue
			case eosText:
				ids = append(ids, EOS)
				continue
			}
			var b strings.Builder
			for i := 0; i < len(w); i++ {
				b.WriteString(t.v.byteChar[w[i]])
			}
			ids = append(ids, t.v.word(b.String())...)
		}
	}
	return ids
}

// splitSpecial splits text around the registered special tokens as
// transformers does before tokenizing (exact, case-sensitive matches);
// openai's tokenizer registers none.
func (t *Tokenizer) splitSpecial(text string) []string {
	if t.opts.Cleaner == CleanOpenAI {
		return []string{text}
	}
	specials := []string{bosText, eosText}
	if t.opts.Pad == PadExclamation {
		specials = append(specials, "!")
	}
	var out []string
	start := 0
	for i := 0; i < len(text); {
		matched := ""
		for _, sp := range specials {
			if strings.HasPrefix(text[i:], sp) {
				matched = sp
				break
			}
		}
		if matched == "" {
			i++
			continue
		}
		if i > start {
			out = append(out, text[start:i])
		}
		out = append(out, matched)
		i += len(matched)
		start = i
	}
	if start < len(text) {
		out = append(out, text[start:])
	}
	return out
}

// Encoding is one encoded prompt.
type Encoding struct {
	// IDs holds MaxLength ids: <|startoftext|>, the tokens, <|endoftext|>,
	// padding.
	IDs []int64
	// Mask is 1 for <|startoftext|>, the tokens and <|endoftext|>, 0 for
	// padding (transformers' attention_mask).
	Mask []int64
	// Length is the number of unpadded ids (tokens + 2, after truncation).
	Length int
	// Tokens is the number of text tokens before truncation.
	Tokens int
	// Truncated reports that tokens were cut to fit MaxLength.
	Truncated bool
}

// EncodeFull encodes one prompt with its mask and lengths.
func (t *Tokenizer) EncodeFull(text string) Encoding {
	toks := t.Tokens(text)
	n := t.opts.MaxLength
	keep := len(toks)
	if keep > n-2 {
		keep = n - 2
	}
	e := Encoding{
		IDs:       make([]int64, n),
		Mask:      make([]int64, n),
		Length:    keep + 2,
		Tokens:    len(toks),
		Truncated: keep < len(toks),
	}
	e.IDs[0] = BOS
	for i := 0; i < keep; i++ {
		e.IDs[i+1] = int64(toks[i])
	}
	e.IDs[keep+1] = EOS
	pad := t.PadID()
	for i := range e.IDs {
		if i < e.Length {
			e.Mask[i] = 1
		} else {
			e.IDs[i] = pad
		}
	}
	return e
}

// Encode returns the MaxLength ids of one prompt.
func (t *Tokenizer) Encode(text string) []int64 { return t.EncodeFull(text).IDs }

// EncodeBatch encodes prompts into one row-major [len(texts), MaxLength]
// slice.
func (t *Tokenizer) EncodeBatch(texts []string) []int64 {
	out := make([]int64, 0, len(texts)*t.opts.MaxLength)
	for _, s := range texts {
		out = append(out, t.Encode(s)...)
	}
	return out
}

// Decode turns ids back into text (special tokens dropped, end-of-word
// markers as spaces). Unknown ids give an error.
func (t *Tokenizer) Decode(ids []int64) (string, error) {
	var raw []byte
	for _, id := range ids {
		if id < 0 || id >= int64(len(t.v.decoder)) {
			return "", fmt.Errorf("clip: id %d outside the vocabulary", id)
		}
		if id == BOS || id == EOS {
			continue
		}
		tok := t.v.decoder[id]
		word := strings.HasSuffix(tok, endOfWord)
		tok = strings.TrimSuffix(tok, endOfWord)
		for _, r := range tok {
			b, ok := t.v.charByte[r]
			if !ok {
				return "", errors.New("clip: corrupt vocabulary entry")
			}
			raw = append(raw, b)
		}
		if word {
			raw = append(raw, ' ')
		}
	}
	return strings.TrimSpace(strings.ToValidUTF8(string(raw), "\uFFFD")), nil
}
