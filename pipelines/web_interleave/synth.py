"""Example tutorial-style pages with images, generated on the spot (for the demo and tests).

Each page is a small how-to with a title, a navigation bar and footer to be trimmed, and four
distinct drawings (sharp shapes, no text) between its steps, so that a run over them exercises
extraction, fetching, every filter and caption-first assembly without any download.
"""

from __future__ import annotations

import html
import random
from pathlib import Path

TOPICS = (
    ("How to build a wooden birdhouse", ["Cut the front, back and side panels from a pine board.",
     "Drill an entrance hole of about three centimetres in the front panel.",
     "Nail the side panels to the floor, then fix the front and the back.",
     "Attach the roof with a slight overhang so that rain runs off, and hang the box on a tree."]),
    ("How to repot a houseplant", ["Water the plant the day before so the root ball slides out easily.",
     "Tip the pot on its side and ease the plant out, holding it at the base of the stem.",
     "Loosen the roots with your fingers and trim any that are dark or soft.",
     "Set the plant in a larger pot with fresh compost and water it well."]),
    ("How to make a paper lantern", ["Fold a sheet of coloured paper in half along its length.",
     "Cut slits from the fold towards the open edge, stopping two centimetres short.",
     "Unfold the sheet and roll it into a tube, gluing the short edges together.",
     "Add a paper strip across the top as a handle and hang the lantern up."]),
    ("How to fix a flat bicycle tyre", ["Remove the wheel and let out any air that is left in the tube.",
     "Lever one side of the tyre off the rim and pull out the inner tube.",
     "Find the hole, roughen the area and apply a patch with glue.",
     "Refit the tube and the tyre, pump it up to the marked pressure and refit the wheel."]),
)


def drawing(seed: int, size=(480, 360)) -> bytes:
    """A JPEG of random sharp shapes on a tinted background: clear, text-free, and distinct per seed."""
    import io

    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    im = Image.new("RGB", size, tuple(rng.randrange(120, 256) for _ in range(3)))
    d = ImageDraw.Draw(im)
    for _ in range(14):
        x0, y0 = rng.randrange(size[0]), rng.randrange(size[1])
        x1, y1 = x0 + rng.randrange(30, 200), y0 + rng.randrange(30, 160)
        colour = tuple(rng.randrange(0, 256) for _ in range(3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)([x0, y0, x1, y1], fill=colour, outline=(0, 0, 0), width=3)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def page_html(title: str, steps: list[str], images: list[str], extra_images: list[str] = ()) -> str:
    body = []
    for i, (step, src) in enumerate(zip(steps, images), 1):
        body.append(f"<h2>Step {i}</h2>\n<p>{html.escape(step)}</p>\n"
                    f'<figure><img src="{html.escape(src)}" alt="{html.escape(step[:60])}"></figure>')
    for src in extra_images:
        body.append(f'<p>See also this picture.</p><img src="{html.escape(src)}" alt="">')
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>
<body>
<nav class="site-nav"><a href="/">Home</a> <a href="/guides">Guides</a> <img src="img/logo.png" alt="logo"></nav>
<header><h1>Workshop Guides</h1></header>
<main>
<h1>{html.escape(title)}</h1>
<p>Posted by the workshop team</p>
<p>This guide shows each step with a picture. You need about an hour and a few common tools.</p>
{chr(10).join(body)}
<p>That is all: enjoy the result and share it with friends.</p>
</main>
<footer><p>Copyright 2024 Workshop Guides. All rights reserved.</p></footer>
</body></html>
"""


def make_example_pages(out_dir: str | Path, n_pages: int = 3, seed: int = 0) -> list[Path]:
    """Write ``n_pages`` tutorial pages (``page-N/index.html`` with ``page-N/img/*.jpg``); return the page paths."""
    out = Path(out_dir)
    pages = []
    for p in range(n_pages):
        title, steps = TOPICS[p % len(TOPICS)]
        folder = out / f"page-{p}"
        (folder / "img").mkdir(parents=True, exist_ok=True)
        srcs = []
        for i in range(len(steps)):
            name = f"img/step-{i + 1}.jpg"
            (folder / name).write_bytes(drawing(seed * 1000 + p * 10 + i))
            srcs.append(name)
        (folder / "img" / "logo.png").write_bytes(drawing(seed * 1000 + 999, size=(64, 64)))
        (folder / "index.html").write_text(page_html(title, steps, srcs), encoding="utf-8")
        pages.append(folder / "index.html")
    return pages
