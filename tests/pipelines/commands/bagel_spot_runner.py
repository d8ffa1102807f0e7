"""Runs BAGEL's own ``InterleaveInferencer`` (../shared/reference/bagel/inferencer.py) in the reference environment
on a BAGEL checkpoint folder, for the spot-check tests:

- ``caption CKPT PIXELS PROMPT MAX_LENGTH OUT``: one image and one prompt in understanding mode, greedy; prints the
  text it answers as JSON and saves the logits of every decoding step (OUT, ``logits``: steps x vocabulary);
- ``t2i CKPT NOISE PROMPT HEIGHT WIDTH STEPS OUT``: one prompt, then ``gen_image`` with BAGEL's text-to-image
  settings from the given start noise (NOISE, ``noise``), under bfloat16 autocast as BAGEL runs it; saves the
  image (OUT, ``image``: H x W x 3 uint8). The model is built as tests/model/bagel_ref_runner.py builds it
  (same kernel stand-ins).

The image arrives as the ViT input the test computed (PIXELS.safetensors, tensor ``pixels``): BAGEL's transforms
need torchvision and OpenCV, which the reference environment does not have, so the inferencer's two transforms are
stand-ins handing that tensor over; everything after the pixels (ViT patches and positions, the context's splits,
rotary positions and cache, decoding) is BAGEL's.

Not imported by the project; run as ``python bagel_spot_runner.py MODE ...`` with PYTHONPATH set by the test.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "model"))
from bagel_ref_runner import AE, _build


class _Tokenizer:
    """The folder's tokenizer.json with the encode/decode calls BAGEL's inferencer makes."""

    def __init__(self, path: Path):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(path))

    def encode(self, text):
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids):
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=False)


class _Pixels:
    """Stands in for BAGEL's ImageTransform: the resize is the identity, the transform gives the test's tensor."""

    def __init__(self, pixels):
        self.pixels = pixels

    def resize_transform(self, image):
        return image

    def __call__(self, image):
        return self.pixels.clone()


def _load(ckpt: Path):
    """(reference model with the folder's weights, tokenizer, BAGEL's special token ids)."""
    from safetensors.torch import load_file

    model = _build()
    model.load_state_dict(load_file(str(ckpt / "ema.safetensors")), strict=True)
    model.eval()
    tok = _Tokenizer(ckpt / "tokenizer.json")
    ids = {name: tok.tok.token_to_id(t) for name, t in (("bos_token_id", "<|im_start|>"), ("eos_token_id", "<|im_end|>"),
                                                         ("start_of_image", "<|vision_start|>"),
                                                         ("end_of_image", "<|vision_end|>"))}
    return model, tok, ids


def caption(ckpt: Path, pixels: Path, prompt: str, max_length: int, out: Path) -> None:
    import torch
    from inferencer import InterleaveInferencer
    from PIL import Image
    from safetensors.torch import load_file, save_file

    model, tok, ids = _load(ckpt)
    tf = _Pixels(load_file(str(pixels))["pixels"])
    inf = InterleaveInferencer(model, None, tok, tf, tf, ids)
    logits = []
    model.language_model.lm_head.register_forward_hook(lambda m, i, o: logits.append(o.detach().float().reshape(-1)))
    with torch.no_grad():
        answer = inf.interleave_inference([Image.new("RGB", (8, 8)), prompt], understanding_output=True,
                                          do_sample=False, max_think_token_n=max_length)
    save_file({"logits": torch.stack(logits).contiguous()}, str(out))
    print(json.dumps(answer[0]))


def t2i(ckpt: Path, noise: Path, prompt: str, height: int, width: int, steps: int, out: Path) -> None:
    import numpy as np
    import torch
    from inferencer import InterleaveInferencer
    from modeling.autoencoder import AutoEncoder, AutoEncoderParams
    from safetensors.torch import load_file, save_file

    model, tok, ids = _load(ckpt)
    ae = AutoEncoder(AutoEncoderParams(**AE))
    ae.load_state_dict(load_file(str(ckpt / "ae.safetensors")), strict=True)
    ae.eval()
    start = load_file(str(noise))["noise"]
    inf = InterleaveInferencer(model, ae, tok, None, None, ids)
    torch.randn = lambda *a, **kw: start.clone()  # the start noise the test chose
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # BAGEL generates under bfloat16 autocast
        ctx = inf.update_context_text(prompt, inf.init_gen_context())
        image = inf.gen_image((height, width), ctx, cfg_text_scale=4.0, cfg_img_scale=1.0,
                              cfg_text_precontext=inf.init_gen_context(), cfg_img_precontext=ctx,
                              cfg_interval=(0.4, 1.0), cfg_renorm_min=0.0, cfg_renorm_type="global",
                              num_timesteps=steps, timestep_shift=3.0)
    save_file({"image": torch.from_numpy(np.asarray(image).copy())}, str(out))


if __name__ == "__main__":
    if sys.argv[1] == "caption":
        caption(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], int(sys.argv[5]), Path(sys.argv[6]))
    else:
        t2i(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], *map(int, sys.argv[5:8]), Path(sys.argv[8]))
