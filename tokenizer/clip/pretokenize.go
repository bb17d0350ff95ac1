package clip

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// contractions are matched before letters, in this order.
var contractions = []string{"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"}

// preTokenize splits cleaned text as CLIP's pattern
// <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// (case-insensitive) does with findall: at each position the first
// alternative that matches wins; whitespace separates matches.
func preTokenize(s string) []string {
	var out []string
	for i := 0; i < len(s); {
		rest := s[i:]
		if m := matchFixed(rest); m > 0 {
			out = append(out, rest[:m])
			i += m
			continue
		}
		r, n := utf8.DecodeRuneInString(rest)
		switch {
		case isPySpace(r):
			i += n
		case unicode.IsLetter(r):
			j := n
			for j < len(rest) {
				r2, n2 := utf8.DecodeRuneInString(rest[j:])
				if !unicode.IsLetter(r2) {
					break
				}
				j += n2
			}
			out = append(out, rest[:j])
			i += j
		case unicode.IsNumber(r):
			out = append(out, rest[:n])
			i += n
		default:
			j := n
			for j < len(rest) {
				r2, n2 := utf8.DecodeRuneInString(rest[j:])
				if isPySpace(r2) || unicode.IsLetter(r2) || unicode.IsNumber(r2) {
					break
				}
				j += n2
			}
			out = append(out, rest[:j])
			i += j
		}
	}
	return out
}

// matchFixed returns the length of a special token or contraction at the
// start of s (ASCII case-insensitive), or 0.
func matchFixed(s string) int {
	if s[0] == '<' {
		for _, sp := range []string{bosText, eosText} {
			if len(s) >= len(sp) && strings.EqualFold(s[:len(sp)], sp) {
				return len(sp)
			}
		}
	}
	if s[0] == '\'' {
		for _, c := range contractions {
			if len(s) >= len(c) && strings.EqualFold(s[:len(c)], c) {
				return len(c)
			}
		}
	}
	return 0
}
