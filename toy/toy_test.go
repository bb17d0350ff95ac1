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

func TestGeneratorDeterministicAndHoldsOut(t *testing.T) {
	g := Generator{Seed: 3, Resolution: 32}
	held := 0
	for i := uint64(0); i < 300; i++ {
		a, err := g.Example(i)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := g.Example(i)
		if a.Attrs != b.Attrs || string(a.Image.Pix) != string(b.Image.Pix) {
			t.Fatalf("example %d differs between draws", i)
		}
		if a.IsHeldOut() {
			t.Fatalf("training example %d is a held-out combination: %+v", i, a.Attrs)
		}
		if h, _ := (Generator{Seed: 3, Resolution: 32, IncludeHeldOut: true}).Example(i); h.IsHeldOut() {
			held++
		}
	}
	if held == 0 {
		t.Error("with IncludeHeldOut no held-out combination appeared in 300 draws")
	}
	if _, err := (Generator{Resolution: 8}).Example(0); err == nil {
		t.Error("resolution 8 accepted")
	}
}

func TestCaption(t *testing.T) {
	a := Attrs{Shape: "circle", Colour: "red", Size: "large", Position: "left", Background: "gray"}
	if got, want := a.Caption(), "a large red circle on the left, gray background"; got != want {
		t.Errorf("caption %q, want %q", got, want)
	}
	if _, err := Render(Attrs{Shape: "star", Colour: "red", Size: "large", Position: "left", Background: "gray"}, 32, Jitter{}); err == nil {
		t.Error("unknown shape rendered")
	}
}

func TestEvalSet(t *testing.T) {
	set := EvalSet(30)
	seen, held := 0, map[Attrs]bool{}
	for _, a := range set {
		if a.IsHeldOut() {
			held[Attrs{Colour: a.Colour, Shape: a.Shape, Position: a.Position}] = true
		} else {
			seen++
		}
	}
	if seen != 30 || len(held) != len(HeldOut) {
		t.Errorf("%d seen prompts (want 30), %d held-out triples (want %d)", seen, len(held), len(HeldOut))
	}
	if len(All()) != len(Shapes)*len(Colours)*len(Sizes)*len(Positions)*len(Backgrounds) {
		t.Error("All misses combinations")
	}
}

func TestAnalyseBlank(t *testing.T) {
	img, err := Render(Attrs{Shape: "circle", Colour: "red", Size: "small", Position: "left", Background: "gray"}, 32, Jitter{DX: -100})
	if err != nil {
		t.Fatal(err)
	}
	if a := Analyse(img); a.Found || a.Background != "gray" {
		t.Errorf("blank gray image analysed as %+v", a)
	}
}
