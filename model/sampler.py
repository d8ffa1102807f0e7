"""The image sampler of inference, over the KV-cached contexts of ``model.context``.

Images are drawn with BAGEL's rectified-flow Euler sampler: t runs from 1 to 0 over ``steps`` steps,
shifted as s*t / (1 + (s-1)*t), and x <- x - v*dt. Guidance follows BAGEL's inferencer: a text scale
against the context without its last text, an image scale against the text-only context, applied only
for t in ``(interval[0], interval[1]]``, then renormalised by clamp(|v| / |v_cfg|, renorm_min, 1)
(``global``: one norm; ``channel``: per token; ``text_channel``: per token, on the text term alone).
"""

from __future__ import annotations

from dataclasses import dataclass

from model.context import Context
from model.run_folder import InferError

RENORM_TYPES = ("global", "channel", "text_channel")


@dataclass(frozen=True)
class ImageGenConfig:
    """BAGEL's text-to-image defaults (inference.ipynb): cfg_text 4, cfg_img 1, interval [0.4, 1], shift 3."""

    steps: int = 50  # Euler steps (model evaluations per guidance branch)
    timestep_shift: float = 3.0
    cfg_text_scale: float = 4.0
    cfg_img_scale: float = 1.0
    cfg_interval: tuple[float, float] = (0.4, 1.0)
    cfg_renorm_type: str = "global"
    cfg_renorm_min: float = 0.0

    def check(self) -> None:
        if self.steps < 1:
            raise InferError("image generation needs at least one step")
        if self.cfg_renorm_type not in RENORM_TYPES:
            raise InferError(f"cfg_renorm_type must be one of {', '.join(RENORM_TYPES)}")
        if self.timestep_shift <= 0:
            raise InferError("timestep_shift must be positive")


def sample_image(inf, ctx: Context, width: int, height: int, gcfg: ImageGenConfig = ImageGenConfig(), seed: int = 0,
                 cfg_text_ctx: Context | None = None, cfg_img_ctx: Context | None = None):
    """An image (3, h, w) in [-1, 1] (on the CPU) drawn after ``ctx`` by the Inferencer ``inf``, h and w fitted
    to the model's generation size; ``cfg_text_ctx`` and ``cfg_img_ctx`` are the guidance contexts."""
    import torch

    from model.mot import shift_timesteps, unpatchify

    gcfg.check()
    w, h = inf.gen_size(width, height)
    f, p, C = inf.cfg.latent_downsample, inf.cfg.latent_patch, inf.cfg.latent_channels
    hw = (h // f // p, w // f // p)
    g = torch.Generator(device=inf.b.device).manual_seed(seed)
    x = torch.randn(hw[0] * hw[1], C * p * p, generator=g, device=inf.b.device)
    ts = shift_timesteps(torch.linspace(1.0, 0.0, gcfg.steps + 1, dtype=torch.float64), gcfg.timestep_shift)
    lo, hi = gcfg.cfg_interval
    with torch.no_grad():
        for i in range(gcfg.steps):
            t, dt = float(ts[i]), float(ts[i] - ts[i + 1])
            v = inf._velocity(ctx, x, t, hw, ctx.pos)
            in_interval = lo < t <= hi
            s_text = gcfg.cfg_text_scale if in_interval and cfg_text_ctx is not None else 1.0
            s_img = gcfg.cfg_img_scale if in_interval and cfg_img_ctx is not None else 1.0
            v_text = inf._velocity(cfg_text_ctx, x, t, hw, cfg_text_ctx.pos) if s_text != 1.0 else None
            v_img = inf._velocity(cfg_img_ctx, x, t, hw, cfg_img_ctx.pos) if s_img != 1.0 else None
            v = apply_cfg(v, v_text, v_img, s_text, s_img, gcfg.cfg_renorm_type, gcfg.cfg_renorm_min)
            x = x - v * dt
    z = unpatchify(x, p, C, hw[0] * p, hw[1] * p)
    with torch.no_grad():
        img = inf.b.ae.decode(z.unsqueeze(0).float()).squeeze(0)
    return img.clamp(-1, 1).cpu()


def apply_cfg(v, v_text, v_img, s_text: float, s_img: float, renorm: str, renorm_min: float):
    """Combine conditional and unconditional velocities (n, C) as BAGEL's ``_forward_flow`` does."""
    import torch

    if v_text is None and v_img is None:
        return v
    if renorm == "text_channel":
        if v_text is not None:
            vt = v_text + s_text * (v - v_text)
            scale = (v.norm(dim=-1, keepdim=True) / (vt.norm(dim=-1, keepdim=True) + 1e-8)).clamp(renorm_min, 1.0)
            vt = vt * scale
        else:
            vt = v
        return v_img + s_img * (vt - v_img) if v_img is not None else vt
    vt = v_text + s_text * (v - v_text) if v_text is not None else v
    out = v_img + s_img * (vt - v_img) if v_img is not None else vt
    if renorm == "global":
        scale = torch.clamp(v.norm() / (out.norm() + 1e-8), renorm_min, 1.0)
    else:
        scale = (v.norm(dim=-1, keepdim=True) / (out.norm(dim=-1, keepdim=True) + 1e-8)).clamp(renorm_min, 1.0)
    return out * scale


def to_pil(img):
    """(3, h, w) in [-1, 1] -> PIL RGB image."""
    import numpy as np
    from PIL import Image

    arr = ((img.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(arr), "RGB")
