# Reference for diffuse's defaultmodel/testdata/diffusers: upstream diffusers v0.30.3 loads the
# built-in model's UNet and VAE folders with from_pretrained (asserting no missing or unexpected
# keys) and computes them in float32 and float64 on random inputs; the cases are in the golden
# format (case.json, io.safetensors) and goldentest's TestGoldenBuiltinModelInDiffusers runs them with the
# embedded weight files. Run with Debian's python3-torch (see ../shared/reference/NOTES.md):
# /work/ref/diffusers-src holds diffusers v0.30.3's src/, /work/ref/hub-src huggingface_hub
# v0.23.5's, /work/ref/stubs a numpy stand-in for safetensors (load_file, save_file, safe_open).
# Usage: /usr/bin/python3 builtin_cases.py defaultmodel/model OUT [CONTROLNET_FOLDER [LORA_FILE
# [LORA_DIR]]] (LORA_DIR: a `diffuse train --kohya` output folder, both of its LoRA files),
# then copy OUT's case.json and io.safetensors into defaultmodel/testdata/diffusers and add
# "component" (unet, vae) to each; the ControlNet case (a folder `diffuse train --controlnet`
# wrote, such as the ControlNet demonstration's) keeps its weights.safetensors, the LoRA case (a
# pytorch_lora_weights.safetensors `diffuse train` wrote, loaded with unet.load_attn_procs, which
# runs peft) its LoRA file. peft needs /work/ref/peft-src (v0.11.1) and /work/ref/accel-src
# (accelerate v0.31.0) on the path, and in /work/ref/stubs a transformers stand-in whose every
# name is an empty class, with dist-info METADATA for transformers 4.42.4, peft and accelerate.
import json, os, sys, copy
sys.path[:0] = ["/work/ref/stubs", "/work/ref/diffusers-src", "/work/ref/hub-src", "/work/ref/peft-src", "/work/ref/accel-src"]
import torch
from safetensors.torch import save_file
from diffusers import UNet2DConditionModel, AutoencoderKL, ControlNetModel

folder, out = sys.argv[1], sys.argv[2]
torch.manual_seed(0)

def write_case(name, cls, model, call, inputs, outputs64, outputs32, desc):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    save_file({k: v.float().contiguous() for k, v in model.state_dict().items()}, os.path.join(d, "weights.safetensors"))
    io = {k: v.float().contiguous() for k, v in inputs.items()}
    per = {}
    for k in outputs32:
        io[k] = outputs32[k].float().contiguous()
        io[k + "__f64"] = outputs64[k].float().contiguous()
        err = (outputs32[k].double() - outputs64[k]).abs().max().item()
        atol = float("%.0e" % (10 * err)) if err > 0 else 1e-6
        atol = max(atol, 1e-6)
        # round up to one significant digit
        import math
        e = 10 * err
        if e > 0:
            p = 10 ** math.floor(math.log10(e))
            atol = math.ceil(e / p) * p
        per[k] = {"max_abs_err_f32_vs_f64": err, "atol": atol}
    save_file(io, os.path.join(d, "io.safetensors"))
    cfg = dict(model.config)
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    case = {"description": desc, "library": "diffusers", "class": cls, "config": json.loads(json.dumps(cfg, default=list)),
            "call": call, "case": name,
            "tolerance": {"atol": max(p["atol"] for p in per.values()), "rtol": 0.0, "per_output": per},
            "inputs": {k: {"shape": list(v.shape), "dtype": "float32"} for k, v in inputs.items()},
            "outputs": {k: {"shape": list(v.shape), "dtype": "float32"} for k, v in outputs32.items()},
            "float64_reference_outputs": [k + "__f64" for k in outputs32],
            "files": ["case.json", "io.safetensors", "weights.safetensors"]}
    json.dump(case, open(os.path.join(d, "case.json"), "w"), indent=1)
    print("wrote", d, per)

def finish_lora_case(name, pc, files):
    # A LoRA case runs on the toy_unet case's weights and carries its LoRA
    # files (name in the case -> source path) and peft's config.
    import shutil
    d = os.path.join(out, name)
    os.remove(os.path.join(d, "weights.safetensors"))
    for dst, src in files.items():
        shutil.copy(src, os.path.join(d, dst))
    case = json.load(open(os.path.join(d, "case.json")))
    case["uses_weights_of"] = {"unet": "toy_unet"}
    case["lora_config"] = {"r": pc.r, "lora_alpha": pc.lora_alpha, "target_modules": sorted(pc.target_modules)}
    case["files"] = ["case.json", "io.safetensors"] + sorted(files)
    json.dump(case, open(os.path.join(d, "case.json"), "w"), indent=1)

def both(model, f):
    with torch.no_grad():
        o32 = f(model, torch.float32)
        o64 = f(copy.deepcopy(model).double(), torch.float64)
    return o32, o64

if os.path.isdir(os.path.join(folder, "unet")):
    u, info = UNet2DConditionModel.from_pretrained(os.path.join(folder, "unet"), output_loading_info=True)
    assert not any(info.values()), info
    c = u.config
    s = c.sample_size
    inputs = {"sample": torch.randn(2, c.in_channels, s, s), "timestep": torch.tensor([999.0, 10.0]),
              "encoder_hidden_states": torch.randn(2, 77, c.cross_attention_dim)}
    def run(m, dt):
        return {"out_sample": m(inputs["sample"].to(dt), inputs["timestep"].to(dt), encoder_hidden_states=inputs["encoder_hidden_states"].to(dt)).sample}
    o32, o64 = both(u, run)
    write_case("toy_unet", "diffusers.UNet2DConditionModel", u, "unet(sample, timestep, encoder_hidden_states=encoder_hidden_states).sample  -> out_sample",
               inputs, o64, o32, "The built-in model's UNet (defaultmodel/model/unet), loaded by diffusers' from_pretrained.")
if os.path.isdir(os.path.join(folder, "vae")):
    v, info = AutoencoderKL.from_pretrained(os.path.join(folder, "vae"), output_loading_info=True)
    assert not any(info.values()), info
    c = v.config
    f = 2 ** (len(c.block_out_channels) - 1)
    inputs = {"image": torch.rand(2, 3, c.sample_size, c.sample_size) * 2 - 1,
              "latents": torch.randn(2, c.latent_channels, c.sample_size // f, c.sample_size // f)}
    def runv(m, dt):
        d = m.encode(inputs["image"].to(dt)).latent_dist
        return {"enc_mean": d.mean, "enc_logvar": d.logvar, "enc_std": d.std, "dec_sample": m.decode(inputs["latents"].to(dt)).sample}
    o32, o64 = both(v, runv)
    write_case("toy_vae", "diffusers.AutoencoderKL", v, "d = vae.encode(image).latent_dist; enc_mean=d.mean; enc_logvar=d.logvar; enc_std=d.std; dec_sample = vae.decode(latents).sample",
               inputs, o64, o32, "The built-in model's VAE (defaultmodel/model/vae), loaded by diffusers' from_pretrained.")

if len(sys.argv) > 3:
    cn, info = ControlNetModel.from_pretrained(sys.argv[3], output_loading_info=True)
    assert not any(info.values()), info
    c = cn.config
    s = 16
    f = 2 ** (len(c.conditioning_embedding_out_channels) - 1)
    inputs = {"sample": torch.randn(2, c.in_channels, s, s), "timestep": torch.tensor([999.0, 10.0]),
              "encoder_hidden_states": torch.randn(2, 77, c.cross_attention_dim),
              "controlnet_cond": torch.rand(2, c.conditioning_channels, s * f, s * f)}
    def runc(m, dt):
        out = {}
        for name, scale in (("s1", 1.0), ("s0p5", 0.5)):
            down, mid = m(inputs["sample"].to(dt), inputs["timestep"].to(dt), encoder_hidden_states=inputs["encoder_hidden_states"].to(dt),
                          controlnet_cond=inputs["controlnet_cond"].to(dt), conditioning_scale=scale, return_dict=False)
            for i, d in enumerate(down):
                out[f"{name}.down_block_res_samples.{i}"] = d
            out[f"{name}.mid_block_res_sample"] = mid
        return out
    o32, o64 = both(cn, runc)
    write_case("toy_controlnet", "diffusers.ControlNetModel", cn,
               "down, mid = controlnet(sample, timestep, encoder_hidden_states=ehs, controlnet_cond=cond, conditioning_scale=s, return_dict=False) for s in (1.0 -> 's1', 0.5 -> 's0p5')",
               inputs, o64, o32, "A ControlNet trained by diffuse on the built-in model (the ControlNet demonstration's output folder), loaded by diffusers' from_pretrained.")

if len(sys.argv) > 4:
    u = UNet2DConditionModel.from_pretrained(os.path.join(folder, "unet"))
    c = u.config
    s = c.sample_size
    inputs = {"sample": torch.randn(2, c.in_channels, s, s), "timestep": torch.tensor([999.0, 10.0]),
              "encoder_hidden_states": torch.randn(2, 77, c.cross_attention_dim)}
    def runl(m, dt):
        args = (inputs["sample"].to(dt), inputs["timestep"].to(dt))
        ehs = inputs["encoder_hidden_states"].to(dt)
        out = {"out_no_lora": m(*args, encoder_hidden_states=ehs).sample}
        m.load_attn_procs(sys.argv[4])
        out["out_scale1"] = m(*args, encoder_hidden_states=ehs).sample
        out["out_scale0p5"] = m(*args, encoder_hidden_states=ehs, cross_attention_kwargs={"scale": 0.5}).sample
        m.fuse_lora(lora_scale=1.0)
        out["out_fused_scale1"] = m(*args, encoder_hidden_states=ehs).sample
        return out
    with torch.no_grad():
        o32 = runl(copy.deepcopy(u), torch.float32)
        o64 = runl(copy.deepcopy(u).double(), torch.float64)
    probe = copy.deepcopy(u)
    probe.load_attn_procs(sys.argv[4])
    pc = list(probe.peft_config.values())[0]
    write_case("toy_lora", "diffusers.UNet2DConditionModel + peft LoraConfig", u,
               "unet.load_attn_procs(lora); out_scale<w> = unet(...) with cross_attention_kwargs scale w; out_no_lora before loading; out_fused_scale1 after unet.fuse_lora(lora_scale=1.0)",
               inputs, o64, o32, "A DreamBooth LoRA diffuse trained on the built-in model (pytorch_lora_weights.safetensors), loaded by diffusers' unet.load_attn_procs (peft) onto the built-in UNet.")
    finish_lora_case("toy_lora", pc, {"lora_diffusers.safetensors": sys.argv[4]})

if len(sys.argv) > 5:
    # The same network in both layouts: diffusers' kohya conversion
    # (lora_state_dict -> _convert_non_diffusers_lora_to_diffusers, with the
    # alphas) must give what the diffusers-layout file gives.
    from diffusers.loaders.lora_pipeline import StableDiffusionLoraLoaderMixin as L
    ld = sys.argv[5]
    dif, koh = os.path.join(ld, "pytorch_lora_weights.safetensors"), os.path.join(ld, "pytorch_lora_weights_kohya.safetensors")
    u = UNet2DConditionModel.from_pretrained(os.path.join(folder, "unet"))
    c = u.config
    s = c.sample_size
    inputs = {"sample": torch.randn(2, c.in_channels, s, s), "timestep": torch.tensor([500.0, 20.0]),
              "encoder_hidden_states": torch.randn(2, 77, c.cross_attention_dim)}
    def runk(path):
        def f(m, dt):
            args = (inputs["sample"].to(dt), inputs["timestep"].to(dt))
            ehs = inputs["encoder_hidden_states"].to(dt)
            out = {"out_no_lora": m(*args, encoder_hidden_states=ehs).sample}
            sd, alphas = L.lora_state_dict(path, unet_config=m.config)
            L.load_lora_into_unet(sd, alphas, m)
            out["out_scale1"] = m(*args, encoder_hidden_states=ehs).sample
            out["out_scale0p5"] = m(*args, encoder_hidden_states=ehs, cross_attention_kwargs={"scale": 0.5}).sample
            return out
        return f
    with torch.no_grad():
        o32 = runk(koh)(copy.deepcopy(u), torch.float32)
        o64 = runk(koh)(copy.deepcopy(u).double(), torch.float64)
        od = runk(dif)(copy.deepcopy(u), torch.float32)
    for k in o32:
        assert (o32[k] - od[k]).abs().max() < 1e-5, (k, (o32[k] - od[k]).abs().max())
    assert (o32["out_scale1"] - o32["out_no_lora"]).abs().max() > 1e-4
    probe = copy.deepcopy(u)
    sd, alphas = L.lora_state_dict(koh, unet_config=probe.config)
    L.load_lora_into_unet(sd, alphas, probe)
    pc = list(probe.peft_config.values())[0]
    write_case("toy_lora_kohya", "diffusers.UNet2DConditionModel + peft LoraConfig", u,
               "sd, alphas = lora_state_dict(kohya file); load_lora_into_unet(sd, alphas, unet); out_scale<w> = unet(...) with cross_attention_kwargs scale w; out_no_lora before loading",
               inputs, o64, o32, "A LoRA `diffuse train --kohya` wrote from the built-in model, in both layouts: diffusers converts the kohya file (with its alphas) and loads it through peft; its outputs equal the diffusers-layout file's within 1e-5.")
    finish_lora_case("toy_lora_kohya", pc, {"lora_diffusers.safetensors": dif, "lora_kohya.safetensors": koh})
