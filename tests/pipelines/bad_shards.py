"""Bad shards of the four kinds ``braid validate`` must explain: truncated tar, missing image member,
wrong JSON (unparsable, or against the schema), dotted key. Built member by member on purpose."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from samples import make_sample

from schemas import ShardWriter, encode_sample


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def make_bad_shards(d: Path) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    good = d / "good"
    with ShardWriter(good, "shard") as w:
        for i in range(3):
            w.write(make_sample(f"k-{i}", n_images=3))
    data = (good / "shard-000000.tar").read_bytes()
    truncated = d / "truncated.tar"
    truncated.write_bytes(data[: len(data) // 2])

    members = encode_sample(make_sample("k-m", n_images=3))
    missing = write_tar(d / "missing.tar", [m for m in members if not m[0].endswith(".001.jpg")])

    badjson = write_tar(d / "badjson.tar", [("k-j.json", b'{"key": "k-j", "segments": [')])
    doc = json.loads(members[0][1])
    doc["kind"] = "podcast"
    doc["segments"][1]["loss"] = "yes"
    doc["key"] = "k-m"
    schema = write_tar(d / "schema.tar", [("k-m.json", json.dumps(doc).encode()), *members[1:]])

    dotted_doc = {**json.loads(members[0][1]), "key": "clip.v2-0"}
    dotted = write_tar(d / "dotted.tar", [("clip.v2-0.json", json.dumps(dotted_doc).encode()),
                                          *[(n.replace("k-m.", "clip.v2-0."), b) for n, b in members[1:]]])
    return {"good": good / "shard-000000.tar", "truncated": truncated, "missing": missing, "badjson": badjson,
            "schema": schema, "dotted": dotted}


# what each bad shard's report must say
EXPECTED = {
    "truncated": "truncated tar",
    "missing": "member k-m.001.jpg is missing",
    "badjson": "sample 'k-j': field 'json': not valid JSON",
    "schema": "sample 'k-m': field 'kind': is 'podcast'",
    "dotted": "sample key 'clip.v2-0' contains a dot",
}
