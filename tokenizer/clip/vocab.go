package clip

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed" // for the vocabulary
	"fmt"
	"strings"
	"sync"
)

// The BPE merges of openai/CLIP (bpe_simple_vocab_16e6.txt.gz, unchanged).
// The vocabulary is derived from them as openai's SimpleTokenizer does.
//
//go:embed bpe_simple_vocab_16e6.txt.gz
var mergesGz []byte

const (
	// VocabSize is the number of token ids.
	VocabSize = 49408
	// BOS is the id of <|startoftext|>.
	BOS = 49406
	// EOS is the id of <|endoftext|>.
	EOS = 49407
	// ContextLength is the number of ids a prompt is encoded to.
	ContextLength = 77

	numMerges = VocabSize - 256 - 256 - 2 // 48894
	endOfWord = "</w>"
	bosText   = "<|startoftext|>"
	eosText   = "<|endoftext|>"
)

// vocab is the shared, immutable vocabulary built on first use.
type vocab struct {
	byteChar [256]string    // byte -> printable unicode stand-in
	encoder  map[string]int // token -> id
	decoder  []string       // id -> token
	ranks    map[pair]int   // merge -> rank (lower merges first)
	charByte map[rune]byte  // inverse of byteChar
	cache    sync.Map       // word -> []int ids
	cacheN   int            // approximate entries in cache
	cacheMu  sync.Mutex     // guards cacheN
	err      error
	once     sync.Once
}

type pair struct{ a, b string }

var shared vocab

func loadVocab() (*vocab, error) {
	shared.once.Do(func() { shared.err = shared.build() })
	if shared.err != nil {
		return nil, shared.err
	}
	return &shared, nil
}

// bytesToUnicode returns, in id order, the printable stand-in for each byte:
// printable Latin-1 bytes stand for themselves, the others map to U+0100 and
// up in byte order.
func bytesToUnicode() (order []byte, chars [256]rune) {
	printable := func(b int) bool {
		return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
	}
	for b := 0; b < 256; b++ {
		if printable(b) {
			order = append(order, byte(b))
			chars[b] = rune(b)
		}
	}
	n := 0
	for b := 0; b < 256; b++ {
		if !printable(b) {
			order = append(order, byte(b))
			chars[b] = rune(256 + n)
			n++
		}
	}
	return order, chars
}

func (v *vocab) build() error {
	zr, err := gzip.NewReader(bytes.NewReader(mergesGz))
	if err != nil {
		return fmt.Errorf("clip: reading embedded merges: %w", err)
	}
	defer zr.Close()
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	var merges []pair
	line := 0
	for sc.Scan() {
		line++
		if line == 1 {
			continue // "#version" header
		}
		if len(merges) == numMerges {
			break
		}
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			return fmt.Errorf("clip: merges line %d: %q is not a pair", line, sc.Text())
		}
		merges = append(merges, pair{f[0], f[1]})
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("clip: reading embedded merges: %w", err)
	}
	if len(merges) != numMerges {
		return fmt.Errorf("clip: embedded merges have %d entries, want %d", len(merges), numMerges)
	}
	order, chars := bytesToUnicode()
	v.charByte = make(map[rune]byte, 256)
	for b := 0; b < 256; b++ {
		v.byteChar[b] = string(chars[b])
		v.charByte[chars[b]] = byte(b)
	}
	v.decoder = make([]string, 0, VocabSize)
	for _, b := range order {
		v.decoder = append(v.decoder, v.byteChar[b])
	}
	for _, b := range order {
		v.decoder = append(v.decoder, v.byteChar[b]+endOfWord)
	}
	v.ranks = make(map[pair]int, len(merges))
	for i, m := range merges {
		v.decoder = append(v.decoder, m.a+m.b)
		v.ranks[m] = i
	}
	v.decoder = append(v.decoder, bosText, eosText)
	v.encoder = make(map[string]int, len(v.decoder))
	for i, t := range v.decoder {
		v.encoder[t] = i
	}
	return nil
}

// maxCache bounds the word cache.
const maxCache = 1 << 16

// word returns the ids of one pre-token (already byte-encoded).
func (v *vocab) word(w string) []int {
	if ids, ok := v.cache.Load(w); ok {
		return ids.([]int)
	}
	ids := v.bpe(w)
	v.cacheMu.Lock()
	if v.cacheN < maxCache {
		v.cacheN++
		v.cache.Store(w, ids)
	}
	v.cacheMu.Unlock()
	return ids
}

// bpe applies the merges to a word, lowest rank first, and maps the parts
// to ids. The last symbol carries the end-of-word marker.
func (v *vocab) bpe(w string) []int {
	var parts []string
	for _, r := range w {
		parts = append(parts, string(r))
	}
	if len(parts) == 0 {
		return nil
	}
	parts[len(parts)-1] += endOfWord
	for len(parts) > 1 {
		best, bestRank := -1, 0
		for i := 0; i+1 < len(parts); i++ {
			if r, ok := v.ranks[pair{parts[i], parts[i+1]}]; ok && (best < 0 || r < bestRank) {
				best, bestRank = i, r
			}
		}
		if best < 0 {
			break
		}
		a, b := parts[best], parts[best+1]
		merged := parts[:0:0]
		for i := 0; i < len(parts); {
			if i+1 < len(parts) && parts[i] == a && parts[i+1] == b {
				merged = append(merged, a+b)
				i += 2
				continue
			}
			merged = append(merged, parts[i])
			i++
		}
		parts = merged
	}
	ids := make([]int, 0, len(parts))
	for _, p := range parts {
		id, ok := v.encoder[p]
		if !ok {
			// Cannot happen: every single byte symbol is in the vocabulary
			// with and without the end-of-word marker.
			continue
		}
		ids = append(ids, id)
	}
	return ids
}
