"""The ``hf`` backend: transformers ``AutoProcessor`` + ``AutoModelForImageTextToText``, in-process.

Requests are grouped by image count and sampling parameters (one ``generate`` call needs one setting),
then run ``batch_size`` at a time with left padding. A batch the processor refuses is retried one
request at a time, and one that fails in ``generate`` (out of memory, say) is halved until it fits or
the failing request stands alone, so that only the offending request gets an ``error`` result. ``truncated`` means no
end-of-sequence token came within ``max_tokens``. A sampling batch is seeded with its first request's seed.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict

from captioners.base import CaptionerConfig, CaptionerConfigError, CaptionRequest, CaptionResult
from captioners.inputs import Prepared, RequestError, check_model_ref, error_result, prepare

log = logging.getLogger(__name__)


class HFCaptioner:
    backend = "hf"

    def __init__(self, cfg: CaptionerConfig, processor=None, model=None):
        """Load ``cfg.model`` (a folder or hub id); ``processor``/``model`` skip loading (benchmarks)."""
        self.cfg = cfg
        self.model = cfg.model
        try:
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor
        except ImportError as e:
            raise CaptionerConfigError(f"the hf backend needs torch and transformers ({e})") from None
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise CaptionerConfigError(f"device {cfg.device!r} was asked for but torch sees no CUDA GPU")
        self._torch = torch
        dtype = cfg.dtype if cfg.dtype != "auto" else ("bfloat16" if cfg.device.startswith("cuda") else "float32")
        if model is None:
            check_model_ref(cfg.model, "hf")
            try:
                processor = AutoProcessor.from_pretrained(cfg.model)
                model = AutoModelForImageTextToText.from_pretrained(cfg.model, dtype=getattr(torch, dtype))
            except (OSError, ValueError) as e:
                raise CaptionerConfigError(f"cannot load model {cfg.model!r}: {str(e).splitlines()[0]}") from None
            model = model.to(cfg.device).eval()
        self.processor = processor
        self.net = model
        processor.tokenizer.padding_side = "left"
        gen = model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else processor.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos])
        self.pad_id = gen.pad_token_id if gen.pad_token_id is not None else processor.tokenizer.pad_token_id

    def caption(self, requests: list[CaptionRequest]) -> list[CaptionResult]:
        results: list[CaptionResult | None] = [None] * len(requests)
        groups: dict[tuple, list[tuple[int, Prepared]]] = defaultdict(list)
        for i, req in enumerate(requests):
            try:
                prep = prepare(req)
            except RequestError as e:
                results[i] = error_result(str(e))
                continue
            sampling = (req.max_tokens, req.temperature, req.top_p if req.temperature > 0 else 1.0)
            groups[(len(prep.images), *sampling)].append((i, prep))
        bs = max(1, self.cfg.batch_size)
        for items in groups.values():
            for start in range(0, len(items), bs):
                chunk = items[start : start + bs]
                for (i, _), res in zip(chunk, self._run_batch([p for _, p in chunk])):
                    results[i] = res
        return results  # type: ignore[return-value]

    def _run_batch(self, preps: list[Prepared]) -> list[CaptionResult]:
        started = time.perf_counter()
        try:
            inputs = self._encode(preps)
        except Exception as e:  # noqa: BLE001  the processor's own checks (size, aspect ratio) raise many kinds
            if len(preps) == 1:
                return [error_result(f"the processor rejected the request: {e}", started)]
            return [self._run_batch([p])[0] for p in preps]
        try:
            return self._generate(preps, inputs, started)
        except (RuntimeError, ValueError) as e:  # out of memory or one input the model cannot take
            if isinstance(e, self._torch.cuda.OutOfMemoryError):
                self._torch.cuda.empty_cache()
            if len(preps) == 1:
                return [error_result(f"generation failed: {type(e).__name__}: {str(e)[:300]}", started)]
            # halve until the failing request stands alone (or the halves fit in memory)
            half = len(preps) // 2
            return self._run_batch(preps[:half]) + self._run_batch(preps[half:])

    def _encode(self, preps: list[Prepared]):
        texts = [
            self.processor.apply_chat_template(_hf_messages(p.messages), add_generation_prompt=True, tokenize=False)
            for p in preps
        ]
        kwargs = {"text": texts, "return_tensors": "pt", "padding": True}
        if preps[0].images:
            kwargs["images"] = [p.images for p in preps]
        return self.processor(**kwargs).to(self.net.device)

    def _generate(self, preps: list[Prepared], inputs, started: float) -> list[CaptionResult]:
        torch = self._torch
        req = preps[0].request
        gen_kwargs = {"max_new_tokens": req.max_tokens, "pad_token_id": self.pad_id, "do_sample": req.temperature > 0}
        if req.temperature > 0:
            gen_kwargs.update(temperature=req.temperature, top_p=req.top_p)
            torch.manual_seed(req.seed)
        with torch.inference_mode():
            out = self.net.generate(**inputs, **gen_kwargs)
        prompt_len = inputs["input_ids"].shape[1]
        prompt_counts = inputs["attention_mask"].sum(dim=1).tolist()
        new = out[:, prompt_len:].tolist()
        share = (time.perf_counter() - started) / len(preps)
        results = []
        for row, n_prompt in zip(new, prompt_counts):
            end = next((k for k, t in enumerate(row) if t in self.eos_ids), None)
            kept = row if end is None else row[:end]
            text = self.processor.tokenizer.decode(kept, skip_special_tokens=True).strip()
            status = "truncated" if end is None and len(row) >= req.max_tokens else "ok"
            results.append(
                CaptionResult(
                    text=text,
                    status=status,
                    prompt_tokens=int(n_prompt),
                    output_tokens=len(row) if end is None else end + 1,
                    latency_s=share,
                )
            )
        return results

    def close(self) -> None:
        self.net = None
        if self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()


def _hf_messages(messages: list[dict]) -> list[dict]:
    """Processor chat templates take ``{"type": "image"}`` placeholders; the pixels go to the processor."""
    out = []
    for m in messages:
        if isinstance(m["content"], str):
            out.append(m)
        else:
            parts = [{"type": "image"} if c["type"] == "image" else c for c in m["content"]]
            out.append({"role": m["role"], "content": parts})
    return out
