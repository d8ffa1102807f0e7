"""`braid make-tiny-vlm DIR`: a loadable folder with the head size vLLM's CPU attention accepts."""

from __future__ import annotations

import json

from pipelines.commands.cli import main


def test_make_tiny_vlm_command_writes_a_complete_folder(tmp_path, capsys):
    out = tmp_path / "tiny"
    assert main(["make-tiny-vlm", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "chat_template.jinja",
        "processor_config.json",
    } <= names
    text = json.loads((out / "config.json").read_text())["text_config"]
    assert text["hidden_size"] // text["num_attention_heads"] == 64
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(out)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}]
    assert "<|image_pad|>" in proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
