"""What ``braid spotcheck`` shows of a BAGEL checkpoint beside each image: BAGEL's own caption of the image and
the image BAGEL draws from the sample's text before it.

Caption: BAGEL's understanding flow as its inferencer runs it. The image is first resized by the autoencoder
transform's rule (the inferencer does this to every input image), then enters through the ViT alone (no
autoencoder latents) as one full split ``<|vision_start|> ViT tokens <|vision_end|>`` at rotary position 0;
then the prompt as a causal split ``<|im_start|> prompt <|im_end|>`` at positions 1, 2, ...; then greedy
decoding from ``<|im_start|>`` at the next position (``model.bagel_generate.greedy_after``). Every context token
goes through the understanding expert.

Regeneration: BAGEL's text-to-image recipe (``T2I``: 50 Euler steps over the schedule shifted by 3, text
guidance 4 inside t in (0.4, 1], global renormalisation; the unconditional branch sees no context) from a
text context, at the image's size fitted to BAGEL's geometry (the autoencoder transform's size rule: sides
multiples of 16 px, bounded by the model's latent table), decoded by the FLUX autoencoder.
"""

from __future__ import annotations

import io

CAPTION_PROMPT = "Describe this image in one sentence."
CAPTION_PROMPT_ID = "bagel_spot_caption@v1"
T2I = {"timestep_shift": 3.0, "cfg_text_scale": 4.0, "cfg_interval": (0.4, 1.0), "cfg_renorm_min": 0.0}


def caption_pixels(bundle, image_bytes: bytes):
    """The ViT input (3, H, W) in [-1, 1] of an encoded image: the autoencoder transform's resize, then the
    ViT transform, as BAGEL's inferencer prepares an input image."""
    from PIL import Image

    vit_tf, vae_tf = bundle.transforms
    with Image.open(io.BytesIO(image_bytes)) as im:
        if im.mode == "RGBA" or im.info.get("transparency") is not None:  # transparency over white, as BAGEL does
            rgba = im.convert("RGBA")
            im = Image.new("RGB", rgba.size, (255, 255, 255))
            im.paste(rgba, mask=rgba.split()[3])
        else:
            im = im.convert("RGB")
        im = im.resize(vae_tf.size(*im.size), Image.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, "PNG")  # lossless hand-over to the ViT transform, which reads encoded bytes
    return vit_tf(buf.getvalue())


def caption_context(bundle, image_bytes: bytes, prompt: str = CAPTION_PROMPT):
    """(embeds (T, D) in the model dtype, rotary positions (T,), mask (T, T) bool, next rotary position) of
    the caption context: the image's ViT split, then the prompt's text split."""
    import torch

    from model.bagel_lm import sample_mask
    from model.bagel_pack import vit_patches

    model, cfg, tok = bundle.model, bundle.cfg, bundle.tok
    if cfg.vit is None:
        raise ValueError("the checkpoint has no vision encoder (visual_und is off)")
    dev = bundle.device
    embed = model.language_model.model.embed_tokens
    patches, vit_pos = vit_patches(caption_pixels(bundle, image_bytes), cfg)
    patches, vit_pos = patches.to(dev, embed.weight.dtype), vit_pos.to(dev)
    n = patches.shape[0]
    with torch.no_grad():
        vit = model.embed_vit(patches, vit_pos, [n]).to(embed.weight.dtype)
        text = [tok.bos, *tok.encode(prompt), tok.eos]
        ids = torch.tensor([tok.vision_start, tok.vision_end, *text], device=dev)
        emb = embed(ids)
    embeds = torch.cat([emb[:1], vit, emb[1:2], emb[2:]])
    positions = torch.tensor([0] * (n + 2) + list(range(1, 1 + len(text))), device=dev)
    mask = sample_mask([n + 2, len(text)], ["full", "causal"], dev)
    return embeds, positions, mask, 1 + len(text)


def caption_image(bundle, image_bytes: bytes, prompt: str = CAPTION_PROMPT, max_tokens: int = 40) -> str:
    """BAGEL's greedy answer to ``prompt`` about the image (at most ``max_tokens`` tokens after the start token),
    cut as BAGEL's inferencer cuts it: the text between the first ``<|im_start|>`` and the next ``<|im_end|>``
    (special tokens kept as text), stripped."""
    from model.bagel_generate import greedy_after

    embeds, positions, mask, next_pos = caption_context(bundle, image_bytes, prompt)
    tok = bundle.tok
    out = greedy_after(bundle.model, embeds, positions, mask, next_pos, tok.bos, tok.eos, max_tokens + 1)
    return answer_text(tok, out)


def answer_text(tok, ids: list[int]) -> str:
    """The answer in generated ids (start token first), as BAGEL's ``gen_text`` cuts it."""
    text = tok.tok.decode(list(ids), skip_special_tokens=False)
    return text.split("<|im_end|>")[0].split("<|im_start|>")[1].strip()


def generation_size(bundle, width: int, height: int) -> tuple[int, int]:
    """(width, height) BAGEL generates for an image of this size: its autoencoder transform's size rule."""
    return bundle.transforms[1].size(width, height)


def regenerate_image(bundle, context_text: str, width: int, height: int, steps: int = 50, seed: int = 0) -> bytes:
    """PNG bytes of the image BAGEL draws after ``context_text`` with its text-to-image recipe, at the given
    size fitted by ``generation_size``; ``steps`` is BAGEL's num_timesteps (steps - 1 Euler updates)."""
    import torch
    from PIL import Image

    from model.bagel_generate import sample_latent_tokens

    model, cfg, tok = bundle.model, bundle.cfg, bundle.tok
    if not cfg.visual_gen or bundle.vae is None:
        raise ValueError("the checkpoint has no image generation (visual_gen is off)")
    if steps < 2:
        raise ValueError("BAGEL's sampler needs at least 2 timesteps")
    w, h = generation_size(bundle, width, height)
    unit = cfg.vae_downsample * cfg.latent_patch_size
    gh, gw = h // unit, w // unit
    noise = start_noise(bundle, w, h, seed).to(bundle.device)
    tokens = {"bos": tok.bos, "eos": tok.eos, "vision_start": tok.vision_start, "vision_end": tok.vision_end}
    with torch.no_grad():
        x = sample_latent_tokens(model, tok.encode(context_text), noise, gh, gw, tokens, steps=steps, **T2I)
        z = unpatchify_latent(x, gh, gw, cfg.latent_patch_size, cfg.latent_channels)
        img = bundle.vae.decode(z.to(bundle.dtype)).float()
    arr = ((img * 0.5 + 0.5).clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, "PNG")
    return buf.getvalue()


def start_noise(bundle, width: int, height: int, seed: int):
    """The sampler's start noise (latent tokens x patch latent dim, float32, on the CPU) for a fitted size."""
    import torch

    unit = bundle.cfg.vae_downsample * bundle.cfg.latent_patch_size
    g = torch.Generator().manual_seed(seed)
    return torch.randn((height // unit) * (width // unit), bundle.cfg.patch_latent_dim, generator=g)


def unpatchify_latent(x, h: int, w: int, p: int, c: int):
    """Latent tokens (h * w, p * p * c) -> a latent (c, h * p, w * p), the inverse of BAGEL's patching."""
    import torch

    return torch.einsum("hwpqc->chpwq", x.reshape(h, w, p, p, c)).reshape(c, h * p, w * p)


def count_tokens(bundle, sample) -> int:
    """The length of a sample in BAGEL's packed layout (``model.bagel_pack``), from the declared image sizes."""
    from model.bagel_pack import image_splits
    from schemas import TextSegment

    cfg, tok = bundle.cfg, bundle.tok
    vit_tf, vae_tf = bundle.transforms
    unit = cfg.vae_downsample * cfg.latent_patch_size

    def vit(seg):
        w, h = vit_tf.size(seg.width, seg.height)
        return (w // cfg.vit.patch_size) * (h // cfg.vit.patch_size) + 2

    def latent(seg):
        w, h = vae_tf.size(seg.width, seg.height)
        return (w // unit) * (h // unit) + 2

    sizes = {"vit": vit, "noised": latent, "clean": latent}
    n, last = 0, len(sample.segments) - 1
    for i, seg in enumerate(sample.segments):
        if isinstance(seg, TextSegment):
            n += len(tok.encode(seg.text)) + 2
        else:
            n += sum(sizes[kind](seg) for kind in image_splits(seg, i == last, cfg))
    return n
