package clip

import (
	"html"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/diffuse-go/diffuse/tokenizer/internal/pytext"
)

// whitespaceClean folds runs of whitespace to one space and trims the ends.
func whitespaceClean(s string) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		if isPySpace(r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return b.String()
}

// fixText applies the ftfy.fix_text repairs (ftfy 6 defaults) that matter for
// prompts: HTML entities (skipped when the text holds '<', as ftfy's "auto"
// mode does), terminal escapes, UTF-8 mojibake read as Latin-1/Windows-1252,
// C1 controls, Latin ligatures, fullwidth/halfwidth forms, curly quotes, line
// breaks and control characters, then NFC.
func fixText(s string) string {
	for range 4 { // ftfy repeats until nothing changes
		t := fixOnce(s)
		if t == s {
			break
		}
		s = t
	}
	return s
}

func fixOnce(s string) string {
	if !strings.Contains(s, "<") {
		s = unescapeEntities(s)
	}
	s = removeTerminalEscapes(s)
	s = fixMojibake(s)
	s = fixC1Controls(s)
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		if lig, ok := ligatures[r]; ok {
			b.WriteString(lig)
			continue
		}
		if w, ok := widthMap[r]; ok {
			b.WriteString(w)
			continue
		}
		switch {
		case r == 0x2bc || (r >= 0x2018 && r <= 0x201b):
			b.WriteByte('\'')
		case r >= 0x201c && r <= 0x201f:
			b.WriteByte('"')
		case r == '\r':
			b.WriteByte('\n')
			if i < len(s) && s[i] == '\n' {
				i++
			}
		case r == 0x2028 || r == 0x2029 || r == 0x85:
			b.WriteByte('\n')
		case isFtfyControl(r):
			// removed
		default:
			b.WriteRune(r)
		}
	}
	return nfc(b.String())
}

// ligatures are the characters ftfy's fix_latin_ligatures separates.
var ligatures = map[rune]string{
	'Ĳ': "IJ", 'ĳ': "ij", 'ŉ': "ʼn", 'Ǳ': "DZ", 'ǲ': "Dz", 'ǳ': "dz",
	'Ǆ': "DŽ", 'ǅ': "Dž", 'ǆ': "dž", 'Ǉ': "LJ", 'ǈ': "Lj", 'ǉ': "lj",
	'Ǌ': "NJ", 'ǋ': "Nj", 'ǌ': "nj", 'ﬀ': "ff", 'ﬁ': "fi", 'ﬂ': "fl",
	'ﬃ': "ffi", 'ﬄ': "ffl", 'ﬅ': "ſt", 'ﬆ': "st",
}

// isFtfyControl reports the control characters ftfy's remove_control_chars
// deletes (tab, line feed, form feed and carriage return stay).
func isFtfyControl(r rune) bool {
	switch {
	case r <= 0x08, r == 0x0b, r >= 0x0e && r <= 0x1f, r == 0x7f:
		return true
	case r >= 0x206a && r <= 0x206f, r == 0xfeff, r >= 0xfff9 && r <= 0xfffc:
		return true
	}
	return false
}

// unescapeEntities decodes HTML entities written with a closing ';' (named,
// decimal or hex), as ftfy's unescape_html does; an unknown all-capitals
// name is tried in lower case and its result upper-cased.
func unescapeEntities(s string) string {
	if !strings.Contains(s, "&") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		j := strings.IndexByte(s[i:], '&')
		if j < 0 {
			b.WriteString(s[i:])
			break
		}
		b.WriteString(s[i : i+j])
		i += j
		end := entityEnd(s[i:])
		if end < 0 {
			b.WriteByte('&')
			i++
			continue
		}
		ent := s[i : i+end]
		b.WriteString(decodeEntity(ent))
		i += end
	}
	return b.String()
}

// entityEnd returns the length of an "&#?[0-9A-Za-z]{1,24};" match at the
// start of s, or -1.
func entityEnd(s string) int {
	k := 1
	if k < len(s) && s[k] == '#' {
		k++
	}
	start := k
	for k < len(s) && k-start < 25 && isAlnum(s[k]) {
		k++
	}
	n := k - start
	if n < 1 || n > 24 || k >= len(s) || s[k] != ';' {
		return -1
	}
	return k + 1
}

func isAlnum(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

func decodeEntity(ent string) string {
	d := html.UnescapeString(ent)
	if d != ent {
		if strings.HasPrefix(ent, "&#") && strings.Contains(d, ";") {
			return ent
		}
		return d
	}
	if name := ent[1 : len(ent)-1]; strings.ToUpper(name) == name && !strings.HasPrefix(ent, "&#") {
		if l := html.UnescapeString("&" + strings.ToLower(name) + ";"); utf8.RuneCountInString(l) == 1 && !strings.HasPrefix(l, "&") {
			return strings.ToUpper(l)
		}
	}
	return ent
}

// removeTerminalEscapes drops ANSI escape sequences "ESC [ digits/; letter".
func removeTerminalEscapes(s string) string {
	if !strings.Contains(s, "\x1b[") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '[' {
			k := i + 2
			for k < len(s) && ((s[k] >= '0' && s[k] <= '9') || s[k] == ';') {
				k++
			}
			if k < len(s) && ((s[k] >= 'a' && s[k] <= 'z') || (s[k] >= 'A' && s[k] <= 'Z')) {
				i = k + 1
				continue
			}
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}

// cp1252 maps the Windows-1252 characters of bytes 0x80..0x9F to their bytes.
var cp1252 = map[rune]byte{
	'€': 0x80, '‚': 0x82, 'ƒ': 0x83, '„': 0x84, '…': 0x85, '†': 0x86, '‡': 0x87,
	'ˆ': 0x88, '‰': 0x89, 'Š': 0x8a, '‹': 0x8b, 'Œ': 0x8c, 'Ž': 0x8e,
	'‘': 0x91, '’': 0x92, '“': 0x93, '”': 0x94, '•': 0x95, '–': 0x96, '—': 0x97,
	'˜': 0x98, '™': 0x99, 'š': 0x9a, '›': 0x9b, 'œ': 0x9c, 'ž': 0x9e, 'Ÿ': 0x9f,
}

// sloppyByte encodes r as "sloppy" Windows-1252 (Latin-1 for the rest).
func sloppyByte(r rune) (byte, bool) {
	if r < 0x100 {
		return byte(r), true
	}
	b, ok := cp1252[r]
	return b, ok
}

// fixMojibake repairs UTF-8 that was decoded as Windows-1252/Latin-1: the
// whole text when it re-encodes to valid multi-byte UTF-8, otherwise each
// run that looks like such a sequence (ftfy's decode_inconsistent_utf8).
func fixMojibake(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return s
	}
	raw := make([]byte, 0, len(s))
	whole := true
	for _, r := range s {
		c, ok := sloppyByte(r)
		if !ok {
			whole = false
			break
		}
		raw = append(raw, c)
	}
	if whole && utf8.Valid(raw) && string(raw) != s {
		return string(raw)
	}
	// Piecewise: a lead byte char followed by the continuation chars it needs.
	rs := []rune(s)
	var b strings.Builder
	for i := 0; i < len(rs); {
		if i > 0 && isContinuationChar(rs[i-1]) {
			b.WriteRune(rs[i])
			i++
			continue
		}
		j := i
		var seq []byte
		for j < len(rs) {
			n := utf8LeadLen(rs[j])
			if n == 0 || j+n > len(rs) {
				break
			}
			ok := true
			part := []byte{mustSloppy(rs[j])}
			for k := 1; k < n; k++ {
				if !isContinuationChar(rs[j+k]) {
					ok = false
					break
				}
				part = append(part, mustSloppy(rs[j+k]))
			}
			if !ok || !utf8.Valid(part) {
				break
			}
			seq = append(seq, part...)
			j += n
		}
		if j > i {
			b.Write(seq)
			i = j
			continue
		}
		b.WriteRune(rs[i])
		i++
	}
	return b.String()
}

func mustSloppy(r rune) byte { c, _ := sloppyByte(r); return c }

// utf8LeadLen is the sequence length r stands for as a UTF-8 lead byte in
// Latin-1 (Â..ß: 2, à..ï: 3, ð..ô: 4), or 0.
func utf8LeadLen(r rune) int {
	switch {
	case r >= 0xc2 && r <= 0xdf:
		return 2
	case r >= 0xe0 && r <= 0xef:
		return 3
	case r >= 0xf0 && r <= 0xf4:
		return 4
	}
	return 0
}

// isContinuationChar reports whether r encodes to a UTF-8 continuation byte
// (0x80..0xBF) in sloppy Windows-1252.
func isContinuationChar(r rune) bool {
	c, ok := sloppyByte(r)
	return ok && c >= 0x80 && c <= 0xbf
}

// fixC1Controls replaces C1 control characters by the Windows-1252
// characters of the same byte, as ftfy does.
func fixC1Controls(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r >= 0x80 && r <= 0x9f }) {
		return s
	}
	inv := make(map[byte]rune, len(cp1252))
	for r, c := range cp1252 {
		inv[c] = r
	}
	var b strings.Builder
	for _, r := range s {
		if r >= 0x80 && r <= 0x9f {
			if w, ok := inv[byte(r)]; ok {
				r = w
			}
		}
		b.WriteRune(r)
	}
	return b.String()
}

// basicClean is what transformers' CLIPTokenizer does without ftfy (BERT's
// BasicTokenizer with do_lower_case, no accent stripping, no punctuation
// split): drop NUL, U+FFFD and control/format characters, map whitespace to
// spaces, space out CJK ideographs, NFC, lower-case, fold whitespace.
func basicClean(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == 0 || r == 0xfffd:
		case r == '\t' || r == '\n' || r == '\r' || r == ' ' || unicode.Is(unicode.Zs, r):
			b.WriteByte(' ')
		case isBERTControl(r):
		case isCJK(r):
			b.WriteByte(' ')
			b.WriteRune(r)
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	return whitespaceClean(pyLower(nfc(b.String())))
}

// The Python-compatible text primitives live in tokenizer/internal/pytext,
// shared with the BERT tokenizer.
func isPySpace(r rune) bool     { return pytext.IsSpace(r) }
func pyLower(s string) string   { return pytext.Lower(s) }
func nfc(s string) string       { return pytext.NFC(s) }
func isCJK(r rune) bool         { return pytext.IsCJK(r) }
func isBERTControl(r rune) bool { return pytext.IsBERTControl(r) }
