package clip

import (
	"strings"
	"testing"
)

func mustNew(t *testing.T, o Options) *Tokenizer {
	t.Helper()
	tok, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestVocabulary(t *testing.T) {
	v, err := loadVocab()
	if err != nil {
		t.Fatal(err)
	}
	if len(v.decoder) != VocabSize || len(v.encoder) != VocabSize {
		t.Fatalf("vocab %d/%d entries, want %d", len(v.decoder), len(v.encoder), VocabSize)
	}
	if v.encoder["<|startoftext|>"] != BOS || v.encoder["<|endoftext|>"] != EOS || v.encoder["!"] != 0 || v.encoder["!</w>"] != 256 {
		t.Fatal("special ids misplaced")
	}
}

func TestEmptyPrompt(t *testing.T) {
	tok := mustNew(t, Options{})
	e := tok.EncodeFull("")
	if len(e.IDs) != ContextLength || e.IDs[0] != BOS || e.IDs[1] != EOS || e.Length != 2 || e.Tokens != 0 {
		t.Fatalf("empty prompt: %+v", e)
	}
	for _, id := range e.IDs[2:] {
		if id != EOS {
			t.Fatal("SD 1.x pads with EOS")
		}
	}
	if got := mustNew(t, Options{Pad: PadExclamation}).Encode("   "); got[2] != 0 || got[1] != EOS {
		t.Fatalf("SDXL-2 padding: %v", got[:4])
	}
}

func TestTruncation(t *testing.T) {
	tok := mustNew(t, Options{})
	long := strings.Repeat("cat ", 200)
	e := tok.EncodeFull(long)
	if !e.Truncated || e.Tokens != 200 || e.Length != ContextLength || e.IDs[ContextLength-1] != EOS {
		t.Fatalf("truncation: %+v", e)
	}
	for _, id := range e.IDs[1 : ContextLength-1] {
		if id != 2368 { // "cat</w>"
			t.Fatalf("unexpected id %d", id)
		}
	}
	short := mustNew(t, Options{MaxLength: 5}).Encode(long)
	if len(short) != 5 || short[4] != EOS {
		t.Fatalf("MaxLength 5: %v", short)
	}
	if _, err := New(Options{MaxLength: 1}); err == nil {
		t.Fatal("MaxLength 1 accepted")
	}
	if _, err := New(Options{Pad: 7}); err == nil {
		t.Fatal("bad pad style accepted")
	}
}

func TestUnicodeAndCleaning(t *testing.T) {
	tok := mustNew(t, Options{})
	same := [][2]string{
		{"A Photo Of A Cat", "a photo of a cat"},
		{"  a\t\n photo\u00a0of ", "a photo of"},
		{"&amp;", "&"},
		{"“quoted”", "\"quoted\""},
		{"ﬁsh", "fish"},
		{"ＦＵＬＬ", "full"},
		{"cafÃ©", "café"},
		{"bell\x07ring", "bellring"},
		{"ΟΔΟΣ", "οδος"},
	}
	for _, p := range same {
		a, b := tok.Tokens(p[0]), tok.Tokens(p[1])
		if len(a) != len(b) {
			t.Errorf("%q -> %v, %q -> %v", p[0], a, p[1], b)
			continue
		}
		for i := range a {
			if a[i] != b[i] {
				t.Errorf("%q -> %v, %q -> %v", p[0], a, p[1], b)
				break
			}
		}
	}
	if got := pyLower("ΟΔΟΣ"); got != "οδος" {
		t.Errorf("final sigma: %q", got)
	}
	// Every byte sequence round-trips through Decode.
	for _, s := range []string{"a photo of a cat", "日本語 😀", "snake_case 3.14"} {
		d, err := tok.Decode(tok.Encode(s))
		if err != nil {
			t.Fatal(err)
		}
		if strings.ReplaceAll(d, " ", "") != strings.ReplaceAll(s, " ", "") {
			t.Errorf("decode(%q) = %q", s, d)
		}
	}
	if _, err := tok.Decode([]int64{VocabSize}); err == nil {
		t.Error("out-of-range id accepted")
	}
}

func TestExclamationIsPad(t *testing.T) {
	xl := mustNew(t, Options{Pad: PadExclamation})
	sd := mustNew(t, Options{})
	if got := xl.Tokens("a!b"); len(got) != 3 || got[1] != 0 {
		t.Fatalf("SDXL-2 '!': %v", got)
	}
	if got := sd.Tokens("a!b"); len(got) != 3 || got[1] != 256 {
		t.Fatalf("SD '!': %v", got)
	}
}

func TestEncodeBatch(t *testing.T) {
	tok := mustNew(t, Options{})
	b := tok.EncodeBatch([]string{"a", "b c"})
	if len(b) != 2*ContextLength {
		t.Fatalf("batch length %d", len(b))
	}
}
