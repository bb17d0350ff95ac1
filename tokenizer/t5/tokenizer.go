// Package t5 is the T5 tokenizer (transformers' T5Tokenizer, slow/legacy
// behaviour): a SentencePiece unigram model read from its .model file
// (spiece.model in a checkpoint folder) with a small built-in protobuf
// reader, the model's precompiled normaliser, Viterbi segmentation, the
// "<extra_id_N>" sentinels, and EOS/padding/truncation/attention masks as
// PixArt-style pipelines request them.
package t5

import (
	"fmt"
	"os"
	"strings"
	"unicode/utf8"
)

// Options configures a Tokenizer.
type Options struct {
	// ExtraIDs is the number of <extra_id_N> sentinel tokens; 0 means T5's
	// default of 100, a negative value means none.
	ExtraIDs int
}

// Tokenizer encodes text with a SentencePiece unigram model. It is safe for
// concurrent use.
type Tokenizer struct {
	model    *modelProto
	cmap     *charsMap
	pieceID  map[string]int // pieces the segmentation may use
	maxPiece int            // longest such piece in bytes
	minScore float32
	maxScore float32
	unkID    int

	specials []special // added/special tokens matched in raw text
	eosID    int
	padID    int
	size     int
}

type special struct {
	text string
	id   int
}

// Load reads a SentencePiece model file (e.g. spiece.model).
func Load(path string, opts Options) (*Tokenizer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("t5: %w", err)
	}
	return New(b, opts)
}

// New builds a tokenizer from the bytes of a SentencePiece model file.
func New(model []byte, opts Options) (*Tokenizer, error) {
	m, err := parseModel(model)
	if err != nil {
		return nil, err
	}
	if m.modelType != 1 {
		return nil, fmt.Errorf("t5: sentencepiece model type %d is not unigram (1)", m.modelType)
	}
	cm, err := parseCharsMap(m.norm.charsmap)
	if err != nil {
		return nil, err
	}
	t := &Tokenizer{model: m, cmap: cm, pieceID: map[string]int{}, unkID: -1}
	first := true
	byText := map[string]int{}
	for i, p := range m.pieces {
		if _, dup := byText[p.text]; !dup {
			byText[p.text] = i
		}
		switch p.typ {
		case typeNormal, typeUserDefined:
			t.pieceID[p.text] = i
			if len(p.text) > t.maxPiece {
				t.maxPiece = len(p.text)
			}
		case typeUnknown:
			if t.unkID < 0 {
				t.unkID = i
			}
		}
		if p.typ == typeNormal {
			if first || p.score < t.minScore {
				t.minScore = p.score
			}
			if first || p.score > t.maxScore {
				t.maxScore = p.score
			}
			first = false
		}
	}
	if t.unkID < 0 {
		return nil, fmt.Errorf("t5: sentencepiece model has no unknown piece")
	}

	// transformers' T5Tokenizer: sentinels count down from the top of the
	// extended vocabulary, then special tokens that are no pieces of the
	// model are added after them.
	extra := opts.ExtraIDs
	if extra == 0 {
		extra = 100
	}
	if extra < 0 {
		extra = 0
	}
	n := len(m.pieces)
	for i := 0; i < extra; i++ {
		t.specials = append(t.specials, special{fmt.Sprintf("<extra_id_%d>", i), n + extra - 1 - i})
	}
	next := n + extra
	lookup := func(s string) int {
		if id, ok := byText[s]; ok {
			return id
		}
		id := next
		next++
		return id
	}
	t.eosID = lookup("</s>")
	unk := lookup("<unk>")
	t.padID = lookup("<pad>")
	t.specials = append(t.specials, special{"</s>", t.eosID}, special{"<unk>", unk}, special{"<pad>", t.padID})
	t.size = next
	return t, nil
}

// VocabSize is the number of ids (pieces, sentinels and added tokens;
// transformers' len(tokenizer)).
func (t *Tokenizer) VocabSize() int { return t.size }

// EOSID returns the id of "</s>".
func (t *Tokenizer) EOSID() int { return t.eosID }

// PadID returns the id of "<pad>".
func (t *Tokenizer) PadID() int { return t.padID }

// UnkID returns the id of the unknown piece.
func (t *Tokenizer) UnkID() int { return t.unkID }

// Normalize returns the model's normalised form of text, with "▁" for
// spaces and the dummy prefix.
func (t *Tokenizer) Normalize(text string) string { return t.normalize(text) }

// segment is one piece of the segmentation.
type segment struct {
	text string
	id   int
}

// encodePieces is sentencepiece's Encode: normalise, then the Viterbi best
// segmentation, with runs of unknown characters merged into one piece.
func (t *Tokenizer) encodePieces(text string) []segment {
	s := t.normalize(text)
	if s == "" {
		return nil
	}
	type node struct {
		score   float32
		start   int
		id      int
		reached bool
	}
	best := make([]node, len(s)+1)
	best[0].reached = true
	unkScore := t.minScore - 10
	for start := 0; start < len(s); {
		_, mblen := utf8.DecodeRuneInString(s[start:])
		base := best[start].score
		single := false
		limit := min(len(s), start+t.maxPiece)
		for end := start + 1; end <= limit; end++ {
			id, ok := t.pieceID[s[start:end]]
			if !ok {
				continue
			}
			p := t.model.pieces[id]
			var cand float32
			if p.typ == typeUserDefined {
				cand = float32(float64(float32(end-start)*t.maxScore) - 0.1 + float64(base))
			} else {
				cand = p.score + base
			}
			if nd := &best[end]; !nd.reached || cand > nd.score {
				*nd = node{score: cand, start: start, id: id, reached: true}
			}
			if end-start == mblen {
				single = true
			}
		}
		if !single {
			cand := unkScore + base
			if nd := &best[start+mblen]; !nd.reached || cand > nd.score {
				*nd = node{score: cand, start: start, id: t.unkID, reached: true}
			}
		}
		start += mblen
	}
	var rev []segment
	for end := len(s); end > 0; {
		nd := best[end]
		rev = append(rev, segment{s[nd.start:end], nd.id})
		end = nd.start
	}
	out := make([]segment, 0, len(rev))
	for i := len(rev) - 1; i >= 0; i-- {
		sg := rev[i]
		if sg.id == t.unkID && len(out) > 0 && out[len(out)-1].id == t.unkID {
			out[len(out)-1].text += sg.text
			continue
		}
		out = append(out, sg)
	}
	return out
}

// Pieces returns sentencepiece's pieces of text (sp.encode(text,
// out_type=str)); special-token strings are not recognised.
func (t *Tokenizer) Pieces(text string) []string {
	segs := t.encodePieces(text)
	out := make([]string, len(segs))
	for i, s := range segs {
		out[i] = s.text
	}
	return out
}

// Tokens returns the ids of text as transformers tokenizes it: special
// tokens ("</s>", "<pad>", "<unk>", "<extra_id_N>") written in the text are
// their ids, the text between them is encoded with the model. No EOS is
// added.
func (t *Tokenizer) Tokens(text string) []int {
	var ids []int
	encode := func(chunk string) {
		for _, s := range t.encodePieces(chunk) {
			ids = append(ids, s.id)
		}
	}
	start := 0
	for i := 0; i < len(text); {
		if text[i] != '<' {
			i++
			continue
		}
		var hit *special
		for k := range t.specials {
			sp := &t.specials[k]
			if strings.HasPrefix(text[i:], sp.text) && (hit == nil || len(sp.text) > len(hit.text)) {
				hit = sp
			}
		}
		if hit == nil {
			i++
			continue
		}
		if i > start {
			encode(text[start:i])
		}
		ids = append(ids, hit.id)
		i += len(hit.text)
		start = i
	}
	if start < len(text) {
		encode(text[start:])
	}
	return ids
}

// Encode returns the ids and attention mask of text: the tokens cut to
// maxLength-1, then EOS (unless they already end with it), padded with the
// pad id to maxLength. maxLength <= 0 means no truncation and no padding.
func (t *Tokenizer) Encode(text string, maxLength int) (ids, mask []int64) {
	toks := t.Tokens(text)
	if maxLength > 0 && len(toks)+1 > maxLength {
		toks = toks[:max(maxLength-1, 0)]
	}
	if len(toks) == 0 || toks[len(toks)-1] != t.eosID {
		toks = append(toks, t.eosID)
	}
	n := len(toks)
	if maxLength > 0 {
		n = max(maxLength, n)
	}
	ids = make([]int64, n)
	mask = make([]int64, n)
	for i := range ids {
		if i < len(toks) {
			ids[i], mask[i] = int64(toks[i]), 1
		} else {
			ids[i] = int64(t.padID)
		}
	}
	return ids, mask
}

// EncodeBatch encodes texts into row-major [len(texts), maxLength] ids and
// mask. maxLength must be positive.
func (t *Tokenizer) EncodeBatch(texts []string, maxLength int) (ids, mask []int64, err error) {
	if maxLength <= 0 {
		return nil, nil, fmt.Errorf("t5: EncodeBatch needs a positive maxLength, got %d", maxLength)
	}
	for _, s := range texts {
		i, m := t.Encode(s, maxLength)
		ids = append(ids, i...)
		mask = append(mask, m...)
	}
	return ids, mask, nil
}
