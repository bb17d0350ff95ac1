package scheduler

import (
	"math"
	"testing"
)

func TestFlowMatchDynamicNeedsMu(t *testing.T) {
	s, err := NewClass("FlowMatchEulerDiscreteScheduler", Config{UseDynamicShifting: Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetTimesteps(4); err == nil {
		t.Fatal("SetTimesteps without mu succeeded under dynamic shifting")
	}
	f := s.(*FlowMatchEuler)
	f.SetMu(f.Mu(4096))
	if err := s.SetTimesteps(4); err != nil {
		t.Fatal(err)
	}
	if got := len(s.Sigmas()); got != 5 {
		t.Fatalf("%d sigmas, want 5", got)
	}
}

func TestFlowMatchSD3Schedule(t *testing.T) {
	s, err := NewFlowMatchEuler(Config{Shift: Float(3)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetTimesteps(4); err != nil {
		t.Fatal(err)
	}
	// The constructor's shifted sigma_min is shifted again (upstream quirk):
	// the last timestep is 1000*shift(shift(0.001)), not 1000*shift(0.001).
	ts := s.Timesteps()
	if ts[0] != 1000 || math.Abs(ts[3]-8.928571) > 1e-5 {
		t.Errorf("timesteps %v, want 1000 ... 8.928571", ts)
	}
}

func TestFlowStrengthStart(t *testing.T) {
	for _, c := range []struct {
		n        int
		strength float64
		want     int
	}{{4, 0.6, 1}, {4, 1, 0}, {10, 0.25, 7}, {4, 0, 4}} {
		got, err := FlowStrengthStart(c.n, c.strength)
		if err != nil || got != c.want {
			t.Errorf("FlowStrengthStart(%d, %v) = %d, %v; want %d", c.n, c.strength, got, err, c.want)
		}
	}
	if _, err := FlowStrengthStart(4, 1.5); err == nil {
		t.Error("strength 1.5 accepted")
	}
}

func TestFlowMatchBadConfig(t *testing.T) {
	if _, err := NewFlowMatchEuler(Config{Shift: Float(0)}); err == nil {
		t.Error("shift 0 accepted")
	}
}

func TestFlowMatchHeunSchedule(t *testing.T) {
	s, err := NewClass("FlowMatchHeunDiscreteScheduler", Config{Shift: Float(3)})
	if err != nil {
		t.Fatal(err)
	}
	e, _ := NewFlowMatchEuler(Config{Shift: Float(3)})
	if err := s.SetTimesteps(4); err != nil {
		t.Fatal(err)
	}
	_ = e.SetTimesteps(4)
	ts, es := s.Timesteps(), e.Timesteps()
	want := []float64{es[0], es[1], es[1], es[2], es[2], es[3], es[3]}
	if len(ts) != len(want) || len(s.Sigmas()) != len(ts)+1 {
		t.Fatalf("timesteps %v (%d sigmas), want %v", ts, len(s.Sigmas()), want)
	}
	for i := range want {
		if ts[i] != want[i] {
			t.Fatalf("timesteps %v, want %v", ts, want)
		}
	}
	if s.Order() != 2 {
		t.Error("order != 2")
	}
}

// A constant velocity field is integrated exactly: x(0) = x(1) - v.
func TestFlowMatchHeunConstantVelocity(t *testing.T) {
	s, err := NewFlowMatchHeun(Config{Shift: Float(3)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetTimesteps(5); err != nil {
		t.Fatal(err)
	}
	x := []float32{1, -2, 0.5}
	v := []float32{0.3, -0.7, 2}
	for i := range s.Timesteps() {
		out, err := s.Step(v, i, x, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		x = out.PrevSample
	}
	for i, want := range []float32{1 - 0.3, -2 + 0.7, 0.5 - 2} {
		if math.Abs(float64(x[i]-want)) > 1e-5 {
			t.Errorf("x[%d] = %v, want %v", i, x[i], want)
		}
	}
	// s_churn > 0 needs noise.
	c, _ := NewFlowMatchHeun(Config{SChurn: Float(1)})
	_ = c.SetTimesteps(2)
	if _, err := c.Step(v, 0, x, nil, nil); err == nil {
		t.Error("s_churn without a noise source accepted")
	}
}

func TestNewFlowMatch(t *testing.T) {
	for name, class := range map[string]string{"": "FlowMatchEulerDiscreteScheduler", "Euler": "FlowMatchEulerDiscreteScheduler",
		"heun": "FlowMatchHeunDiscreteScheduler", "diffusers.FlowMatchHeunDiscreteScheduler": "FlowMatchHeunDiscreteScheduler"} {
		s, err := NewFlowMatch(name, Config{Shift: Float(3)})
		if err != nil || s.Class() != class || !IsFlowMatching(s) {
			t.Errorf("NewFlowMatch(%q) = %v, %v; want %s", name, s, err, class)
		}
	}
	if _, err := NewFlowMatch("dpm++2m", Config{}); err == nil {
		t.Error("dpm++2m accepted for a flow-matching model")
	}
	if s, _ := New("euler", Config{}); IsFlowMatching(s) {
		t.Error("EulerDiscreteScheduler reported as flow matching")
	}
}
