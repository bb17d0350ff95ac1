package train

import (
	"fmt"
	"math"
)

// Schedule is diffusers.optimization.get_scheduler: a learning-rate
// multiplier for every optimizer step s = 0, 1, ... (torch's LambdaLR, whose
// lr at step s is base_lr · multiplier(s)).
type Schedule struct {
	// Name is one of constant, constant_with_warmup, linear, cosine,
	// cosine_with_restarts, polynomial.
	Name string `json:"name"`
	// Warmup is num_warmup_steps; Total is num_training_steps.
	Warmup int `json:"warmup"`
	Total  int `json:"total"`
	// Cycles is num_cycles of cosine_with_restarts, the number of hard
	// restarts (1 unless set). get_scheduler does not pass it to cosine,
	// which always makes half a wave down to 0.
	Cycles float64 `json:"cycles,omitempty"`
	// Power is the polynomial decay's power (1 unless set); LREnd its final
	// learning rate (1e-7, diffusers' default).
	Power float64 `json:"power,omitempty"`
	LREnd float64 `json:"lr_end,omitempty"`
}

// schedules are the names Validate accepts.
var schedules = map[string]bool{"constant": true, "constant_with_warmup": true, "linear": true,
	"cosine": true, "cosine_with_restarts": true, "polynomial": true}

// Validate reports a schedule its fields cannot define.
func (s Schedule) Validate() error {
	if !schedules[s.Name] {
		return fmt.Errorf("train: unknown lr_scheduler %q (want constant, constant_with_warmup, linear, cosine, cosine_with_restarts or polynomial)", s.Name)
	}
	if s.Warmup < 0 || s.Total < 0 {
		return fmt.Errorf("train: lr schedule steps must not be negative (warmup %d, total %d)", s.Warmup, s.Total)
	}
	return nil
}

// LR returns the learning rate at step s for base learning rate base,
// computed in float64 as the Python lambdas and LambdaLR
// (base_lr · lambda(s)) do.
func (s Schedule) LR(base float64, step int) float64 { return base * s.Lambda(base, step) }

// Lambda is the schedule's multiplier at step s (the lr_lambda LambdaLR
// calls); lrInit is the optimizer's default learning rate, which only the
// polynomial decay reads. A param group's learning rate is its own initial
// rate times Lambda.
func (s Schedule) Lambda(lrInit float64, step int) float64 {
	st, w, tot := float64(step), float64(s.Warmup), float64(s.Total)
	if s.Name == "constant" {
		return 1
	}
	if step < s.Warmup {
		return st / math.Max(1, w)
	}
	switch s.Name {
	case "linear":
		return math.Max(0, (tot-st)/math.Max(1, tot-w))
	case "cosine":
		progress := (st - w) / math.Max(1, tot-w)
		return math.Max(0, 0.5*(1+math.Cos(math.Pi*0.5*2*progress)))
	case "cosine_with_restarts":
		progress := (st - w) / math.Max(1, tot-w)
		if progress >= 1 {
			return 0
		}
		cycles := s.Cycles
		if cycles == 0 {
			cycles = 1
		}
		return math.Max(0, 0.5*(1+math.Cos(math.Pi*math.Mod(cycles*progress, 1))))
	case "polynomial":
		return s.polynomial(lrInit, step)
	}
	return 1 // constant_with_warmup after warmup
}

// polynomial is get_polynomial_decay_schedule_with_warmup's lambda after
// warmup: the decayed lr divided by lr_init.
func (s Schedule) polynomial(base float64, step int) float64 {
	end := s.lrEnd()
	power := s.Power
	if power == 0 {
		power = 1
	}
	if step > s.Total {
		return end / base
	}
	pct := 1 - float64(step-s.Warmup)/float64(s.Total-s.Warmup)
	return ((base-end)*math.Pow(pct, power) + end) / base
}

// LRScheduler tracks the step of a Schedule (torch's LambdaLR last_epoch).
type LRScheduler struct {
	Schedule Schedule
	// Base is the optimizer's initial learning rate.
	Base float64
	// Step is the number of scheduler steps taken.
	Step int
}

// LR is the learning rate of the current step.
func (l *LRScheduler) LR() float64 { return l.Schedule.LR(l.Base, l.Step) }

// Advance moves to the next step (lr_scheduler.step()).
func (l *LRScheduler) Advance() { l.Step++ }

// lrEnd is the polynomial schedule's final learning rate.
func (s Schedule) lrEnd() float64 {
	if s.LREnd == 0 {
		return 1e-7
	}
	return s.LREnd
}
