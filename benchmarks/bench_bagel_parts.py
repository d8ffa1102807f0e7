"""Measurements behind bench_bagel.py: page-cache residency of a file, a float32 twin of a model, the agreement
figures and rule, model FLOPs of a packed BAGEL forward, and the forward-only timing on score_samples_bagel's
own packed batches."""

from __future__ import annotations

import time
from pathlib import Path


def cached_fraction(path: Path) -> float | None:
    """The fraction of a file's pages in the page cache (mincore over a shared read-only map); None if unknown."""
    import ctypes
    import mmap
    import os

    try:
        size = os.path.getsize(path)
        if size == 0:
            return 1.0
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_long]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        page = mmap.PAGESIZE
        fd = os.open(path, os.O_RDONLY)
        try:
            addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if addr in (None, ctypes.c_void_p(-1).value):
                return None
            try:
                n = (size + page - 1) // page
                vec = (ctypes.c_ubyte * n)()
                if libc.mincore(ctypes.c_void_p(addr), size, vec) != 0:
                    return None
                import numpy as np

                return float((np.frombuffer(vec, dtype=np.uint8) & 1).sum()) / n
            finally:
                libc.munmap(ctypes.c_void_p(addr), size)
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        return None


def tensor_bytes(module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def float32_twin(model, device):
    """The same model with float32 copies of its weights, when the device has room for it beside the bf16 one
    (and the activations); else None."""
    import torch

    from model.bagel_model import BagelModel

    need = 2 * tensor_bytes(model) + (8 << 30 if device.type == "cuda" else 0)
    if device.type == "cuda" and torch.cuda.mem_get_info(device)[0] < need:
        return None
    with torch.device("meta"):
        twin = BagelModel(model.cfg)
    twin.load_state_dict({k: v.float() for k, v in model.state_dict().items()}, strict=True, assign=True)
    if model.cfg.vit is not None:
        twin.vit_model.bf16_attention = False  # the yardstick rounds nothing
    return twin.eval().requires_grad_(False)


def _rel(a, b) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def _cos(a, b) -> float:
    import torch

    return float(torch.nn.functional.cosine_similarity(a.double().flatten(), b.double().flatten(), dim=0))


NAMES = ("logits", "velocity", "ce", "mse")
RULE = ("pass: mean CE and mean MSE within 1e-2 (relative) of the reference's, logits cosine > 0.999, and, with "
        "a float32 run of ours on the same weights as the yardstick, each output of ours in bf16 no further from it "
        "than 2x the reference's bf16 distance + 1e-3 (ours as precise as BAGEL's own bf16 run)")


def agreement(ours: dict, ref: dict | None, f32: dict | None, ours_z: list, meta: dict) -> dict:
    """Relative differences (||a - b|| / ||b||) of the outputs, pairwise, and the pass rule."""
    res: dict = {"tokens": meta["sequence_length"], "rule": RULE, "table": []}
    pairs = {"ours_vs_ref": (ours, ref), "ours_vs_f32": (ours, f32), "ref_vs_f32": (ref, f32)}
    for name, (a, b) in pairs.items():
        if a is not None and b is not None:
            res[name] = {k: _rel(a[k], b[k]) for k in NAMES}
    head = f"{'output':10} {'shape':>14} " + " ".join(f"{p:>12}" for p in pairs if p in res)
    res["table"].append(head)
    for k in NAMES:
        cells = " ".join(f"{res[p][k]:12.2e}" for p in pairs if p in res)
        res["table"].append(f"{k:10} {tuple(ours[k].shape)!s:>14} {cells}")
    if ref is None:
        res["pass"] = None
        return res
    res["mean_ce"] = {"ours": float(ours["ce"].mean()), "ref": float(ref["ce"].mean())}
    res["mean_mse"] = {"ours": float(ours["mse"].mean()), "ref": float(ref["mse"].mean())}
    res["mean_ce_rel"] = abs(res["mean_ce"]["ours"] - res["mean_ce"]["ref"]) / abs(res["mean_ce"]["ref"])
    res["mean_mse_rel"] = abs(res["mean_mse"]["ours"] - res["mean_mse"]["ref"]) / abs(res["mean_mse"]["ref"])
    res["logits_cosine"] = _cos(ours["logits"], ref["logits"])
    ok = res["mean_ce_rel"] < 1e-2 and res["mean_mse_rel"] < 1e-2 and res["logits_cosine"] > 0.999
    if f32 is not None:
        res["as_precise_as_ref"] = {k: res["ours_vs_f32"][k] <= 2 * res["ref_vs_f32"][k] + 1e-3 for k in NAMES}
        ok = ok and all(res["as_precise_as_ref"].values())
    vz = [k for k in ref if k.startswith("vae_z_")]
    if vz:
        res["vae_latents_rel"] = max(_rel(ours_z[int(k.rsplit("_", 1)[1])], ref[k]) for k in vz)
        res["table"].append(f"autoencoder latents (ours vs ref, bf16, max over {len(vz)} images): "
                            f"{res['vae_latents_rel']:.2e}")
    res["table"].append(f"mean CE ours {res['mean_ce']['ours']:.5f} ref {res['mean_ce']['ref']:.5f} "
                        f"(rel {res['mean_ce_rel']:.1e}); mean MSE ours {res['mean_mse']['ours']:.5f} ref "
                        f"{res['mean_mse']['ref']:.5f} (rel {res['mean_mse_rel']:.1e}); logits cosine "
                        f"{res['logits_cosine']:.6f}; {'PASS' if ok else 'FAIL'}")
    res["pass"] = bool(ok)
    return res


class FlopModel:
    """Model FLOPs of one forward of a packed BAGEL batch: 2 x parameters on each token's path (one expert's
    layers per LLM token, the LM head per CE token, ViT + connector per ViT token, latent in/time embedder per
    latent token, velocity head per noised token), attention 4 x heads x head_dim x allowed query-key pairs per
    LLM layer, and 4 x ViT width x tokens^2 per image per ViT layer. Embedding lookups count nothing."""

    def __init__(self, model):
        cfg = self.cfg = model.cfg
        layers = model.language_model.model.layers
        self.layer = sum(p.numel() for n, p in layers.named_parameters() if "_moe_gen" not in n)
        self.head = cfg.llm.hidden_size * cfg.llm.vocab_size
        self.vit = 0
        if cfg.vit is not None:
            self.vit = sum(p.numel() for n, p in model.vit_model.named_parameters() if "position_embedding" not in n)
            self.vit += sum(p.numel() for p in model.connector.parameters())
        self.lat_in = self.lat_out = 0
        if cfg.visual_gen:
            self.lat_in = sum(p.numel() for m in (model.vae2llm, model.time_embedder) for p in m.parameters())
            self.lat_out = sum(p.numel() for p in model.llm2vae.parameters())

    def __call__(self, batch: dict) -> float:
        from model.bagel_lm import sample_mask
        from model.bagel_model import sample_splits

        c = self.cfg.llm
        f = 2.0 * self.layer * int(batch["sequence_length"])
        f += 2.0 * self.head * int(batch["ce_loss_indexes"].sum())
        if batch.get("vit_token_seqlens") is not None:
            seq = [int(s) for s in batch["vit_token_seqlens"]]
            f += 2.0 * self.vit * sum(seq)
            f += 4.0 * self.cfg.vit.hidden_size * sum(s * s for s in seq) * self.cfg.vit.num_hidden_layers
        if batch.get("packed_vae_token_indexes") is not None:
            f += 2.0 * self.lat_in * int(batch["packed_vae_token_indexes"].numel())
            f += 2.0 * self.lat_out * int(batch["mse_loss_indexes"].sum())
        pairs = sum(int(sample_mask(list(sp.lens), list(sp.modes)).sum()) for sp in sample_splits(batch))
        f += 4.0 * c.num_attention_heads * c.head_dim * pairs * c.num_hidden_layers
        return f


def groups_of(packs: list, max_tokens: int) -> list[list[int]]:
    """score_samples_bagel's grouping: consecutive samples while their tokens fit."""
    out, cur, used = [], [], 0
    for j, p in enumerate(packs):
        if cur and used + p.n_tokens > max_tokens:
            out.append(cur)
            cur, used = [], 0
        cur.append(j)
        used += p.n_tokens
    return out + ([cur] if cur else [])


def time_forwards(bench, packs: list) -> dict:
    """The forwards score_samples_bagel runs (its groups, every default timestep, seeded noise), timed alone
    with device events after one warm-up forward; model FLOPs from FlopModel."""
    import torch

    from model.bagel_score import _merge, _to
    from model.score import DEFAULT_TIMESTEPS, _seed

    bundle = bench.bundle
    count = FlopModel(bundle.model)
    work = []
    for g in groups_of(packs, bundle.max_tokens):
        batch = _to(_merge([packs[j] for j in g]), bench.device)
        noised = batch["timesteps"]
        for i, t in enumerate(DEFAULT_TIMESTEPS):
            noise = torch.cat([torch.randn(packs[j].batch["timesteps"].numel(), bundle.cfg.patch_latent_dim,
                                           generator=torch.Generator().manual_seed(_seed(0, f"s{j}", i)))
                               for j in g]).to(bench.device, bundle.dtype)
            work.append(({**batch, "timesteps": noised * t}, noise))
    flops = sum(count(b) for b, _ in work)
    with torch.no_grad():
        bundle.model(*work[0][:1], noise=work[0][1])  # warm-up
        seconds = _timed(bench, work)
        # the same first group's forwards with split attention and with dense masks (the path before)
        first = work[: len(DEFAULT_TIMESTEPS)]
        split_s = _timed(bench, first)
        bundle.model.split_attention = False
        try:
            bundle.model(*first[0][:1], noise=first[0][1])
            dense_s = _timed(bench, first)
        finally:
            bundle.model.split_attention = True
    tokens = [int(b["sequence_length"]) for b, _ in work]
    first_tokens = sum(int(b["sequence_length"]) for b, _ in first)
    return {"forwards": len(work), "mean_tokens": sum(tokens) / len(tokens), "seconds": seconds, "flops": flops,
            "tflops": flops / seconds / 1e12, "timesteps": list(DEFAULT_TIMESTEPS),
            "first_group": {"tokens": first_tokens, "split_attention_s": split_s, "dense_mask_s": dense_s,
                            "speedup": dense_s / split_s}}


def _timed(bench, work) -> float:
    """Seconds for the forwards in ``work``: device events on CUDA, the host clock otherwise."""
    import torch

    model = bench.bundle.model
    bench.sync()
    if bench.device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for b, noise in work:
            model(b, noise=noise)
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    t0 = time.perf_counter()
    for b, noise in work:
        model(b, noise=noise)
    return time.perf_counter() - t0


def profile_forward(bench, packs: list, rows: int = 15) -> list[str]:
    """Where one forward's time goes: PyTorch's profiler over the first packed batch at the middle timestep, the
    operators that took most device time (host time on a CPU), as table lines."""
    import torch

    from model.bagel_score import _merge, _to

    bundle = bench.bundle
    g = groups_of(packs, bundle.max_tokens)[0]
    batch = _to(_merge([packs[j] for j in g]), bench.device)
    batch["timesteps"] = batch["timesteps"] * 0.5
    noise = torch.randn(batch["timesteps"].numel(), bundle.cfg.patch_latent_dim,
                        generator=torch.Generator().manual_seed(0)).to(bench.device, bundle.dtype)
    acts = [torch.profiler.ProfilerActivity.CPU]
    if bench.device.type == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.no_grad(), torch.profiler.profile(activities=acts) as prof:
        bundle.model(batch, noise=noise)
        bench.sync()
    key = "self_cuda_time_total" if bench.device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60).splitlines()

