"""Model FLOPs of one packed training step, the figure behind MFU in ``braid train`` and the benchmark.

Per pack (forward + backward = 6 FLOPs per parameter and token, attention 12 per allowed pair and channel):
  6 * (LLM layer parameters of the token's expert) per token + 6 * D * V per CE token
  + 6 * (ViT + connector parameters) per ViT token + 6 * (latent in/out, time embedder) per latent token
  + attention 12 * H * Dh * (allowed query-key pairs) per layer (4 forward, 8 backward)
  + ViT attention 12 * d_vit * P^2 per image per layer.
The two experts have identical shapes, so every LLM token counts one expert's layer parameters.
"""

from __future__ import annotations

from model.attention import allowed_pairs

PEAK_TFLOPS = {"h100": 989.0, "h200": 989.0, "a100": 312.0}  # dense bf16 tensor-core peaks


def peak_tflops(device_name: str) -> float | None:
    low = device_name.lower()
    return next((v for k, v in PEAK_TFLOPS.items() if k in low), None)


class FlopCounter:
    """Parameter counts of one model, taken once; ``pack(batch)`` gives one pack's model FLOPs."""

    def __init__(self, model):
        cfg = self.cfg = model.cfg
        layers = model.language_model.model.layers
        self.layer_und = sum(p.numel() for n, p in layers.named_parameters() if "_moe_gen" not in n) / cfg.n_layers
        self.vit = sum(p.numel() for m in (model.vit_model, model.connector) for p in m.parameters())
        self.latent = sum(p.numel() for m in (model.vae2llm, model.llm2vae, model.time_embedder) for p in m.parameters())

    def pack(self, batch, pairs: int | None = None) -> float:
        """FLOPs of one pack (host or device tensors); ``pairs``: allowed query-key pairs if already known."""
        cfg, n = self.cfg, batch.n_real
        n_vit, n_gen = int(batch.vit_idx.numel()), int(batch.latent_idx.numel())
        if pairs is None:
            pairs = allowed_pairs(batch.mask_spec(), n)
        f = 6 * cfg.n_layers * self.layer_und * n
        f += 6 * cfg.d_model * cfg.vocab_size * int(batch.ce_idx.numel())
        f += 6 * self.vit * n_vit + 6 * self.latent * n_gen
        f += 12 * cfg.n_heads * cfg.head_dim * pairs * cfg.n_layers
        f += 12 * cfg.vit_d * cfg.vit_grid**4 * cfg.vit_layers * int(batch.vit_pixels.shape[0])
        return float(f)
