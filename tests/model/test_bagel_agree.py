"""Braid's BAGEL model against BAGEL's own code (../shared/reference/bagel) on a tiny BAGEL-shaped model with
random weights made by the reference and saved in BAGEL's checkpoint layout: the same packed batch (two
samples: text, an understanding image, captions with CE, a clean latent, noised generation targets with fixed
timesteps and noise) gives the same CE and MSE, logits and velocity predictions in float32; loading is strict.

The reference runs in its own virtual environment with its pins, built once under .cache/bagel-ref."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT.parent / "shared" / "reference" / "bagel"
VENV = ROOT / ".cache" / "bagel-ref"
PINS = ["torch==2.13.0", "transformers==4.49.0", "einops", "safetensors", "numpy", "pillow"]
RUNNER = Path(__file__).with_name("bagel_ref_runner.py")
SHIM = Path(__file__).with_name("bagel_shim")


def _reference_python() -> Path:
    """The reference environment's interpreter, built on first use (pip from this machine's package sources)."""
    py = VENV / "bin" / "python"
    stamp = VENV / "pins.txt"
    if not (py.exists() and stamp.exists() and stamp.read_text() == "\n".join(PINS)):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, timeout=300)
        pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        # the CPU build of torch, as the Makefile installs it: a local wheel (its dependencies come with the pins
        # below), else PyTorch's CPU index
        if subprocess.run([*pip, "--no-index", "--no-deps", PINS[0]], check=False, timeout=1200).returncode:
            subprocess.run([*pip, "--index-url", "https://download.pytorch.org/whl/cpu", PINS[0]], check=True,
                           timeout=1200)
        subprocess.run([*pip, *PINS], check=True, timeout=1200)
        stamp.write_text("\n".join(PINS))
    return py


def _packed_batch():
    """Two samples in BAGEL's packed vocabulary, plus the fixed noise; tensors and JSON-able fields apart."""
    import torch

    from model.bagel_vit import position_ids

    g = torch.Generator().manual_seed(7)
    vocab, p, c, lat_side, vit_side = 320, 2, 4, 8, 16
    text_ids, text_idx, pos, ce_idx, labels = [], [], [], [], []
    vit_idx, vae_idx, mse_idx, lat_pos, timesteps, latents = [], [], [], [], [], []
    split_lens, modes, sample_lens = [], [], []
    seq = 0

    def text(n, rope, ce=False):
        nonlocal seq
        ids = torch.randint(0, vocab, (n,), generator=g).tolist()
        text_ids.extend(ids)
        text_idx.extend(range(seq, seq + n))
        pos.extend(range(rope, rope + n))
        if ce:
            ce_idx.extend(range(seq, seq + n - 1))
            labels.extend(ids[1:])
        split_lens.append(n)
        modes.append("causal")
        seq += n
        return rope + n

    def vit_image(rope):
        nonlocal seq
        n = (vit_side // 4) ** 2
        text_ids.extend([1, 2])
        text_idx.extend([seq, seq + n + 1])
        vit_idx.extend(range(seq + 1, seq + 1 + n))
        pos.extend([rope] * (n + 2))
        split_lens.append(n + 2)
        modes.append("full")
        seq += n + 2
        return rope + 1

    def latent_image(rope, t):
        nonlocal seq
        n = (lat_side // p) ** 2
        text_ids.extend([3, 4])
        text_idx.extend([seq, seq + n + 1])
        vae_idx.extend(range(seq + 1, seq + 1 + n))
        if t > 0:
            mse_idx.extend(range(seq + 1, seq + 1 + n))
        lat_pos.extend(position_ids(lat_side // p, lat_side // p, 1, 8).tolist())
        timesteps.extend([t] * n)
        latents.append(torch.randn(c, lat_side, lat_side, generator=g))
        pos.extend([rope] * (n + 2))
        split_lens.append(n + 2)
        modes.append("noise" if t > 0 else "full")
        seq += n + 2
        return rope + 1

    start = seq
    r = text(8, 0)
    r = vit_image(r)
    r = text(6, r, ce=True)
    latent_image(r, 0.7)
    sample_lens.append(seq - start)
    start = seq
    r = text(5, 0)
    r = latent_image(r, 0.0)
    r = text(4, r, ce=True)
    latent_image(r, 0.35)
    sample_lens.append(seq - start)

    def mask(idx):
        m = torch.zeros(seq, dtype=torch.bool)
        m[idx] = True
        return m

    tensors = {
        "packed_text_ids": torch.tensor(text_ids), "packed_text_indexes": torch.tensor(text_idx),
        "packed_position_ids": torch.tensor(pos), "ce_loss_indexes": mask(ce_idx),
        "packed_label_ids": torch.tensor(labels),
        "packed_vit_tokens": torch.randn(len(vit_idx), 3 * 4 * 4, generator=g),
        "packed_vit_token_indexes": torch.tensor(vit_idx),
        "packed_vit_position_ids": position_ids(vit_side, vit_side, 4, 16),
        "vit_token_seqlens": torch.tensor([len(vit_idx)], dtype=torch.int32),
        "packed_latent_position_ids": torch.tensor(lat_pos), "packed_vae_token_indexes": torch.tensor(vae_idx),
        "mse_loss_indexes": mask(mse_idx), "timesteps": torch.tensor(timesteps),
        "noise": torch.randn(len(vae_idx), p * p * c, generator=g),
        "vae_image": torch.rand(2, 3, 32, 48, generator=g) * 2 - 1,  # for the autoencoder
        "image_noise": torch.randn(16, p * p * c, generator=g),  # for the sampler: a 64 x 64 image, 4 x 4 tokens
    }
    tensors |= {f"latent_{i}": z for i, z in enumerate(latents)}
    meta = {"prompt_ids": text_ids[2:9], "bos": 1, "eos": 2, "max_length": 10, "image_size": [64, 64], "steps": 6,
            "sequence_length": seq, "sample_lens": sample_lens, "split_lens": split_lens, "attn_modes": modes,
            "latent_shapes": [[lat_side // p, lat_side // p]] * len(latents), "n_latents": len(latents)}
    return tensors, meta


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(checkpoint folder made by the reference, batch tensors, batch fields, the reference's outputs)."""
    from safetensors.torch import load_file, save_file

    if not (REFERENCE / "modeling" / "bagel").is_dir():
        pytest.skip(f"BAGEL's reference code is not at {REFERENCE}")
    py = _reference_python()
    root = tmp_path_factory.mktemp("bagel")
    tensors, meta = _packed_batch()
    save_file(tensors, str(root / "batch.safetensors"))
    (root / "batch.json").write_text(json.dumps(meta))
    env = {**os.environ, "PYTHONPATH": f"{SHIM}{os.pathsep}{REFERENCE}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(py), str(RUNNER), "make-run", str(root / "ckpt"), str(root / "batch"),
                           str(root / "ref.safetensors")], env=env, capture_output=True, text=True, timeout=600,
                          cwd=root, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "ckpt", tensors, meta, load_file(str(root / "ref.safetensors"))


def _ours(ckpt, tensors, meta):
    import torch

    from model.bagel_load import load_bagel

    model, cfg, _ = load_bagel(ckpt)
    skip = ("noise", "vae_image", "image_noise")
    batch = {k: v for k, v in tensors.items() if not k.startswith("latent_") and k not in skip}
    batch |= {"sequence_length": meta["sequence_length"], "sample_lens": meta["sample_lens"],
              "split_lens": meta["split_lens"], "attn_modes": meta["attn_modes"],
              "patchified_vae_latent_shapes": meta["latent_shapes"],
              "padded_latent": [tensors[f"latent_{i}"] for i in range(meta["n_latents"])]}
    with torch.no_grad():
        return model(batch, noise=tensors["noise"]), cfg


@pytest.mark.timeout(900)
def test_forward_agrees_with_bagel_reference(reference):
    import torch

    ckpt, tensors, meta, ref = reference
    out, cfg = _ours(ckpt, tensors, meta)
    assert cfg.vit is not None and cfg.vit.num_hidden_layers == 2 and cfg.max_latent_size == 8
    assert cfg.latent_channels == 4 and cfg.timestep_shift == 2.0
    for name in ("logits", "velocity", "ce", "mse"):
        assert out[name].shape == ref[name].shape, name
        torch.testing.assert_close(out[name], ref[name], rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
    assert float(ref["ce"].mean()) > 1.0 and float(ref["mse"].mean()) > 0.1  # random weights: real losses


@pytest.mark.timeout(300)
def test_flux_autoencoder_agrees_with_bagel_reference(reference):
    """ae.safetensors in FLUX's layout, through diffusers' AutoencoderKL: the same latents and reconstructions."""
    import torch

    from model.bagel_vae import BagelVAEError, load_bagel_vae

    ckpt, tensors, _, ref = reference
    vae = load_bagel_vae(ckpt / "ae.safetensors")
    assert vae.latent_channels == 4 and vae.downsample == 8
    with torch.no_grad():
        z = vae.encode(tensors["vae_image"])
        x = vae.decode(ref["vae_z"])
    assert z.shape == (2, 4, 4, 6)
    torch.testing.assert_close(z, ref["vae_z"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(x, ref["vae_x"], rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(vae.encode(tensors["vae_image"][0]), z[0])  # one image (3, H, W) as well

    from safetensors.torch import load_file, save_file

    state = load_file(str(ckpt / "ae.safetensors"))
    state.pop("decoder.up.1.block.0.conv1.bias")
    bad = ckpt.parent / "bad_ae.safetensors"
    save_file(state, str(bad))
    with pytest.raises(BagelVAEError, match="is not filled"):
        load_bagel_vae(bad)


@pytest.mark.timeout(120)
def test_greedy_text_agrees_with_bagel_reference(reference):
    """The same tokens as BAGEL's cached greedy decoding after the same text context."""
    from model.bagel_generate import greedy_text
    from model.bagel_load import load_bagel

    ckpt, _, meta, ref = reference
    model, _, _ = load_bagel(ckpt)
    ours = greedy_text(model, meta["prompt_ids"], meta["bos"], meta["eos"], meta["max_length"])
    assert ours == ref["greedy"].tolist() and len(ours) > 1


@pytest.mark.timeout(120)
def test_image_sampler_agrees_with_bagel_reference(reference):
    """BAGEL's sampler settings (shift 3, text CFG 4 inside (0.4, 1], global renorm), a fixed start noise, six
    steps, bfloat16 autocast on both sides as BAGEL runs: the same latent tokens within bfloat16 tolerance."""
    import torch

    from model.bagel_generate import sample_latent_tokens
    from model.bagel_load import load_bagel

    ckpt, tensors, meta, ref = reference
    model, _, _ = load_bagel(ckpt)
    tokens = {"bos": meta["bos"], "eos": meta["eos"], "vision_start": 3, "vision_end": 4}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = sample_latent_tokens(model, meta["prompt_ids"], tensors["image_noise"], 4, 4, tokens, steps=meta["steps"])
    assert ours.shape == ref["image_tokens"].shape
    torch.testing.assert_close(ours.float(), ref["image_tokens"], rtol=0, atol=0.05)
    assert float((ref["image_tokens"] - tensors["image_noise"]).abs().mean()) > 0.1  # it moved from the noise


def test_strict_loading_names_the_first_mismatch(reference, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from model.bagel_load import BagelLoadError, load_bagel

    ckpt = reference[0]
    state = load_file(str(ckpt / "ema.safetensors"))
    for name, change in [("missing", lambda s: s.pop("llm2vae.bias")),
                         ("extra", lambda s: s.__setitem__("language_model.model.layers.9.mlp.up_proj.weight",
                                                           torch.zeros(1))),
                         ("shape", lambda s: s.__setitem__("connector.fc2.bias", torch.zeros(3)))]:
        folder = tmp_path / name
        shutil.copytree(ckpt, folder)
        bad = dict(state)
        change(bad)
        save_file(bad, str(folder / "ema.safetensors"))
        with pytest.raises(BagelLoadError) as e:
            load_bagel(folder)
        msg = str(e.value)
        assert {"missing": "llm2vae.bias is missing", "extra": "layers.9.mlp.up_proj.weight is not part of",
                "shape": "connector.fc2.bias is (3,)"}[name] in msg, msg
    # the SigLIP Conv2d form of the patch embedding loads too
    folder = tmp_path / "conv"
    shutil.copytree(ckpt, folder)
    conv = dict(state)
    w = conv["vit_model.vision_model.embeddings.patch_embedding.weight"]
    conv["vit_model.vision_model.embeddings.patch_embedding.weight"] = w.reshape(w.shape[0], 4, 4, 3).permute(0, 3, 1, 2)
    save_file({k: v.contiguous() for k, v in conv.items()}, str(folder / "ema.safetensors"))
    model, _, _ = load_bagel(folder)
    assert torch.equal(model.vit_model.vision_model.embeddings.patch_embedding.weight, w)
    (folder / "ema.safetensors").unlink()
    with pytest.raises(BagelLoadError, match="holds no weights"):
        load_bagel(folder)


def _tokenizer(folder: Path) -> None:
    """A small word-level tokenizer.json with BAGEL's special tokens (the real one is Qwen2's BPE)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from model.bagel_pack import SPECIAL

    words = ["[UNK]", *sorted({w for c in ("the ball moves left", "0 1 2 3 a b c") for w in c.split()})]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(list(SPECIAL))
    tok.save(str(folder / "tokenizer.json"))


@pytest.mark.timeout(300)
def test_braid_score_with_a_bagel_checkpoint(reference, tmp_path, capsys):
    """``braid score --checkpoint`` takes a BAGEL folder: every sample scored, text and images, deterministic."""
    import shutil

    import pyarrow.parquet as pq
    from samples import make_sample

    from pipelines.commands.cli import main
    from schemas import ImageSegment, ShardWriter

    folder = tmp_path / "bagel"
    shutil.copytree(reference[0], folder)
    _tokenizer(folder)
    with ShardWriter(tmp_path / "shards") as w:
        for i in range(3):
            w.write(make_sample(f"s-{i}", n_images=3))
    with ShardWriter(tmp_path / "broken") as w:  # a truncated JPEG: the sample is written, its image does not decode
        s = make_sample("bad", n_images=3)
        at = next(i for i, seg in enumerate(s.segments) if isinstance(seg, ImageSegment))
        segs = [*s.segments[:at], dataclasses.replace(s.segments[at], data=s.segments[at].data[:60]),
                *s.segments[at + 1:]]
        w.write(dataclasses.replace(s, segments=segs))
        w.write(make_sample("after-bad", n_images=3))
    rows = []
    for run in ("a", "b"):
        out = tmp_path / f"{run}.parquet"
        assert main(["score", str(tmp_path / "shards"), "--checkpoint", str(folder), "--out", str(out),
                     "--device", "cpu", "--timesteps", "0.5"]) == 0
        rows.append(pq.read_table(out).to_pylist())
    assert rows[0] == rows[1]
    one = pq.read_table(tmp_path / "a.parquet").to_pylist()
    assert main(["score", str(tmp_path / "shards"), "--checkpoint", str(folder), "--out", str(tmp_path / "one.parquet"),
                 "--device", "cpu", "--timesteps", "0.5", "--batch-size", "1"]) == 0
    for r1, rb in zip(pq.read_table(tmp_path / "one.parquet").to_pylist(), one):  # alone = packed with others
        assert r1["key"] == rb["key"] and r1["score"] == pytest.approx(rb["score"], rel=1e-5)
        assert r1["text_ce"] == pytest.approx(rb["text_ce"], rel=1e-5)
    for r in rows[0]:
        assert r["status"] == "scored", r["note"]
        assert len(r["text_ce"]) == 2 and len(r["image_mse"]) == 2 and r["score"] > 0
        assert r["n_image_tokens"] > 0 and r["n_tokens"] > r["n_text_tokens"] + r["n_image_tokens"]
    assert main(["score", str(tmp_path / "broken"), "--checkpoint", str(folder), "--out",
                 str(tmp_path / "broken.parquet"), "--device", "cpu", "--timesteps", "0.5"]) == 0
    by_key = {r["key"]: r for r in pq.read_table(tmp_path / "broken.parquet").to_pylist()}
    assert by_key.keys() == {"bad", "after-bad"}
    assert by_key["bad"]["status"] == "unscored" and "does not load" in by_key["bad"]["note"], by_key["bad"]
    assert by_key["after-bad"]["status"] == "scored"
    capsys.readouterr()
    for gone, msg in [("tokenizer.json", "tokenizer.json is missing"), ("llm_config.json", "llm_config.json is missing")]:
        (folder / gone).unlink()
        assert main(["score", str(tmp_path / "shards"), "--checkpoint", str(folder), "--out",
                     str(tmp_path / "c.parquet")]) == 2
        assert msg in capsys.readouterr().err


def test_image_transform_follows_bagels_resize_rule():
    """BAGEL's released transforms: ViT 980/224/stride 14, autoencoder 1024/512/stride 16."""
    import io

    from PIL import Image

    from model.bagel_pack import ImageTransform

    vit, vae = ImageTransform(980, 224, 14), ImageTransform(1024, 512, 16)
    assert vit.size(640, 480) == (644, 476)  # within bounds: each side rounded to the stride
    assert vae.size(640, 480) == (688, 512)  # short side raised to 512
    assert vit.size(4000, 1000) == (980, 252)  # long side capped
    assert vit.size(3000, 3000) == (980, 980)
    buf = io.BytesIO()
    Image.new("RGB", (640, 480), (255, 0, 0)).save(buf, "PNG")
    x = vit(buf.getvalue())
    assert tuple(x.shape) == (3, 476, 644) and float(x[0].min()) == 1.0 and float(x[1].max()) == -1.0
