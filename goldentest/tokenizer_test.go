package goldentest

import (
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/tokenizer/clip"
	"github.com/diffuse-go/diffuse/tokenizer/t5"
)

func init() {
	golden.Register("transformers.CLIPTokenizer / clip.simple_tokenizer.SimpleTokenizer", runCLIPTokenizer)
}

// clipTokenizerOptions maps an output ids_<variant> of the clip_tokenizer
// case to the tokenizer it records: openai's SimpleTokenizer ("openai"),
// transformers' CLIPTokenizer as SD 1.x ("hf_sd15") or SDXL's tokenizer_2
// ("hf_sdxl2") uses it, with ftfy or, with the suffix "_noftfy", without.
func clipTokenizerOptions(variant string, width int) (clip.Options, error) {
	opts := clip.Options{MaxLength: width}
	base, noFTFY := strings.CutSuffix(variant, "_noftfy")
	if noFTFY {
		opts.Cleaner = clip.CleanBasic
	}
	switch base {
	case "openai":
		if noFTFY {
			return opts, fmt.Errorf("variant %s: openai's tokenizer always uses ftfy", variant)
		}
		opts.Pad, opts.Cleaner = clip.PadZero, clip.CleanOpenAI
	case "hf_sd15":
		opts.Pad = clip.PadEOS
	case "hf_sdxl2":
		opts.Pad = clip.PadExclamation
	default:
		return opts, fmt.Errorf("unknown tokenizer variant %q", variant)
	}
	return opts, nil
}

func runCLIPTokenizer(t *testing.T, c *golden.Case) {
	var prompts []string
	if err := c.Field("prompts", &prompts); err != nil {
		t.Fatal(err)
	}
	k := newOutputChecker(c)
	var outs []string
	for name := range c.Outputs {
		if strings.HasPrefix(name, "ids_") {
			outs = append(outs, name)
		}
	}
	sort.Strings(outs)
	for _, name := range outs {
		k.use(name)
		exp, shape := c.MustI64(t, name)
		opts, err := clipTokenizerOptions(strings.TrimPrefix(name, "ids_"), shape[1])
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		tok, err := clip.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		checkCLIPIDs(t, c, name, tok, prompts, exp, shape)
	}
	if hasOutput(c, "untruncated_length_openai") || c.Raw["raw_tokens_openai_no_specials"] != nil {
		checkOpenAIRaw(t, c, k, prompts)
	}
	k.allChecked(t, "")
}

// checkCLIPIDs compares each prompt's ids (reporting the first prompt that
// differs), then the whole batch.
func checkCLIPIDs(t *testing.T, c *golden.Case, name string, tok *clip.Tokenizer, prompts []string, exp []int64, shape []int) {
	t.Helper()
	if shape[0] != len(prompts) {
		t.Errorf("%s: %d rows for %d prompts", name, shape[0], len(prompts))
		return
	}
	width := shape[1]
	for i, p := range prompts {
		if got, want := tok.Encode(p), exp[i*width:(i+1)*width]; !slices.Equal(got, want) {
			t.Errorf("%s: prompt %d %q:\n got  %v\n want %v", name, i, p, got, want)
			return
		}
	}
	c.CheckI64(t, name, tok.EncodeBatch(prompts), shape)
}

// checkOpenAIRaw compares openai's raw tokens (no specials, untruncated)
// and untruncated lengths, where the case records them.
func checkOpenAIRaw(t *testing.T, c *golden.Case, k *outputChecker, prompts []string) {
	t.Helper()
	tok, err := clip.New(clip.Options{Pad: clip.PadZero, Cleaner: clip.CleanOpenAI})
	if err != nil {
		t.Fatal(err)
	}
	var raw [][]int
	if c.Raw["raw_tokens_openai_no_specials"] != nil {
		if err := c.Field("raw_tokens_openai_no_specials", &raw); err != nil {
			t.Fatal(err)
		}
		if len(raw) != len(prompts) {
			t.Fatalf("raw_tokens_openai_no_specials: %d lists for %d prompts", len(raw), len(prompts))
		}
	}
	lengths := make([]int64, len(prompts))
	for i, p := range prompts {
		if raw != nil {
			if got := tok.Tokens(p); !slices.Equal(got, raw[i]) {
				t.Errorf("raw tokens of prompt %d: %v, want %v", i, got, raw[i])
			}
		}
		lengths[i] = int64(tok.EncodeFull(p).Tokens + 2)
	}
	if hasOutput(c, "untruncated_length_openai") {
		k.use("untruncated_length_openai")
		c.CheckI64(t, "untruncated_length_openai", lengths, nil)
	}
}

func init() {
	golden.Register("transformers.T5Tokenizer", runT5Tokenizer)
}

// t5VocabPath finds a SentencePiece model the case names (a path under
// the shared vocab folder) in the repository's copy, tokenizer/t5/testdata.
func t5VocabPath(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "tokenizer", "t5", "testdata", filepath.Base(filepath.FromSlash(name)))
}

func runT5Tokenizer(t *testing.T, c *golden.Case) {
	var cfg struct {
		VocabFile    string `json:"vocab_file"`
		LenTokenizer int    `json:"len_tokenizer"`
		PadTokenID   int    `json:"pad_token_id"`
		EOSTokenID   int    `json:"eos_token_id"`
		UnkTokenID   int    `json:"unk_token_id"`
	}
	if err := c.Field("config", &cfg); err != nil {
		t.Fatal(err)
	}
	tok, err := t5.Load(t5VocabPath(cfg.VocabFile), t5.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != cfg.LenTokenizer || tok.PadID() != cfg.PadTokenID || tok.EOSID() != cfg.EOSTokenID || tok.UnkID() != cfg.UnkTokenID {
		t.Errorf("vocab %d pad %d eos %d unk %d, want %+v", tok.VocabSize(), tok.PadID(), tok.EOSID(), tok.UnkID(), cfg)
	}
	var prompts []string
	var rawIDs [][]int
	var spPieces [][]string
	for key, dst := range map[string]any{"prompts": &prompts, "raw_ids_no_specials": &rawIDs, "sp_pieces": &spPieces} {
		if _, ok := c.Raw[key]; !ok && key != "prompts" {
			continue
		}
		if err := c.Field(key, dst); err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range prompts {
		if spPieces != nil {
			if got := tok.Pieces(p); !slices.Equal(got, spPieces[i]) {
				t.Errorf("pieces of prompt %d %q:\n got  %q\n want %q", i, p, got, spPieces[i])
			}
		}
		if rawIDs != nil {
			if got := tok.Tokens(p); !slices.Equal(got, rawIDs[i]) {
				t.Errorf("ids of prompt %d %q:\n got  %v\n want %v", i, p, got, rawIDs[i])
			}
		}
	}
	// ids_max<N> / attention_mask_max<N>: padded and truncated to N.
	k := newOutputChecker(c)
	for name := range c.Outputs {
		n, err := strconv.Atoi(strings.TrimPrefix(name, "ids_max"))
		if !strings.HasPrefix(name, "ids_max") || err != nil {
			continue
		}
		ids, mask, err := tok.EncodeBatch(prompts, n)
		if err != nil {
			t.Fatal(err)
		}
		k.use(name)
		c.CheckI64(t, name, ids, []int{len(prompts), n})
		if m := fmt.Sprintf("attention_mask_max%d", n); hasOutput(c, m) {
			k.use(m)
			c.CheckI64(t, m, mask, []int{len(prompts), n})
		}
	}
	k.allChecked(t, "")
}
