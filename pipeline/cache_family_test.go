package pipeline

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestFBCacheDiTFamily checks fbcache through the DiT front door: it runs,
// lands in the PNG parameters, and deepcache is refused with ErrCacheMode.
func TestFBCacheDiTFamily(t *testing.T) {
	m := openTiny(t, writeTiny(t, "dit-cache", tinyDiTFolder(nil)), "dit")
	out, err := m.Generate(context.Background(), Params{Prompt: "3", Steps: 4, Seed: 1, CacheMode: CacheFirstBlock, CacheThreshold: 0.2})
	if err != nil {
		t.Fatal(err)
	}
	if got := param(out.Images[0], "Cache"); got != "fbcache threshold 0.2" {
		t.Errorf("Cache parameter %q, want \"fbcache threshold 0.2\"", got)
	}
	_, err = m.Generate(context.Background(), Params{Prompt: "3", Steps: 2, CacheMode: CacheDeep})
	if !errors.Is(err, ErrCacheMode) || !strings.Contains(err.Error(), `only "fbcache"`) {
		t.Errorf("deepcache on DiT: %v, want ErrCacheMode saying it takes only fbcache", err)
	}
}

// TestCacheRefusedByFamilies checks that a family whose Info accepts no
// cache mode refuses each, naming the model and ErrCacheMode.
func TestCacheRefusedByFamilies(t *testing.T) {
	in := Info{Name: "flux-dev", Kind: "FLUX", Accepts: []string{"negative-prompt"}}
	for _, mode := range []string{CacheDeep, CacheFirstBlock} {
		p := Params{CacheMode: mode}
		err := p.checkCache(in)
		if !errors.Is(err, ErrCacheMode) || !strings.Contains(err.Error(), "flux-dev (FLUX)") || !strings.Contains(err.Error(), "no step cache") {
			t.Errorf("%s: %v, want ErrCacheMode naming flux-dev (FLUX) and that it takes no step cache", mode, err)
		}
	}
	if err := (&Params{}).checkCache(in); err != nil {
		t.Errorf("no cache asked: %v", err)
	}
}
