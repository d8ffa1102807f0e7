"""Load a BAGEL checkpoint folder: ``llm_config.json``, ``vit_config.json``, ``config.json`` (optional fields),
``ema.safetensors`` or ``model.safetensors``; strictly: every tensor the configuration makes must be in the
file with its shape, and nothing else. A mismatch is a BagelLoadError naming the first one.

Memory: the model is built on the meta device and each tensor is read from the memory-mapped safetensors
file straight to the target device and dtype (``load_state_dict(assign=True)``), so a 7B-shaped model needs
its weights' memory once. The latent side's shapes (patch size, latent channels, table sizes) are read from
``config.json`` when it holds them, else from the weights' shapes (BAGEL's released ``config.json`` does not).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from model.bagel_lm import BagelLMConfig
from model.bagel_model import BagelConfig, BagelModel
from model.bagel_vit import BagelViTConfig, conv_patch_weight
from model.checkpoint import WEIGHT_FILES, find_weights

PATCH_KEY = "vit_model.vision_model.embeddings.patch_embedding.weight"


class BagelLoadError(ValueError):
    """A BAGEL checkpoint folder cannot be used; one sentence."""


def is_bagel_folder(path: str | Path) -> bool:
    """A folder in BAGEL's layout (as opposed to a ``braid train`` run folder, which has autoencoder.json)."""
    p = Path(path)
    marks = ("llm_config.json", "vit_config.json", "ae.safetensors")
    return any((p / m).is_file() for m in marks) and not (p / "autoencoder.json").exists()


def _json(path: Path, required: bool = True) -> dict:
    if not path.is_file():
        if required:
            raise BagelLoadError(f"{path.parent} is not a BAGEL checkpoint folder: {path.name} is missing")
        return {}
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BagelLoadError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise BagelLoadError(f"{path}: expected a JSON object")
    return doc


def weights_file(folder: Path, weights: str = "auto") -> Path:
    path = find_weights(folder, weights)
    if path is None:
        raise BagelLoadError(f"{folder} holds no weights ({' or '.join(WEIGHT_FILES[weights])})")
    return path


def read_config(folder: str | Path, shapes: dict[str, tuple]) -> BagelConfig:
    """The model configuration of a BAGEL folder, given the weights' shapes by name."""
    folder = Path(folder)
    llm = BagelLMConfig.from_json(_json(folder / "llm_config.json"))
    top = _json(folder / "config.json", required=False)
    vit = None
    if top.get("visual_und", True) and (folder / "vit_config.json").is_file():
        vit = BagelViTConfig.from_json(_json(folder / "vit_config.json"))
    kw: dict = {}
    for name in ("latent_patch_size", "max_latent_size", "vit_max_num_patch_per_side", "timestep_shift"):
        if name in top:
            kw[name] = top[name]
    if "latent_pos_embed.pos_embed" in shapes and "max_latent_size" not in kw:
        kw["max_latent_size"] = math.isqrt(shapes["latent_pos_embed.pos_embed"][0])
    if "vit_pos_embed.pos_embed" in shapes and "vit_max_num_patch_per_side" not in kw:
        kw["vit_max_num_patch_per_side"] = math.isqrt(shapes["vit_pos_embed.pos_embed"][0])
    if not top.get("visual_gen", True):
        kw["latent_channels"] = 0
    elif "vae2llm.weight" in shapes:
        p = kw.get("latent_patch_size", BagelConfig.latent_patch_size)
        kw["latent_channels"] = shapes["vae2llm.weight"][1] // (p * p)
    return BagelConfig(llm=llm, vit=vit, **kw)


def load_bagel(folder: str | Path, device: str = "cpu", dtype=None, weights: str = "auto"):
    """(BagelModel in eval mode, its BagelConfig, the weights file's name); BagelLoadError on any mismatch."""
    import torch
    from safetensors import safe_open

    folder = Path(folder)
    if not folder.is_dir():
        raise BagelLoadError(f"checkpoint folder {folder} does not exist")
    path = weights_file(folder, weights)
    try:
        handle = safe_open(str(path), framework="pt", device="cpu")
        names = list(handle.keys())
        shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in names}
    except Exception as e:  # noqa: BLE001 - a file boundary; safetensors raises its own error types
        raise BagelLoadError(f"{path}: not a readable safetensors file ({e})") from None
    cfg = read_config(folder, shapes)
    with torch.device("meta"):
        model = BagelModel(cfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(shapes))
    extra = sorted(set(shapes) - set(expected))
    if missing or extra:
        first = f"{missing[0]} is missing" if missing else f"{extra[0]} is not part of the model"
        raise BagelLoadError(f"{path} does not match the configuration in {folder}: {first} "
                             f"({len(missing)} missing, {len(extra)} unexpected tensors)")
    dtype = dtype or torch.float32
    state = {}
    for k in names:
        t = handle.get_tensor(k)
        if k == PATCH_KEY and t.dim() == 4:  # the SigLIP Conv2d form of the patch embedding
            t = conv_patch_weight(t)
        if tuple(t.shape) != expected[k]:
            raise BagelLoadError(f"{path} does not match the configuration in {folder}: {k} is {tuple(t.shape)}, "
                                 f"the configuration makes it {expected[k]}")
        state[k] = t.to(device=device, dtype=dtype)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval().requires_grad_(False), cfg, path.name
