package scheduler

import (
	"math"
	"testing"
)

// TestDDPMLearnedVariance checks DDPM's learned / learned_range steps
// against the formulas in float64: the output's second half of channels is
// the variance; the mean is the fixed-variance step's on the first half.
func TestDDPMLearnedVariance(t *testing.T) {
	shape := []int{2, 1, 2, 2} // sample [B, C, H, W]; model output has 2C channels
	n := numel(shape)
	sample := make([]float32, n)
	out := make([]float32, 2*n)
	z := make([]float32, n)
	for i := range sample {
		sample[i] = float32(math.Sin(float64(i) + 0.3))
		z[i] = float32(math.Cos(1.7*float64(i) + 0.1))
	}
	for i := range out {
		out[i] = float32(math.Sin(2.3*float64(i)+1)) * 0.9
	}
	per := n / shape[0]
	eps, pv := make([]float32, 0, n), make([]float32, 0, n)
	for b := 0; b < shape[0]; b++ {
		eps = append(eps, out[2*b*per:(2*b+1)*per]...)
		pv = append(pv, out[(2*b+1)*per:(2*b+2)*per]...)
	}
	for _, vt := range []string{"learned", "learned_range"} {
		cfg := Config{BetaSchedule: String("squaredcos_cap_v2"), VarianceType: String(vt), ClipSample: Bool(false)}
		s, err := NewDDPM(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := NewDDPM(Config{BetaSchedule: String("squaredcos_cap_v2"), VarianceType: String("fixed_small"), ClipSample: Bool(false)})
		if err != nil {
			t.Fatal(err)
		}
		if s.VarianceType() != vt {
			t.Fatalf("VarianceType() = %q, want %q", s.VarianceType(), vt)
		}
		for _, x := range []*DDPM{s, ref} {
			if err := x.SetTimesteps(4); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Step(out, 0, sample, shape, &RecordedNoise{Values: z})
		if err != nil {
			t.Fatal(err)
		}
		// The fixed-variance step with zero noise gives the mean.
		mean, err := ref.Step(eps, 0, sample, shape, &RecordedNoise{Values: make([]float32, n)})
		if err != nil {
			t.Fatal(err)
		}
		tt := int(s.Timesteps()[0])
		prev := tt - 1000/4
		ac := s.AlphasCumprod()
		at, ap := float64(ac[tt]), float64(ac[prev])
		beta := 1 - at/ap
		post := (1 - ap) / (1 - at) * beta
		for i := range sample {
			var sd float64
			if vt == "learned" {
				sd = math.Sqrt(float64(pv[i]))
			} else {
				f := (float64(pv[i]) + 1) / 2
				sd = math.Exp(0.5 * (f*math.Log(beta) + (1-f)*math.Log(post)))
			}
			want := float64(mean.PrevSample[i]) + sd*float64(z[i])
			if math.IsNaN(sd) {
				if !math.IsNaN(float64(got.PrevSample[i])) {
					t.Errorf("%s: element %d = %g, want NaN", vt, i, got.PrevSample[i])
				}
				continue
			}
			if d := math.Abs(float64(got.PrevSample[i]) - want); d > 1e-5*(1+math.Abs(want)) {
				t.Errorf("%s: element %d = %g, want %g", vt, i, got.PrevSample[i], want)
			}
		}
	}
	// learned_range without the variance channels cannot add noise.
	s, err := NewDDPM(Config{VarianceType: String("learned_range")})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetTimesteps(4); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Step(sample, 0, sample, shape, &RecordedNoise{Values: z}); err == nil {
		t.Error("learned_range step without variance channels: no error")
	}
}
