package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// Checkpoint files inside a checkpoint-<step> folder.
const (
	StateTensorsFile = "training_state.safetensors"
	StateJSONFile    = "training_state.json"
	stateFormat      = "diffuse-train-state-1"
)

// StatefulDraws is a Draws source whose position can be saved and restored
// (a generator's state, a recording's index).
type StatefulDraws interface {
	Draws
	MarshalBinary() ([]byte, error)
	UnmarshalBinary([]byte) error
}

// MarshalBinary implements StatefulDraws: the generator's exact state.
func (d *GeneratorDraws) MarshalBinary() ([]byte, error) { return d.G.MarshalBinary() }

// UnmarshalBinary implements StatefulDraws.
func (d *GeneratorDraws) UnmarshalBinary(b []byte) error { return d.G.UnmarshalBinary(b) }

// MarshalBinary implements StatefulDraws: the index of the next step.
func (d *RecordedDraws) MarshalBinary() ([]byte, error) { return []byte(strconv.Itoa(d.next)), nil }

// UnmarshalBinary implements StatefulDraws.
func (d *RecordedDraws) UnmarshalBinary(b []byte) error {
	n, err := strconv.Atoi(string(b))
	if err != nil || n < 0 || n > len(d.Steps) {
		return fmt.Errorf("train: recorded-draws position %q is not a step index in [0, %d]", b, len(d.Steps))
	}
	d.next = n
	return nil
}

// stateJSON is the small JSON half of a checkpoint.
type stateJSON struct {
	Format     string `json:"format"`
	GlobalStep int    `json:"global_step"`
	// ParamNames are the trained tensors in optimizer order.
	ParamNames []string `json:"param_names"`
	// OptimizerSteps are AdamW's per-parameter step counts.
	OptimizerSteps []int64        `json:"optimizer_steps"`
	LRScheduler    lrSchedulerRef `json:"lr_scheduler"`
	// Draws is the random-draw source's state.
	Draws []byte `json:"draws_state"`
	// EMASteps is the EMA's update count (absent without one).
	EMASteps *int `json:"ema_steps,omitempty"`
	// Data is the caller's position in its data (epoch, batch...).
	Data json.RawMessage `json:"data,omitempty"`
}

type lrSchedulerRef struct {
	Schedule
	BaseLR    float64 `json:"base_lr"`
	LastEpoch int     `json:"last_epoch"`
}

// SaveState writes the trainer's resumable state into dir (which must
// exist): the trained tensors and AdamW moments as safetensors, the step
// counts, schedule position, draw-source state and data (the caller's own
// position, any JSON value) as JSON. Each file is written atomically. It
// must be called between optimizer steps (no gradient accumulated).
func (t *Trainer) SaveState(dir string, data any) error {
	if t.micro != 0 {
		return fmt.Errorf("train: cannot save state in the middle of gradient accumulation (%d of %d batches)", t.micro, t.Opts.GradientAccumulation)
	}
	sd, ok := t.Draws.(StatefulDraws)
	if !ok {
		return fmt.Errorf("train: the draw source %T cannot save its state", t.Draws)
	}
	drawState, err := sd.MarshalBinary()
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	o := t.Optimizer
	var ts []safetensors.Tensor
	js := stateJSON{Format: stateFormat, GlobalStep: t.GlobalStep, OptimizerSteps: append([]int64(nil), o.steps...),
		LRScheduler: lrSchedulerRef{Schedule: t.LR.Schedule, BaseLR: t.LR.Base, LastEpoch: t.LR.Step}, Draws: drawState}
	for i, p := range o.params {
		js.ParamNames = append(js.ParamNames, p.Name)
		shape := p.T.Shape()
		ts = append(ts, f32("param."+p.Name, p.T),
			safetensors.F32Tensor("exp_avg."+p.Name, shape, o.m[i]),
			safetensors.F32Tensor("exp_avg_sq."+p.Name, shape, o.v[i]))
		if t.EMA != nil {
			ts = append(ts, safetensors.F32Tensor("ema."+p.Name, shape, t.EMA.Shadow(i)))
		}
	}
	if t.EMA != nil {
		js.EMASteps = &t.EMA.Steps
	}
	if data != nil {
		if js.Data, err = json.Marshal(data); err != nil {
			return fmt.Errorf("train: data position: %w", err)
		}
	}
	if err := safetensors.WriteFile(filepath.Join(dir, StateTensorsFile), ts, map[string]string{"format": stateFormat}); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	b, err := json.MarshalIndent(js, "", " ")
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, StateJSONFile), b)
}

// LoadState restores what SaveState wrote into a trainer built like the
// saved one (same parameters by name and shape), and decodes the saved data
// position into data when it is non-nil.
func (t *Trainer) LoadState(dir string, data any) error {
	b, err := os.ReadFile(filepath.Join(dir, StateJSONFile))
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	var js stateJSON
	if err := json.Unmarshal(b, &js); err != nil {
		return fmt.Errorf("train: %s: %w", filepath.Join(dir, StateJSONFile), err)
	}
	if js.Format != stateFormat {
		return fmt.Errorf("train: %s: format %q, want %q", dir, js.Format, stateFormat)
	}
	o := t.Optimizer
	if len(js.ParamNames) != len(o.params) || len(js.OptimizerSteps) != len(o.params) {
		return fmt.Errorf("train: %s holds %d parameters, the trainer has %d", dir, len(js.ParamNames), len(o.params))
	}
	f, err := safetensors.Open(filepath.Join(dir, StateTensorsFile))
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	defer f.Close()
	if js.EMASteps != nil && *js.EMASteps < 0 {
		return fmt.Errorf("train: %s: EMA step count %d is negative", dir, *js.EMASteps)
	}
	if (t.EMA != nil) != (js.EMASteps != nil) {
		return fmt.Errorf("train: %s: checkpoint with EMA %v, trainer with EMA %v: resume with the same --use_ema setting", dir, js.EMASteps != nil, t.EMA != nil)
	}
	for i, p := range o.params {
		if js.ParamNames[i] != p.Name {
			return fmt.Errorf("train: %s: parameter %d is %s, the trainer's is %s", dir, i, js.ParamNames[i], p.Name)
		}
		for _, part := range []struct {
			key string
			dst []float32
		}{{"param.", p.T.Data()}, {"exp_avg.", o.m[i]}, {"exp_avg_sq.", o.v[i]}} {
			if err := readInto(f, part.key+p.Name, p.T.Shape(), part.dst); err != nil {
				return err
			}
		}
		if t.EMA != nil {
			if err := readInto(f, "ema."+p.Name, p.T.Shape(), t.EMA.Shadow(i)); err != nil {
				return err
			}
		}
		o.steps[i] = js.OptimizerSteps[i]
	}
	sd, ok := t.Draws.(StatefulDraws)
	if !ok {
		return fmt.Errorf("train: the draw source %T cannot restore its state", t.Draws)
	}
	if err := sd.UnmarshalBinary(js.Draws); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	t.LR.Step, t.GlobalStep, t.micro = js.LRScheduler.LastEpoch, js.GlobalStep, 0
	if t.EMA != nil {
		t.EMA.Steps = *js.EMASteps
	}
	t.Optimizer.ZeroGrad()
	if data != nil && js.Data != nil {
		if err := json.Unmarshal(js.Data, data); err != nil {
			return fmt.Errorf("train: %s: data position: %w", dir, err)
		}
	}
	return nil
}

// readInto copies a float32 tensor of f into dst after checking its shape.
func readInto(f *safetensors.File, name string, shape []int, dst []float32) error {
	v, s, err := f.Float32(name)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	if !tensor.SameShape(s, shape) {
		return fmt.Errorf("train: %s: %s has shape %v, want %v", f.Path, name, s, shape)
	}
	copy(dst, v)
	return nil
}

// writeFileAtomic writes b to path through a temporary file and a rename.
func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	_, werr := tmp.Write(b)
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp.Name(), 0o644)
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("train: writing %s: %w", path, werr)
	}
	return nil
}

// CheckpointDir is the folder name of the checkpoint after step steps, as
// the diffusers scripts name it.
func CheckpointDir(step int) string { return "checkpoint-" + strconv.Itoa(step) }

// Checkpoints lists the checkpoint-<step> folders of outputDir, oldest
// (lowest step) first.
func Checkpoints(outputDir string) ([]string, error) {
	entries, err := os.ReadDir(outputDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	type cp struct {
		name string
		step int
	}
	var cps []cp
	for _, e := range entries {
		s, ok := strings.CutPrefix(e.Name(), "checkpoint-")
		if !e.IsDir() || !ok {
			continue
		}
		if n, err := strconv.Atoi(s); err == nil && n >= 0 {
			cps = append(cps, cp{e.Name(), n})
		}
	}
	sort.Slice(cps, func(i, j int) bool { return cps[i].step < cps[j].step })
	out := make([]string, len(cps))
	for i, c := range cps {
		out[i] = filepath.Join(outputDir, c.name)
	}
	return out, nil
}

// ResolveCheckpoint turns --resume_from_checkpoint into a folder: "latest"
// is the newest checkpoint of outputDir ("" with no error when there is
// none, as the scripts then start afresh); any other value is a folder
// path, or a checkpoint name inside outputDir.
func ResolveCheckpoint(outputDir, resume string) (string, error) {
	if resume == "" {
		return "", nil
	}
	if resume == "latest" {
		cps, err := Checkpoints(outputDir)
		if err != nil || len(cps) == 0 {
			return "", err
		}
		return cps[len(cps)-1], nil
	}
	for _, p := range []string{resume, filepath.Join(outputDir, resume)} {
		if st, err := os.Stat(filepath.Join(p, StateJSONFile)); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("train: checkpoint %q not found (neither a folder with %s nor one inside %s)", resume, StateJSONFile, outputDir)
}

// SaveCheckpoint writes outputDir/checkpoint-<GlobalStep> atomically: the
// state (SaveState) and whatever extra writes into the folder (the model
// files) go into a temporary folder that is renamed into place when
// complete. With limit > 0, the oldest checkpoints are removed first so
// that at most limit remain afterwards (--checkpoints_total_limit).
func (t *Trainer) SaveCheckpoint(outputDir string, limit int, data any, extra func(dir string) error) (string, error) {
	if err := os.MkdirAll(outputDir, 0o755); err != nil {
		return "", fmt.Errorf("train: %w", err)
	}
	if limit > 0 {
		cps, err := Checkpoints(outputDir)
		if err != nil {
			return "", err
		}
		for i := 0; i < len(cps)-limit+1 && i < len(cps); i++ {
			if err := os.RemoveAll(cps[i]); err != nil {
				return "", fmt.Errorf("train: removing old checkpoint: %w", err)
			}
		}
	}
	final := filepath.Join(outputDir, CheckpointDir(t.GlobalStep))
	tmp, err := os.MkdirTemp(outputDir, "."+CheckpointDir(t.GlobalStep)+".tmp*")
	if err != nil {
		return "", fmt.Errorf("train: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", fmt.Errorf("train: %w", err)
	}
	if err := t.SaveState(tmp, data); err != nil {
		return "", err
	}
	if extra != nil {
		if err := extra(tmp); err != nil {
			return "", err
		}
	}
	if err := os.RemoveAll(final); err != nil {
		return "", fmt.Errorf("train: replacing %s: %w", final, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("train: %w", err)
	}
	ok = true
	return final, nil
}
