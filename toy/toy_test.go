package toy

import (
	"testing"
)

// TestAnalyseRecoversGenerator checks that the analyser reads back the
// generator's attributes from clean images (the issue asks ≥ 99%).
func TestAnalyseRecoversGenerator(t *testing.T) {
	for _, res := range []int{32, 64} {
		g := Generator{Seed: 7, Resolution: res, IncludeHeldOut: true}
		const n = 600
		wrong := map[string]int{}
		for i := uint64(0); i < n; i++ {
			ex, err := g.Example(i)
			if err != nil {
				t.Fatal(err)
			}
			a := Analyse(ex.Image)
			for _, f := range []struct{ name, got, want string }{{"shape", a.Shape, ex.Shape}, {"colour", a.Colour, ex.Colour},
				{"size", a.Size, ex.Size}, {"position", a.Position, ex.Position}, {"background", a.Background, ex.Background}} {
				if f.got != f.want {
					wrong[f.name]++
					if wrong[f.name] <= 3 {
						t.Logf("res %d example %d %s: got %s, want %s (%+v)", res, i, f.name, f.got, f.want, a)
					}
				}
			}
		}
		for name, k := range wrong {
			if acc := 1 - float64(k)/n; acc < 0.99 {
				t.Errorf("res %d: %s accuracy %.3f, want >= 0.99", res, name, acc)
			}
		}
	}
}
