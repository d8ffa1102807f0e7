"""Fast text decoding at batch 1: a static key/value cache and, on CUDA, one captured graph per token step.

Works on both language models with BAGEL's parameter names, the bundled MoT's (``model.mot``) and a BAGEL
checkpoint's (``model.bagel_lm``): text decoding only runs the understanding expert, so a step is the
embedding, each layer's norms, projections, QK-norm, RoPE and MLP (the model's own modules and its own RoPE
convention), attention of the new token's query heads over the cache, the final norm and the LM head.

The cache is one preallocated (layers, Hkv, capacity, Dh) tensor for keys and one for values. A step writes
its key and value at the next free slot and attends to the slots up to it (the query heads of each key/value
head as that head's queries, so keys are never repeated). Because shapes never change, on CUDA the step is
captured once as a CUDA graph and replayed per token: only the token id, its RoPE position and its slot are
written before a replay. ``prefill`` fills the cache from a context given as embeddings with its own attention mask (text,
ViT images), ``load`` from per-layer (k, v) computed elsewhere.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LMSpec:
    """What decoding needs to know of a language model besides its modules."""

    n_heads: int
    n_kv_heads: int
    head_dim: int
    rope: object  # rope(q (n, H, Dh), k (n, Hkv, Dh), positions (n,)) -> (q, k) rotated


def spec_for(model) -> LMSpec:
    """The LMSpec of a bundled ``MoT`` or a ``BagelModel`` (its RoPE convention included)."""
    from model.mot import MoT

    if isinstance(model, MoT):
        from model.mot import apply_rope, rope_cos_sin

        c = model.cfg

        def rope(q, k, pos):
            cos, sin = rope_cos_sin(pos, c.head_dim, c.rope_theta)
            return apply_rope(q, cos, sin), apply_rope(k, cos, sin)

        return LMSpec(c.n_heads, c.n_kv_heads, c.head_dim, rope)
    from model.bagel_lm import _rotate, rope_inv_freq, rotary

    c = model.language_model.cfg
    inv_freq = rope_inv_freq(c.head_dim, c.rope_theta, model.language_model.lm_head.weight.device)  # made once: a
    # step captured as a CUDA graph may not copy from the host

    def bagel_rope(q, k, pos):
        cos, sin = rotary(pos, c.head_dim, c.rope_theta, q.dtype, inv_freq)
        return _rotate(q, cos, sin), _rotate(k, cos, sin)

    return LMSpec(c.num_attention_heads, c.num_key_value_heads, c.head_dim, bagel_rope)


class StaticDecoder:
    """A static KV cache of ``capacity`` tokens over one model's language model, and its decoding step.

    ``autocast`` is a context-manager factory the computation runs under (the bundled model's bf16 autocast on
    CUDA, or ``contextlib.nullcontext``); ``graphs`` (default: on CUDA) captures the step as a CUDA graph."""

    def __init__(self, model, capacity: int, autocast=contextlib.nullcontext, graphs: bool | None = None):
        self.lm = model.language_model
        self.spec = spec_for(model)
        self.autocast = autocast
        w = self.lm.lm_head.weight
        self.device = w.device
        s = self.spec
        n_layers = len(self.lm.model.layers)
        with self.autocast():  # the cache holds keys in the dtype the projections give
            on = torch.is_autocast_enabled(self.device.type)
            dtype = torch.get_autocast_dtype(self.device.type) if on else w.dtype
        self.capacity = capacity
        self.k = torch.zeros(n_layers, s.n_kv_heads, capacity, s.head_dim, device=self.device, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.length = 0  # filled slots
        self.graphs = self.device.type == "cuda" if graphs is None else graphs
        self._tok = torch.zeros(1, dtype=torch.long, device=self.device)
        self._pos = torch.zeros(1, dtype=torch.long, device=self.device)
        self._slot = torch.zeros(1, dtype=torch.long, device=self.device)
        self._slots = torch.arange(capacity, device=self.device)
        self._graph = None
        self._logits = None

    # -- filling the cache -------------------------------------------------------------------------

    def load(self, kvs) -> None:
        """Put per-layer (k, v), each (1, Hkv, T, Dh) with RoPE applied, at the start of the cache."""
        n = kvs[0][0].shape[2] if kvs else 0
        self._check(n)
        for i, (k, v) in enumerate(kvs):
            self.k[i, :, :n] = k[0]
            self.v[i, :, :n] = v[0]
        self.length = n

    def prefill(self, x, positions, mask):
        """Read a context after what the cache holds: ``x`` (T, D) embeddings, ``positions`` (T,) RoPE ids,
        ``mask`` (T, T) bool (True: may attend) among these tokens, which all see the cached ones. Returns the
        final-normed hidden states (T, D)."""
        s, n, start = self.spec, x.shape[0], self.length
        self._check(start + n)
        full = torch.ones(n, start + n, dtype=torch.bool, device=self.device)
        full[:, start:] = mask
        with torch.no_grad(), self.autocast():
            h = x
            for i, layer in enumerate(self.lm.model.layers):
                a = layer.self_attn
                y = layer.input_layernorm(h)
                q, k, v = self._qkv(a, y, positions)
                self.k[i, :, start:start + n] = k.transpose(0, 1)
                self.v[i, :, start:start + n] = v.transpose(0, 1)
                o = F.scaled_dot_product_attention(q.transpose(0, 1)[None], self.k[i, None, :, :start + n],
                                                   self.v[i, None, :, :start + n], attn_mask=full,
                                                   enable_gqa=s.n_heads != s.n_kv_heads)
                h = h + a.o_proj(o[0].transpose(0, 1).flatten(1))
                h = h + layer.mlp(layer.post_attention_layernorm(h))
            h = self.lm.model.norm(h)
        self.length = start + n
        return h

    def _check(self, n: int) -> None:
        if n > self.capacity:
            raise ValueError(f"the context needs {n} cache slots, the decoder holds {self.capacity}")

    def kvs(self) -> list:
        """Copies of the filled cache as per-layer (k, v), each (1, Hkv, length, Dh)."""
        return [(self.k[i, None, :, :self.length].clone(), self.v[i, None, :, :self.length].clone())
                for i in range(self.k.shape[0])]

    # -- one token ---------------------------------------------------------------------------------

    def _qkv(self, a, y, positions):
        s = self.spec
        q = a.q_norm(a.q_proj(y).unflatten(-1, (s.n_heads, s.head_dim)))
        k = a.k_norm(a.k_proj(y).unflatten(-1, (s.n_kv_heads, s.head_dim)))
        v = a.v_proj(y).unflatten(-1, (s.n_kv_heads, s.head_dim))
        q, k = s.rope(q, k, positions)
        return q, k, v

    def _step(self):
        """Logits (V,) of the token in ``_tok`` at RoPE position ``_pos``, written to cache slot ``_slot``."""
        s = self.spec
        visible = (self._slots <= self._slot)[None, None, None]  # (1, 1, 1, capacity)
        h = self.lm.model.embed_tokens(self._tok)  # (1, D)
        for i, layer in enumerate(self.lm.model.layers):
            a = layer.self_attn
            q, k, v = self._qkv(a, layer.input_layernorm(h), self._pos)  # (1, H|Hkv, Dh)
            self.k[i].index_copy_(1, self._slot, k.transpose(0, 1).to(self.k.dtype))
            self.v[i].index_copy_(1, self._slot, v.transpose(0, 1).to(self.v.dtype))
            # the query heads of one key/value head attend as that head's queries: no repeated keys
            qg = q[0].unflatten(0, (s.n_kv_heads, s.n_heads // s.n_kv_heads))[None].to(self.k.dtype)
            o = F.scaled_dot_product_attention(qg, self.k[i, None], self.v[i, None], attn_mask=visible)
            h = h + a.o_proj(o.reshape(1, -1).to(h.dtype))
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        return self.lm.lm_head(self.lm.model.norm(h))[0].float()

    def step(self, token: int, position: int):
        """Feed one token at RoPE position ``position`` into the next slot; its logits (V,) float32."""
        self._check(self.length + 1)
        self._tok.fill_(token)
        self._pos.fill_(position)
        self._slot.fill_(self.length)
        with torch.no_grad():
            if not self.graphs:
                with self.autocast():
                    logits = self._step()
            else:
                if self._graph is None:
                    self._capture()
                self._graph.replay()
                logits = self._logits
        self.length += 1
        return logits

    def _capture(self) -> None:
        # warm-up on a side stream (the slot written is the one the real step rewrites), then capture
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side), self.autocast():
            for _ in range(2):
                self._step()
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), self.autocast():
            self._logits = self._step()
        self._graph = graph

    def greedy(self, first: int, position: int, eos: int, max_length: int, vocab: int | None = None) -> list[int]:
        """Tokens from ``first`` at ``position`` on, each the most likely after the last, until ``eos`` (not
        included) or ``max_length`` tokens (``first`` included, as BAGEL's greedy decoding counts them)."""
        out, cur = [], first
        for i in range(max_length):
            out.append(cur)
            logits = self.step(cur, position + i)
            cur = int(logits[:vocab].argmax())
            if cur == eos:
                break
        return out


def capacity_for(n: int, bucket: int = 256) -> int:
    """Cache capacity for ``n`` tokens, rounded up so that nearby lengths share one captured graph."""
    return -(-max(n, 1) // bucket) * bucket
