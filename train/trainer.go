package train

import (
	"fmt"

	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/controlnet"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
	tokclip "github.com/diffuse-go/diffuse/tokenizer/clip"
)

// Models are the components of a run. The UNet, VAE and text encoders
// stay frozen (their weights never require gradients, so they hold no
// gradient memory); what trains is a LoRANetwork attached to the UNet (and
// with --train_text_encoder to the text encoders) or a ControlNet.
type Models struct {
	UNet        *unet.Model
	VAE         *vae.Model
	TextEncoder *clip.Model
	// TextEncoder2 is SDXL's second text encoder (with projection); when
	// set the run is an SDXL one: the UNet is conditioned on both
	// encoders' penultimate hidden states, the pooled projection and the
	// batch's time ids.
	TextEncoder2 *clip.Model
	// ControlNet is the trained ControlNet (ControlNet training only).
	ControlNet *controlnet.Model
	// Noise is the training noise scheduler (DDPMScheduler of the
	// pipeline's scheduler config).
	Noise *scheduler.DDPM
	// PredictionType is the scheduler config's prediction_type (or the
	// script's --prediction_type override).
	PredictionType string
	// Tokenizer encodes captions (Run only; Trainer takes token ids);
	// Tokenizer2 is SDXL's second tokenizer.
	Tokenizer, Tokenizer2 *tokclip.Tokenizer
}

// SDXL reports whether the models are an SDXL base (two text encoders).
func (m Models) SDXL() bool { return m.TextEncoder2 != nil }

// Batch is one step's examples. With prior preservation the first half of
// the rows are instance examples and the second half class examples.
type Batch struct {
	// Pixels are images [B, 3, H, W] in [-1, 1].
	Pixels *tensor.Tensor
	// InputIDs are the tokenised captions, B rows of IDLength ids.
	InputIDs []int64
	IDLength int
	// InputIDs2 are the captions in the second tokenizer's ids and TimeIDs
	// the micro-conditioning rows [B, 6] (SDXL only; see TimeIDs).
	InputIDs2 []int64
	TimeIDs   *tensor.Tensor
	// Conditioning are the ControlNet condition images [B, C, H, W] in
	// [0, 1] (ControlNet training only).
	Conditioning *tensor.Tensor
}

// Options are a run's training hyperparameters.
type Options struct {
	// PriorPreservation splits each batch into instance and class halves:
	// loss = mse(instance) + PriorLossWeight · mse(class).
	PriorPreservation bool
	PriorLossWeight   float32
	// SNRGamma enables Min-SNR loss weighting (--snr_gamma) when positive.
	SNRGamma float32
	// GradientAccumulation is the number of batches per optimizer step (1
	// when 0).
	GradientAccumulation int
	// MaxGradNorm clips the gradients' global norm (--max_grad_norm); 0
	// only measures it.
	MaxGradNorm float64
	// ConditioningScale multiplies the ControlNet residuals (1 in training).
	ConditioningScale float32
}

// Trainer runs optimisation steps. Build it with NewTrainer.
type Trainer struct {
	Models    Models
	Opts      Options
	Params    []Param
	Optimizer *AdamW
	LR        *LRScheduler
	Draws     Draws
	// LoRA is the trained adapter network of the UNet (LoRA training
	// only); TextLoRAs are the text encoders' (--train_text_encoder).
	LoRA      *LoRANetwork
	TextLoRAs []*LoRANetwork
	// EMA, when set, averages the trained parameters after every
	// optimizer step (--use_ema); checkpoints carry it.
	EMA *EMA
	// groups are the optimizer's param groups (nil: one group of every
	// parameter with the schedule's base rate and the AdamW weight decay).
	groups []ParamGroup
	// GlobalStep counts optimizer steps taken.
	GlobalStep int
	micro      int
}

// NewTrainer checks the pieces and sets the trainer up: params are the
// trained tensors in optimizer order.
func NewTrainer(m Models, o Options, params []Param, adam AdamWConfig, lr *LRScheduler, draws Draws) (*Trainer, error) {
	if m.UNet == nil || m.VAE == nil || m.TextEncoder == nil || m.Noise == nil {
		return nil, fmt.Errorf("train: the UNet, VAE, text encoder and noise scheduler are all required")
	}
	if len(params) == 0 {
		return nil, fmt.Errorf("train: nothing to train")
	}
	if err := lr.Schedule.Validate(); err != nil {
		return nil, err
	}
	if lr.Schedule.Name == "polynomial" && lr.Base <= lr.Schedule.lrEnd() {
		return nil, fmt.Errorf("train: polynomial schedule: lr_end %g must be smaller than the learning rate %g", lr.Schedule.lrEnd(), lr.Base)
	}
	if o.GradientAccumulation <= 0 {
		o.GradientAccumulation = 1
	}
	if o.ConditioningScale == 0 {
		o.ConditioningScale = 1
	}
	opt, err := NewAdamW(params, adam)
	if err != nil {
		return nil, err
	}
	return &Trainer{Models: m, Opts: o, Params: params, Optimizer: opt, LR: lr, Draws: draws}, nil
}

// StepResult is what one batch produced.
type StepResult struct {
	Latents, Noisy, PromptEmbeds, Pred *tensor.Tensor
	Draw                               Draw
	// Residuals are the ControlNet's outputs (ControlNet training only).
	Residuals *controlnet.Residuals
	// Loss is the batch loss; with prior preservation InstanceLoss and
	// PriorLoss are its parts.
	Loss, InstanceLoss, PriorLoss float32
	// Synced is true when this batch completed an optimizer step; GradNorm
	// (before clipping) and LR (the learning rate used) are then set.
	Synced   bool
	GradNorm float32
	LR       float64
}

// Step runs one batch: forward, backward and, every GradientAccumulation
// batches, the optimizer step.
func (t *Trainer) Step(b Batch) (*StepResult, error) {
	r, err := t.Backward(b)
	if err != nil {
		return nil, err
	}
	if t.micro == t.Opts.GradientAccumulation {
		t.Update(r)
	}
	return r, nil
}

// Backward runs the forward pass of a batch and accumulates the gradients
// of its loss (divided by GradientAccumulation, as accelerate does) into
// the parameters.
func (t *Trainer) Backward(b Batch) (*StepResult, error) {
	r, err := t.forward(b)
	if err != nil {
		return nil, err
	}
	loss, err := t.loss(b, r)
	if err != nil {
		return nil, err
	}
	r.Loss = loss.Item()
	if n := t.Opts.GradientAccumulation; n > 1 {
		loss = tensor.Scale(loss, 1/float32(n))
	}
	loss.Backward()
	t.micro++
	return r, nil
}

// LoRAs are the trained adapter networks, the UNet's first.
func (t *Trainer) LoRAs() LoRASet {
	if t.LoRA == nil {
		return nil
	}
	return append(LoRASet{t.LoRA}, t.TextLoRAs...)
}

// SetGroups splits the parameters into param groups, which must cover
// them in order without gaps, each with a positive learning rate.
func (t *Trainer) SetGroups(groups []ParamGroup) error {
	next := 0
	for _, g := range groups {
		if g.From != next || g.To < g.From || g.LR <= 0 || g.WeightDecay < 0 {
			return fmt.Errorf("train: param group %+v does not continue at parameter %d with a positive learning rate", g, next)
		}
		next = g.To
	}
	if next != len(t.Params) {
		return fmt.Errorf("train: param groups cover %d of %d parameters", next, len(t.Params))
	}
	t.groups = append([]ParamGroup(nil), groups...)
	return nil
}

// Update clips the accumulated gradients, takes the optimizer step at the
// current learning rate (each param group's), advances the schedule and
// clears the gradients. r.LR is the first group's rate.
func (t *Trainer) Update(r *StepResult) {
	r.GradNorm = ClipGradNorm(t.Params, t.Opts.MaxGradNorm)
	if t.groups == nil {
		r.LR = t.LR.LR()
		t.Optimizer.Step(r.LR)
	} else {
		lambda := t.LR.Schedule.Lambda(t.LR.Base, t.LR.Step)
		lrs := make([]float64, len(t.groups))
		for i, g := range t.groups {
			lrs[i] = g.LR * lambda
		}
		t.Optimizer.StepGroups(t.groups, lrs)
		r.LR = lrs[0]
	}
	if t.EMA != nil {
		t.EMA.Update()
	}
	t.LR.Advance()
	t.Optimizer.ZeroGrad()
	r.Synced = true
	t.micro = 0
	t.GlobalStep++
}

// forward encodes the batch, noises the latents and runs the models.
func (t *Trainer) forward(b Batch) (*StepResult, error) {
	m := t.Models
	if b.Pixels == nil || b.Pixels.Rank() != 4 {
		return nil, fmt.Errorf("train: batch pixels must be [B, 3, H, W]")
	}
	B := b.Pixels.Dim(0)
	if b.IDLength <= 0 || len(b.InputIDs) != B*b.IDLength {
		return nil, fmt.Errorf("train: batch has %d token ids for %d images of %d ids", len(b.InputIDs), B, b.IDLength)
	}
	if t.Opts.PriorPreservation && B%2 != 0 {
		return nil, fmt.Errorf("train: prior preservation needs instance and class rows in equal numbers, batch has %d", B)
	}
	post, err := m.VAE.Encode(b.Pixels)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	shape := post.Mean.Shape()
	d, err := t.Draws.Next(shape, scheduler.NumTrainTimesteps(m.Noise))
	if err != nil {
		return nil, err
	}
	r := &StepResult{Draw: d}
	r.Latents = tensor.Scale(post.Sample(tensor.FromSlice(d.VAENoise, shape...)), m.VAE.Cfg.ScalingFactor)
	noisy, err := m.Noise.AddNoise(r.Latents.Data(), d.Noise, floats(d.Timesteps))
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	r.Noisy = tensor.FromSlice(noisy, shape...)
	cond, err := t.encode(b, B)
	if err != nil {
		return nil, err
	}
	r.PromptEmbeds = cond.EncoderHiddenStates
	ts := make([]float32, len(d.Timesteps))
	for i, v := range d.Timesteps {
		ts[i] = float32(v)
	}
	if m.ControlNet != nil {
		if b.Conditioning == nil {
			return nil, fmt.Errorf("train: ControlNet training needs conditioning images in every batch")
		}
		res, err := m.ControlNet.Forward(r.Noisy, ts, cond, b.Conditioning, t.Opts.ConditioningScale, false)
		if err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		r.Residuals = res
		cond.DownBlockAdditionalResiduals, cond.MidBlockAdditionalResidual = res.Down, res.Mid
	}
	if r.Pred, err = m.UNet.Forward(r.Noisy, ts, cond); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	return r, nil
}

// encode runs the text encoder(s) on the batch's captions, with gradients
// when their adapters train: SD takes the last hidden state; SDXL (as
// train_dreambooth_lora_sdxl.py's encode_prompt) both encoders' penultimate
// hidden states side by side, text_encoder_2's pooled projection as
// text_embeds and the batch's time ids.
func (t *Trainer) encode(b Batch, B int) (unet.Cond, error) {
	m := t.Models
	enc, err := m.TextEncoder.Forward(b.InputIDs, B, b.IDLength)
	if err != nil {
		return unet.Cond{}, fmt.Errorf("train: %w", err)
	}
	if !m.SDXL() {
		return unet.Cond{EncoderHiddenStates: enc.LastHiddenState}, nil
	}
	if len(b.InputIDs2) != len(b.InputIDs) || b.TimeIDs == nil || b.TimeIDs.Rank() != 2 || b.TimeIDs.Dim(0) != B {
		return unet.Cond{}, fmt.Errorf("train: an SDXL batch needs the second tokenizer's ids and [B, 6] time ids for its %d rows", B)
	}
	enc2, err := m.TextEncoder2.Forward(b.InputIDs2, B, b.IDLength)
	if err != nil {
		return unet.Cond{}, fmt.Errorf("train: %w", err)
	}
	if enc2.TextEmbeds == nil {
		return unet.Cond{}, fmt.Errorf("train: SDXL's second text encoder has no text projection")
	}
	penultimate := func(o *clip.Output) *tensor.Tensor { return o.HiddenStates[len(o.HiddenStates)-2] }
	return unet.Cond{EncoderHiddenStates: tensor.Concat(2, penultimate(enc), penultimate(enc2)),
		TextEmbeds: enc2.TextEmbeds, TimeIDs: b.TimeIDs}, nil
}

// loss is the scripts' objective for the step's prediction.
func (t *Trainer) loss(b Batch, r *StepResult) (*tensor.Tensor, error) {
	m := t.Models
	tv, err := Target(m.Noise, m.PredictionType, r.Latents.Data(), r.Draw.Noise, r.Draw.Timesteps)
	if err != nil {
		return nil, err
	}
	pred, target := r.Pred, tensor.FromSlice(tv, r.Pred.Shape()...)
	ts := r.Draw.Timesteps
	var prior *tensor.Tensor
	if t.Opts.PriorPreservation {
		p, tg := pred.Chunk(2, 0), target.Chunk(2, 0)
		pred, target = p[0], tg[0]
		prior = MSE(p[1], tg[1])
		ts = ts[:len(ts)/2]
	}
	var loss *tensor.Tensor
	if t.Opts.SNRGamma > 0 {
		snr, err := SNR(m.Noise.AlphasCumprod(), ts)
		if err != nil {
			return nil, err
		}
		loss = WeightedMSE(pred, target, SNRWeights(snr, t.Opts.SNRGamma, m.PredictionType))
	} else {
		loss = MSE(pred, target)
	}
	if prior != nil {
		r.InstanceLoss, r.PriorLoss = loss.Item(), prior.Item()
		loss = tensor.Add(loss, tensor.Scale(prior, t.Opts.PriorLossWeight))
	}
	return loss, nil
}

// Loss evaluates the batch's loss with the draws of d, without touching
// gradients, optimizer or the trainer's own draws (for validation).
func (t *Trainer) Loss(b Batch, d Draws) (float32, error) {
	own := t.Draws
	t.Draws = d
	defer func() { t.Draws = own }()
	r, err := t.forward(b)
	if err != nil {
		return 0, err
	}
	loss, err := t.loss(b, r)
	if err != nil {
		return 0, err
	}
	return loss.Item(), nil
}
