package t5

import (
	"testing"
)

func load(t *testing.T) *Tokenizer {
	t.Helper()
	tok, err := Load("testdata/t5_test_sentencepiece.model", Options{})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestEmptyAndSpaces(t *testing.T) {
	tok := load(t)
	for _, s := range []string{"", "   ", "\t\n"} {
		ids, mask := tok.Encode(s, 4)
		if ids[0] != int64(tok.EOSID()) || mask[0] != 1 || mask[1] != 0 || ids[1] != int64(tok.PadID()) {
			t.Errorf("%q: %v %v", s, ids, mask)
		}
	}
	if got := tok.Normalize("  a   b  "); got != "▁a▁b" {
		t.Errorf("normalize: %q", got)
	}
}

func TestTruncationAndEOS(t *testing.T) {
	tok := load(t)
	ids, mask := tok.Encode("a very long prompt detailed intricate ornament", 5)
	if len(ids) != 5 || ids[4] != int64(tok.EOSID()) || mask[4] != 1 {
		t.Fatalf("truncation: %v %v", ids, mask)
	}
	// Text ending in </s> gets no second EOS.
	ids, _ = tok.Encode("a cat</s>", 0)
	if ids[len(ids)-1] != int64(tok.EOSID()) || ids[len(ids)-2] == int64(tok.EOSID()) {
		t.Fatalf("double EOS: %v", ids)
	}
	if _, _, err := tok.EncodeBatch([]string{"a"}, 0); err == nil {
		t.Fatal("maxLength 0 accepted by EncodeBatch")
	}
}

func TestUnicode(t *testing.T) {
	tok := load(t)
	// NFKC folds fullwidth letters.
	if a, b := tok.Pieces("ＡＢＣ"), tok.Pieces("ABC"); len(a) != len(b) || a[0] != b[0] {
		t.Errorf("fullwidth: %q vs %q", a, b)
	}
	// Unknown characters merge into one unknown piece.
	ids := tok.Tokens("日本語")
	if len(ids) != 2 || ids[1] != tok.UnkID() {
		t.Errorf("unknown run: %v", ids)
	}
}

func TestBadModel(t *testing.T) {
	for _, b := range [][]byte{nil, {0x0a}, {0x0a, 0x05, 0x0a}, {0xff, 0xff}} {
		if _, err := New(b, Options{}); err == nil {
			t.Errorf("model %x accepted", b)
		}
	}
	if _, err := Load("testdata/missing.model", Options{}); err == nil {
		t.Error("missing file accepted")
	}
}
