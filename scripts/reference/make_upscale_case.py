# Reference for diffuse's pipeline/testdata/upscale: diffusers v0.30.3's own
# StableDiffusionUpscalePipeline.__call__ on tiny random models, fed prompt
# embeddings (no text encoder: transformers was not installed where it was made).
# Run with Debian's python3-torch (see ../shared/reference/NOTES.md): /work/ref/diffusers-src holds
# diffusers v0.30.3's src/, /work/ref/hub-src huggingface_hub v0.23.5's; /work/ref/stubs holds a
# numpy stand-in for safetensors.torch.save_file and a transformers stand-in whose every name is
# an empty class (with a transformers-4.42.4.dist-info/METADATA so diffusers imports the pipeline).
# Usage: /usr/bin/python3 make_upscale_case.py pipeline/testdata/upscale
import json, os, sys, torch
sys.path[:0] = ["/work/ref/stubs", "/work/ref/diffusers-src", "/work/ref/hub-src"]
from diffusers import UNet2DConditionModel, AutoencoderKL, DDIMScheduler, DDPMScheduler
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_upscale import StableDiffusionUpscalePipeline
from safetensors.torch import save_file

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
unet_cfg = dict(block_out_channels=[16, 32, 32], layers_per_block=1, sample_size=16, in_channels=7, out_channels=4,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], cross_attention_dim=16,
    attention_head_dim=4, use_linear_projection=True, only_cross_attention=[True, True, False], num_class_embeds=100,
    norm_num_groups=8)
vae_cfg = dict(block_out_channels=[8, 16, 16], in_channels=3, out_channels=3, layers_per_block=1, norm_num_groups=4,
    down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3, latent_channels=4,
    scaling_factor=0.08333, sample_size=64)
sched_cfg = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
    set_alpha_to_one=False, steps_offset=1, prediction_type="v_prediction", num_train_timesteps=1000)
low_cfg = dict(beta_start=0.0001, beta_end=0.02, beta_schedule="scaled_linear", num_train_timesteps=1000, clip_sample=False)
torch.manual_seed(0)
unet = UNet2DConditionModel(**unet_cfg)
vae = AutoencoderKL(**vae_cfg)
with torch.no_grad():  # random weights large enough to matter (zero-initialised ones too)
    for p in list(unet.parameters()) + list(vae.parameters()):
        p.copy_((torch.randn(p.shape) * 0.2).half().float())  # exact in f16, stored so
pipe = StableDiffusionUpscalePipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet,
    low_res_scheduler=DDPMScheduler(**low_cfg), scheduler=DDIMScheduler(**sched_cfg), max_noise_level=350)
g = torch.Generator().manual_seed(7)
B, S = 2, 8
pe = torch.randn(B, S, 16, generator=g)
ne = torch.randn(B, S, 16, generator=g)
image = torch.rand(B, 3, 16, 16, generator=g) * 2 - 1
call = dict(num_inference_steps=3, guidance_scale=6.0, noise_level=20, seed=0)
noised, steps = [], []
add = pipe.low_res_scheduler.add_noise
pipe.low_res_scheduler.add_noise = lambda *a: noised.append(add(*a)) or noised[-1]
res = pipe(prompt_embeds=pe, negative_prompt_embeds=ne, image=image, num_inference_steps=call["num_inference_steps"],
    guidance_scale=call["guidance_scale"], noise_level=call["noise_level"], generator=torch.Generator().manual_seed(call["seed"]),
    output_type="pt", callback=lambda i, t, lat: steps.append(lat.clone()), callback_steps=1)
io = {"prompt_embeds": pe, "negative_prompt_embeds": ne, "image": image, "noised_image": noised[0],
      "images": res.images.float()}
for i, s in enumerate(steps):
    io[f"latents.{i}"] = s
save_file(io, f"{out}/io.safetensors")
w = {f"unet.{k}": v.half() for k, v in unet.state_dict().items()}
w.update({f"vae.{k}": v.half() for k, v in vae.state_dict().items()})
save_file(w, f"{out}/weights.safetensors")
json.dump({"about": "diffusers v0.30.3 StableDiffusionUpscalePipeline.__call__ on tiny random models, prompt embeddings given "
           "(made by a script outside the repo; images are output_type 'pt', in [0, 1])",
           "unet": unet_cfg, "vae": vae_cfg, "scheduler": dict(sched_cfg, _class_name="DDIMScheduler"),
           "low_res_scheduler": dict(low_cfg, _class_name="DDPMScheduler"), "call": call, "max_noise_level": 350},
          open(f"{out}/case.json", "w"), indent=1)
print("ok", res.images.shape, [s.shape for s in steps][:1])
