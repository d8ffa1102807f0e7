"""Turning a ``CaptionRequest`` into what every backend sends: checked images and chat messages.

Problems with one request (unknown prompt, missing variable, wrong image count, an image that does
not decode) raise ``RequestError``; backends turn it into an ``error`` result for that request only.
"""

from __future__ import annotations

import base64
import hashlib
import io
import time
from dataclasses import dataclass

from captioners.base import CaptionRequest, CaptionResult
from captioners.prompts import Prompt, get_prompt


class RequestError(ValueError):
    """This request cannot be sent as it is; the message is the result's error."""


@dataclass
class Prepared:
    """A request ready to send: its prompt, rendered text, decoded images and chat messages."""

    request: CaptionRequest
    prompt: Prompt
    text: str
    images: list  # PIL.Image.Image, RGB
    messages: list  # chat messages; an image is {"type": "image", "index": i}


def load_image(image):
    """An RGB PIL image from a PIL image or encoded bytes; RequestError when it does not decode."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if not isinstance(image, (bytes, bytearray, memoryview)):
        raise RequestError(f"an image must be a PIL image or encoded bytes, not {type(image).__name__}")
    try:
        img = Image.open(io.BytesIO(bytes(image)))
        img.load()
        return img.convert("RGB")
    except UnidentifiedImageError:
        raise RequestError(f"image does not decode: unknown format ({len(image)} bytes)") from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise RequestError(f"image does not decode: {e}") from None


def image_fingerprint(image) -> str:
    """sha256 of the encoded bytes, or of mode, size and pixels for a PIL image."""
    h = hashlib.sha256()
    if isinstance(image, (bytes, bytearray, memoryview)):
        h.update(b"bytes:")
        h.update(bytes(image))
    else:
        h.update(f"pil:{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
        h.update(image.tobytes())
    return h.hexdigest()


def data_url(image) -> str:
    """A base64 data URL: encoded bytes are sent as they are, PIL images as JPEG (quality 95)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        raw = bytes(image)
        mime = _sniff_mime(raw)
    else:
        buf = io.BytesIO()
        image.convert("RGB").save(buf, "JPEG", quality=95)
        raw, mime = buf.getvalue(), "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"


def _sniff_mime(raw: bytes) -> str:
    if raw.startswith(b"\x89PNG"):
        return "image/png"
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return "image/webp"
    if raw[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return "image/jpeg"


def render_text(request: CaptionRequest) -> tuple[Prompt, str]:
    """The request's prompt and rendered text; RequestError for an unknown prompt or missing variable."""
    try:
        prompt = get_prompt(request.prompt_id)
        return prompt, prompt.render(request.variables)
    except KeyError as e:
        raise RequestError(str(e.args[0]) if e.args else str(e)) from None


def prepare(request: CaptionRequest, decode: bool = True) -> Prepared:
    """Check and render one request. ``decode=False`` skips decoding the images (the HTTP backend sends bytes)."""
    prompt, text = render_text(request)
    if prompt.n_images and len(request.images) != prompt.n_images:
        raise RequestError(f"prompt {prompt.id} expects {prompt.n_images} image(s), got {len(request.images)}")
    if request.max_tokens < 1:
        raise RequestError(f"max_tokens must be at least 1, got {request.max_tokens}")
    images = [load_image(im) for im in request.images] if decode else list(request.images)
    messages: list[dict] = []
    if prompt.system:
        messages.append({"role": "system", "content": prompt.system})
    for user, assistant in prompt.few_shot:
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": assistant})
    content = [{"type": "image", "index": i} for i in range(len(images))] + [{"type": "text", "text": text}]
    messages.append({"role": "user", "content": content})
    return Prepared(request, prompt, text, images, messages)


def check_model_ref(model: str, backend: str) -> None:
    """CaptionerConfigError when no model is named, or a local-looking path does not exist."""
    from pathlib import Path

    from captioners.base import CaptionerConfigError

    if not model:
        raise CaptionerConfigError(f"the {backend} backend needs a model folder or hub id (captioner model)")
    looks_local = model.startswith((".", "/", "~")) or Path(model).exists()
    if looks_local and not Path(model).expanduser().is_dir():
        raise CaptionerConfigError(f"model folder {model} does not exist")


def error_result(reason: str, started: float | None = None) -> CaptionResult:
    return CaptionResult(
        text="", status="error", error=reason, latency_s=0.0 if started is None else time.perf_counter() - started
    )
