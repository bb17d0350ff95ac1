package bert

import (
	"slices"
	"strings"
	"testing"
)

func load(t *testing.T, opts Options) *Tokenizer {
	t.Helper()
	tok, err := Load("testdata/bert_tiny_vocab.txt", opts)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// The pieces and ids transformers' BertTokenizer gave for the
// pipeline_hunyuan golden case's prompts.
func TestTinyVocabPrompts(t *testing.T) {
	tok := load(t, DefaultOptions())
	cases := []struct {
		text   string
		tokens string
		ids    []int64
	}{
		{"一个宇航员在骑马, a photo of an astronaut riding a horse", "一 个 宇 航 员 在 骑 马 , a photo of an astronaut riding a horse",
			[]int64{2, 154, 155, 156, 157, 158, 159, 160, 161, 16, 47, 117, 111, 109, 120, 121, 47, 122, 3}},
		{"模糊, blurry, low quality", "模 糊 , blur ##ry , low quality", []int64{2, 170, 171, 16, 132, 133, 16, 134, 135, 3}},
	}
	for _, c := range cases {
		if got := strings.Join(tok.Tokenize(c.text), " "); got != c.tokens {
			t.Errorf("Tokenize(%q) = %q, want %q", c.text, got, c.tokens)
		}
		ids, mask := tok.Encode(c.text, 24)
		want := append(slices.Clone(c.ids), make([]int64, 24-len(c.ids))...)
		if !slices.Equal(ids, want) {
			t.Errorf("Encode(%q) = %v, want %v", c.text, ids, want)
		}
		for i, m := range mask {
			if m != int64(min(1, max(0, len(c.ids)-i))) {
				t.Fatalf("mask %v for %d tokens", mask, len(c.ids))
			}
		}
	}
}

func TestBasicTokenizer(t *testing.T) {
	tok := load(t, DefaultOptions())
	cases := []struct{ in, want string }{
		{"  Héllo\tWORLD!\u00a0x\u0000y ", "hello world ! xy"},
		{"[CLS] a[SEP]b [cls]", "[CLS] a [SEP] b [ cls ]"},
		{"ΑΣ", "ασ"},                           // lowered one character at a time: no final sigma
		{"e\u0301", "e"},                       // NFD accent stripping
		{"a\u2028b", "a b"},                    // str.split separators
		{"\u4e00\u4e8cab", "\u4e00 \u4e8c ab"}, // CJK spaced
	}
	for _, c := range cases {
		var words []string
		for _, ch := range tok.splitSpecials(tok.lowerOutsideSpecials(c.in)) {
			if ch.special {
				words = append(words, ch.text)
			} else {
				words = append(words, tok.basicTokenize(ch.text)...)
			}
		}
		if got := strings.Join(words, " "); got != c.want {
			t.Errorf("basic(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	cased := DefaultOptions()
	cased.DoLowerCase = false
	if got := strings.Join(load(t, cased).basicTokenize("Héllo"), " "); got != "Héllo" {
		t.Errorf("cased basic tokenizer gave %q", got)
	}
}

func TestWordpieceAndTruncation(t *testing.T) {
	tok := load(t, DefaultOptions())
	if got := tok.wordpiece("blurry"); !slices.Equal(got, []string{"blur", "##ry"}) {
		t.Errorf("wordpiece(blurry) = %v", got)
	}
	if got := tok.wordpiece("blurλ"); !slices.Equal(got, []string{"[UNK]"}) {
		t.Errorf("uncovered word gave %v", got)
	}
	ids, mask := tok.Encode("a a a a a a", 4)
	a := int64(tok.ID("a"))
	if !slices.Equal(ids, []int64{int64(tok.ClsID()), a, a, int64(tok.SepID())}) || !slices.Equal(mask, []int64{1, 1, 1, 1}) {
		t.Errorf("truncated encoding %v mask %v", ids, mask)
	}
	if _, err := New(strings.NewReader("a\nb\n"), DefaultOptions()); err == nil {
		t.Error("a vocabulary without the special tokens was accepted")
	}
}

func TestOptions(t *testing.T) {
	keep := false
	opts := DefaultOptions()
	opts.StripAccents = &keep
	opts.NeverSplit = []string{"a.b"}
	tok := load(t, opts)
	if got := strings.Join(tok.basicTokenize("Café a.b c.d"), " "); got != "café a.b c . d" {
		t.Errorf("no accent stripping, never_split: %q", got)
	}
	noCJK := DefaultOptions()
	noCJK.TokenizeChineseChars = false
	if got := strings.Join(load(t, noCJK).basicTokenize("一个x"), " "); got != "一个x" {
		t.Errorf("CJK kept together: %q", got)
	}
	// Special tokens are matched before lower-casing, inside words too.
	if got := strings.Join(tok.Tokenize("a[SEP]a [MASK]"), " "); got != "a [SEP] a [MASK]" {
		t.Errorf("special tokens: %q", got)
	}
}
