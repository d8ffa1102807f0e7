"""Load a ``braid train`` run folder for inference: ``config.json`` (model, data and autoencoder sections),
``tokenizer/``, ``autoencoder.json`` and the safetensors weights, checked against each other, into a Bundle.
Every mismatch is an InferError naming the file and what is missing or does not match.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from model.autoencoder import AutoencoderConfig, AutoencoderError, build_autoencoder
from model.data import DataConfig, TextTokenizer
from model.mot import MoT, MoTConfig
from schemas.config import ConfigError


class InferError(ConfigError):
    """A run folder or an inference request cannot be used; one sentence."""


@dataclass
class Bundle:
    """A loaded run: model (eval mode), tokenizer, autoencoder and the run's configs."""

    model: object
    tok: TextTokenizer
    ae: object
    mcfg: MoTConfig
    dcfg: DataConfig
    device: object
    dtype: object
    run_dir: Path | None = None
    weights: str = ""
    loss_weights: tuple[float, float] = (0.25, 1.0)  # CE : MSE of the run's train config


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise InferError(f"{path.parent} is not a complete run folder: {what} ({path.name}) is missing")
    return path


def _section(cls, doc: dict, name: str, where: Path):
    known = {f.name for f in dataclasses.fields(cls)}
    data = doc.get(name)
    if not isinstance(data, dict):
        raise InferError(f"{where}: no '{name}' section")
    unknown = set(data) - known
    if unknown:
        raise InferError(f"{where}: '{name}' has fields this version does not know: {', '.join(sorted(unknown))}")
    try:
        return cls(**data)
    except TypeError as e:
        raise InferError(f"{where}: '{name}' section is malformed ({e})") from None


def load_run(run_dir: str | Path, device: str | None = None, weights: str = "auto", dtype=None) -> Bundle:
    """Load ``config.json``, ``tokenizer/``, ``autoencoder.json`` and the safetensors weights of a run.

    ``weights``: "auto" (``ema.safetensors`` when present, else ``model.safetensors``), "ema" or "model".
    Raises InferError naming the file and what is missing or does not match."""
    import torch

    from model.checkpoint import WEIGHT_FILES, find_weights, load_tensors

    run = Path(run_dir)
    if not run.is_dir():
        raise InferError(f"run folder {run} does not exist")
    cfg_path = _need(run / "config.json", "the model configuration")
    try:
        doc = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InferError(f"{cfg_path}: not valid JSON ({e})") from None
    model_doc = doc.get("model")
    legacy = {}
    if isinstance(model_doc, dict):  # run folders written when the loss weights sat in the model section
        model_doc = dict(model_doc)
        legacy = {k: model_doc.pop(k) for k in ("ce_weight", "mse_weight") if k in model_doc}
    train = doc.get("train") if isinstance(doc.get("train"), dict) else {}
    try:
        loss_weights = (float(train.get("ce_weight", legacy.get("ce_weight", 0.25))),
                        float(train.get("mse_weight", legacy.get("mse_weight", 1.0))))
    except (TypeError, ValueError):
        raise InferError(f"{cfg_path}: the loss weights are not numbers") from None
    mcfg = _section(MoTConfig, {**doc, "model": model_doc}, "model", cfg_path)
    dcfg = _section(DataConfig, doc, "data", cfg_path) if "data" in doc else DataConfig()
    ae_cfg = _section(AutoencoderConfig, doc, "autoencoder", cfg_path) if "autoencoder" in doc else None
    ae_path = _need(run / "autoencoder.json", "the autoencoder settings")
    try:
        ae_file = AutoencoderConfig.load(ae_path)
        ae = build_autoencoder(ae_file)
    except (AutoencoderError, json.JSONDecodeError, TypeError) as e:
        raise InferError(f"{ae_path}: {e}") from None
    if ae_cfg is not None and ae_cfg != ae_file:
        raise InferError(f"{ae_path} does not match the autoencoder section of {cfg_path}")
    if ae_file.latent_channels != mcfg.latent_channels or ae_file.downsample != mcfg.latent_downsample:
        raise InferError(f"{ae_path}: the autoencoder gives {ae_file.latent_channels} channels at downsample "
                         f"{ae_file.downsample}, the model expects {mcfg.latent_channels} at {mcfg.latent_downsample}")
    _need(run / "tokenizer" / "tokenizer.json", "the tokenizer")
    try:
        tok = TextTokenizer.load(run / "tokenizer")
    except Exception as e:  # noqa: BLE001 - a file boundary; the tokenizers library raises bare Exception
        raise InferError(f"{run / 'tokenizer'}: the tokenizer does not load ({e})") from None
    if tok.vocab_size > mcfg.vocab_size:
        raise InferError(f"{run / 'tokenizer'} has {tok.vocab_size} tokens but the model's vocabulary is "
                         f"{mcfg.vocab_size}: tokenizer and config are from different runs")

    if weights not in WEIGHT_FILES:
        raise InferError("weights must be auto, ema or model")
    found = find_weights(run, weights)
    if found is None:
        raise InferError(f"{run} holds no weights ({' or '.join(WEIGHT_FILES[weights])})")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        state = load_tensors(found)
    except Exception as e:  # noqa: BLE001 - a file boundary; safetensors raises its own error types
        raise InferError(f"{found}: not a readable safetensors file ({e})") from None
    model = MoT(mcfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        what = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise InferError(f"{found} does not match config.json: {what} "
                         f"({len(missing)} missing, {len(extra)} unexpected tensors)")
    for k, v in state.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise InferError(f"{found} does not match config.json: {k} is {tuple(v.shape)}, "
                             f"the config makes it {tuple(expected[k].shape)}")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    if dtype is None:
        dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    model = model.to(device=dev, dtype=dtype).eval().requires_grad_(False)  # inference: no autograd graphs
    return Bundle(model, tok, ae, mcfg, dcfg, dev, dtype, run, found.name, loss_weights)
