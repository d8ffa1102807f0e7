"""Optional fused GPU kernels from Liger Kernel (``liger-kernel``) for the blocks' elementwise work.

``use(names)`` turns on any of ``rmsnorm`` (RMSNorm forward and backward in one kernel each), ``swiglu``
(SiLU(gate) * up) and ``rope`` (rotary embedding of q and k in place); the model's modules ask ``on(name)``
and take the plain PyTorch path on CPU or when a kernel is off. Blocks compiled before a change are
recompiled on their next call (the set is part of what torch.compile guards on).
"""

from __future__ import annotations

import torch

KERNELS = ("rmsnorm", "swiglu", "rope")
_on: frozenset = frozenset()


class KernelError(ValueError):
    """An unknown kernel name, or liger-kernel missing when a kernel is asked for."""


def use(names) -> None:
    """Enable exactly ``names`` (an iterable or a comma-separated string; empty: all off)."""
    global _on
    if isinstance(names, str):
        names = [n for n in names.split(",") if n]
    names = frozenset(names)
    unknown = names - set(KERNELS)
    if unknown:
        raise KernelError(f"unknown kernel(s) {', '.join(sorted(unknown))}; expected some of {', '.join(KERNELS)}")
    if names:
        try:
            import liger_kernel.ops  # noqa: F401
        except ImportError as e:
            raise KernelError(f"kernels {', '.join(sorted(names))} need liger-kernel: {e}") from e
    _on = names


def on(name: str, x: torch.Tensor) -> bool:
    return name in _on and x.is_cuda


# Liger's kernels run as eager islands inside compiled blocks: traced by torch.compile they crashed the
# step with an illegal memory access (torch 2.11, liger-kernel 0.8.5, H200)
@torch.compiler.disable
def rms_norm(x, weight, eps):
    """Liger's RMSNorm (Llama casting: statistics in float32, output in the input's dtype)."""
    from liger_kernel.ops import LigerRMSNormFunction

    shape = x.shape
    y = LigerRMSNormFunction.apply(x.reshape(-1, shape[-1]), weight, eps, 0.0, "llama", False, None)
    return y.view(shape)


@torch.compiler.disable
def silu_mul(gate, up):
    from liger_kernel.ops import LigerSiLUMulFunction

    return LigerSiLUMulFunction.apply(gate, up, 1.0, 1.0)


@torch.compiler.disable
def rope(q, k, cos, sin):
    """q (1, H, T, Dh), k (1, Hkv, T, Dh) laid out as (1, T, h, Dh); cos/sin (T, 1, Dh) -> rotated q, k."""
    from liger_kernel.ops import LigerRopeFunction

    cos, sin = cos.squeeze(1).unsqueeze(0), sin.squeeze(1).unsqueeze(0)
    return LigerRopeFunction.apply(q, k, cos.to(q.dtype), sin.to(q.dtype))
