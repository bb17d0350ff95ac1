package train

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/diffuse-go/diffuse/model/controlnet"
	"github.com/diffuse-go/diffuse/model/lora"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/tensor"
	tokclip "github.com/diffuse-go/diffuse/tokenizer/clip"
)

// Data are a run's examples: Train holds the DreamBooth instance images
// (captioned by the instance prompt unless they have captions of their own)
// or the ControlNet examples; Class holds the class images of prior
// preservation.
type Data struct {
	Train, Class *Dataset
}

// Result summarises a finished run.
type Result struct {
	GlobalStep int
	LastLoss   float32
	// Outputs are the files and folders written into OutputDir.
	Outputs []string
}

// position is where a run stands in its data, saved with checkpoints.
type position struct {
	Epoch, Batch int
	Order        []int
	Shuffle      []byte
	Augment      []byte
}

// Run trains as the diffusers script of cfg.Method does: DreamBooth LoRA
// (the UNet gets peft adapters on its attention projections; with
// prior preservation each batch is instance rows then class rows) or
// ControlNet (m.ControlNet when set, else one made from the UNet; only it
// learns). The adapters' init and the per-step draws come from one
// generator seeded with cfg.Seed, as the scripts take them from the seeded
// global RNG; batch order and augmentations from their own generators.
// Checkpoints go to OutputDir/checkpoint-<step> every CheckpointingSteps
// optimizer steps; the trained weights to OutputDir at the end (LoRA:
// pytorch_lora_weights.safetensors; ControlNet: a diffusers folder).
// onStep, when non-nil, sees every batch's result.
func Run(ctx context.Context, cfg Config, m Models, data Data, onStep func(*StepResult)) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if m.Tokenizer == nil || m.SDXL() && m.Tokenizer2 == nil {
		return nil, fmt.Errorf("train: Models.Tokenizer (and for SDXL Tokenizer2) is required")
	}
	if m.SDXL() && cfg.Method == "controlnet" {
		return nil, fmt.Errorf("train: ControlNet training takes SD 1.x/2.x models")
	}
	if data.Train.Len() == 0 {
		return nil, fmt.Errorf("train: no training examples")
	}
	if cfg.PredictionType != "" {
		m.PredictionType = cfg.PredictionType
	}
	g := rng.New(uint64(cfg.Seed))
	params, nets, err := setUp(cfg, &m, g)
	if err != nil {
		return nil, err
	}
	defer nets.Remove()
	l := newLoader(cfg, m, data)
	if cfg.Method == "dreambooth_lora" && cfg.WithPriorPreservation && data.Class.Len() == 0 {
		return nil, fmt.Errorf("train: with_prior_preservation needs class images")
	}
	perEpoch := (l.batches() + cfg.GradientAccumulationSteps - 1) / cfg.GradientAccumulationSteps
	maxSteps := cfg.MaxTrainSteps
	if maxSteps <= 0 {
		maxSteps = cfg.NumTrainEpochs * perEpoch
	}
	lr := cfg.LearningRate
	if cfg.ScaleLR {
		lr *= float64(cfg.GradientAccumulationSteps * cfg.TrainBatchSize)
	}
	sched := &LRScheduler{Base: lr, Schedule: Schedule{Name: cfg.LRScheduler, Warmup: cfg.LRWarmupSteps,
		Total: maxSteps, Cycles: cfg.LRNumCycles, Power: cfg.LRPower}}
	opts := Options{PriorPreservation: cfg.Method == "dreambooth_lora" && cfg.WithPriorPreservation,
		PriorLossWeight: float32(cfg.PriorLossWeight), SNRGamma: float32(cfg.SNRGamma),
		GradientAccumulation: cfg.GradientAccumulationSteps, MaxGradNorm: cfg.MaxGradNorm}
	weights, err := cfg.timestepBias().Weights(len(m.Noise.AlphasCumprod()))
	if err != nil {
		return nil, err
	}
	tr, err := NewTrainer(m, opts, params, AdamWConfig{Beta1: cfg.AdamBeta1, Beta2: cfg.AdamBeta2,
		Eps: cfg.AdamEpsilon, WeightDecay: cfg.AdamWeightDecay}, sched,
		&GeneratorDraws{G: g, NoiseOffset: float32(cfg.NoiseOffset), TimestepWeights: weights})
	if err != nil {
		return nil, err
	}
	if len(nets) > 0 {
		tr.LoRA, tr.TextLoRAs = nets[0], nets[1:]
	}
	if cfg.TrainTextEncoder {
		if err := tr.SetGroups(paramGroups(cfg, nets, lr)); err != nil {
			return nil, err
		}
	}
	if err := l.resume(cfg, tr); err != nil {
		return nil, err
	}
	res := &Result{GlobalStep: tr.GlobalStep}
	for tr.GlobalStep < maxSteps {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("train: stopped at step %d: %w", tr.GlobalStep, err)
		}
		r, err := l.step(tr)
		if err != nil {
			return res, err
		}
		res.LastLoss, res.GlobalStep = r.Loss, tr.GlobalStep
		if onStep != nil {
			onStep(r)
		}
		if r.Synced && cfg.CheckpointingSteps > 0 && tr.GlobalStep%cfg.CheckpointingSteps == 0 {
			if _, err := tr.SaveCheckpoint(cfg.OutputDir, cfg.CheckpointsTotalLimit, l.pos, func(dir string) error {
				_, err := saveModel(cfg, tr, dir, true)
				return err
			}); err != nil {
				return res, err
			}
		}
	}
	out, err := saveModel(cfg, tr, cfg.OutputDir, false)
	res.Outputs = out
	return res, err
}

// setUp attaches the LoRA networks or builds the ControlNet, returning the
// trained parameters in optimizer order.
func setUp(cfg Config, m *Models, g *rng.Generator) ([]Param, LoRASet, error) {
	m.UNet.GradientCheckpointing = cfg.GradientCheckpointing
	if cfg.Method == "controlnet" {
		if m.ControlNet == nil {
			cn, err := ControlNetFromUNet(m.UNet, controlnet.FromUNet(m.UNet.Cfg), g)
			if err != nil {
				return nil, nil, err
			}
			m.ControlNet = cn
		}
		m.ControlNet.Encoder.GradientCheckpointing = cfg.GradientCheckpointing
		return ModuleParams(m.ControlNet), nil, nil
	}
	nets, err := addLoRAs(cfg, *m, g)
	if err != nil {
		return nil, nil, err
	}
	return nets.Params(), nets, nil
}

// addLoRAs attaches the scripts' adapters, drawing their init from g in
// the scripts' order: the UNet's, then (--train_text_encoder) each text
// encoder's. All are LoraConfig(r=rank, lora_alpha=rank,
// init_lora_weights="gaussian").
func addLoRAs(cfg Config, m Models, g *rng.Generator) (LoRASet, error) {
	lc := LoRAConfig{Rank: cfg.Rank, Alpha: float64(cfg.Rank), TargetModules: DreamBoothTargets, InitWeights: "gaussian"}
	if m.SDXL() {
		lc.TargetModules = SDXLTargets
	}
	if len(cfg.LoRALayers) > 0 {
		lc.TargetModules = cfg.LoRALayers
	}
	type part struct {
		component string
		module    nn.Module
	}
	parts := []part{{lora.UNet, m.UNet}}
	if cfg.TrainTextEncoder {
		parts = append(parts, part{lora.TextEncoder, m.TextEncoder})
		if m.SDXL() {
			parts = append(parts, part{lora.TextEncoder2, m.TextEncoder2})
		}
	}
	var nets LoRASet
	for i, p := range parts {
		if i == 1 {
			lc.TargetModules = TextEncoderTargets
		}
		n, err := AddLoRA(p.module, p.component, lc, g)
		if err != nil {
			nets.Remove()
			return nil, fmt.Errorf("%w (%s)", err, p.component)
		}
		nets = append(nets, n)
	}
	return nets, nil
}

// paramGroups are the optimizer's groups with trained text encoders: the
// UNet's adapters at learning rate lr and adam_weight_decay, each text
// encoder's at text_encoder_lr (or lr) and adam_weight_decay_text_encoder
// (or adam_weight_decay).
func paramGroups(cfg Config, nets LoRASet, lr float64) []ParamGroup {
	teLR, teWD := lr, cfg.AdamWeightDecay
	if cfg.TextEncoderLR > 0 {
		teLR = cfg.TextEncoderLR
	}
	if cfg.AdamWeightDecayTextEncoder != nil {
		teWD = *cfg.AdamWeightDecayTextEncoder
	}
	var out []ParamGroup
	from := 0
	for i, n := range nets {
		g := ParamGroup{From: from, To: from + 2*len(n.Modules), LR: lr, WeightDecay: cfg.AdamWeightDecay}
		if i > 0 {
			g.LR, g.WeightDecay = teLR, teWD
		}
		out = append(out, g)
		from = g.To
	}
	return out
}

// saveModel writes the trained weights into dir; inCheckpoint puts a
// ControlNet into dir/controlnet, as the scripts' save hooks do.
func saveModel(cfg Config, tr *Trainer, dir string, inCheckpoint bool) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	if nets := tr.LoRAs(); len(nets) > 0 {
		p := filepath.Join(dir, "pytorch_lora_weights.safetensors")
		if err := nets.SaveDiffusers(p); err != nil {
			return nil, err
		}
		out := []string{p}
		if cfg.KohyaOutput && !inCheckpoint {
			k := filepath.Join(dir, "pytorch_lora_weights_kohya.safetensors")
			if err := nets.SaveKohya(k, cfg.BaseModelVersion); err != nil {
				return nil, err
			}
			out = append(out, k)
		}
		return out, nil
	}
	if inCheckpoint {
		dir = filepath.Join(dir, "controlnet")
	}
	return []string{dir}, SaveControlNet(dir, tr.Models.ControlNet)
}

// loader turns examples into batches in the scripts' layout.
type loader struct {
	cfg      Config
	tok      *tokclip.Tokenizer
	tok2     *tokclip.Tokenizer // SDXL's second tokenizer (nil for SD)
	data     Data
	pre      Preprocess
	shuffle  *rng.Generator
	augment  *rng.Generator
	pos      position
	haveNext bool
}

func newLoader(cfg Config, m Models, data Data) *loader {
	var tok2 *tokclip.Tokenizer
	if m.SDXL() {
		tok2 = m.Tokenizer2
	}
	return &loader{cfg: cfg, tok: m.Tokenizer, tok2: tok2, data: data,
		pre:     Preprocess{Resolution: cfg.Resolution, CenterCrop: cfg.CenterCrop, RandomFlip: cfg.RandomFlip},
		shuffle: rng.New(uint64(cfg.Seed) + 1), augment: rng.New(uint64(cfg.Seed) + 2)}
}

// length is the dataset length: with prior preservation, the larger of
// the instance and class counts (DreamBoothDataset).
func (l *loader) length() int {
	n := l.data.Train.Len()
	if l.cfg.Method == "dreambooth_lora" && l.cfg.WithPriorPreservation {
		n = max(n, l.data.Class.Len())
	}
	return n
}

func (l *loader) batches() int { return (l.length() + l.cfg.TrainBatchSize - 1) / l.cfg.TrainBatchSize }

// resume restores the trainer and the data position from
// --resume_from_checkpoint.
func (l *loader) resume(cfg Config, tr *Trainer) error {
	dir, err := ResolveCheckpoint(cfg.OutputDir, cfg.ResumeFromCheckpoint)
	if err != nil || dir == "" {
		return err
	}
	if err := tr.LoadState(dir, &l.pos); err != nil {
		return err
	}
	if err := l.shuffle.UnmarshalBinary(l.pos.Shuffle); err != nil {
		return fmt.Errorf("train: %s: %w", dir, err)
	}
	return l.augment.UnmarshalBinary(l.pos.Augment)
}

// step feeds the next batch to the trainer, taking the optimizer step
// after GradientAccumulationSteps batches or at the end of an epoch (as
// accelerate syncs gradients at the end of the data loader).
func (l *loader) step(tr *Trainer) (*StepResult, error) {
	p := &l.pos
	if p.Batch == 0 || len(p.Order) != l.length() {
		p.Order = permutation(l.shuffle, l.length())
	}
	bs := l.cfg.TrainBatchSize
	idx := p.Order[p.Batch*bs : min((p.Batch+1)*bs, len(p.Order))]
	b, err := l.batch(idx)
	if err != nil {
		return nil, err
	}
	r, err := tr.Backward(b)
	if err != nil {
		return nil, err
	}
	p.Batch++
	last := p.Batch == l.batches()
	if last {
		p.Epoch, p.Batch = p.Epoch+1, 0
	}
	if tr.micro == tr.Opts.GradientAccumulation || last {
		tr.Update(r)
	}
	if p.Shuffle, err = l.shuffle.MarshalBinary(); err != nil {
		return nil, err
	}
	p.Augment, err = l.augment.MarshalBinary()
	return r, err
}

// permutation is a Fisher-Yates shuffle of 0..n-1 drawn from g.
func permutation(g *rng.Generator, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j, _ := g.RandInt(0, int64(i+1), 1)
		out[i], out[int(j[0])] = out[int(j[0])], out[i]
	}
	return out
}

// rows collects a batch's examples.
type rows struct {
	pix, cond, timeIDs []float32
	caps               []string
}

// add appends one example: its preprocessed image, time ids, caption and
// (withCond) its condition image, which gets the same center crop but no
// normalisation.
func (l *loader) add(r *rows, ex Example, caption string, withCond bool) error {
	v, crop, err := l.pre.LoadCrop(ex.Image, l.augment)
	if err != nil {
		return err
	}
	r.pix = append(r.pix, v...)
	r.timeIDs = append(r.timeIDs, crop.TimeIDs(l.cfg.Resolution)...)
	if withCond {
		if ex.Conditioning == "" {
			return fmt.Errorf("train: example %s has no conditioning image", ex.Image)
		}
		c, err := Preprocess{Resolution: l.cfg.Resolution, CenterCrop: true}.Load(ex.Conditioning, l.augment)
		if err != nil {
			return err
		}
		r.cond = append(r.cond, c...)
	}
	r.caps = append(r.caps, caption)
	return nil
}

// batch builds the examples idx: instance (or ControlNet) rows, then with
// prior preservation the class rows. SDXL batches get each row's time ids
// from its own image (the script gives the class rows their instance
// rows' sizes and crops).
func (l *loader) batch(idx []int) (Batch, error) {
	var r rows
	train, class := l.data.Train.Examples, l.data.Class
	controlNet := l.cfg.Method == "controlnet"
	pre := l.pre
	if controlNet {
		// train_controlnet.py center-crops image and condition alike.
		l.pre = Preprocess{Resolution: l.cfg.Resolution, CenterCrop: true}
		defer func() { l.pre = pre }()
	}
	for _, i := range idx {
		ex := train[i%len(train)]
		caption := ex.Caption
		switch {
		case controlNet && l.cfg.ProportionEmptyPrompts > 0 && l.augment.Rand(1)[0] < float32(l.cfg.ProportionEmptyPrompts):
			caption = ""
		case !controlNet && caption == "":
			caption = l.cfg.InstancePrompt
		}
		if err := l.add(&r, ex, caption, controlNet); err != nil {
			return Batch{}, err
		}
	}
	if !controlNet && l.cfg.WithPriorPreservation {
		for _, i := range idx {
			ex := class.Examples[i%len(class.Examples)]
			caption := ex.Caption
			if caption == "" {
				caption = l.cfg.ClassPrompt
			}
			if err := l.add(&r, ex, caption, false); err != nil {
				return Batch{}, err
			}
		}
	}
	return l.assemble(r, controlNet), nil
}

// assemble turns the collected rows into a Batch.
func (l *loader) assemble(r rows, controlNet bool) Batch {
	for i := range r.pix {
		r.pix[i] = 2*r.pix[i] - 1 // Normalize([0.5], [0.5])
	}
	res, n := l.cfg.Resolution, len(r.caps)
	b := Batch{Pixels: tensor.FromSlice(r.pix, n, 3, res, res), InputIDs: l.tok.EncodeBatch(r.caps), IDLength: l.tok.MaxLength()}
	if controlNet {
		b.Conditioning = tensor.FromSlice(r.cond, n, 3, res, res)
	}
	if l.tok2 != nil {
		b.InputIDs2 = l.tok2.EncodeBatch(r.caps)
		b.TimeIDs = tensor.FromSlice(r.timeIDs, n, 6)
	}
	return b
}
