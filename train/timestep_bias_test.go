package train

import (
	"math"
	"testing"

	"github.com/diffuse-go/diffuse/rng"
)

func TestTimestepBiasWeights(t *testing.T) {
	w, err := TimestepBias{Strategy: "later", Multiplier: 4, Portion: 0.2}.Weights(1000)
	if err != nil {
		t.Fatal(err)
	}
	// 800 timesteps of weight 1 and 200 of weight 4: sum 1600.
	if math.Abs(w[0]-1.0/1600) > 1e-15 || math.Abs(w[799]-1.0/1600) > 1e-15 || math.Abs(w[800]-4.0/1600) > 1e-15 || math.Abs(w[999]-4.0/1600) > 1e-15 {
		t.Errorf("later weights %g %g %g %g", w[0], w[799], w[800], w[999])
	}
	e, _ := TimestepBias{Strategy: "earlier", Multiplier: 2, Portion: 0.5}.Weights(10)
	if e[4] != 2.0/15 || e[5] != 1.0/15 {
		t.Errorf("earlier weights %v", e)
	}
	r, _ := TimestepBias{Strategy: "range", Multiplier: 3, Begin: 2, End: 4}.Weights(6)
	if r[1] != 1.0/10 || r[2] != 3.0/10 || r[3] != 3.0/10 || r[4] != 1.0/10 {
		t.Errorf("range weights %v", r)
	}
	if n, err := (TimestepBias{Strategy: "none"}).Weights(10); n != nil || err != nil {
		t.Errorf("none: %v, %v", n, err)
	}
	for _, b := range []TimestepBias{{Strategy: "later", Multiplier: 0, Portion: 0.2}, {Strategy: "later", Multiplier: 2, Portion: 0},
		{Strategy: "range", Multiplier: 2, Begin: 5, End: 3}, {Strategy: "range", Multiplier: 2, Begin: 0, End: 11}, {Strategy: "sideways", Multiplier: 2},
		{Strategy: "later", Multiplier: math.NaN(), Portion: 0.2}, {Strategy: "later", Multiplier: 2, Portion: math.NaN()},
		{Strategy: "later", Multiplier: math.Inf(1), Portion: 0.2}} {
		if _, err := b.Weights(10); err == nil {
			t.Errorf("%+v accepted", b)
		}
	}
}

// TestBiasedDraws checks the biased timesteps' frequencies and range.
func TestBiasedDraws(t *testing.T) {
	w, _ := TimestepBias{Strategy: "later", Multiplier: 4, Portion: 0.2}.Weights(1000)
	d := &GeneratorDraws{G: rng.New(3), TimestepWeights: w}
	late, n := 0, 0
	for range 200 {
		dr, err := d.Next([]int{16, 4, 2, 2}, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, ts := range dr.Timesteps {
			if ts < 0 || ts >= 1000 {
				t.Fatalf("timestep %d", ts)
			}
			if ts >= 800 {
				late++
			}
			n++
		}
	}
	// Half of the probability mass lies in [800, 1000).
	if f := float64(late) / float64(n); f < 0.46 || f > 0.54 {
		t.Errorf("%.3f of timesteps in the biased fifth, want 0.5", f)
	}
	if got := sampleWeighted([]float64{0.25, 0.25, 0.5}, []float32{0, 0.2499, 0.25, 0.5, 0.99}); got[0] != 0 || got[1] != 0 || got[2] != 1 || got[3] != 2 || got[4] != 2 {
		t.Errorf("sampleWeighted %v", got)
	}
	if _, err := d.Next([]int{1, 4, 2, 2}, 10); err == nil {
		t.Error("weights for 1000 timesteps used with 10")
	}
}
