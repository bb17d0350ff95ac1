package pipeline

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
)

func TestNegativePrompts(t *testing.T) {
	for _, c := range []struct {
		in   []string
		b    int
		want []string
	}{
		{nil, 2, []string{"", ""}},
		{[]string{"blurry"}, 3, []string{"blurry", "blurry", "blurry"}},
		{[]string{"a", "b"}, 2, []string{"a", "b"}},
	} {
		got, err := negativePrompts(c.in, c.b)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("negativePrompts(%q, %d) = %q, %v; want %q", c.in, c.b, got, err, c.want)
		}
	}
	if _, err := negativePrompts([]string{"a", "b"}, 3); err == nil {
		t.Error("2 negative prompts for 3 prompts: no error")
	}
}

// TestIFRequestErrors checks that bad requests come back as errors naming
// the problem, before any model runs.
func TestIFRequestErrors(t *testing.T) {
	cfg, err := scheduler.ParseConfig([]byte(`{"variance_type": "learned_range", "beta_schedule": "squaredcos_cap_v2"}`))
	if err != nil {
		t.Fatal(err)
	}
	sched, err := scheduler.NewClass("DDPMScheduler", cfg)
	if err != nil {
		t.Fatal(err)
	}
	emb := tensor.Zeros(1, 4, 8)
	noise := &scheduler.RecordedNoise{}
	for _, c := range []struct {
		name string
		r    IFRequest
		want string
	}{
		{"no scheduler", IFRequest{PromptEmbeds: emb, Steps: 2, Noise: noise}, "no scheduler"},
		{"no UNet", IFRequest{PromptEmbeds: emb, Scheduler: sched, Steps: 2, Noise: noise}, "needs a UNet"},
		{"no steps", IFRequest{PromptEmbeds: emb, Scheduler: sched, Noise: noise}, "steps must be positive"},
		{"no noise", IFRequest{PromptEmbeds: emb, Scheduler: sched, Steps: 2}, "no noise source"},
		{"no prompt", IFRequest{Scheduler: sched, Steps: 2, Noise: noise}, "no prompt"},
		{"no encoder", IFRequest{Prompts: []string{"a"}, Scheduler: sched, Steps: 2, Noise: noise}, "no tokenizer/text encoder"},
		{"guidance without negatives", IFRequest{PromptEmbeds: emb, Guidance: 7, Scheduler: sched, Steps: 2, Noise: noise},
			"guidance needs negative embeds"},
		{"negatives of another shape", IFRequest{PromptEmbeds: emb, NegativeEmbeds: tensor.Zeros(1, 5, 8), Guidance: 7,
			Scheduler: sched, Steps: 2, Noise: noise}, "negative embeds of shape"},
	} {
		p := &IF{UNet: &unet.Model{}} // every case fails before the UNet runs
		if c.name == "no UNet" {
			p.UNet = nil
		}
		_, err := p.Generate(context.Background(), c.r)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}
