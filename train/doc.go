// Package train fine-tunes diffusion models the way diffusers' example
// training scripts do, on the tensor package's autodiff: DreamBooth LoRA
// (train_dreambooth_lora.py, and train_dreambooth_lora_sdxl.py for SDXL
// base models: peft adapters on the UNet's attention projections, with
// --train_text_encoder on the text encoders' too, optional prior
// preservation) and ControlNet (train_controlnet.py: a ControlNet made from
// the UNet learns while the UNet, VAE and text encoder stay frozen).
//
// The pieces match their upstream counterparts number for number:
// torch.optim.AdamW (torch 1.13's single-tensor arithmetic in float32),
// diffusers.optimization.get_scheduler's learning-rate lambdas,
// torch.nn.utils.clip_grad_norm_, the scripts' draws from the seeded torch
// generator (posterior sample, noise, timesteps, in that order), DDPM
// add_noise, epsilon / v_prediction targets, Min-SNR weighting
// (compute_snr) and peft's seeded LoRA init. The golden cases
// train_dreambooth_lora and train_controlnet check every step.
//
// Trainer is the loop body (Backward, then Update every
// GradientAccumulation batches); Run is a whole run from a Config whose
// fields are the scripts' flags, with atomic, resumable checkpoints
// (checkpoint-<step> folders: safetensors + JSON) and the outputs
// (pytorch_lora_weights.safetensors, a kohya/A1111 LoRA, or a diffusers
// ControlNet folder), all of which load back through model/lora and
// pipeline.LoadControlNet.
package train
