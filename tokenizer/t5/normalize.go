package t5

import (
	"encoding/binary"
	"errors"
	"strings"
	"unicode/utf8"
)

// charsMap is sentencepiece's precompiled normalisation map: a darts-clone
// double-array trie over UTF-8 byte strings whose values index a pool of
// NUL-terminated replacement strings.
type charsMap struct {
	units []uint32
	pool  []byte
}

func parseCharsMap(b []byte) (*charsMap, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if len(b) < 4 {
		return nil, errors.New("t5: precompiled charsmap too short")
	}
	n := binary.LittleEndian.Uint32(b)
	if n%4 != 0 || uint64(n) > uint64(len(b)-4) {
		return nil, errors.New("t5: bad precompiled charsmap trie size")
	}
	cm := &charsMap{units: make([]uint32, n/4), pool: b[4+n:]}
	for i := range cm.units {
		cm.units[i] = binary.LittleEndian.Uint32(b[4+4*i:])
	}
	return cm, nil
}

func dartsHasLeaf(u uint32) bool  { return (u>>8)&1 == 1 }
func dartsValue(u uint32) uint32  { return u & (1<<31 - 1) }
func dartsLabel(u uint32) uint32  { return u & (1<<31 | 0xff) }
func dartsOffset(u uint32) uint32 { return (u >> 10) << ((u & (1 << 9)) >> 6) }

// longest returns the replacement and byte length of the longest key that
// prefixes s, or ok=false.
func (cm *charsMap) longest(s string) (repl string, n int, ok bool) {
	if cm == nil || len(cm.units) == 0 {
		return "", 0, false
	}
	pos := dartsOffset(cm.units[0])
	for i := 0; i < len(s); i++ {
		c := uint32(s[i])
		if c == 0 {
			break
		}
		pos ^= c
		if int(pos) >= len(cm.units) {
			break
		}
		u := cm.units[pos]
		if dartsLabel(u) != c {
			break
		}
		pos ^= dartsOffset(u)
		if int(pos) >= len(cm.units) {
			break
		}
		if dartsHasLeaf(u) {
			v := dartsValue(cm.units[pos])
			if int(v) < len(cm.pool) {
				end := strings.IndexByte(string(cm.pool[v:]), 0)
				if end < 0 {
					end = len(cm.pool) - int(v)
				}
				repl, n, ok = string(cm.pool[v:int(v)+end]), i+1, true
			}
		}
	}
	return repl, n, ok
}

const spaceSymbol = "▁"

// normalizePrefix normalises the first character (or mapped sequence) of s.
func (t *Tokenizer) normalizePrefix(s string) (string, int) {
	if repl, n, ok := t.cmap.longest(s); ok {
		return repl, n
	}
	r, n := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && n <= 1 {
		return "\uFFFD", 1
	}
	return s[:n], n
}

// normalize applies the model's normaliser: the character map, dropping
// leading, trailing and repeated spaces, a dummy "▁" prefix, and spaces
// written as "▁".
func (t *Tokenizer) normalize(s string) string {
	spec := t.model.norm
	if spec.removeExtraWS {
		for len(s) > 0 {
			p, n := t.normalizePrefix(s)
			if p != " " {
				break
			}
			s = s[n:]
		}
	}
	if s == "" {
		return ""
	}
	var b strings.Builder
	space := " "
	if spec.escapeWS {
		space = spaceSymbol
	}
	if spec.addDummyPrefix && !t.model.treatWSSuf {
		b.WriteString(space)
	}
	prevSpace := spec.removeExtraWS
	for len(s) > 0 {
		p, n := t.normalizePrefix(s)
		s = s[n:]
		if prevSpace {
			p = strings.TrimLeft(p, " ")
		}
		if p == "" {
			continue
		}
		if spec.escapeWS {
			b.WriteString(strings.ReplaceAll(p, " ", spaceSymbol))
		} else {
			b.WriteString(p)
		}
		prevSpace = strings.HasSuffix(p, " ")
	}
	out := b.String()
	if spec.addDummyPrefix && t.model.treatWSSuf {
		out += space
	}
	if spec.removeExtraWS {
		for strings.HasSuffix(out, space) {
			out = strings.TrimSuffix(out, space)
		}
	}
	return out
}
