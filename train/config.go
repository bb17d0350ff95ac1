package train

import (
	"errors"
	"fmt"
)

// Config holds a run's settings under the flag names of diffusers'
// training scripts (train_dreambooth_lora.py, train_controlnet.py), so that
// a command line maps onto it one flag per field (the json tags are the
// flag names without the leading dashes).
type Config struct {
	// Method is "dreambooth_lora" or "controlnet".
	Method string `json:"method"`

	OutputDir string `json:"output_dir"`
	Seed      int64  `json:"seed"`
	// Resolution is the square training size in pixels (a multiple of 8).
	Resolution int  `json:"resolution"`
	CenterCrop bool `json:"center_crop"`
	RandomFlip bool `json:"random_flip"`

	TrainBatchSize            int `json:"train_batch_size"`
	NumTrainEpochs            int `json:"num_train_epochs"`
	MaxTrainSteps             int `json:"max_train_steps"`
	GradientAccumulationSteps int `json:"gradient_accumulation_steps"`
	// GradientCheckpointing recomputes the UNet's (and ControlNet's) block
	// activations in the backward pass: less memory, same gradients.
	GradientCheckpointing bool `json:"gradient_checkpointing"`

	LearningRate  float64 `json:"learning_rate"`
	ScaleLR       bool    `json:"scale_lr"`
	LRScheduler   string  `json:"lr_scheduler"`
	LRWarmupSteps int     `json:"lr_warmup_steps"`
	LRNumCycles   float64 `json:"lr_num_cycles"`
	LRPower       float64 `json:"lr_power"`

	AdamBeta1       float64 `json:"adam_beta1"`
	AdamBeta2       float64 `json:"adam_beta2"`
	AdamWeightDecay float64 `json:"adam_weight_decay"`
	AdamEpsilon     float64 `json:"adam_epsilon"`
	MaxGradNorm     float64 `json:"max_grad_norm"`

	CheckpointingSteps    int    `json:"checkpointing_steps"`
	CheckpointsTotalLimit int    `json:"checkpoints_total_limit"`
	ResumeFromCheckpoint  string `json:"resume_from_checkpoint"`

	// PredictionType overrides the scheduler config's ("" keeps it).
	PredictionType string  `json:"prediction_type"`
	SNRGamma       float64 `json:"snr_gamma"`
	NoiseOffset    float64 `json:"noise_offset"`
	// TimestepBias favours part of the schedule when drawing timesteps
	// (the SDXL text-to-image script's --timestep_bias_* flags).
	TimestepBiasStrategy   string  `json:"timestep_bias_strategy"`
	TimestepBiasMultiplier float64 `json:"timestep_bias_multiplier"`
	TimestepBiasPortion    float64 `json:"timestep_bias_portion"`
	TimestepBiasBegin      int     `json:"timestep_bias_begin"`
	TimestepBiasEnd        int     `json:"timestep_bias_end"`

	// DreamBooth.
	InstancePrompt        string  `json:"instance_prompt"`
	ClassPrompt           string  `json:"class_prompt"`
	WithPriorPreservation bool    `json:"with_prior_preservation"`
	PriorLossWeight       float64 `json:"prior_loss_weight"`
	Rank                  int     `json:"rank"`
	// LoRALayers are the UNet's LoRA target modules (the SD3/FLUX scripts'
	// --lora_layers); empty: the script's defaults (attention projections).
	LoRALayers []string `json:"lora_layers,omitempty"`
	// TrainTextEncoder also attaches LoRAs to the text encoder(s)
	// (q/k/v/out projections) and trains them with the UNet's.
	TrainTextEncoder bool `json:"train_text_encoder"`
	// TextEncoderLR is the text encoders' learning rate (0: LearningRate,
	// as the SDXL script's "text_encoder_lr if text_encoder_lr else
	// learning_rate"); AdamWeightDecayTextEncoder their weight decay (nil:
	// AdamWeightDecay).
	TextEncoderLR              float64  `json:"text_encoder_lr"`
	AdamWeightDecayTextEncoder *float64 `json:"adam_weight_decay_text_encoder,omitempty"`

	// ControlNet.
	ProportionEmptyPrompts float64 `json:"proportion_empty_prompts"`

	// Outputs: KohyaOutput also writes the LoRA in the kohya/A1111 layout
	// (pytorch_lora_weights_kohya.safetensors) with BaseModelVersion as
	// ss_base_model_version.
	KohyaOutput      bool   `json:"kohya_output"`
	BaseModelVersion string `json:"base_model_version"`
}

// Defaults are the scripts' argparse defaults.
func Defaults(method string) Config {
	c := Config{Method: method, OutputDir: "output", Resolution: 512, TrainBatchSize: 4, NumTrainEpochs: 1,
		GradientAccumulationSteps: 1, LearningRate: 5e-4, LRScheduler: "constant", LRWarmupSteps: 500,
		LRNumCycles: 1, LRPower: 1, AdamBeta1: 0.9, AdamBeta2: 0.999, AdamWeightDecay: 1e-2, AdamEpsilon: 1e-8,
		MaxGradNorm: 1, CheckpointingSteps: 500, PriorLossWeight: 1, Rank: 4, BaseModelVersion: "sd_v1",
		TimestepBiasStrategy: "none", TimestepBiasMultiplier: 1, TimestepBiasPortion: 0.25, TimestepBiasEnd: 1000}
	if method == "controlnet" {
		c.LearningRate = 5e-6
	}
	return c
}

// Validate reports settings a run cannot use.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch c.Method {
	case "dreambooth_lora":
		if c.InstancePrompt == "" {
			add("instance_prompt is required")
		}
		if c.WithPriorPreservation && c.ClassPrompt == "" {
			add("with_prior_preservation needs class_prompt")
		}
		if c.Rank <= 0 {
			add("rank must be positive, got %d", c.Rank)
		}
		if c.TextEncoderLR < 0 || c.AdamWeightDecayTextEncoder != nil && *c.AdamWeightDecayTextEncoder < 0 {
			add("text_encoder_lr and adam_weight_decay_text_encoder must not be negative")
		}
	case "controlnet":
		if c.TrainTextEncoder {
			add("train_text_encoder is for LoRA training")
		}
		if c.ProportionEmptyPrompts < 0 || c.ProportionEmptyPrompts > 1 {
			add("proportion_empty_prompts must lie in [0, 1], got %g", c.ProportionEmptyPrompts)
		}
	default:
		add("method %q: want dreambooth_lora or controlnet", c.Method)
	}
	if _, err := c.timestepBias().Weights(max(c.TimestepBiasEnd, 1000)); err != nil {
		errs = append(errs, err)
	}
	if c.OutputDir == "" {
		add("output_dir is required")
	}
	if c.Resolution <= 0 || c.Resolution%8 != 0 {
		add("resolution must be a positive multiple of 8, got %d", c.Resolution)
	}
	if c.TrainBatchSize <= 0 || c.GradientAccumulationSteps <= 0 {
		add("train_batch_size (%d) and gradient_accumulation_steps (%d) must be positive", c.TrainBatchSize, c.GradientAccumulationSteps)
	}
	if c.MaxTrainSteps <= 0 && c.NumTrainEpochs <= 0 {
		add("set max_train_steps or num_train_epochs")
	}
	if c.LearningRate <= 0 {
		add("learning_rate must be positive, got %g", c.LearningRate)
	}
	if err := (Schedule{Name: c.LRScheduler, Warmup: c.LRWarmupSteps}).Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.SNRGamma < 0 || c.MaxGradNorm < 0 || c.CheckpointingSteps < 0 || c.CheckpointsTotalLimit < 0 {
		add("snr_gamma, max_grad_norm, checkpointing_steps and checkpoints_total_limit must not be negative")
	}
	if len(errs) > 0 {
		return fmt.Errorf("train: config: %w", errors.Join(errs...))
	}
	return nil
}

func (c Config) timestepBias() TimestepBias {
	return TimestepBias{Strategy: c.TimestepBiasStrategy, Multiplier: c.TimestepBiasMultiplier,
		Portion: c.TimestepBiasPortion, Begin: c.TimestepBiasBegin, End: c.TimestepBiasEnd}
}
