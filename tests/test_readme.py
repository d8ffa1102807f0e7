"""The README's output layout names what a real run writes: every documented name exists after a web run
(the pipeline that writes all of them), and the Ray shard name it shows is the one the executor makes."""

from __future__ import annotations

import re
from pathlib import Path

from braid_cli import braid

from pipelines.core.lock import LOCK_NAME
from schemas.writer import SHARD_RE

ROOT = Path(__file__).resolve().parents[1]


def _layout() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("## Output layout", 1)[1].split("```", 2)[1]
    return [ln.split("#")[0].strip().removeprefix("OUT/") for ln in block.splitlines()
            if ln.strip() and ln.strip() != "OUT/"]


def test_the_documented_output_layout_is_what_a_run_writes(tmp_path):
    from PIL import Image

    from pipelines.web_interleave.synth import make_example_pages

    pages = make_example_pages(tmp_path / "pages", n_pages=2)
    # one image too small for the size rule: its thumbnail goes to dropped/
    Image.new("RGB", (40, 40), (200, 0, 200)).save(pages[0].parent / "img" / "tiny.png")
    html = pages[0].read_text()
    pages[0].write_text(html.replace("</figure>", '</figure><p>A small icon.</p><img src="img/tiny.png" alt="dot">', 1))
    out = tmp_path / "out"
    code, _, err = braid("web", *map(str, pages), "--out", str(out), "--preset", "tiny", "--executor", "local",
                         "--set", "filters.min_relevance=null")
    assert code == 0, err
    names = _layout()
    assert len(names) >= 10
    written = {p.relative_to(out).as_posix() + ("/" if p.is_dir() else "") for p in out.rglob("*")}
    for name in names:
        if name == LOCK_NAME:
            assert not (out / name).exists()  # held only while a run works, and released
            continue
        assert name in written, f"README documents {name!r} but the run wrote {sorted(written)}"
    # the Ray executor's name for the same shard, as the README shows it
    ray_name = re.search(r"on Ray: (\S+\.tar)", (ROOT / "README.md").read_text()).group(1)
    assert SHARD_RE.match(ray_name) and re.fullmatch(r"shard-r\d\dt\d{5}-\d{6}\.tar", ray_name)
