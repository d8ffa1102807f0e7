"""The ``vllm`` backend: an in-process ``vllm.LLM`` engine (one per Ray actor that owns the GPUs).

``engine_args`` go to ``vllm.LLM`` unchanged (tensor_parallel_size, max_model_len,
gpu_memory_utilization, limit_mm_per_prompt, ...). Unless given, ``limit_mm_per_prompt`` is two images
and no video (the largest prompt here shows two frames; no video saves the engine's profiling memory),
and ``dtype`` comes from the config (``auto`` lets vLLM choose). Each ``caption`` call sends its
requests in chunks of ``batch_size`` conversations through ``LLM.chat``; vLLM schedules each chunk
continuously, so on a GPU set ``batch_size`` in the hundreds. A chunk that vLLM refuses (for example an
image its processor rejects) is retried one request at a time.

vLLM starts worker processes with ``spawn``: a script that builds this backend at import level needs
an ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import time

from captioners.base import CaptionerConfig, CaptionerConfigError, CaptionRequest, CaptionResult
from captioners.inputs import Prepared, RequestError, check_model_ref, error_result, prepare


class VLLMCaptioner:
    backend = "vllm"

    def __init__(self, cfg: CaptionerConfig):
        check_model_ref(cfg.model, "vllm")
        try:
            from vllm import LLM, SamplingParams
        except ImportError as e:
            raise CaptionerConfigError(
                f"the vllm backend needs vLLM: pip install 'braid[vllm]' on a GPU machine ({e})"
            ) from None
        self.cfg = cfg
        self.model = cfg.model
        self._sampling = SamplingParams
        import torch

        self._torch = torch
        self._threads = torch.get_num_threads()  # an in-process engine lowers it for serving
        args = {"dtype": cfg.dtype, "limit_mm_per_prompt": {"image": 2, "video": 0}, **cfg.engine_args}
        try:
            self.llm = LLM(model=cfg.model, **args)
        except TypeError as e:
            raise CaptionerConfigError(f"bad vLLM engine argument: {e}") from None
        except (ValueError, OSError, RuntimeError) as e:  # no such model, too little memory, ...
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CaptionerConfigError(f"vLLM cannot start model {cfg.model!r}: {first}") from None

    def caption(self, requests: list[CaptionRequest]) -> list[CaptionResult]:
        results: list[CaptionResult | None] = [None] * len(requests)
        ready: list[tuple[int, Prepared]] = []
        for i, req in enumerate(requests):
            try:
                ready.append((i, prepare(req)))
            except RequestError as e:
                results[i] = error_result(str(e))
        bs = max(1, self.cfg.batch_size)
        for start in range(0, len(ready), bs):
            chunk = ready[start : start + bs]
            for (i, _), res in zip(chunk, self._run([p for _, p in chunk])):
                results[i] = res
        return results  # type: ignore[return-value]

    def _run(self, preps: list[Prepared]) -> list[CaptionResult]:
        started = time.perf_counter()
        convs = [_vllm_messages(p) for p in preps]
        params = [
            self._sampling(
                max_tokens=p.request.max_tokens,
                temperature=p.request.temperature,
                top_p=p.request.top_p,
                seed=p.request.seed,
            )
            for p in preps
        ]
        try:
            outputs = self.llm.chat(convs, sampling_params=params, use_tqdm=False)
        except Exception as e:  # noqa: BLE001  vLLM raises many kinds for one bad input; it aborts the chunk's requests
            if len(preps) == 1:
                return [
                    error_result(f"vLLM rejected the request: {str(e).splitlines()[0] if str(e) else e!r}", started)
                ]
            return [self._run([p])[0] for p in preps]
        share = (time.perf_counter() - started) / len(preps)
        results = []
        for out in outputs:
            comp = out.outputs[0]
            status = "truncated" if comp.finish_reason == "length" else "ok"
            results.append(
                CaptionResult(
                    text=comp.text.strip(),
                    status=status,
                    prompt_tokens=len(out.prompt_token_ids or ()),
                    output_tokens=len(comp.token_ids),
                    latency_s=share,
                )
            )
        return results

    def close(self) -> None:
        """Stop the engine and release what it set up in this process (distributed state, thread count)."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is None:
            return
        engine = getattr(llm, "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        del llm, engine, core
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        cleanup_dist_env_and_memory()
        self._torch.set_num_threads(self._threads)


def _vllm_messages(prep: Prepared) -> list[dict]:
    out = []
    for m in prep.messages:
        if isinstance(m["content"], str):
            out.append(m)
            continue
        parts = []
        for c in m["content"]:
            if c["type"] == "image":
                parts.append({"type": "image_pil", "image_pil": prep.images[c["index"]]})
            else:
                parts.append(c)
        out.append({"role": m["role"], "content": parts})
    return out
