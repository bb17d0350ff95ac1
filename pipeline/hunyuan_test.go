package pipeline

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/model/bert"
	"github.com/diffuse-go/diffuse/model/hunyuan"
	"github.com/diffuse-go/diffuse/model/t5"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
)

func TestHunyuanStandardSize(t *testing.T) {
	cases := []struct{ w, h, wantW, wantH int }{
		{1024, 768, 1024, 768},   // trained sizes stay
		{768, 1280, 768, 1280},   //
		{128, 128, 1024, 1024},   // 1:1, closest area
		{2000, 2000, 1280, 1280}, //
		{1000, 700, 1024, 768},   // 4:3
		{1920, 1080, 1280, 768},  // 16:9
		{700, 1000, 768, 1024},   // 3:4
		{1100, 900, 1152, 864},   // 4:3, middle area
	}
	for _, c := range cases {
		if w, h := hunyuanStandardSize(c.w, c.h); w != c.wantW || h != c.wantH {
			t.Errorf("binning %dx%d = %dx%d, want %dx%d", c.w, c.h, w, h, c.wantW, c.wantH)
		}
	}
}

func TestHunyuanMetaConditions(t *testing.T) {
	meta, style := hunyuanMeta(HunyuanRequest{CropsCoordsTopLeft: [2]int{3, 4}}, 96, 64, 2)
	want := []float32{1024, 1024, 64, 96, 3, 4, 1024, 1024, 64, 96, 3, 4}
	if !slices.Equal(meta, want) || !slices.Equal(style, []int64{0, 0}) {
		t.Errorf("meta %v style %v", meta, style)
	}
	meta, _ = hunyuanMeta(HunyuanRequest{OriginalSize: [2]int{512, 256}, TargetSize: [2]int{32, 16}}, 96, 64, 1)
	if !slices.Equal(meta, []float32{512, 256, 32, 16, 0, 0}) {
		t.Errorf("meta with sizes %v", meta)
	}
}

func TestHunyuanRefusesIncompleteRequests(t *testing.T) {
	var p Hunyuan
	if _, err := p.Generate(context.Background(), HunyuanRequest{Prompts: []string{"a"}, Steps: 1}); err == nil ||
		!strings.Contains(err.Error(), "scheduler") {
		t.Errorf("missing scheduler: %v", err)
	}
	s, err := scheduler.NewDDPM(scheduler.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Generate(context.Background(), HunyuanRequest{Prompts: []string{"a"}, Steps: 1, Scheduler: s}); err == nil ||
		!strings.Contains(err.Error(), "text encoders") {
		t.Errorf("missing encoders: %v", err)
	}
	if _, err := p.Generate(context.Background(), HunyuanRequest{Steps: 1, Scheduler: s}); err == nil {
		t.Error("no prompt accepted")
	}
}

// fakeTokenizer encodes a prompt as its length in every position, with a
// mask of ones for the first len(prompt) tokens.
type fakeTokenizer struct{}

func (fakeTokenizer) Encode(text string, n int) (ids, mask []int64) {
	ids, mask = make([]int64, n), make([]int64, n)
	for i := range ids {
		ids[i] = int64(len(text) % 5)
		if i < len(text) {
			mask[i] = 1
		}
	}
	return ids, mask
}

// With several images per prompt the states repeat each prompt's row and
// the masks the whole block, as HunyuanDiTPipeline.encode_prompt does.
func TestHunyuanImagesPerPromptOrder(t *testing.T) {
	bc, err := bert.ParseConfig([]byte(`{"vocab_size": 8, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
		"intermediate_size": 8, "max_position_embeddings": 4}`))
	if err != nil {
		t.Fatal(err)
	}
	be, err := bert.New(bc)
	if err != nil {
		t.Fatal(err)
	}
	nn.Init(be, 1, tensor.F32)
	tc, err := t5.ParseConfig([]byte(`{"vocab_size": 8, "d_model": 8, "d_kv": 4, "d_ff": 8, "num_layers": 1, "num_heads": 2}`))
	if err != nil {
		t.Fatal(err)
	}
	te, err := t5.New(tc)
	if err != nil {
		t.Fatal(err)
	}
	nn.Init(te, 2, tensor.F32)
	p := &Hunyuan{Tokenizer: fakeTokenizer{}, TextEncoder: be, Tokenizer2: fakeTokenizer{}, TextEncoder2: te,
		Transformer: &hunyuan.Model{Cfg: hunyuan.Config{TextLen: 4, TextLenT5: 3}}}
	enc, _, err := p.encodeText([]string{"a", "bcd"}, []string{"", "xy"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	row := func(i int) []float32 { return enc.States.Narrow(0, i, 1).Contiguous().Data() }
	// Rows: neg0, neg0, neg1, neg1, pos0, pos0, pos1, pos1.
	for _, pair := range [][2]int{{0, 1}, {2, 3}, {4, 5}, {6, 7}} {
		if !slices.Equal(row(pair[0]), row(pair[1])) {
			t.Errorf("state rows %v differ", pair)
		}
	}
	if slices.Equal(row(4), row(6)) {
		t.Error("the two prompts' states are equal: the test cannot see the order")
	}
	want := []int64{0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, // negatives "", "xy", "", "xy"
		1, 0, 0, 0, 1, 1, 1, 0, 1, 0, 0, 0, 1, 1, 1, 0} // prompts "a", "bcd", "a", "bcd"
	if !slices.Equal(enc.StatesMask, want) {
		t.Errorf("mask %v, want %v", enc.StatesMask, want)
	}
}
