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

// Models are the components of a run. The UNet, VAE and text encoder stay
// frozen (their weights never require gradients, so they hold no gradient
// memory); what trains is a LoRANetwork attached to the UNet or ControlNet.
type Models struct {
	UNet        *unet.Model
	VAE         *vae.Model
	TextEncoder *clip.Model
	// ControlNet is the trained ControlNet (ControlNet training only).
	ControlNet *controlnet.Model
	// Noise is the training noise scheduler (DDPMScheduler of the
	// pipeline's scheduler config).
	Noise *scheduler.DDPM
	// PredictionType is the scheduler config's prediction_type (or the
	// script's --prediction_type override).
	PredictionType string
	// Tokenizer encodes captions (Run only; Trainer takes token ids).
	Tokenizer *tokclip.Tokenizer
}

// Batch is one step's examples. With prior preservation the first half of
// the rows are instance examples and the second half class examples.
type Batch struct {
	// Pixels are images [B, 3, H, W] in [-1, 1].
	Pixels *tensor.Tensor
	// InputIDs are the tokenised captions, B rows of IDLength ids.
	InputIDs []int64
	IDLength int
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
	// LoRA is the trained adapter network (LoRA training only).
	LoRA *LoRANetwork
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

// Update clips the accumulated gradients, takes the optimizer step at the
// current learning rate, advances the schedule and clears the gradients.
func (t *Trainer) Update(r *StepResult) {
	r.GradNorm = ClipGradNorm(t.Params, t.Opts.MaxGradNorm)
	r.LR = t.LR.LR()
	t.Optimizer.Step(r.LR)
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
	enc, err := m.TextEncoder.Forward(b.InputIDs, B, b.IDLength)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	r.PromptEmbeds = enc.LastHiddenState
	ts := make([]float32, len(d.Timesteps))
	for i, v := range d.Timesteps {
		ts[i] = float32(v)
	}
	cond := unet.Cond{EncoderHiddenStates: r.PromptEmbeds}
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
