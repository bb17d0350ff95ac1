# Reference for an SD3.5 MMDiT golden case (qk_norm "rms_norm", dual-attention
# MMDiT-X blocks), which diffusers v0.30.3 (the version of ../shared/golden) cannot
# build: made with diffusers v0.31.0's SD3Transformer2DModel on tiny random weights,
# in the golden format of the sd3_transformer case (same call and outputs).
# Run with Debian's python3-torch (see ../shared/reference/NOTES.md): /work/ref/diffusers031-src
# holds diffusers v0.31.0's src/, /work/ref/hub-src huggingface_hub v0.23.5's, /work/ref/stubs a
# numpy stand-in for safetensors.
# Usage: /usr/bin/python3 make_sd35_case.py OUT_DIR
import copy, json, math, os, sys
sys.path[:0] = ["/work/ref/stubs", "/work/ref/diffusers031-src", "/work/ref/hub-src"]
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

if not hasattr(F, "scaled_dot_product_attention"):
    # torch 1.13 lacks it: its documented formula, softmax(QK^T/sqrt(d) + mask) V.
    def _sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
        assert dropout_p == 0.0 and not is_causal
        s = scale if scale is not None else 1 / math.sqrt(q.shape[-1])
        w = q @ k.transpose(-2, -1) * s
        if attn_mask is not None:
            w = w + attn_mask
        return w.softmax(dim=-1) @ v
    F.scaled_dot_product_attention = _sdpa
from diffusers import SD3Transformer2DModel
import diffusers

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(35)
cfg = dict(sample_size=24, patch_size=2, in_channels=16, num_layers=3, attention_head_dim=8, num_attention_heads=4,
           joint_attention_dim=80, caption_projection_dim=32, pooled_projection_dim=64, out_channels=16,
           pos_embed_max_size=16, qk_norm="rms_norm", dual_attention_layers=(0, 1))
m = SD3Transformer2DModel(**cfg).eval()
# Random values everywhere (the zero-initialised adaLN and output layers too), norm
# weights near 1, so that every parameter changes the outputs.
with torch.no_grad():
    for name, p in m.named_parameters():
        if name.endswith("norm_q.weight") or name.endswith("norm_k.weight") or name.endswith("norm_added_q.weight") or name.endswith("norm_added_k.weight"):
            p.copy_(1 + 0.2 * torch.randn_like(p))
        else:
            p.copy_(0.08 * torch.randn_like(p))
inputs = {"hidden_states": torch.randn(2, 16, 12, 20), "encoder_hidden_states": torch.randn(2, 13, 80),
          "pooled_projections": torch.randn(2, 64), "timestep": torch.tensor([981.0, 37.5])}

def run(model, dt):
    x = {k: v.to(dt) for k, v in inputs.items()}
    with torch.no_grad():
        o = model(hidden_states=x["hidden_states"], encoder_hidden_states=x["encoder_hidden_states"],
                  pooled_projections=x["pooled_projections"], timestep=x["timestep"]).sample
        pe = model.pos_embed.cropped_pos_embed(12, 20)
        temb = model.time_text_embed(x["timestep"], x["pooled_projections"])
    return {"pos_embed_cropped": pe, "temb": temb, "out_sample": o}

o32 = run(m, torch.float32)
o64 = run(copy.deepcopy(m).double(), torch.float64)
per = {}
io = {k: v.float().contiguous() for k, v in inputs.items()}
for k in o32:
    err = (o32[k].double() - o64[k]).abs().max().item()
    e = max(10 * err, 1e-6)
    p = 10 ** math.floor(math.log10(e))
    per[k] = {"max_abs_err_f32_vs_f64": err, "max_abs_value": o64[k].abs().max().item(), "atol": math.ceil(e / p) * p}
    io[k] = o32[k].float().contiguous()
    io[k + "__f64"] = o64[k].float().contiguous()
save_file(io, os.path.join(out, "io.safetensors"))
save_file({k: v.float().contiguous() for k, v in m.state_dict().items()}, os.path.join(out, "weights.safetensors"))
config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(m.config).items() if not k.startswith("_")}
case = {"description": "SD3Transformer2DModel with SD3.5's additions (diffusers v0.31.0): qk_norm 'rms_norm' (RMSNorm, eps 1e-6, with weight, on each head's q and k, and on the text stream's added q and k) and dual-attention MMDiT-X blocks (dual_attention_layers: those blocks also run attn2, a self-attention over the image tokens alone with its own qk norms, its output gated by the extra adaLN chunks of SD35AdaLayerNormZeroX: shift/scale/gate msa, mlp, then msa2). Otherwise as the sd3_transformer case (same call and outputs). Every parameter random (adaLN and output layers included); tiny.",
        "library": "diffusers", "class": "diffusers.SD3Transformer2DModel", "config": config,
        "call": "transformer(hidden_states=hidden_states, encoder_hidden_states=encoder_hidden_states, pooled_projections=pooled_projections, timestep=timestep).sample -> out_sample; pos_embed.cropped_pos_embed(H, W) -> pos_embed_cropped; time_text_embed(timestep, pooled_projections) -> temb",
        "case": os.path.basename(os.path.normpath(out)),
        "tolerance": {"atol": max(p["atol"] for p in per.values()), "rtol": 0.0, "rule": "pass if |got - expected| <= atol elementwise; atol = 10 x max |float32 - float64| on this case, rounded up to one significant digit", "per_output": per},
        "upstream": {"diffusers": "diffusers v0.31.0", "torch": torch.__version__},
        "inputs": {k: {"shape": list(v.shape), "dtype": "float32"} for k, v in inputs.items()},
        "outputs": {k: {"shape": list(v.shape), "dtype": "float32"} for k, v in o32.items()},
        "float64_reference_outputs": [k + "__f64" for k in o32],
        "files": ["case.json", "io.safetensors", "weights.safetensors"]}
json.dump(case, open(os.path.join(out, "case.json"), "w"), indent=1)
print(diffusers.__version__, per)
