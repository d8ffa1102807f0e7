"""``braid spotcheck --checkpoint BAGEL_DIR``: a tiny BAGEL folder with random weights made by BAGEL's own code in
its checkpoint layout, video-like and web-like shards; the report scores the drawn samples, shows BAGEL's caption
of every image and its regeneration of every image that follows text; a caption is the one a full-recompute greedy
loop through the packed forward (``BagelModel.forward``, checked against BAGEL's code) gives for the same layout."""

from __future__ import annotations

import base64
import html as htmllib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "model"))  # the agreement tests' reference runner
from test_bagel_agree import REFERENCE, RUNNER, SHIM, _reference_python

from pipelines.commands.cli import main

RUNNER_SPOT = Path(__file__).with_name("bagel_spot_runner.py")

WORDS = ["Describe", "this", "image", "in", "one", "sentence", ".", "the", "ball", "moves", "left", "0", "1", "2", "a",
         "red", "square", "on", "grey", "page"]


def _tokenizer(folder: Path, vocab: int) -> None:
    """A word-level tokenizer.json filling the model's vocabulary (so every id decodes), with BAGEL's specials."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from model.bagel_pack import SPECIAL

    words = ["[UNK]", *dict.fromkeys(WORDS)]
    words += [f"w{i}" for i in range(vocab - len(SPECIAL) - len(words))]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(list(SPECIAL))
    tok.save(str(folder / "tokenizer.json"))


@pytest.fixture(scope="module")
def bagel_dir(tmp_path_factory) -> Path:
    """A tiny BAGEL checkpoint folder written by BAGEL's reference code (random weights, BAGEL's layout)."""
    if not (REFERENCE / "modeling" / "bagel").is_dir():
        pytest.skip(f"BAGEL's reference code is not at {REFERENCE}")
    py = _reference_python()
    folder = tmp_path_factory.mktemp("bagel") / "ckpt"
    env = {**os.environ, "PYTHONPATH": f"{SHIM}{os.pathsep}{REFERENCE}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(py), str(RUNNER), "make", str(folder)], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _tokenizer(folder, 320)
    return folder


def _web_sample():
    from samples import jpeg_bytes

    from schemas import CaptionerInfo, ImageSegment, Sample, Source, TextSegment

    segs = (TextSegment("a page on a red square", role="caption", loss=True),
            ImageSegment(jpeg_bytes((200, 30, 30)), "jpg", 64, 48, understanding=True, generation=False, role="image"),
            TextSegment("the red square on grey", role="body", loss=True))
    return Sample("w-000", "web", segs, Source("https://example.org/page"), CaptionerInfo("stub", "stub", ()))


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """Two video-like samples (frame, change caption, target frame, change caption, target frame) and one web-like
    sample (text, an understanding-only image, text)."""
    from samples import make_sample

    from schemas import ShardWriter

    out = tmp_path_factory.mktemp("shards")
    with ShardWriter(out) as w:
        for i in range(2):
            w.write(make_sample(f"s-{i}", n_images=3))
        w.write(_web_sample())
    return out


def _bundle(folder: Path):
    from model.bagel_score import load_bagel_bundle

    return load_bagel_bundle(folder, "cpu")


def _forward_greedy(bundle, image: bytes, prompt: str, max_length: int) -> list[int]:
    """Greedy tokens after the caption context, each step recomputing the whole packed sequence through
    ``BagelModel.forward``: the image's ViT split at position 0, ``<|im_start|> prompt <|im_end|>`` from position 1,
    then the generated tokens from ``<|im_start|>`` on, as a causal split."""
    import torch

    from model.bagel_spot import caption_pixels
    from model.bagel_vit import patchify, position_ids

    cfg, tok = bundle.cfg, bundle.tok
    pixels = caption_pixels(bundle, image)
    patches = patchify(pixels, cfg.vit.patch_size)
    n = patches.shape[0]
    text = [tok.bos, *tok.encode(prompt), tok.eos]
    out, cur = [], tok.bos
    for _ in range(max_length):
        out.append(cur)
        length = n + 2 + len(text) + len(out)
        ce = torch.zeros(length, dtype=torch.bool)
        ce[-1] = True
        batch = {"sequence_length": length, "sample_lens": [length], "split_lens": [n + 2, len(text), len(out)],
                 "attn_modes": ["full", "causal", "causal"],
                 "packed_text_ids": torch.tensor([tok.vision_start, tok.vision_end, *text, *out]),
                 "packed_text_indexes": torch.tensor([0, n + 1, *range(n + 2, length)]),
                 "packed_position_ids": torch.tensor([0] * (n + 2) + list(range(1, 1 + len(text) + len(out)))),
                 "ce_loss_indexes": ce, "packed_label_ids": torch.tensor([0]),
                 "packed_vit_tokens": patches, "packed_vit_token_indexes": torch.arange(1, n + 1),
                 "packed_vit_position_ids": position_ids(pixels.shape[1], pixels.shape[2], cfg.vit.patch_size,
                                                         cfg.vit_max_num_patch_per_side),
                 "vit_token_seqlens": torch.tensor([n], dtype=torch.int32)}
        with torch.no_grad():
            cur = int(bundle.model(batch)["logits"][-1].argmax())
        if cur == tok.eos:
            break
    return out


def _recompute_after(bundle, embeds, positions, mask, next_pos: int, max_length: int):
    """(tokens, logits of each step): greedy decoding after a prefilled context, each step recomputing the whole
    sequence through the language model (the generated tokens a causal split after the context)."""
    import torch

    from model.bagel_lm import sample_mask

    lm, tok = bundle.model.language_model, bundle.tok
    out, logits, cur = [], [], tok.bos
    for _ in range(max_length):
        out.append(cur)
        x = torch.cat([embeds, lm.model.embed_tokens(torch.tensor(out))])
        pos = torch.cat([positions, torch.arange(next_pos, next_pos + len(out))])
        full = sample_mask([len(x)], ["causal"])
        full[: len(embeds), : len(embeds)] = mask
        with torch.no_grad():
            h = lm(x, pos, torch.zeros(len(x), dtype=torch.bool), [len(x)], [full])
            logits.append(lm.lm_head(h[-1]).float())
        cur = int(logits[-1].argmax())
        if cur == tok.eos:
            break
    return out, torch.stack(logits)


@pytest.mark.timeout(300)
def test_caption_agrees_with_bagels_inferencer(bagel_dir, tmp_path):
    """BAGEL's own InterleaveInferencer (understanding mode, greedy) on an image's ViT input and the caption prompt:
    the context ``model.bagel_spot`` builds, decoded by a full-recompute loop, gives the same logits at every step
    and the same tokens (so embeddings, rotary positions, splits and attention modes are BAGEL's); the packed-forward
    loop gives those tokens too; ``caption_image`` gives BAGEL's answer text."""
    import torch
    from safetensors.torch import load_file, save_file
    from samples import jpeg_bytes

    from model.bagel_spot import CAPTION_PROMPT, answer_text, caption_context, caption_image, caption_pixels

    bundle = _bundle(bagel_dir)
    image = jpeg_bytes((200, 30, 30))
    save_file({"pixels": caption_pixels(bundle, image).contiguous()}, str(tmp_path / "pixels.safetensors"))
    env = {**os.environ, "PYTHONPATH": f"{SHIM}{os.pathsep}{REFERENCE}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(_reference_python()), str(RUNNER_SPOT), "caption", str(bagel_dir),
                           str(tmp_path / "pixels.safetensors"), CAPTION_PROMPT, "9", str(tmp_path / "ref.safetensors")],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref_text = json.loads(proc.stdout.strip().splitlines()[-1]).strip()
    ref_logits = load_file(str(tmp_path / "ref.safetensors"))["logits"]

    embeds, positions, mask, next_pos = caption_context(bundle, image, CAPTION_PROMPT)
    n_text = len(bundle.tok.encode(CAPTION_PROMPT)) + 2
    assert next_pos == 1 + n_text and positions[-n_text:].tolist() == list(range(1, next_pos))
    tokens, logits = _recompute_after(bundle, embeds, positions, mask, next_pos, 9)
    assert logits.shape == ref_logits.shape and len(tokens) > 1
    # BAGEL's cached attention rounds queries, keys and values to bfloat16: logits agree to that rounding
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=5e-3)
    assert answer_text(bundle.tok, tokens) == ref_text
    assert _forward_greedy(bundle, image, CAPTION_PROMPT, 9) == tokens
    assert caption_image(bundle, image, CAPTION_PROMPT, max_tokens=8) == ref_text


@pytest.mark.timeout(300)
def test_regeneration_agrees_with_bagels_inferencer(bagel_dir, tmp_path):
    """BAGEL's own InterleaveInferencer drawing an image after the same text (``gen_image`` with BAGEL's text-to-image
    settings, its autoencoder's decode, the same start noise; both under bfloat16 autocast, as BAGEL runs) gives the
    image ``regenerate_image`` gives, at the size BAGEL's geometry fits the sample's 64 x 48 image to; another text
    gives another image."""
    import numpy as np
    import torch
    from PIL import Image
    from safetensors.torch import load_file, save_file

    from model.bagel_spot import generation_size, regenerate_image, start_noise

    bundle = _bundle(bagel_dir)
    text, seed, steps = "the ball moves left 0", 5, 4
    w, h = generation_size(bundle, 64, 48)
    assert (w, h) == (80, 64)
    save_file({"noise": start_noise(bundle, w, h, seed)}, str(tmp_path / "noise.safetensors"))
    env = {**os.environ, "PYTHONPATH": f"{SHIM}{os.pathsep}{REFERENCE}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(_reference_python()), str(RUNNER_SPOT), "t2i", str(bagel_dir),
                           str(tmp_path / "noise.safetensors"), text, str(h), str(w), str(steps),
                           str(tmp_path / "ref.safetensors")], env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref = load_file(str(tmp_path / "ref.safetensors"))["image"].numpy().astype(np.int32)
    with torch.autocast("cpu", dtype=torch.bfloat16), Image.open(
            io.BytesIO(regenerate_image(bundle, text, 64, 48, steps, seed))) as im:
        ours = np.asarray(im.convert("RGB"), dtype=np.int32)
    assert ours.shape == ref.shape == (h, w, 3)
    diff = np.abs(ours - ref)
    print(f"regeneration vs BAGEL's: max {diff.max()}, mean {diff.mean():.3f} levels; image std {ref.std():.1f}")
    assert ref.std() > 5  # a picture, not a flat field
    assert diff.max() <= 12 and diff.mean() < 2, (diff.max(), diff.mean())  # bfloat16 rounding on both sides
    with torch.autocast("cpu", dtype=torch.bfloat16), Image.open(
            io.BytesIO(regenerate_image(bundle, "a red square on grey", 64, 48, steps, seed))) as im:
        other = np.abs(np.asarray(im.convert("RGB"), dtype=np.int32) - ours).mean()
    print(f"another text: mean {other:.2f} levels apart")
    assert other > 5


def _data_uri_size(uri: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as im:
        return im.size


@pytest.mark.timeout(600)
def test_spotcheck_with_a_bagel_checkpoint(bagel_dir, shards, tmp_path, capsys):
    """Scores as ``braid score`` computes them, a caption per image, a regeneration per image after text, at
    BAGEL's generation size for the image."""
    from model.bagel_score import score_samples_bagel
    from model.bagel_spot import answer_text, count_tokens, generation_size
    from schemas import read_samples

    out = tmp_path / "report.html"
    assert main(["spotcheck", str(shards), "--checkpoint", str(bagel_dir), "--n", "3", "--out", str(out),
                 "--steps", "3", "--caption-tokens", "6", "--device", "cpu", "--thumb", "256"]) == 0
    page = out.read_text()
    assert page.count('<section class="sample"') == 3
    assert "Describe this image in one sentence." in htmllib.unescape(page)  # the prompt is named
    samples = sorted((s for p in sorted(shards.glob("*.tar")) for s in read_samples(p)), key=lambda s: s.key)
    bundle = _bundle(bagel_dir)
    for sample, sc in zip(samples, score_samples_bagel(bundle, samples)):
        assert sc.score is not None, sc.note
        assert f"score {sc.score:.3f}" in page
        assert count_tokens(bundle, sample) == sc.n_tokens  # the structure table's counts are BAGEL's packed lengths
    assert "tokens / sample (exact, median)" in page
    assert page.count("CE/token") == 6 and page.count("velocity MSE") == 4
    assert page.count("BAGEL caption:") == 7  # every image
    regens = re.findall(r'<img src="(data:[^"]+)" alt="regenerated image (\d+)"', page)
    assert len(regens) == 5  # every image after some text: two targets per video sample, the web image
    for uri, _ in regens:
        assert _data_uri_size(uri) == generation_size(bundle, 64, 48) == (80, 64)
    # the first caption shown is the one a full recompute gives for that image
    first = samples[0]
    caption = re.search(r"<b>BAGEL caption:</b> (.*?)</div>", page[page.index(f'id="{first.key}"'):])[1]
    tokens = _forward_greedy(bundle, first.segments[0].data, "Describe this image in one sentence.", 7)
    assert htmllib.unescape(caption) == answer_text(bundle.tok, tokens)
    assert "scored with" in capsys.readouterr().out


@pytest.mark.timeout(120)
def test_bad_bagel_folder_is_one_clear_line(bagel_dir, shards, tmp_path, capsys):
    import shutil

    folder = tmp_path / "bad"
    shutil.copytree(bagel_dir, folder)
    (folder / "ema.safetensors").unlink()
    out = tmp_path / "r.html"
    assert main(["spotcheck", str(shards), "--checkpoint", str(folder), "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--checkpoint:" in err and "holds no weights" in err, err
    assert not out.exists()
    assert main(["spotcheck", str(shards), "--checkpoint", str(bagel_dir), "--out", str(out), "--steps", "1"]) == 2
    assert "--steps must be at least 2 with a BAGEL checkpoint" in capsys.readouterr().err


def test_braid_infer_with_a_bagel_checkpoint(bagel_dir, tmp_path, capsys):
    """``braid infer --checkpoint BAGEL_DIR``: the answer about an image is BAGEL's caption of it (the flow checked
    against BAGEL's inferencer above), a text prompt alone gets BAGEL's greedy answer, an image output is the image
    BAGEL's text-to-image recipe draws at the asked size; what a BAGEL folder cannot do here is one clear line."""
    from PIL import Image

    from model.bagel_spot import caption_image, regenerate_image

    bundle = _bundle(bagel_dir)
    img = tmp_path / "in.png"
    Image.radial_gradient("L").convert("RGB").resize((64, 48)).save(img)
    prompt = "Describe this image in one sentence."
    assert main(["infer", "--checkpoint", str(bagel_dir), "--image", str(img), "--prompt", prompt,
                 "--out", str(tmp_path / "a.txt"), "--max-tokens", "6", "--device", "cpu"]) == 0
    answer = (tmp_path / "a.txt").read_text().strip()
    assert answer == caption_image(bundle, img.read_bytes(), prompt, 6).strip() and answer
    assert main(["infer", "--checkpoint", str(bagel_dir), "--prompt", "the ball moves left",
                 "--out", str(tmp_path / "b.txt"), "--max-tokens", "6", "--device", "cpu"]) == 0
    assert (tmp_path / "b.txt").read_text().strip()
    out = tmp_path / "c.png"
    assert main(["infer", "--checkpoint", str(bagel_dir), "--prompt", "a red square on grey", "--out", str(out),
                 "--size", "64x48", "--steps", "3", "--seed", "2", "--device", "cpu"]) == 0
    assert out.read_bytes() == regenerate_image(bundle, "a red square on grey", 64, 48, 3, 2)
    with Image.open(out) as im:
        assert im.size == (80, 64)  # fitted to BAGEL's geometry, as spotcheck's regenerations
    capsys.readouterr()
    assert main(["infer", "--checkpoint", str(bagel_dir), "--prompt", "x", "--think", "--out",
                 str(tmp_path / "d.png"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--think needs a braid train run folder" in err, err
