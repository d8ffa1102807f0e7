"""The frozen latent interface for generation images.

``encode`` maps images (3, H, W) in [-1, 1] to latents (C, H/f, W/f); ``decode`` maps back. The default,
``pixel``, needs no weights: it folds each f x f pixel block into channels (pixel-unshuffle), so latents
are the image itself at the chosen resolution, losslessly. A learned VAE (FLUX's: 16 channels, f = 8,
scale 0.3611, shift 0.1159) fits the same interface; its loader is the one place to add.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from schemas.config import ConfigError


class AutoencoderError(ConfigError):
    """The autoencoder configuration cannot be used; one sentence."""


@dataclass(frozen=True)
class AutoencoderConfig:
    kind: str = "pixel"  # "pixel" (no weights) or "vae" (a learned autoencoder loaded from ``weights``)
    downsample: int = 8  # pixels per latent cell along each side (f)
    channels: int = 0  # latent channels; 0 = derived (pixel: 3 * f * f)
    scale: float = 1.0  # latents are (z - shift) * scale, as FLUX's VAE is used
    shift: float = 0.0
    weights: str = ""  # safetensors file of a learned VAE

    @property
    def latent_channels(self) -> int:
        return self.channels or (3 * self.downsample**2 if self.kind == "pixel" else 16)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> AutoencoderConfig:
        data = json.loads(Path(path).read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        if set(data) - known:
            raise AutoencoderError(f"{path}: unknown autoencoder fields {sorted(set(data) - known)}")
        return cls(**data)


class PixelAutoencoder:
    """Latents = pixel-unshuffled images; exact inverse, nothing to train."""

    def __init__(self, cfg: AutoencoderConfig):
        if cfg.latent_channels != 3 * cfg.downsample**2:
            raise AutoencoderError(f"a pixel autoencoder with downsample {cfg.downsample} has "
                                   f"{3 * cfg.downsample**2} channels, not {cfg.channels}")
        self.cfg = cfg

    def encode(self, image):  # (3, H, W) or (N, 3, H, W) in [-1, 1] -> (.., 3*f*f, H/f, W/f)
        import torch.nn.functional as F

        return (F.pixel_unshuffle(image, self.cfg.downsample) - self.cfg.shift) * self.cfg.scale

    def decode(self, z):  # inverse of encode
        import torch.nn.functional as F

        return F.pixel_shuffle(z / self.cfg.scale + self.cfg.shift, self.cfg.downsample)


def build_autoencoder(cfg: AutoencoderConfig):
    if cfg.kind == "pixel":
        return PixelAutoencoder(cfg)
    if cfg.kind == "vae":
        raise AutoencoderError("a learned VAE needs its loader (kind 'vae' is reserved for FLUX-style weights); "
                               "use kind 'pixel'")
    raise AutoencoderError(f"unknown autoencoder kind {cfg.kind!r}; expected 'pixel' or 'vae'")
