package pytext

import (
	"sort"
	"sync"
	"unicode/utf8"
)

// NFC and NFD normalisation (canonical decomposition, canonical ordering,
// canonical composition) from the generated tables in nfc_table.go, as
// Python's unicodedata.normalize computes them for ftfy and BERT's basic
// tokenizer.

var (
	nfcOnce   sync.Once
	decompMap map[rune][]rune
	compMap   map[[2]rune]rune
)

func initNFC() {
	decompMap = make(map[rune][]rune, len(decompTable))
	for _, e := range decompTable {
		decompMap[e[0]] = e[1:]
	}
	compMap = make(map[[2]rune]rune, len(compTable))
	for _, e := range compTable {
		compMap[[2]rune{e[0], e[1]}] = e[2]
	}
}

// combiningClass returns the canonical combining class of r.
func combiningClass(r rune) int {
	i := sort.Search(len(cccRanges), func(i int) bool { return rune(cccRanges[i][1]) >= r })
	if i < len(cccRanges) && rune(cccRanges[i][0]) <= r {
		return int(cccRanges[i][2])
	}
	return 0
}

const (
	hangulSBase  = 0xAC00
	hangulLBase  = 0x1100
	hangulVBase  = 0x1161
	hangulTBase  = 0x11A7
	hangulLCount = 19
	hangulVCount = 21
	hangulTCount = 28
	hangulNCount = hangulVCount * hangulTCount
	hangulSCount = hangulLCount * hangulNCount
)

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// NFD returns the canonical decomposition of s (unicodedata.normalize("NFD")).
func NFD(s string) string {
	if isASCII(s) {
		return s
	}
	d, _ := decompose(s)
	return string(d)
}

// decompose returns the canonically decomposed and ordered runes of s with
// their combining classes.
func decompose(s string) ([]rune, []int) {
	nfcOnce.Do(initNFC)
	var d []rune
	for _, r := range s {
		switch {
		case r >= hangulSBase && r < hangulSBase+hangulSCount:
			si := r - hangulSBase
			d = append(d, hangulLBase+si/hangulNCount, hangulVBase+(si%hangulNCount)/hangulTCount)
			if t := si % hangulTCount; t != 0 {
				d = append(d, hangulTBase+t)
			}
		default:
			if m, ok := decompMap[r]; ok {
				d = append(d, m...)
			} else {
				d = append(d, r)
			}
		}
	}
	// Canonical ordering: stable sort of each run of non-starters.
	cc := make([]int, len(d))
	for i, r := range d {
		cc[i] = combiningClass(r)
	}
	for i := 0; i < len(d); {
		if cc[i] == 0 {
			i++
			continue
		}
		j := i
		for j < len(d) && cc[j] != 0 {
			j++
		}
		for a := i + 1; a < j; a++ { // insertion sort, stable
			for b := a; b > i && cc[b-1] > cc[b]; b-- {
				d[b-1], d[b] = d[b], d[b-1]
				cc[b-1], cc[b] = cc[b], cc[b-1]
			}
		}
		i = j
	}
	return d, cc
}

// NFC returns the NFC form of s (unicodedata.normalize("NFC")).
func NFC(s string) string {
	if isASCII(s) {
		return s
	}
	d, cc := decompose(s)
	// Compose.
	out := d[:0:0]
	outCC := []int{}
	starter := -1
	for i, r := range d {
		c := cc[i]
		if starter >= 0 {
			last := outCC[len(outCC)-1]
			blocked := len(out)-1 != starter && (last == 0 || last >= c)
			if !blocked {
				if comp, ok := compose(out[starter], r); ok {
					out[starter] = comp
					continue
				}
			}
		}
		if c == 0 {
			starter = len(out)
		}
		out = append(out, r)
		outCC = append(outCC, c)
	}
	return string(out)
}

// compose returns the primary composite of a and b, if any.
func compose(a, b rune) (rune, bool) {
	if a >= hangulLBase && a < hangulLBase+hangulLCount && b >= hangulVBase && b < hangulVBase+hangulVCount {
		return hangulSBase + ((a-hangulLBase)*hangulVCount+(b-hangulVBase))*hangulTCount, true
	}
	if a >= hangulSBase && a < hangulSBase+hangulSCount && (a-hangulSBase)%hangulTCount == 0 &&
		b > hangulTBase && b < hangulTBase+hangulTCount {
		return a + (b - hangulTBase), true
	}
	r, ok := compMap[[2]rune{a, b}]
	return r, ok
}
