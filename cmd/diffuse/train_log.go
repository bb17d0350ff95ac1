package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/diffuse-go/diffuse/train"
)

// lossEntry is one line of output_dir/logs/loss.jsonl: an optimizer step.
type lossEntry struct {
	Step int `json:"step"`
	// Loss is the mean of the step's batches' losses (one batch unless
	// gradient accumulation), LastLoss the last batch's.
	Loss         float64 `json:"loss"`
	LastLoss     float32 `json:"last_loss"`
	InstanceLoss float32 `json:"instance_loss,omitempty"`
	PriorLoss    float32 `json:"prior_loss,omitempty"`
	LR           float64 `json:"lr"`
	GradNorm     float32 `json:"grad_norm"`
	Time         string  `json:"time"`
}

// lossLog appends lossEntry lines to output_dir/logs/loss.jsonl. A resumed
// run appends, so steps redone after the checkpoint appear twice; readers
// keep the last line of a step.
type lossLog struct {
	path string
	f    *os.File
}

func openLossLog(outputDir string, resume bool) (*lossLog, error) {
	dir := filepath.Join(outputDir, "logs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("train: loss log: %w", err)
	}
	mode := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if resume {
		mode = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	path := filepath.Join(dir, "loss.jsonl")
	f, err := os.OpenFile(path, mode, 0o644)
	if err != nil {
		return nil, fmt.Errorf("train: loss log: %w", err)
	}
	return &lossLog{path: path, f: f}, nil
}

func (l *lossLog) write(step int, r *train.StepResult, mean float64) error {
	b, err := json.Marshal(lossEntry{Step: step, Loss: mean, LastLoss: r.Loss, InstanceLoss: r.InstanceLoss,
		PriorLoss: r.PriorLoss, LR: r.LR, GradNorm: r.GradNorm, Time: time.Now().UTC().Format(time.RFC3339)})
	if err != nil {
		return err
	}
	if _, err := l.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("train: loss log: %w", err)
	}
	return nil
}

func (l *lossLog) close() { l.f.Close() }

// trainProgress counts optimizer steps and draws the progress bar:
// step/total, mean loss, steps per second and ETA.
type trainProgress struct {
	step, first, total int
	quiet              bool
	start              time.Time
	sum                float64
	n                  int
	last               float64
}

// newTrainProgress starts counting at the step of the checkpoint a run
// resumes from (its folder name, as the scripts read it).
func newTrainProgress(cfg train.Config, total int) *trainProgress {
	p := &trainProgress{total: total, quiet: false, start: time.Now()}
	if dir, err := train.ResolveCheckpoint(cfg.OutputDir, cfg.ResumeFromCheckpoint); err == nil && dir != "" {
		if n, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(dir), "checkpoint-")); err == nil {
			p.step, p.first = n, n
		}
	}
	return p
}

// batch takes one batch's result; it returns the step number and true
// when the batch completed an optimizer step.
func (p *trainProgress) batch(r *train.StepResult) (int, bool) {
	p.sum += float64(r.Loss)
	p.n++
	if !r.Synced {
		return 0, false
	}
	p.last = p.sum / float64(p.n)
	p.sum, p.n = 0, 0
	p.step++
	return p.step, true
}

// mean is the last optimizer step's mean batch loss.
func (p *trainProgress) mean() float64 { return p.last }

func (p *trainProgress) show(step int) {
	if p.quiet {
		return
	}
	const width = 30
	done := width * min(step, p.total) / max(p.total, 1)
	rate := float64(step-p.first) / time.Since(p.start).Seconds()
	eta := "?"
	if rate > 0 {
		eta = (time.Duration(float64(p.total-step)/rate) * time.Second).Round(time.Second).String()
	}
	fmt.Fprintf(os.Stderr, "\rstep %d/%d [%s%s] loss %.4f %.3g step/s ETA %s ", step, p.total,
		strings.Repeat("#", done), strings.Repeat(".", width-done), p.last, rate, eta)
}

func (p *trainProgress) done() {
	if !p.quiet && p.step > p.first {
		fmt.Fprintln(os.Stderr)
	}
}
