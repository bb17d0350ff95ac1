// Package bert is transformers' slow BertTokenizer: a WordPiece vocabulary
// read from vocab.txt (one token a line, id = line number), the special
// tokens split out of the raw text first, BasicTokenizer's clean-up
// (control characters dropped, whitespace normalised, spaces around CJK
// ideographs, NFC, lower-casing and accent stripping, punctuation split),
// then greedy longest-match-first WordPiece with "##" continuations; and
// [CLS] … [SEP], truncation, padding and attention masks as pipelines
// (Hunyuan-DiT) request them.
package bert

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"unicode"

	"github.com/diffuse-go/diffuse/tokenizer/internal/pytext"
)

// Options configures a Tokenizer; the names follow BertTokenizer's
// arguments. Start from DefaultOptions.
type Options struct {
	DoLowerCase          bool
	TokenizeChineseChars bool
	// StripAccents nil follows DoLowerCase, as BERT does.
	StripAccents *bool
	// NeverSplit lists words BasicTokenizer leaves whole (matched after
	// the base class's lower-casing).
	NeverSplit                                        []string
	UnkToken, SepToken, PadToken, ClsToken, MaskToken string
	// MaxInputCharsPerWord: longer words become the unknown token.
	MaxInputCharsPerWord int
}

// DefaultOptions returns BertTokenizer's defaults (uncased).
func DefaultOptions() Options {
	return Options{DoLowerCase: true, TokenizeChineseChars: true, UnkToken: "[UNK]", SepToken: "[SEP]",
		PadToken: "[PAD]", ClsToken: "[CLS]", MaskToken: "[MASK]", MaxInputCharsPerWord: 100}
}

// Tokenizer encodes text with a WordPiece vocabulary. It is safe for
// concurrent use.
type Tokenizer struct {
	opts                 Options
	vocab                map[string]int
	size                 int
	specials             []string // special tokens, split out of raw text
	unkID, clsID, sepID  int
	padID                int
	neverSplit           map[string]bool
	stripAccents, lowers bool
}

// Load reads a vocab.txt file.
func Load(path string, opts Options) (*Tokenizer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bert: %w", err)
	}
	return New(bytes.NewReader(b), opts)
}

// New builds a tokenizer from a vocab.txt stream: each line (without its
// "\n") is a token whose id is the line number; a repeated token keeps its
// last id, as transformers' load_vocab does.
func New(r io.Reader, opts Options) (*Tokenizer, error) {
	t := &Tokenizer{opts: opts, vocab: map[string]int{}}
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			t.vocab[strings.TrimSuffix(line, "\n")] = t.size
			t.size++
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("bert: reading vocabulary: %w", err)
		}
	}
	if t.size == 0 {
		return nil, fmt.Errorf("bert: empty vocabulary")
	}
	if opts.MaxInputCharsPerWord <= 0 {
		return nil, fmt.Errorf("bert: MaxInputCharsPerWord must be positive, got %d", opts.MaxInputCharsPerWord)
	}
	ids := map[string]*int{opts.UnkToken: &t.unkID, opts.ClsToken: &t.clsID, opts.SepToken: &t.sepID, opts.PadToken: &t.padID}
	for tok, dst := range ids {
		id, ok := t.vocab[tok]
		if !ok {
			return nil, fmt.Errorf("bert: special token %q is not in the vocabulary", tok)
		}
		*dst = id
	}
	t.neverSplit = map[string]bool{}
	for _, s := range append(slices.Clone(opts.NeverSplit), t.specialTokens()...) {
		t.neverSplit[s] = true
	}
	t.specials = t.specialTokens()
	// Longest first, so that a special token containing another wins.
	slices.SortStableFunc(t.specials, func(a, b string) int { return len(b) - len(a) })
	t.lowers = opts.DoLowerCase
	t.stripAccents = opts.DoLowerCase
	if opts.StripAccents != nil {
		t.stripAccents = *opts.StripAccents
	}
	return t, nil
}

// specialTokens lists the non-empty special tokens (all_special_tokens).
func (t *Tokenizer) specialTokens() []string {
	var out []string
	for _, s := range []string{t.opts.UnkToken, t.opts.SepToken, t.opts.PadToken, t.opts.ClsToken, t.opts.MaskToken} {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// VocabSize is the number of vocabulary lines.
func (t *Tokenizer) VocabSize() int { return t.size }

// PadID is the [PAD] id.
func (t *Tokenizer) PadID() int { return t.padID }

// ClsID is the [CLS] id.
func (t *Tokenizer) ClsID() int { return t.clsID }

// SepID is the [SEP] id.
func (t *Tokenizer) SepID() int { return t.sepID }

// UnkID is the [UNK] id.
func (t *Tokenizer) UnkID() int { return t.unkID }

// Tokenize returns the WordPiece tokens of text, without [CLS]/[SEP]
// (PreTrainedTokenizer.tokenize).
func (t *Tokenizer) Tokenize(text string) []string {
	if t.lowers {
		text = t.lowerOutsideSpecials(text)
	}
	var out []string
	for _, chunk := range t.splitSpecials(text) {
		if chunk.special {
			out = append(out, chunk.text)
			continue
		}
		for _, w := range t.basicTokenize(chunk.text) {
			if t.neverSplit[w] {
				out = append(out, w)
			} else {
				out = append(out, t.wordpiece(w)...)
			}
		}
	}
	return out
}

// lowerOutsideSpecials is the base class's lower-casing of everything but
// the special tokens. It lower-cases one character at a time (the regex
// "(.+?)"), so Σ always becomes σ: no final-sigma rule.
func (t *Tokenizer) lowerOutsideSpecials(text string) string {
	var b strings.Builder
	for _, c := range t.splitSpecials(text) {
		if c.special {
			b.WriteString(c.text)
			continue
		}
		for _, r := range c.text {
			b.WriteString(pytext.Lower(string(r)))
		}
	}
	return b.String()
}

type chunk struct {
	text    string
	special bool
}

// splitSpecials cuts text at each occurrence of a special token, leftmost
// first (the added-tokens trie).
func (t *Tokenizer) splitSpecials(text string) []chunk {
	var out []chunk
	start := 0
	for i := 0; i < len(text); i++ {
		for _, s := range t.specials {
			if strings.HasPrefix(text[i:], s) {
				if i > start {
					out = append(out, chunk{text: text[start:i]})
				}
				out = append(out, chunk{text: s, special: true})
				i += len(s) - 1
				start = i + 1
				break
			}
		}
	}
	if start < len(text) {
		out = append(out, chunk{text: text[start:]})
	}
	return out
}

// basicTokenize is BasicTokenizer.tokenize.
func (t *Tokenizer) basicTokenize(text string) []string {
	text = pytext.NFC(t.cleanText(text))
	var split []string
	for _, tok := range whitespaceTokenize(text) {
		if !t.neverSplit[tok] {
			if t.lowers {
				tok = pytext.Lower(tok)
			}
			if t.stripAccents {
				tok = stripAccents(tok)
			}
		}
		split = append(split, t.splitOnPunct(tok)...)
	}
	return whitespaceTokenize(strings.Join(split, " "))
}

// cleanText drops NUL, U+FFFD and control characters, maps whitespace to
// spaces and, with TokenizeChineseChars, puts spaces around CJK ideographs.
func (t *Tokenizer) cleanText(text string) string {
	var b strings.Builder
	for _, r := range text {
		switch {
		case r == 0 || r == 0xfffd || pytext.IsBERTControl(r):
		case r == ' ' || r == '\t' || r == '\n' || r == '\r' || unicode.Is(unicode.Zs, r):
			b.WriteByte(' ')
		case t.opts.TokenizeChineseChars && pytext.IsCJK(r):
			b.WriteByte(' ')
			b.WriteRune(r)
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// whitespaceTokenize is Python's str.split().
func whitespaceTokenize(s string) []string { return strings.FieldsFunc(s, pytext.IsSpace) }

// stripAccents removes the nonspacing marks of the NFD form.
func stripAccents(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.Is(unicode.Mn, r) {
			return -1
		}
		return r
	}, pytext.NFD(s))
}

// isPunct is BERT's _is_punctuation: every non-alphanumeric printable
// ASCII character, and Unicode category P.
func isPunct(r rune) bool {
	if (r >= 33 && r <= 47) || (r >= 58 && r <= 64) || (r >= 91 && r <= 96) || (r >= 123 && r <= 126) {
		return true
	}
	return unicode.In(r, unicode.P)
}

// splitOnPunct makes every punctuation character a word of its own.
func (t *Tokenizer) splitOnPunct(s string) []string {
	if t.neverSplit[s] {
		return []string{s}
	}
	var out []string
	var cur strings.Builder
	for _, r := range s {
		if isPunct(r) {
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
			out = append(out, string(r))
			continue
		}
		cur.WriteRune(r)
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// wordpiece splits one word greedily into the longest vocabulary pieces,
// later pieces prefixed "##"; a word that cannot be covered, or is longer
// than MaxInputCharsPerWord characters, is the unknown token.
func (t *Tokenizer) wordpiece(word string) []string {
	var out []string
	for _, w := range whitespaceTokenize(word) {
		rs := []rune(w)
		if len(rs) > t.opts.MaxInputCharsPerWord {
			out = append(out, t.opts.UnkToken)
			continue
		}
		var pieces []string
		for start := 0; start < len(rs); {
			end, piece := len(rs), ""
			for ; start < end; end-- {
				sub := string(rs[start:end])
				if start > 0 {
					sub = "##" + sub
				}
				if _, ok := t.vocab[sub]; ok {
					piece = sub
					break
				}
			}
			if piece == "" {
				pieces = []string{t.opts.UnkToken}
				break
			}
			pieces = append(pieces, piece)
			start = end
		}
		out = append(out, pieces...)
	}
	return out
}

// ID returns a token's id, the unknown token's for one outside the
// vocabulary.
func (t *Tokenizer) ID(token string) int {
	if id, ok := t.vocab[token]; ok {
		return id
	}
	return t.unkID
}

// Encode returns the ids and attention mask of text: [CLS], the tokens cut
// to maxLength-2, [SEP], padded with [PAD] to maxLength. maxLength <= 0
// means no truncation and no padding.
func (t *Tokenizer) Encode(text string, maxLength int) (ids, mask []int64) {
	toks := t.Tokenize(text)
	if maxLength > 0 && len(toks)+2 > maxLength {
		toks = toks[:max(maxLength-2, 0)]
	}
	seq := make([]int64, 0, len(toks)+2)
	seq = append(seq, int64(t.clsID))
	for _, s := range toks {
		seq = append(seq, int64(t.ID(s)))
	}
	seq = append(seq, int64(t.sepID))
	n := max(maxLength, len(seq))
	ids, mask = make([]int64, n), make([]int64, n)
	for i := range ids {
		if i < len(seq) {
			ids[i], mask[i] = seq[i], 1
		} else {
			ids[i] = int64(t.padID)
		}
	}
	return ids, mask
}
