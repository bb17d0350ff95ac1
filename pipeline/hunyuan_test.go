package pipeline

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/scheduler"
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
	meta, style := metaConditions(HunyuanRequest{CropsCoordsTopLeft: [2]int{3, 4}}, 96, 64, 2)
	want := []float32{1024, 1024, 64, 96, 3, 4, 1024, 1024, 64, 96, 3, 4}
	if !slices.Equal(meta, want) || !slices.Equal(style, []int64{0, 0}) {
		t.Errorf("meta %v style %v", meta, style)
	}
	meta, _ = metaConditions(HunyuanRequest{OriginalSize: [2]int{512, 256}, TargetSize: [2]int{32, 16}}, 96, 64, 1)
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
