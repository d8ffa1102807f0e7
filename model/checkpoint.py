"""Run-folder files: weights, optimizer state and trainer state in safetensors/JSON, written by rename."""

from __future__ import annotations

import json
import os
from pathlib import Path

# which weights file a checkpoint folder's ``--weights`` choice reads, in order of preference
WEIGHT_FILES = {"auto": ("ema.safetensors", "model.safetensors"), "ema": ("ema.safetensors",),
                "model": ("model.safetensors",)}


def find_weights(folder: Path, weights: str = "auto") -> Path | None:
    """The weights file ``weights`` picks in a run or BAGEL checkpoint folder ("auto": the EMA weights when there
    are some), or None when the folder holds none of them."""
    return next((folder / n for n in WEIGHT_FILES[weights] if (folder / n).is_file()), None)


def write_json(path: Path, doc) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)


def save_tensors(path: Path, tensors: dict, meta: dict | None = None) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=meta)
    os.replace(tmp, path)


def load_tensors(path: Path, device="cpu") -> dict:
    from safetensors.torch import load_file

    return load_file(str(path), device=str(device))


def optimizer_tensors(opt) -> tuple[dict, list]:
    """AdamW state as flat safetensors entries ``<param index>.<name>`` plus the JSON-able param groups."""
    sd = opt.state_dict()
    flat = {f"{i}.{name}": t for i, st in sd["state"].items() for name, t in st.items()}
    return flat, sd["param_groups"]


def restore_optimizer(opt, flat: dict, groups: list) -> None:
    state: dict = {}
    for key, t in flat.items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = t
    opt.load_state_dict({"state": state, "param_groups": groups})
