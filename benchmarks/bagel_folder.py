"""A random-weight BAGEL checkpoint folder in BAGEL's released layout, for the BAGEL benchmark: ``llm_config.json``
(Qwen2), ``vit_config.json`` (SigLIP, the file's layer count, which BAGEL's code reduces by one),
``config.json``, ``ema.safetensors`` (Braid's ``BagelModel`` built on the device with random weights, so its
names and shapes are the ones the strict loader checks), ``ae.safetensors`` (a FLUX autoencoder in FLUX's own key
layout) and ``tokenizer.json`` (a byte-level BPE trained here with BAGEL's special tokens; the model's
vocabulary rows stay those of the configuration).

``ema.safetensors`` is written by a streaming writer (header, then each tensor copied from the device and
written in turn), so a 7B-MoT model (about 29 GB in bf16) never needs a second copy in host memory.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

# Qwen2.5-7B as BAGEL-7B-MoT ships it; SigLIP so400m (27 layers in the file, BAGEL uses 26)
LLM_7B = {"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
          "num_attention_heads": 28, "num_key_value_heads": 4, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
          "max_position_embeddings": 32768, "hidden_act": "silu", "tie_word_embeddings": False}
VIT_7B = {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
          "image_size": 980, "patch_size": 14, "layer_norm_eps": 1e-6, "hidden_act": "gelu_pytorch_tanh",
          "num_channels": 3}
TOP_7B = {"visual_gen": True, "visual_und": True, "latent_patch_size": 2, "max_latent_size": 64,
          "vit_max_num_patch_per_side": 70, "connector_act": "gelu_pytorch_tanh", "interpolate_pos": False,
          "timestep_shift": 1.0}

LLM_TINY = {**LLM_7B, "vocab_size": 1024, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "rope_theta": 10000.0, "max_position_embeddings": 4096}
VIT_TINY = {**VIT_7B, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 3, "num_attention_heads": 2,
            "image_size": 224}
TOP_TINY = {**TOP_7B, "max_latent_size": 16, "vit_max_num_patch_per_side": 16}


@dataclass(frozen=True)
class FluxAE:
    """FLUX autoencoder shape (BAGEL's ``AutoEncoderParams``)."""

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    z_channels: int = 16
    in_channels: int = 3
    downsample: int = 8
    out_ch: int = 3
    resolution: int = 256
    scale_factor: float = 0.3611
    shift_factor: float = 0.1159


@dataclass(frozen=True)
class BagelShape:
    name: str
    llm: dict
    vit: dict
    top: dict
    ae: FluxAE
    tokenizer_vocab: int


SHAPES = {
    "7b": BagelShape("7b", LLM_7B, VIT_7B, TOP_7B, FluxAE(), 8000),
    "tiny": BagelShape("tiny", LLM_TINY, VIT_TINY, TOP_TINY, FluxAE(ch=32, num_res_blocks=1), 600),
}


def flux_ae_shapes(ae: FluxAE) -> dict[str, tuple]:
    """Every tensor of a FLUX ``ae.safetensors`` (FLUX's LDM-style names) with its shape."""
    s: dict[str, tuple] = {}

    def conv(name, cin, cout, k):
        s[f"{name}.weight"], s[f"{name}.bias"] = (cout, cin, k, k), (cout,)

    def norm(name, c):
        s[f"{name}.weight"], s[f"{name}.bias"] = (c,), (c,)

    def res(name, cin, cout):
        norm(f"{name}.norm1", cin)
        conv(f"{name}.conv1", cin, cout, 3)
        norm(f"{name}.norm2", cout)
        conv(f"{name}.conv2", cout, cout, 3)
        if cin != cout:
            conv(f"{name}.nin_shortcut", cin, cout, 1)

    def mid(side, c):
        res(f"{side}.mid.block_1", c, c)
        norm(f"{side}.mid.attn_1.norm", c)
        for p in ("q", "k", "v", "proj_out"):
            conv(f"{side}.mid.attn_1.{p}", c, c, 1)
        res(f"{side}.mid.block_2", c, c)

    n = len(ae.ch_mult)
    conv("encoder.conv_in", ae.in_channels, ae.ch, 3)
    c = ae.ch
    for i, m in enumerate(ae.ch_mult):
        c = ae.ch * (1, *ae.ch_mult)[i]
        for j in range(ae.num_res_blocks):
            res(f"encoder.down.{i}.block.{j}", c, ae.ch * m)
            c = ae.ch * m
        if i != n - 1:
            conv(f"encoder.down.{i}.downsample.conv", c, c, 3)
    mid("encoder", c)
    norm("encoder.norm_out", c)
    conv("encoder.conv_out", c, 2 * ae.z_channels, 3)
    c = ae.ch * ae.ch_mult[-1]
    conv("decoder.conv_in", ae.z_channels, c, 3)
    mid("decoder", c)
    for i in reversed(range(n)):
        for j in range(ae.num_res_blocks + 1):
            res(f"decoder.up.{i}.block.{j}", c, ae.ch * ae.ch_mult[i])
            c = ae.ch * ae.ch_mult[i]
        if i != 0:
            conv(f"decoder.up.{i}.upsample.conv", c, c, 3)
    norm("decoder.norm_out", c)
    conv("decoder.conv_out", c, ae.out_ch, 3)
    return s


def random_flux_ae(ae: FluxAE, seed: int = 1) -> dict:
    """Random FLUX autoencoder weights (float32): convolutions scaled by fan-in, norms near one."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in flux_ae_shapes(ae).items():
        if "norm" in name.split(".")[-2] and name.endswith("weight"):
            t = 1 + 0.1 * torch.randn(shape, generator=g)
        elif name.endswith("bias"):
            t = 0.02 * torch.randn(shape, generator=g)
        else:
            fan_in = shape[1] * shape[2] * shape[3]
            t = torch.randn(shape, generator=g) / fan_in**0.5
        out[name] = t
    return out


def write_safetensors(path: Path, tensors: dict, metadata: dict | None = None, log=None) -> int:
    """Write tensors (any device) as one safetensors file, one tensor at a time; returns the bytes written.
    ``log``: called with a progress line about every 4 GB."""
    import time

    import torch

    names = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32", torch.int64: "I64",
             torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}
    header: dict = {"__metadata__": {"format": "pt", **(metadata or {})}}
    off = 0
    for k, t in tensors.items():
        n = t.numel() * t.element_size()
        header[k] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + n]}
        off += n
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    tmp = path.with_name(path.name + ".part")
    t0, done, next_log = time.perf_counter(), 0, 4e9
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for t in tensors.values():
            if t.numel():
                f.write(t.detach().contiguous().reshape(-1).view(torch.uint8).cpu().numpy().data)
                done += t.numel() * t.element_size()
            if log and done >= next_log:
                log(f"{path.name}: {done / 1e9:.1f} of {off / 1e9:.1f} GB written "
                    f"({done / 1e9 / (time.perf_counter() - t0):.2f} GB/s)")
                next_log += 4e9
    tmp.replace(path)
    return off


def random_bagel_model(shape: BagelShape, device: str, dtype, seed: int = 0):
    """Braid's ``BagelModel`` of this shape, built on ``device`` with random weights: linear layers as PyTorch
    initialises them, norms and the velocity head randomised (BAGEL zero-initialises ``llm2vae``), fixed 2D
    position tables as BAGEL computes them."""
    import torch

    from model.bagel_load import read_config

    shapes = {"vae2llm.weight": (0, shape.top["latent_patch_size"] ** 2 * shape.ae.z_channels)}
    cfg = read_config_from(shape, shapes, read_config)
    torch.manual_seed(seed)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            from model.bagel_model import BagelModel

            model = BagelModel(cfg)
    finally:
        torch.set_default_dtype(old)
    model = model.to(device=device, dtype=dtype)
    g = torch.Generator(device=device).manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g, device=device, dtype=torch.float32))
            elif name.startswith("llm2vae"):
                p.copy_(torch.randn(p.shape, generator=g, device=device, dtype=torch.float32) / p.shape[-1] ** 0.5)
    return model.eval().requires_grad_(False), cfg


def read_config_from(shape: BagelShape, shapes: dict, read_config):
    """The BagelConfig the loader will read from this shape's files (written to a scratch folder)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        write_configs(Path(d), shape)
        return read_config(d, shapes)


def write_configs(folder: Path, shape: BagelShape) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "llm_config.json").write_text(json.dumps({**shape.llm, "model_type": "qwen2",
                                                        "architectures": ["Qwen2ForCausalLM"]}, indent=1))
    (folder / "vit_config.json").write_text(json.dumps({**shape.vit, "model_type": "siglip_vision_model"}, indent=1))
    (folder / "config.json").write_text(json.dumps(shape.top, indent=1))


def write_tokenizer(folder: Path, vocab: int, corpus) -> int:
    """A byte-level BPE ``tokenizer.json`` with BAGEL's special tokens, trained on ``corpus``; returns its size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from model.bagel_pack import SPECIAL

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>", *SPECIAL], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    tok.save(str(folder / "tokenizer.json"))
    return tok.get_vocab_size()


def make_folder(folder: Path, shape: BagelShape, device: str, corpus, log=print) -> dict:
    """Write the whole folder; returns sizes and timings."""
    import time

    import torch

    folder = Path(folder)
    write_configs(folder, shape)
    t0 = time.perf_counter()
    n_tok = write_tokenizer(folder, shape.tokenizer_vocab, corpus)
    write_safetensors(folder / "ae.safetensors", random_flux_ae(shape.ae))
    log(f"configs, tokenizer ({n_tok} tokens) and ae.safetensors written")
    t1 = time.perf_counter()
    model, _ = random_bagel_model(shape, device, torch.bfloat16)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    log(f"random model built on {device} in {t2 - t1:.1f} s; writing ema.safetensors")
    state = model.state_dict()
    n_bytes = write_safetensors(folder / "ema.safetensors", state, log=log)
    t3 = time.perf_counter()
    n_params = sum(v.numel() for v in state.values())
    del model, state
    return {"params": n_params, "weight_bytes": n_bytes, "tokenizer_vocab": n_tok, "build_s": t2 - t1,
            "write_s": t3 - t2, "write_gb_per_s": n_bytes / 1e9 / max(t3 - t2, 1e-9), "total_s": t3 - t0}
