"""BAGEL's reference code on a BAGEL checkpoint folder, for bench_bagel.py; run in its own process with BAGEL's
pins on the path (``PYTHONPATH=<transformers 4.49 site>:<reference dir>:benchmarks/bagel_shim``):

    python benchmarks/bagel_ref_run.py JOB.json

JOB names the folder, the device, the FLUX autoencoder's shape and up to two tasks; results go to the job's
``out`` (safetensors) and ``out``.json (timings):

- ``agree``: one packed batch (BAGEL's field names, fixed latents, noise and timesteps) through BAGEL's training
  forward (``Bagel.forward`` in train mode, per-sample attention masks from BAGEL's
  ``prepare_attention_mask_per_sample``, bf16 weights under bf16 autocast as BAGEL runs): CE, MSE, logits and
  velocity; plus BAGEL's autoencoder's latents of the batch's images;
- ``score``: the baseline a user of BAGEL's code would run: one sample at a time, its generation images
  encoded by BAGEL's autoencoder, one training forward per scoring timestep with the given noise; samples/s,
  the forwards' own time, and each sample's mean CE and MSE.

Only kernels are swapped: flash_attn's varlen function is PyTorch SDPA per sequence (benchmarks/bagel_shim) and,
on a CPU, the efficient-attention kernel BAGEL asks SDPA for (CUDA only) is left to SDPA's choice. The weights are
loaded strictly (every tensor of the file, nothing missing). Not imported by the project.
"""

import contextlib
import json
import math
import sys
import time
from pathlib import Path

import torch


def _log(msg):
    print(f"[ref {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build(folder: Path, ae_params: dict, device):
    """(Bagel in train mode, BAGEL's AutoEncoder), bf16 on ``device``, weights from the folder."""
    import modeling.bagel.qwen2_navit as navit
    from modeling.autoencoder import AutoEncoder, AutoEncoderParams
    from modeling.bagel import Bagel, BagelConfig, Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

    if device.type != "cuda":
        navit.sdpa_kernel = lambda *a, **kw: contextlib.nullcontext()
    top = json.loads((folder / "config.json").read_text())
    llm = Qwen2Config.from_json_file(str(folder / "llm_config.json"))
    llm.qk_norm, llm.tie_word_embeddings, llm.freeze_und = True, False, False
    llm.layer_module = "Qwen2MoTDecoderLayer"
    vit = SiglipVisionConfig.from_json_file(str(folder / "vit_config.json"))
    vit.rope = False
    vit.num_hidden_layers -= 1

    class VaeConfig:
        downsample = 2 ** (len(ae_params["ch_mult"]) - 1)
        z_channels = ae_params["z_channels"]

    keys = ("latent_patch_size", "max_latent_size", "vit_max_num_patch_per_side", "connector_act", "interpolate_pos",
            "timestep_shift")
    cfg = BagelConfig(visual_gen=True, visual_und=True, llm_config=llm, vit_config=vit, vae_config=VaeConfig(),
                      **{k: top[k] for k in keys if k in top})
    from transformers.modeling_utils import no_init_weights

    torch.set_default_dtype(torch.bfloat16)  # parameters made in bf16 on the device (rotary tables stay float32)
    try:  # no initialisation: every tensor of the model is read from the file (strictly, below)
        with torch.device(device), no_init_weights():
            model = Bagel(Qwen2ForCausalLM(llm), SiglipVisionModel(vit), cfg)
            model.vit_model.vision_model.embeddings.convert_conv2d_to_linear(vit)
    finally:
        torch.set_default_dtype(torch.float32)
    _load_strict(model, folder / "ema.safetensors", device)
    ae = AutoEncoder(AutoEncoderParams(**ae_params))
    _load_strict(ae, folder / "ae.safetensors", "cpu")
    ae = ae.to(device=device, dtype=torch.bfloat16).eval()
    ae.reg.sample = False  # the posterior mean, as Braid scores
    return model.train().requires_grad_(False), ae


def _load_strict(module, path: Path, device):
    from safetensors import safe_open

    state = module.state_dict()
    with safe_open(str(path), framework="pt", device=str(device)) as f:
        names = set(f.keys())
        missing, extra = sorted(set(state) - names), sorted(names - set(state))
        if missing or extra:
            raise SystemExit(f"{path}: {len(missing)} missing ({missing[:3]}), {len(extra)} unexpected ({extra[:3]})")
        with torch.no_grad():
            for k in names:
                t = f.get_tensor(k)
                if t.shape != state[k].shape:
                    raise SystemExit(f"{path}: {k} is {tuple(t.shape)}, the model's {tuple(state[k].shape)}")
                state[k].copy_(t)


def _masks(meta, device):
    """BAGEL's own per-sample attention masks (0 / -inf) of a packed batch."""
    from data.data_utils import prepare_attention_mask_per_sample

    out, at = [], 0
    for length in meta["sample_lens"]:
        splits, modes, used = [], [], 0
        while used < length:
            splits.append(meta["split_lens"][at])
            modes.append(meta["attn_modes"][at])
            used += splits[-1]
            at += 1
        out.append(prepare_attention_mask_per_sample(splits, modes, device))
    return out


def forward(model, t: dict, meta: dict, latents: list, timesteps, noise, device):
    """BAGEL's training forward on one packed batch: {"ce", "mse", "logits", "velocity"}."""
    captured = {}
    hooks = [model.language_model.lm_head.register_forward_hook(lambda m, i, o: captured.__setitem__("logits", o)),
             model.llm2vae.register_forward_hook(lambda m, i, o: captured.__setitem__("velocity", o))]
    logit = torch.where(timesteps > 0, torch.logit(timesteps.double()).float(), torch.full_like(timesteps, -math.inf))
    randn_like = torch.randn_like
    torch.randn_like = lambda x, **kw: noise.to(x.device, x.dtype)  # the noise the benchmark chose
    fields = ("packed_text_ids", "packed_text_indexes", "packed_position_ids", "ce_loss_indexes", "packed_label_ids",
              "packed_vit_tokens", "packed_vit_token_indexes", "packed_vit_position_ids", "vit_token_seqlens",
              "packed_latent_position_ids", "packed_vae_token_indexes", "mse_loss_indexes")
    try:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
            res = model(sequence_length=meta["sequence_length"], sample_lens=meta["sample_lens"],
                        split_lens=meta["split_lens"], attn_modes=meta["attn_modes"],
                        nested_attention_masks=_masks(meta, device),
                        patchified_vae_latent_shapes=[tuple(s) for s in meta["latent_shapes"]],
                        padded_latent=latents, packed_timesteps=logit.to(device),
                        **{k: t[k].to(device) for k in fields if k in t})
    finally:
        torch.randn_like = randn_like
        for h in hooks:
            h.remove()
    return {"ce": res["ce"], "mse": res["mse"], "logits": captured["logits"], "velocity": captured["velocity"]}


def _encode(ae, images, device):
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        return [ae.encode(x[None].to(device, torch.bfloat16))[0].float() for x in images]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def agree(model, ae, job: dict, device) -> dict:
    from safetensors.torch import load_file

    t = load_file(job["tensors"])
    meta = json.loads(Path(job["meta"]).read_text())
    latents = [t[f"latent_{i}"].to(device) for i in range(meta["n_latents"])]
    out = forward(model, t, meta, latents, t["timesteps"], t["noise"], device)
    out = {k: v.float().cpu() for k, v in out.items()}
    for i, z in enumerate(_encode(ae, [t[f"image_{i}"] for i in range(meta["n_images"])], device)):
        out[f"vae_z_{i}"] = z.cpu()
    return out


def score(model, ae, job: dict, device) -> tuple[dict, dict]:
    """Each sample alone: encode its images, one forward per timestep; timings after one warm-up sample."""
    from safetensors.torch import load_file

    t = load_file(job["tensors"])
    metas = json.loads(Path(job["meta"]).read_text())
    steps = job["timesteps"]

    def one(i, m):
        p = f"{i}/"
        s = {k[len(p):]: v for k, v in t.items() if k.startswith(p)}
        _sync(device)
        t0 = time.perf_counter()
        encoded = _encode(ae, [s[f"image_{k}"] for k in range(m["n_images"])], device)
        latents = [encoded[k] for k in m["latent_images"]]
        _sync(device)
        t1 = time.perf_counter()
        ce, mse = None, []
        for j, ts in enumerate(steps):
            r = forward(model, s, m, latents, s["noised"] * ts, s[f"noise_{j}"], device)
            if ce is None:
                ce = r["ce"].float()
            if r["mse"] is not None:
                mse.append(r["mse"].float().mean())
        ce_mean = float(ce.mean())
        mse_mean = float(torch.stack(mse).mean()) if mse else float("nan")
        _sync(device)
        return ce_mean, mse_mean, time.perf_counter() - t0, time.perf_counter() - t1

    one(0, metas[0])  # warm-up: kernels, allocator
    ces, mses, total, fwd = [], [], 0.0, 0.0
    for i, m in enumerate(metas):
        c, e, dt, df = one(i, m)
        ces.append(c)
        mses.append(e)
        total += dt
        fwd += df
    info = {"samples": len(metas), "seconds": total, "forward_seconds": fwd, "samples_per_s": len(metas) / total}
    return {"ce": torch.tensor(ces), "mse": torch.tensor(mses)}, info


def main(job_path: str) -> int:
    from safetensors.torch import save_file

    job = json.loads(Path(job_path).read_text())
    device = torch.device(job["device"])
    if device.type == "cpu":
        torch.set_num_threads(job.get("threads", torch.get_num_threads()))
    t0 = time.perf_counter()
    model, ae = build(Path(job["folder"]), job["ae"], device)
    _sync(device)
    info = {"load_s": time.perf_counter() - t0}
    if device.type == "cuda":
        info["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    _log(f"reference model loaded in {info['load_s']:.1f} s")
    out = {}
    if job.get("agree"):
        out |= {f"agree/{k}": v for k, v in agree(model, ae, job["agree"], device).items()}
        _log("agree batch done")
    if job.get("score"):
        res, info["score"] = score(model, ae, job["score"], device)
        out |= {f"score/{k}": v for k, v in res.items()}
        sc = info["score"]
        _log(f"baseline: {sc['samples']} samples one at a time, {sc['samples_per_s']:.3f} samples/s")
    save_file({k: v.contiguous() for k, v in out.items()}, job["out"])
    Path(job["out"] + ".json").write_text(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
