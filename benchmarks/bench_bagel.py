"""BAGEL-7B-MoT on one GPU with random weights in BAGEL's checkpoint layout, in one run, section by section:

- ``make``: write a random-weight BAGEL folder (``benchmarks/bagel_folder.py``) into ``--dir``;
- ``load``: ``load_bagel_bundle(folder, device, bf16)``: time, whether the weights were in the page cache, peak
  device memory against the weights' bytes (the loader's promise: the weights' memory once);
- ``agree``: one packed batch (two samples, one with a generation target inside) through Braid's model in bf16,
  BAGEL's reference code in bf16 (``benchmarks/bagel_ref_run.py``, its own process and pins) and Braid's model
  in float32 on the same weights (the yardstick): CE, MSE, logits and velocity differences;
- ``score``: ``score_samples_bagel`` end to end on ~2k-token interleaved samples (packing, VAE encoding, one
  forward per default timestep), samples/s against BAGEL's reference code scoring one sample at a time; and the
  MFU of the forward alone on the same packed batches (CUDA events after a warm-up) against the reference's.

Sections are functions in ``SECTIONS`` taking the run's ``Bench`` (its ``bundle``, ``args``, ``rows``, ``extra``,
``log`` and ``flush``); another section (``decode``) is one more entry. The result file
(benchmarks/results/bench_bagel-<shape>-<machine>.json) is written at the start and after every section.

    python benchmarks/bench_bagel.py --shape 7b --dir /tmp/bagel7b --ref .ref/bagel --ref-site /tmp/refsite \\
        --sections make,load,agree,score
    python benchmarks/bench_bagel.py --shape tiny --device cpu --dir /tmp/bagel-tiny --ref ../shared/reference/bagel \\
        --ref-python .cache/bagel-ref/bin/python            # dry run of every section on a CPU
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HERE = Path(__file__).resolve().parent
SHIM = HERE / "bagel_shim"
AGREE_T = (0.6, 0.3)  # flow time of the agreement batch's two samples' noised latents


class Bench:
    def __init__(self, args):
        import torch

        self.args, self.t0 = args, time.perf_counter()
        self.device = torch.device(args.device)
        self.dtype = torch.bfloat16
        self.folder = Path(args.dir)
        self.rows: dict[str, object] = {}
        self.extra: dict = {"shape": args.shape, "dtype": "bfloat16", "sections_done": [], "sections": args.sections}
        self._bundle = self._samples = self._packs = self._ref = None

    def log(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')} +{time.perf_counter() - self.t0:6.1f}s] {msg}", flush=True)

    def flush(self) -> None:
        from benchmarks.record import write_result

        self.extra["elapsed_s"] = round(time.perf_counter() - self.t0, 1)
        path = write_result(f"bench_bagel-{self.args.shape}", list(self.rows.values()), extra=self.extra,
                            libraries=("torch", "transformers", "diffusers", "safetensors"))
        if self.args.copy_to:
            Path(self.args.copy_to).mkdir(parents=True, exist_ok=True)
            (Path(self.args.copy_to) / path.name).write_text(path.read_text())

    def left(self) -> float:
        """Seconds left of the run's --budget."""
        return self.args.budget - (time.perf_counter() - self.t0)

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()

    @property
    def bundle(self):
        if self._bundle is None:
            from model.bagel_score import load_bagel_bundle

            self._bundle = load_bagel_bundle(self.folder, str(self.device), dtype=self.dtype)
        return self._bundle

    @property
    def samples(self) -> list:
        if self._samples is None:
            from benchmarks.bagel_samples import make_samples

            self._samples = make_samples(max(self.args.samples, 8), self.args.shape)
        return self._samples

    @property
    def packs(self) -> list:
        """(packed sample, [(pixels, latent)] per encoded image) of every sample, through Braid's packing."""
        if self._packs is None:
            self._packs = [pack_recorded(self.bundle, s) for s in self.samples]
        return self._packs

    def reference(self) -> dict | None:
        """The reference's outputs for the agreement batch and the baseline (one process, loaded once); None when
        no reference is given or it fails (recorded in extra["reference"])."""
        if self._ref is None:
            self._ref = run_reference(self) if self.args.ref else {}
        return self._ref or None


def pack_recorded(bundle, sample):
    """pack_sample, keeping each image the autoencoder encoded (pixels in [-1, 1]) with its latent."""
    from model.bagel_pack import pack_sample

    seen: list = []

    class Recording:
        latent_channels = bundle.vae.latent_channels

        def encode(self, x):
            z = bundle.vae.encode(x)
            seen.append((x.float().cpu(), z))
            return z

    import torch

    with torch.no_grad():
        packed = pack_sample(sample, bundle.tok, bundle.cfg, Recording(), bundle.transforms)
    return packed, seen


def sample_noise(bundle, key: str, n_latent: int, step: int, seed: int = 0):
    """The noise score_samples_bagel draws for a sample at a timestep index (bf16-rounded, as the model gets it)."""
    import torch

    from model.score import _seed

    g = torch.Generator().manual_seed(_seed(seed, key, step))
    return torch.randn(n_latent, bundle.cfg.patch_latent_dim, generator=g).to(bundle.dtype).float()


def ref_fields(b: dict) -> tuple[dict, dict]:
    """Host tensors and JSON fields of a packed batch for bagel_ref_run.py (latents, timesteps and noise apart)."""
    skip = {"sequence_length", "sample_lens", "split_lens", "attn_modes", "padded_latent",
            "patchified_vae_latent_shapes", "timesteps"}
    t = {k: v.cpu() for k, v in b.items() if k not in skip}
    meta = {"sequence_length": b["sequence_length"], "sample_lens": b["sample_lens"], "split_lens": b["split_lens"],
            "attn_modes": b["attn_modes"], "latent_shapes": [list(s) for s in b["patchified_vae_latent_shapes"]],
            "n_latents": len(b["padded_latent"])}
    return t, meta


def ref_sample(packed, seen, noises) -> tuple[dict, dict]:
    """One packed sample for the reference's baseline: its images (the reference encodes them; latent i is image
    latent_images[i], an inner generation target being encoded once and used twice), which latent tokens are
    noised, and the noise of each timestep."""
    b = packed.batch
    t, meta = ref_fields(b)
    meta["latent_images"] = [next(i for i, (_, z) in enumerate(seen) if z is lat) for lat in b["padded_latent"]]
    meta["n_images"] = len(seen)
    t |= {f"image_{i}": x for i, (x, _) in enumerate(seen)}
    t["noised"] = b["timesteps"].float()
    t |= {f"noise_{j}": n for j, n in enumerate(noises)}
    return t, meta


def agree_batch(bench):
    """The agreement batch: samples 0 and 7 (7 has a generation target inside) packed together, fixed
    timesteps and noise; (our batch on the device, noise, tensors and fields for the reference, our latents)."""
    import torch

    from model.bagel_score import _merge, _to

    picks = [bench.packs[0], bench.packs[7]]
    keys = [bench.samples[0].key, bench.samples[7].key]
    merged = _merge([p for p, _ in picks])
    ts, noise, images, ours_z = [], [], [], []
    for (p, seen), key, t in zip(picks, keys, AGREE_T):
        ts.append(p.batch["timesteps"].float() * t)
        noise.append(sample_noise(bench.bundle, key, p.batch["timesteps"].numel(), 0))
        images += [x for x, _ in seen]
        ours_z += [z.float().cpu() for _, z in seen]
    merged["timesteps"] = torch.cat(ts)
    noise = torch.cat(noise)
    ref_t, meta = ref_fields(merged)
    ref_t |= {f"latent_{i}": z.float().cpu() for i, z in enumerate(merged["padded_latent"])}
    ref_t |= {f"image_{i}": x for i, x in enumerate(images)}
    ref_t |= {"timesteps": merged["timesteps"], "noise": noise}
    meta["n_images"] = len(images)
    return _to(merged, bench.device), noise, ref_t, meta, ours_z


def run_reference(bench) -> dict:
    """Run bagel_ref_run.py once with the agreement batch and the baseline's samples; its outputs by name."""
    import torch
    from safetensors.torch import load_file, save_file

    args = bench.args
    work = bench.folder.parent / f"{bench.folder.name}-bench"
    work.mkdir(parents=True, exist_ok=True)
    job: dict = {"folder": str(bench.folder.resolve()), "device": str(bench.device),
                 "out": str(work / "ref.safetensors"),
                 "ae": _ae_params(args.shape), "threads": max(1, torch.get_num_threads())}
    if "agree" in args.sections:
        _, _, t, meta, _ = agree_batch(bench)
        save_file({k: v.contiguous() for k, v in t.items()}, str(work / "agree.safetensors"))
        (work / "agree.json").write_text(json.dumps(meta))
        job["agree"] = {"tensors": str(work / "agree.safetensors"), "meta": str(work / "agree.json")}
    if "score" in args.sections:
        from model.score import DEFAULT_TIMESTEPS

        tensors, metas = {}, []
        n_ref = args.ref_samples if bench.left() > 360 else max(4, args.ref_samples // 2)
        for i in range(min(n_ref, len(bench.samples))):
            packed, seen = bench.packs[i]
            n_lat = packed.batch["timesteps"].numel()
            noises = [sample_noise(bench.bundle, bench.samples[i].key, n_lat, j) for j in range(len(DEFAULT_TIMESTEPS))]
            t, meta = ref_sample(packed, seen, noises)
            tensors |= {f"{i}/{k}": v for k, v in t.items()}
            metas.append(meta)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(work / "score.safetensors"))
        (work / "score.json").write_text(json.dumps(metas))
        job["score"] = {"tensors": str(work / "score.safetensors"), "meta": str(work / "score.json"),
                        "timesteps": list(DEFAULT_TIMESTEPS)}
    (work / "job.json").write_text(json.dumps(job))
    path = [p for p in (args.ref_site, args.ref, str(SHIM)) if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(Path(p).resolve()) for p in path),
           "PYTHONUNBUFFERED": "1"}
    if bench.device.type == "cpu":
        env["OMP_NUM_THREADS"] = str(job["threads"])
    bench.log(f"reference: {args.ref_python} bagel_ref_run.py (PYTHONPATH={env['PYTHONPATH']})")
    t0 = time.perf_counter()
    try:
        limit = max(60.0, min(args.ref_timeout, bench.left() - 120))
        rc = subprocess.run([args.ref_python, str(HERE / "bagel_ref_run.py"), str(work / "job.json")], env=env,
                            cwd=str(HERE.parent), check=False, timeout=limit).returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    info = {"returncode": rc, "wall_s": time.perf_counter() - t0}
    if rc == 0:
        info |= json.loads(Path(job["out"] + ".json").read_text())
    bench.extra["reference"] = info
    if rc != 0:
        bench.log(f"reference FAILED (exit {rc}); sections go on without it")
        return {}
    out = load_file(job["out"])
    return {"info": info, **out}


def _ae_params(shape: str) -> dict:
    from dataclasses import asdict

    from benchmarks.bagel_folder import SHAPES

    d = asdict(SHAPES[shape].ae)
    d["ch_mult"] = list(d["ch_mult"])
    return d


def section_make(bench) -> None:
    from benchmarks.bagel_folder import SHAPES, make_folder
    from benchmarks.bagel_samples import corpus

    info = make_folder(bench.folder, SHAPES[bench.args.shape], str(bench.device), corpus(), log=bench.log)
    bench.extra["make"] = info
    bench.log(f"made {bench.folder}: {info['params'] / 1e9:.2f}B parameters, {info['weight_bytes'] / 1e9:.1f} GB, "
              f"built in {info['build_s']:.1f} s, written in {info['write_s']:.1f} s "
              f"({info['write_gb_per_s']:.2f} GB/s)")
    if bench.device.type == "cuda":
        import torch

        torch.cuda.empty_cache()


def section_load(bench) -> None:
    import torch

    from benchmarks.bench_bagel_parts import cached_fraction, tensor_bytes
    from benchmarks.record import Row
    from model.bagel_load import weights_file

    path = weights_file(bench.folder)
    t0 = time.perf_counter()
    import diffusers.models.autoencoders.autoencoder_kl  # noqa: F401 - import time apart from loading
    import tokenizers  # noqa: F401

    bench.log(f"autoencoder and tokenizer libraries imported in {time.perf_counter() - t0:.1f} s")
    cached = cached_fraction(path)
    if bench.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() if bench.device.type == "cuda" else 0
    t0 = time.perf_counter()
    _ = bench.bundle
    bench.sync()
    dt = time.perf_counter() - t0
    weights = tensor_bytes(bench.bundle.model) + tensor_bytes(bench.bundle.vae.model)
    info = {"seconds": dt, "file_bytes": path.stat().st_size, "in_page_cache": cached, "weights_bytes": weights,
            "gb_per_s": path.stat().st_size / 1e9 / dt}
    note = f"{path.stat().st_size / 1e9:.1f} GB file, {'unknown' if cached is None else f'{cached:.0%}'} in page cache"
    bench.rows["load"] = Row(name=f"load {bench.args.shape} BAGEL folder (ema + ae + tokenizer), bf16", metric="s",
                             ours=dt, higher_is_better=False, note=note)
    if bench.device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
        info["peak_bytes"] = peak
        info["peak_over_weights"] = peak / weights
        bench.rows["load_memory"] = Row(name="peak device memory while loading / weights' bytes", metric="x",
                                        ours=peak / weights, higher_is_better=False, met=peak <= 1.05 * weights, target="<= 1.05x",
                                        note=f"peak {peak / 2**30:.2f} GiB, weights {weights / 2**30:.2f} GiB; "
                                             "target: the weights' memory once (<= 1.05x)")
    bench.extra["load"] = info
    bench.log(f"loaded in {dt:.1f} s ({info['gb_per_s']:.2f} GB/s); {note}; "
              + (f"peak {info['peak_bytes'] / 2**30:.2f} GiB for {weights / 2**30:.2f} GiB of weights"
                 if "peak_bytes" in info else ""))


def section_agree(bench) -> None:
    from benchmarks.bench_bagel_parts import agreement, float32_twin
    from benchmarks.record import Row

    ref = bench.reference()
    batch, noise, _, meta, ours_z = agree_batch(bench)
    model = bench.bundle.model
    import torch

    with torch.no_grad():
        ours = {k: v.float().cpu() for k, v in model(batch, noise=noise.to(bench.device, bench.dtype)).items()}
    bench.log(f"agreement batch: {meta['sequence_length']} tokens, ours bf16 done")
    f32 = None
    twin = float32_twin(model, bench.device)
    if twin is not None:
        b32 = {**batch, "padded_latent": [z.float() for z in batch["padded_latent"]]}
        with torch.no_grad():
            f32 = {k: v.float().cpu() for k, v in twin(b32, noise=noise.to(bench.device)).items()}
        del twin
        if bench.device.type == "cuda":
            torch.cuda.empty_cache()
        bench.log("ours float32 done")
    else:
        bench.log("no room for a float32 copy: fixed tolerances only")
    refd = {k[len("agree/"):]: v for k, v in ref.items() if k.startswith("agree/")} if ref else None
    res = agreement(ours, refd, f32, ours_z, meta)
    bench.extra["agree"] = res
    for line in res["table"]:
        bench.log(line)
    if refd is None:
        bench.log("agreement with the reference not measured (no reference)")
        return
    bench.rows["agree"] = Row(name="agreement with BAGEL's reference code, one packed batch, bf16",
                              metric="logits rel. diff", ours=res["ours_vs_ref"]["logits"], higher_is_better=False,
                              met=res["pass"], note=res["rule"], target="bf16 tolerance")


def section_score(bench) -> None:
    import torch

    from benchmarks.bench_bagel_parts import FlopModel, profile_forward, time_forwards
    from benchmarks.record import Row
    from model.bagel_score import score_samples_bagel
    from model.flops import peak_tflops

    ref = bench.reference()
    n = bench.args.samples
    if bench.left() < 200:  # keep the figures inside the run's time: fewer samples, same kind
        n = max(8, n // (2 if bench.left() > 100 else 4))
        bench.log(f"{bench.left():.0f} s left of the budget: scoring {n} samples")
    samples = bench.samples[:n]
    score_samples_bagel(bench.bundle, samples[:2])  # warm-up: kernels, allocator
    bench.sync()
    t0 = time.perf_counter()
    scores = score_samples_bagel(bench.bundle, samples)
    bench.sync()
    dt = time.perf_counter() - t0
    n_tok = sum(s.n_tokens for s in scores)
    sps = len(samples) / dt
    bench.log(f"score_samples_bagel: {len(samples)} samples ({n_tok / len(samples):.0f} tokens each on average) "
              f"in {dt:.2f} s: {sps:.3f} samples/s")
    fw = time_forwards(bench, [p for p, _ in bench.packs[: len(samples)]])
    name = torch.cuda.get_device_name(bench.device) if bench.device.type == "cuda" else "cpu"
    peak = peak_tflops(name)
    mfu = fw["tflops"] / peak if peak else None
    info = {"samples": len(samples), "mean_tokens": n_tok / len(samples), "seconds": dt, "samples_per_s": sps,
            "forward": fw, "peak_tflops": peak, "mfu": mfu}
    bench.log(f"forward alone: {fw['forwards']} forwards of {fw['mean_tokens']:.0f} tokens, {fw['seconds']:.3f} s, "
              f"{fw['tflops']:.1f} TFLOP/s" + (f", MFU {mfu:.1%} of {peak:g}" if mfu is not None else ""))
    try:
        prof = profile_forward(bench, [p for p, _ in bench.packs[: len(samples)]])
        info["profile_top_ops"] = prof
        print("\n".join(prof), flush=True)
    except Exception as e:  # noqa: BLE001 - the profile is a diagnosis, not a figure
        info["profile_error"] = f"{type(e).__name__}: {e}"
    fg = fw["first_group"]
    bench.log(f"first packed batch's {len(fw['timesteps'])} forwards ({fg['tokens']} tokens): split attention "
              f"{fg['split_attention_s']:.3f} s, "
              f"dense masks {fg['dense_mask_s']:.3f} s ({fg['speedup']:.2f}x)")
    base = base_mfu = None
    if ref and "info" in ref and "score" in ref["info"]:
        r = ref["info"]["score"]
        base = r["samples_per_s"]
        n = r["samples"]
        count = FlopModel(bench.bundle.model)
        ref_flops = sum(count(p.batch) for p, _ in bench.packs[:n]) * len(fw["timesteps"])
        base_tflops = ref_flops / r["forward_seconds"] / 1e12
        base_mfu = base_tflops / peak if peak else None
        ce = [s.ce for s in scores[:n]]
        mse = [s.mse for s in scores[:n]]
        rel_ce = max(abs(a - b) / abs(b) for a, b in zip(ce, ref["score/ce"].tolist()))
        rel_mse = max(abs(a - b) / abs(b) for a, b in zip(mse, ref["score/mse"].tolist()))
        info["reference"] = {**r, "forward_tflops": base_tflops, "mfu": base_mfu, "max_rel_diff_sample_ce": rel_ce,
                             "max_rel_diff_sample_mse": rel_mse}
        bench.log(f"reference one sample at a time: {base:.3f} samples/s (ours {sps / base:.2f}x), forward "
                  f"{base_tflops:.1f} TFLOP/s; per-sample CE / MSE max rel. diff {rel_ce:.2e} / {rel_mse:.2e}")
    bench.extra["score"] = info
    bench.rows["attention"] = Row(name="forward, split attention vs dense per-sample masks (first packed batch)",
                                  metric="s", ours=fg["split_attention_s"], baseline=fg["dense_mask_s"],
                                  baseline_name="SDPA under a dense (L, L) mask per sample (the path before)",
                                  higher_is_better=False)
    bench.rows["score"] = Row(name=f"scoring throughput, {n_tok / len(samples):.0f}-token interleaved samples "
                                   f"(end to end, {len(fw['timesteps'])} timesteps)", metric="samples/s", ours=sps,
                              baseline=base, baseline_name="BAGEL's reference code, one sample at a time"
                              if base else "", note="packing, VAE encoding and forwards")
    metric, ours_v = ("MFU", mfu) if mfu is not None else ("TFLOP/s", fw["tflops"])
    bench.rows["mfu"] = Row(name=f"forward {metric}, packed batches of <= {bench.bundle.max_tokens} tokens",
                            metric=metric, ours=ours_v,
                            baseline=(base_mfu if mfu is not None
                                      else (info.get("reference") or {}).get("forward_tflops")),
                            baseline_name="BAGEL's reference forward, one sample at a time" if base else "",
                            met=(mfu >= 0.40) if mfu is not None else None, target=">= 40% MFU",
                            note="target 40% MFU; model FLOPs: 2 x parameters on each token's path + attention "
                                 "4 x heads x head_dim x allowed pairs + ViT")


SECTIONS = {"make": section_make, "load": section_load, "agree": section_agree, "score": section_score}


def main(argv=None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=("7b", "tiny"), default="7b")
    ap.add_argument("--dir", required=True, help="the BAGEL folder to write (make) or read")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sections", default="make,load,agree,score", help=f"comma-separated, of {', '.join(SECTIONS)}")
    ap.add_argument("--ref", help="BAGEL's reference code (its modeling/ and data/); none: no reference figures")
    ap.add_argument("--ref-site", help="a folder with the reference's pins (transformers 4.49, ...), first on its "
                    "path")
    ap.add_argument("--ref-python", default=sys.executable, help="the interpreter that runs the reference")
    ap.add_argument("--ref-timeout", type=int, default=300, help="seconds the reference process may take")
    ap.add_argument("--samples", type=int, default=None, help="samples scored (default 48 for 7b, 12 for tiny)")
    ap.add_argument("--ref-samples", type=int, default=None, help="samples the reference baseline scores")
    ap.add_argument("--budget", type=float, default=540, help="seconds for the whole run: the score section and the "
                    "reference's baseline take fewer samples when little is left")
    ap.add_argument("--copy-to", help="a folder that gets a copy of the result file after every section")
    args = ap.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        ap.error(f"unknown section {unknown[0]!r}; known: {', '.join(SECTIONS)}")
    args.samples = args.samples or (48 if args.shape == "7b" else 12)
    args.ref_samples = args.ref_samples or (16 if args.shape == "7b" else 4)
    bench = Bench(args)
    bench.log(f"bench_bagel: shape {args.shape}, device {bench.device}, sections {', '.join(args.sections)}")
    bench.flush()
    failed = []
    for name in args.sections:
        bench.log(f"--- {name}")
        try:
            SECTIONS[name](bench)
            bench.extra["sections_done"].append(name)
        except Exception as e:  # noqa: BLE001 - one section's failure must not lose the others' figures
            traceback.print_exc()
            bench.extra.setdefault("errors", {})[name] = f"{type(e).__name__}: {e}"
            bench.log(f"section {name} FAILED: {type(e).__name__}: {e}")
            failed.append(name)
        bench.flush()
    bench.log("done" + (f"; failed sections: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
