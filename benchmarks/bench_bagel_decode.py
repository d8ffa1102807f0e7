"""Text decoding speed of a BAGEL-shaped model at batch 1 (random weights; speed does not depend on them):
tokens/s of greedy decoding after a text prompt over the static KV cache with each step a CUDA graph
(``model.bagel_generate.greedy_after``), against the same cache without graphs and against recomputing the
whole sequence at every token (the baseline: BAGEL's forward on the growing sequence). Target on an H200 for
the BAGEL-7B-MoT shape: 60 tokens/s.

    python benchmarks/bench_bagel_decode.py                                  # 7B shape on the GPU (bf16)
    python benchmarks/bench_bagel_decode.py --shape tiny --device cpu --new-tokens 16   # dry run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET = 60.0  # tokens/s, 7B shape on an H200


def main(argv=None) -> int:
    import torch

    from benchmarks.bagel_folder import SHAPES, random_bagel_model
    from benchmarks.bench_mot_infer import agreement
    from model.bagel_generate import greedy_after
    from model.bagel_lm import sample_mask

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=("7b", "tiny"), default="7b")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--baseline-tokens", type=int, default=32, help="tokens decoded by full recomputation")
    args = ap.parse_args(argv)

    dev = torch.device(args.device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    model, cfg = random_bagel_model(SHAPES[args.shape], str(dev), dtype)
    llm = cfg.llm
    bos, eos = 1, 2
    with torch.no_grad():
        model.language_model.lm_head.weight[eos].zero_()  # random weights must not stop early
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(10, llm.vocab_size, (args.prompt_tokens,), generator=g).tolist()
    ids = torch.tensor([bos, *prompt, eos], device=dev)
    n = ids.numel()
    lm = model.language_model
    emb = lm.model.embed_tokens(ids)
    positions = torch.arange(n, device=dev)
    mask = sample_mask([n], ["causal"], dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def timed(fn):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        return time.perf_counter() - t0, out

    def decode(graphs: bool, tokens: int):
        return greedy_after(model, emb, positions, mask, n, bos, eos, tokens, graphs=graphs)

    @torch.no_grad()
    def recompute(tokens: int):
        seq, out, cur = ids.tolist(), [], bos
        for _ in range(tokens):
            out.append(cur)
            seq.append(cur)
            t = torch.tensor(seq, device=dev)
            h = lm(lm.model.embed_tokens(t), torch.arange(len(seq), device=dev),
                   torch.zeros(len(seq), dtype=torch.bool, device=dev), [len(seq)],
                   [sample_mask([n, len(seq) - n], ["causal", "causal"], dev)])
            cur = int(lm.lm_head(h[-1]).argmax())
            if cur == eos:
                break
        return out

    graphs = dev.type == "cuda"
    decode(graphs, 8)  # warm-up: kernels and the graph capture of this capacity
    decode(False, 8)
    recompute(4)
    t_g, out_g = timed(lambda: decode(graphs, args.new_tokens))
    t_e, out_e = timed(lambda: decode(False, args.new_tokens))
    t_r, out_r = timed(lambda: recompute(args.baseline_tokens))
    same = agreement(out_g, out_e, out_r)
    tps_g, tps_e, tps_r = len(out_g) / t_g, len(out_e) / t_e, len(out_r) / t_r
    name = torch.cuda.get_device_name(dev) if graphs else "cpu"
    n_params = sum(p.numel() for nm, p in lm.named_parameters() if "_moe_gen" not in nm)
    print(f"\nbench_bagel_decode: {args.shape} shape ({n_params / 1e9:.2f}B parameters on the text path), {name}, "
          f"{str(dtype).replace('torch.', '')}, torch {torch.__version__}, batch 1, prompt {n} tokens")
    print(f"  full recompute (baseline)     {tps_r:8.1f} tokens/s  ({len(out_r)} tokens)")
    print(f"  static KV cache, no graphs    {tps_e:8.1f} tokens/s  ({len(out_e)} tokens)")
    print(f"  static KV cache{' + CUDA graphs' if graphs else '             '} {tps_g:8.1f} tokens/s  "
          f"({len(out_g)} tokens; {same})")
    from benchmarks.record import Row, write_result

    write_result(f"bench_bagel_decode-{args.shape}", [
        Row(name=f"BAGEL {args.shape} shape: greedy text at batch 1, static KV cache{' + CUDA graphs' if graphs else ''}",
            metric="tokens/s", ours=tps_g, baseline=tps_r,
            baseline_name="BAGEL's forward over the whole sequence at every token",
            met=(tps_g >= TARGET) if graphs and args.shape == "7b" else None, target=f">= {TARGET:.0f} tokens/s",
            note=f"target (7B shape, H200): {TARGET:.0f} tokens/s; same cache without graphs: {tps_e:.1f} tokens/s; "
                 f"{same}"),
    ], extra={"shape": args.shape, "dtype": str(dtype), "prompt_tokens": n, "new_tokens": args.new_tokens,
              "text_path_parameters": n_params})
    return 0


if __name__ == "__main__":
    sys.exit(main())
