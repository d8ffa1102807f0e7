"""Runs BAGEL's reference code (../shared/reference/bagel) in its own virtual environment, for the agreement
tests: ``make DIR`` builds a tiny BAGEL-shaped model with random weights through the reference classes and
saves it in BAGEL's checkpoint layout; ``run DIR BATCH OUT`` puts a packed batch (BATCH.safetensors and
BATCH.json) through the reference ``Bagel.forward`` and saves CE, MSE, logits and velocity predictions.

Only kernels are swapped: flash_attn's varlen function comes from tests/model/bagel_shim (PyTorch attention
per sequence), and flex attention runs as SDPA under BAGEL's own mask function evaluated densely (no compiling).
Not imported by the project; run as ``python bagel_ref_runner.py ...`` with PYTHONPATH set by the test.
"""

import json
import math
import sys
from pathlib import Path

import torch

LLM = {"vocab_size": 320, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
       "num_attention_heads": 4, "num_key_value_heads": 2, "rope_theta": 10000.0, "rms_norm_eps": 1e-6,
       "max_position_embeddings": 4096, "hidden_act": "silu", "tie_word_embeddings": False}
VIT = {"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 64,
       "patch_size": 4, "layer_norm_eps": 1e-6, "hidden_act": "gelu_pytorch_tanh", "num_channels": 3}
BAGEL = {"latent_patch_size": 2, "max_latent_size": 8, "vit_max_num_patch_per_side": 16, "timestep_shift": 2.0,
         "connector_act": "gelu_pytorch_tanh", "interpolate_pos": False}
Z_CHANNELS, DOWNSAMPLE = 4, 8
AE = {"resolution": 32, "in_channels": 3, "downsample": DOWNSAMPLE, "ch": 32, "out_ch": 3, "ch_mult": [1, 2, 4, 4],
      "num_res_blocks": 1, "z_channels": Z_CHANNELS, "scale_factor": 0.3611, "shift_factor": 0.1159}


class _MaskOnly:
    """Stands in for a flex BlockMask: keeps the mask function, builds nothing."""

    def __init__(self, mask_mod, B, H, Q_LEN, KV_LEN, **kwargs):
        self.mask_mod, self.q_len, self.kv_len = mask_mod, Q_LEN, KV_LEN


def _dense_flex(q, k, v, enable_gqa=False, block_mask=None):
    """flex_attention's result for a mask function, as SDPA with the mask evaluated at every (query, key)."""
    import torch.nn.functional as F

    qi = torch.arange(q.shape[2])[:, None]
    ki = torch.arange(k.shape[2])[None, :]
    zero = torch.zeros((), dtype=torch.long)
    mask = block_mask.mask_mod(zero, zero, qi, ki)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask[None, None], enable_gqa=enable_gqa)


def _build():
    import modeling.bagel.bagel as bagel_mod
    import modeling.bagel.qwen2_navit as navit
    from modeling.bagel import Bagel, BagelConfig, Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

    navit.flex_attention = _dense_flex  # flex attention without compiling: the same mask, dense
    bagel_mod.create_block_mask = _MaskOnly

    class VaeConfig:
        downsample, z_channels = DOWNSAMPLE, Z_CHANNELS

    llm = Qwen2Config(**LLM, qk_norm=True, layer_module="Qwen2MoTDecoderLayer", freeze_und=False)
    vit = SiglipVisionConfig(**VIT, rope=False)
    cfg = BagelConfig(visual_gen=True, visual_und=True, llm_config=llm, vit_config=vit, vae_config=VaeConfig(),
                      **BAGEL)
    model = Bagel(Qwen2ForCausalLM(llm), SiglipVisionModel(vit), cfg)
    model.vit_model.vision_model.embeddings.convert_conv2d_to_linear(vit)
    return model


def make(out: Path) -> None:
    torch.manual_seed(0)
    model = _build()
    with torch.no_grad():  # random weights everywhere (BAGEL zero-initialises llm2vae), norms near one
        for name, p in model.named_parameters():
            if name.endswith("pos_embed"):
                continue
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.08 * torch.randn_like(p))
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "ema.safetensors"))
    (out / "llm_config.json").write_text(json.dumps({**LLM, "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]}))
    # BAGEL's code drops the last ViT layer of the file's count
    (out / "vit_config.json").write_text(json.dumps({**VIT, "num_hidden_layers": VIT["num_hidden_layers"] + 1,
                                                     "model_type": "siglip_vision_model"}))
    from modeling.autoencoder import AutoEncoder, AutoEncoderParams

    ae = AutoEncoder(AutoEncoderParams(**AE))
    with torch.no_grad():
        for name, p in ae.named_parameters():
            p.add_(0.02 * torch.randn_like(p))  # off the default init, so every tensor matters
    save_file({k: v.contiguous() for k, v in ae.state_dict().items()}, str(out / "ae.safetensors"))
    (out / "config.json").write_text(json.dumps({**BAGEL, "visual_gen": True, "visual_und": True}))


def run(ckpt: Path, batch_base: Path, out: Path) -> None:
    from safetensors.torch import load_file, save_file

    model = _build()
    model.load_state_dict(load_file(str(ckpt / "ema.safetensors")), strict=True)
    model.train()  # BAGEL's training forward (the one computing CE and MSE); dropout rates are zero
    t = load_file(str(batch_base.with_suffix(".safetensors")))
    meta = json.loads(batch_base.with_suffix(".json").read_text())
    noise = t.pop("noise")
    timesteps = t.pop("timesteps")
    logit = torch.where(timesteps > 0, torch.logit(timesteps.double()).float(), torch.full_like(timesteps, -math.inf))
    captured = {}
    model.language_model.lm_head.register_forward_hook(lambda m, i, o: captured.__setitem__("logits", o))
    model.llm2vae.register_forward_hook(lambda m, i, o: captured.__setitem__("velocity", o))
    torch.randn_like = lambda x, **kw: noise.clone()  # the noise the test chose
    latents = [t.pop(f"latent_{i}") for i in range(meta["n_latents"])]
    batch = {k: v for k, v in t.items() if k not in ("vae_image", "image_noise")}
    with torch.no_grad():
        res = model(sequence_length=meta["sequence_length"], sample_lens=meta["sample_lens"],
                    split_lens=meta["split_lens"], attn_modes=meta["attn_modes"],
                    patchified_vae_latent_shapes=[tuple(s) for s in meta["latent_shapes"]],
                    padded_latent=latents, packed_timesteps=logit, **batch)
    from modeling.autoencoder import AutoEncoder, AutoEncoderParams

    ae = AutoEncoder(AutoEncoderParams(**AE))
    ae.load_state_dict(load_file(str(ckpt / "ae.safetensors")), strict=True)
    ae.reg.sample = False  # the posterior mean: deterministic latents
    with torch.no_grad():
        z = ae.encode(t["vae_image"]) if "vae_image" in t else None
        x = ae.decode(z) if z is not None else None
    res = {"ce": res["ce"], "mse": res["mse"], "logits": captured["logits"], "velocity": captured["velocity"],
           "greedy": _greedy(model, meta["prompt_ids"], meta["bos"], meta["eos"], meta["max_length"]),
           "image_tokens": _sample_image(model, meta, t["image_noise"])}
    if z is not None:
        res |= {"vae_z": z, "vae_x": x}
    save_file({k: v.contiguous() for k, v in res.items()}, str(out))


def _greedy(model, prompt_ids, bos, eos, max_length):
    """BAGEL's own text generation (KV cache, inference attention) after a text context of the given ids."""
    from modeling.bagel.qwen2_navit import NaiveCache

    class Ids:
        def encode(self, text):
            return list(prompt_ids)

    model.eval()
    ids = {"bos_token_id": bos, "eos_token_id": eos}
    with torch.no_grad():
        past = NaiveCache(model.config.llm_config.num_hidden_layers)
        gen_in, kv_lens, ropes = model.prepare_prompts([0], [0], ["context"], Ids(), ids)
        past = model.forward_cache_update_text(past, **gen_in)
        start = model.prepare_start_tokens(kv_lens, ropes, ids)
        out = model.generate_text(past_key_values=past, max_length=max_length, do_sample=False, end_token_id=eos,
                                  **start)
    return out[:, 0]


def _sample_image(model, meta, noise):
    """BAGEL's own image sampler (KV caches, text CFG, shifted schedule) under bfloat16 autocast, as BAGEL runs
    it, after a text context of the prompt ids; the initial noise is the test's."""
    from modeling.bagel.qwen2_navit import NaiveCache

    class Ids:
        def encode(self, text):
            return list(meta["prompt_ids"])

    model.eval()
    ids = {"bos_token_id": meta["bos"], "eos_token_id": meta["eos"], "start_of_image": 3, "end_of_image": 4}
    layers = model.config.llm_config.num_hidden_layers
    size = [tuple(meta["image_size"])]
    randn = torch.randn
    torch.randn = lambda *a, **kw: noise.clone()
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            past = NaiveCache(layers)
            gen_in, kv_lens, ropes = model.prepare_prompts([0], [0], ["context"], Ids(), ids)
            past = model.forward_cache_update_text(past, **gen_in)
            gen = model.prepare_vae_latent(curr_kvlens=kv_lens, curr_rope=ropes, image_sizes=size, new_token_ids=ids)
            cfg_text = model.prepare_vae_latent_cfg(curr_kvlens=[0], curr_rope=[0], image_sizes=size)
            cfg_img = model.prepare_vae_latent_cfg(curr_kvlens=kv_lens, curr_rope=ropes, image_sizes=size)
            out = model.generate_image(
                past_key_values=past, cfg_text_past_key_values=NaiveCache(layers), cfg_img_past_key_values=past,
                num_timesteps=meta["steps"], cfg_text_scale=4.0, cfg_img_scale=1.0, cfg_interval=(0.4, 1.0),
                cfg_renorm_min=0.0, cfg_renorm_type="global", timestep_shift=3.0, **gen,
                **{f"cfg_text_{k[4:]}": v for k, v in cfg_text.items()},
                **{f"cfg_img_{k[4:]}": v for k, v in cfg_img.items()})
    finally:
        torch.randn = randn
    return out[0].float()


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(Path(sys.argv[2]))
    elif sys.argv[1] == "make-run":
        make(Path(sys.argv[2]))
        run(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        run(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
