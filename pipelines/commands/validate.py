"""``braid validate SHARDS...``: check shards and report every problem, one line each.

Checks, per shard: the tar reads to its end-of-archive marker, member names are safe and flat, a
sample's members are contiguous and its key has no dot; per sample: no member was refused unread
(sparse, or over the size and count limits of ``schemas.wds``: each refused member is one problem
line), the JSON member parses within its size and nesting limits and passes the schema (messages
name the key and the field), every image the JSON names is present
and no member is unnamed, each image decodes with PIL under a pixel cap, in the declared format,
size and sha256. When the shard's ``_stats.json`` exists, its count and keys must match the tar.
Exit status: 0 when everything is valid, 1 when there are problems, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from pathlib import Path

from pipelines.commands.html import MAX_PIXELS
from pipelines.commands.view import shard_paths
from schemas import SampleError, ShardError, iter_members, stats_path, validate_json
from schemas.wds import member_problems, parse_json_member

_PIL_FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
MAX_STATS_BYTES = 64 << 20


def image_problems(key: str, seg: dict, data: bytes, max_pixels: int = MAX_PIXELS) -> list[str]:
    """Problems of one image member against its segment: decode, format, size, sha256."""
    from PIL import Image

    where = f"sample {key!r}: field 'segments image {seg['index']}'"
    problems = []
    if hashlib.sha256(data).hexdigest() != seg["sha256"]:
        problems.append(f"{where}: sha256 does not match the member's bytes")
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > max_pixels:
                return [*problems, f"{where}: {im.width}x{im.height} is over the limit of {max_pixels} pixels"]
            fmt, size = im.format, im.size
            im.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return [*problems, f"{where}: image does not decode ({type(e).__name__}: {e})"]
    if fmt != _PIL_FORMATS.get(seg["ext"]):
        problems.append(f"{where}: member is {fmt} but ext says {seg['ext']!r}")
    if size != (seg["width"], seg["height"]):
        problems.append(f"{where}: image is {size[0]}x{size[1]} but the JSON says {seg['width']}x{seg['height']}")
    return problems


def sample_problems(key: str, members: dict[str, bytes], images: bool = True,
                    max_pixels: int = MAX_PIXELS) -> list[str]:
    refused = getattr(members, "problems", None)  # members the reader did not read (sparse, over a limit)
    if refused:
        return list(refused)
    try:
        doc = parse_json_member(key, members)
    except SampleError as e:
        return [str(e)]
    problems = validate_json(doc) + member_problems(key, members, doc)
    if images and not problems:
        for seg in doc["segments"]:
            if seg["type"] == "image":
                problems += image_problems(key, seg, members[f"{seg['index']:03d}.{seg['ext']}"], max_pixels)
    return problems


def _stats_problems(path: Path, keys: list[str]) -> list[str]:
    sp = stats_path(path)
    if not sp.exists():
        return []
    try:
        if sp.stat().st_size > MAX_STATS_BYTES:
            return [f"stats file {sp.name} has {sp.stat().st_size} bytes, over the limit of {MAX_STATS_BYTES}"]
        stats = json.loads(sp.read_text(encoding="utf-8"))
    except RecursionError:
        return [f"stats file {sp.name} is nested too deeply to read"]
    except (OSError, ValueError) as e:  # ValueError: bad UTF-8 or JSON, or an integer too long to convert
        return [f"stats file {sp.name} is not valid JSON ({str(e)[:200]})"]
    problems = []
    if not isinstance(stats, dict):
        return [f"stats file {sp.name} holds no object"]
    if stats.get("count") != len(keys):
        problems.append(f"stats file {sp.name} says {stats.get('count')!r} samples, the tar holds {len(keys)}")
    elif isinstance(stats.get("keys"), list) and stats["keys"] != keys:
        problems.append(f"stats file {sp.name} lists other keys than the tar holds")
    return problems


def validate_shard(path: Path, images: bool = True, max_pixels: int = MAX_PIXELS) -> tuple[int, list[str]]:
    """(samples seen, problems) of one shard; never raises on bad data."""
    if not path.is_file():
        return 0, ["no such file"]
    keys: list[str] = []
    problems: list[str] = []
    try:
        for key, members in iter_members(path):
            keys.append(key)
            problems += sample_problems(key, members, images, max_pixels)
    except ShardError as e:
        msg = str(e)
        return len(keys), [*problems, msg[len(str(path)) + 2:] if msg.startswith(f"{path}: ") else msg]
    except (OSError, MemoryError) as e:  # the file system, not the data: still a report, not a traceback
        return len(keys), [*problems, f"cannot read ({type(e).__name__}: {e})"]
    if not keys:
        problems.append("the shard holds no samples")
    return len(keys), problems + _stats_problems(path, keys)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shards", nargs="+", help="shard files (.tar) or directories holding them")
    parser.add_argument("--no-images", action="store_true", help="skip decoding images (layout and schema only)")
    parser.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help="largest image to decode, in pixels")
    parser.add_argument("-q", "--quiet", action="store_true", help="print problems only, no summary line")


def run(args: argparse.Namespace) -> int:
    paths = shard_paths(args.shards)
    if not paths:
        print("braid validate: no .tar shards found in the given directories", file=sys.stderr)
        return 2
    n_samples = n_problems = bad_shards = 0
    for path in paths:
        n, problems = validate_shard(path, not args.no_images, args.max_pixels)
        n_samples += n
        n_problems += len(problems)
        bad_shards += bool(problems)
        for p in problems:
            print(f"{path}: {p}")
    if not args.quiet:
        verdict = "all valid" if not n_problems else f"{n_problems} problem(s) in {bad_shards} shard(s)"
        print(f"braid validate: {len(paths)} shard(s), {n_samples} sample(s): {verdict}",
              file=sys.stderr if n_problems else sys.stdout)
    return 1 if n_problems else 0
