package t5

import "testing"

func TestRelativeBucket(t *testing.T) {
	// 32 buckets, max distance 128: 16 per direction, 8 exact, then
	// logarithmic up to 128 (positive offsets take the upper 16).
	for _, c := range []struct{ rel, want int }{
		{0, 0}, {-3, 3}, {3, 19}, {-7, 7}, {-8, 8}, {-16, 10}, {16, 26}, {-32, 12}, {-64, 14}, {-127, 15}, {-500, 15}, {500, 31},
	} {
		if got := relativeBucket(c.rel, 32, 128); got != c.want {
			t.Errorf("bucket(%d) = %d, want %d", c.rel, got, c.want)
		}
	}
}

func TestConfigActivation(t *testing.T) {
	for _, c := range []struct {
		proj  string
		gated bool
		act   string
	}{{"gated-gelu", true, "gelu_new"}, {"relu", false, "relu"}, {"gelu", false, "gelu"}, {"gated-silu", true, "silu"}} {
		g, a, err := Config{FeedForwardProj: c.proj}.activation()
		if err != nil || g != c.gated || a != c.act {
			t.Errorf("%s: gated %v act %q err %v", c.proj, g, a, err)
		}
	}
	if _, err := ParseConfig([]byte(`{"feed_forward_proj": "gated-foo"}`)); err == nil {
		t.Error("unknown activation accepted")
	}
}
