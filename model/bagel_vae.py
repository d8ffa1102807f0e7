"""BAGEL's autoencoder: the FLUX VAE of ``ae.safetensors``, run by diffusers' ``AutoencoderKL``.

The file is in FLUX's own (LDM-style) key layout; diffusers' LDM-to-diffusers converter maps it, and the
mapping is checked both ways: every tensor of the file must land on exactly one tensor of the diffusers model
and every tensor of the model must be filled (strict). The architecture (base width, width multipliers,
residual blocks per level, latent channels) is read from the file's shapes. Latents follow FLUX and BAGEL:
``scale * (mean - shift)`` with FLUX's scale 0.3611 and shift 0.1159; encoding takes the posterior mean, so a
score never depends on a random draw (BAGEL's training samples the posterior).
"""

from __future__ import annotations

import re
from pathlib import Path

FLUX_SCALE, FLUX_SHIFT = 0.3611, 0.1159


class BagelVAEError(ValueError):
    """An ``ae.safetensors`` cannot be used; one sentence."""


def flux_architecture(shapes: dict[str, tuple], where: str = "ae.safetensors") -> dict:
    """diffusers ``AutoencoderKL`` keyword arguments for a FLUX-layout VAE with these tensor shapes."""
    try:
        z = shapes["encoder.conv_out.weight"][0] // 2
    except KeyError as e:
        raise BagelVAEError(f"{where} is not a FLUX autoencoder: {e.args[0]} is missing") from None
    levels = sorted({int(m[1]) for k in shapes if (m := re.match(r"encoder\.down\.(\d+)\.", k))})
    blocks = sorted({int(m[1]) for k in shapes if (m := re.match(r"encoder\.down\.0\.block\.(\d+)\.", k))})
    if not levels or not blocks:
        raise BagelVAEError(f"{where} is not a FLUX autoencoder: it has no encoder.down blocks")
    widths = tuple(shapes[f"encoder.down.{i}.block.0.conv2.weight"][0] for i in levels)
    return {"in_channels": 3, "out_channels": 3, "down_block_types": ("DownEncoderBlock2D",) * len(levels),
            "up_block_types": ("UpDecoderBlock2D",) * len(levels), "block_out_channels": widths,
            "layers_per_block": len(blocks), "latent_channels": z, "norm_num_groups": 32, "use_quant_conv": False,
            "use_post_quant_conv": False, "scaling_factor": FLUX_SCALE, "shift_factor": FLUX_SHIFT, "sample_size": 256}


class BagelVAE:
    """The autoencoder interface (``encode``: images in [-1, 1] -> latents; ``decode``: back) over FLUX's VAE."""

    def __init__(self, model, scale: float = FLUX_SCALE, shift: float = FLUX_SHIFT):
        self.model, self.scale, self.shift = model, scale, shift
        self.latent_channels = model.config.latent_channels
        self.downsample = 2 ** (len(model.config.block_out_channels) - 1)

    def encode(self, image):
        x = image[None] if image.dim() == 3 else image
        mean = self.model.encode(x.to(self.model.device, self.model.dtype)).latent_dist.mean
        z = self.scale * (mean - self.shift)
        return z[0] if image.dim() == 3 else z

    def decode(self, z):
        x = z[None] if z.dim() == 3 else z
        out = self.model.decode((x / self.scale + self.shift).to(self.model.device, self.model.dtype)).sample
        return out[0] if z.dim() == 3 else out


def load_bagel_vae(path: str | Path, device: str = "cpu", dtype=None) -> BagelVAE:
    """The FLUX VAE of an ``ae.safetensors`` file; BagelVAEError naming the first tensor that does not fit."""
    import torch
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise BagelVAEError(f"{path} does not exist")
    try:
        state = load_file(str(path))
    except Exception as e:  # noqa: BLE001 - a file boundary; safetensors raises its own error types
        raise BagelVAEError(f"{path}: not a readable safetensors file ({e})") from None
    arch = flux_architecture({k: tuple(v.shape) for k, v in state.items()}, str(path))
    with torch.device("meta"):
        model = AutoencoderKL(**arch)
    converted = convert_ldm_vae_checkpoint(state, dict(model.config))
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(converted))
    extra = sorted(set(converted) - set(expected))
    if len(converted) != len(state):
        used = len(converted)
        raise BagelVAEError(f"{path} does not match a FLUX autoencoder: {len(state) - used} of its tensors map to "
                            f"nothing (e.g. {_unmapped(state, converted)})")
    if missing or extra:
        first = f"{missing[0]} is not filled" if missing else f"{extra[0]} is not part of the model"
        raise BagelVAEError(f"{path} does not match a FLUX autoencoder: {first}")
    for k, v in converted.items():
        if tuple(v.shape) != expected[k]:
            raise BagelVAEError(f"{path} does not match a FLUX autoencoder: {k} is {tuple(v.shape)}, "
                                f"expected {expected[k]}")
    dtype = dtype or torch.float32
    model.load_state_dict({k: v.to(device=device, dtype=dtype) for k, v in converted.items()}, strict=True,
                          assign=True)
    return BagelVAE(model.eval().requires_grad_(False))


def _unmapped(state: dict, converted: dict) -> str:
    """A file key no converted tensor came from (compared by identity of the tensor data)."""
    seen = {v.data_ptr() for v in converted.values()}
    return next((k for k, v in state.items() if v.data_ptr() not in seen), "?")
