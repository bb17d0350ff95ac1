package goldentest

import (
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/tokenizer/clip"
	"github.com/diffuse-go/diffuse/tokenizer/t5"
)

func init() {
	golden.Register("transformers.CLIPTokenizer / clip.simple_tokenizer.SimpleTokenizer", runCLIPTokenizer)
}

func runCLIPTokenizer(t *testing.T, c *golden.Case) {
	var prompts []string
	if err := c.Field("prompts", &prompts); err != nil {
		t.Fatal(err)
	}
	var raw [][]int
	if err := c.Field("raw_tokens_openai_no_specials", &raw); err != nil {
		t.Fatal(err)
	}
	variants := []struct {
		output string
		opts   clip.Options
	}{
		{"ids_openai", clip.Options{Pad: clip.PadZero, Cleaner: clip.CleanOpenAI}},
		{"ids_hf_sd15", clip.Options{Pad: clip.PadEOS, Cleaner: clip.CleanFTFY}},
		{"ids_hf_sd15_noftfy", clip.Options{Pad: clip.PadEOS, Cleaner: clip.CleanBasic}},
		{"ids_hf_sdxl2", clip.Options{Pad: clip.PadExclamation, Cleaner: clip.CleanFTFY}},
		{"ids_hf_sdxl2_noftfy", clip.Options{Pad: clip.PadExclamation, Cleaner: clip.CleanBasic}},
	}
	for _, v := range variants {
		tok, err := clip.New(v.opts)
		if err != nil {
			t.Fatal(err)
		}
		exp, shape := c.MustI64(t, v.output)
		width := shape[1]
		bad := 0
		for i, p := range prompts {
			got := tok.Encode(p)
			want := exp[i*width : (i+1)*width]
			for k := range want {
				if got[k] != want[k] {
					bad++
					t.Errorf("%s: prompt %d %q:\n got  %v\n want %v", v.output, i, p, got, want)
					break
				}
			}
		}
		if bad == 0 {
			c.CheckI64(t, v.output, tok.EncodeBatch(prompts), shape)
		}
	}
	// Raw tokens and untruncated lengths of openai's tokenizer.
	tok, err := clip.New(clip.Options{Pad: clip.PadZero, Cleaner: clip.CleanOpenAI})
	if err != nil {
		t.Fatal(err)
	}
	lengths := make([]int64, len(prompts))
	for i, p := range prompts {
		got := tok.Tokens(p)
		if len(got) != len(raw[i]) {
			t.Errorf("raw tokens of prompt %d: %v, want %v", i, got, raw[i])
		} else {
			for k := range got {
				if got[k] != raw[i][k] {
					t.Errorf("raw tokens of prompt %d: %v, want %v", i, got, raw[i])
					break
				}
			}
		}
		lengths[i] = int64(tok.EncodeFull(p).Tokens + 2)
	}
	c.CheckI64(t, "untruncated_length_openai", lengths, nil)
}

func init() {
	golden.Register("transformers.T5Tokenizer", runT5Tokenizer)
}

func runT5Tokenizer(t *testing.T, c *golden.Case) {
	_, file, _, _ := runtime.Caller(0)
	model := filepath.Join(filepath.Dir(file), "..", "tokenizer", "t5", "testdata", "t5_test_sentencepiece.model")
	tok, err := t5.Load(model, t5.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		LenTokenizer int `json:"len_tokenizer"`
		PadTokenID   int `json:"pad_token_id"`
		EOSTokenID   int `json:"eos_token_id"`
		UnkTokenID   int `json:"unk_token_id"`
	}
	if err := c.Field("config", &cfg); err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != cfg.LenTokenizer || tok.PadID() != cfg.PadTokenID || tok.EOSID() != cfg.EOSTokenID || tok.UnkID() != cfg.UnkTokenID {
		t.Errorf("vocab %d pad %d eos %d unk %d, want %+v", tok.VocabSize(), tok.PadID(), tok.EOSID(), tok.UnkID(), cfg)
	}
	var prompts []string
	var rawIDs [][]int
	var spPieces [][]string
	for key, dst := range map[string]any{"prompts": &prompts, "raw_ids_no_specials": &rawIDs, "sp_pieces": &spPieces} {
		if err := c.Field(key, dst); err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range prompts {
		if got := tok.Pieces(p); !slices.Equal(got, spPieces[i]) {
			t.Errorf("pieces of prompt %d %q:\n got  %q\n want %q", i, p, got, spPieces[i])
		}
		if got := tok.Tokens(p); !slices.Equal(got, rawIDs[i]) {
			t.Errorf("ids of prompt %d %q:\n got  %v\n want %v", i, p, got, rawIDs[i])
		}
	}
	for _, n := range []int{120, 16} {
		ids, mask, err := tok.EncodeBatch(prompts, n)
		if err != nil {
			t.Fatal(err)
		}
		c.CheckI64(t, fmt.Sprintf("ids_max%d", n), ids, []int{len(prompts), n})
		c.CheckI64(t, fmt.Sprintf("attention_mask_max%d", n), mask, []int{len(prompts), n})
	}
}
