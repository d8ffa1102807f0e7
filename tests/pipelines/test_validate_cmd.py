"""braid validate: every problem reported on one clear line, the right exit status, never a traceback."""

from __future__ import annotations

import io

import pytest
from bad_shards import EXPECTED, make_bad_shards, write_tar
from samples import make_sample

from pipelines.commands.cli import main
from pipelines.commands.validate import validate_shard
from schemas import encode_sample


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    return make_bad_shards(tmp_path_factory.mktemp("bad"))


def test_a_good_shard_is_valid(bad, capsys):
    assert main(["validate", str(bad["good"])]) == 0
    assert "1 shard(s), 3 sample(s): all valid" in capsys.readouterr().out


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_each_bad_kind_gives_a_clear_line_and_exit_1(bad, capsys, kind):
    assert main(["validate", str(bad[kind])]) == 1
    out, err = capsys.readouterr()
    lines = [ln for ln in out.splitlines() if ln]
    assert lines and all(ln.startswith(f"{bad[kind]}: ") for ln in lines)
    assert any(EXPECTED[kind] in ln for ln in lines), out
    assert "Traceback" not in out + err
    assert "problem(s) in 1 shard(s)" in err


def test_schema_report_names_every_field(bad):
    _, problems = validate_shard(bad["schema"])
    assert any("field 'kind'" in p for p in problems)
    assert any("field 'segments[1].loss'" in p for p in problems)


def _sample_members(key="k-1"):
    return encode_sample(make_sample(key, n_images=2))


def test_image_checks_decode_size_hash_and_pixel_cap(tmp_path):
    from PIL import Image

    members = _sample_members()
    buf = io.BytesIO()
    Image.new("RGB", (10, 10), (1, 2, 3)).save(buf, "JPEG")
    wrong_size = [(n, buf.getvalue() if n.endswith(".001.jpg") else b) for n, b in members]
    _, problems = validate_shard(write_tar(tmp_path / "size.tar", wrong_size))
    assert any("sha256 does not match" in p for p in problems)
    assert any("image is 10x10 but the JSON says 64x48" in p for p in problems)

    garbage = [(n, b"\xff\xd8 not a jpeg" if n.endswith(".000.jpg") else b) for n, b in members]
    _, problems = validate_shard(write_tar(tmp_path / "garbage.tar", garbage))
    assert any("segments image 0': image does not decode" in p for p in problems)

    _, problems = validate_shard(write_tar(tmp_path / "ok.tar", members), max_pixels=1000)
    assert [p for p in problems if "over the limit of 1000 pixels" in p] and len(problems) == 2


def test_layout_problems_extra_member_and_stats_mismatch(tmp_path, bad):
    extra = write_tar(tmp_path / "extra.tar", [*_sample_members(), ("k-1.pyd", b"\x80\x04K\x01.")])
    _, problems = validate_shard(extra)
    assert problems == ["sample 'k-1': member k-1.pyd is not named by any segment"]
    shard = tmp_path / "s-000000.tar"
    shard.write_bytes(bad["good"].read_bytes())
    (tmp_path / "s-000000_stats.json").write_text('{"count": 4, "keys": []}')
    assert validate_shard(shard)[1] == ["stats file s-000000_stats.json says 4 samples, the tar holds 3"]


def test_no_shards_is_a_usage_error(tmp_path, capsys):
    assert main(["validate", str(tmp_path)]) == 2
    assert "no .tar shards" in capsys.readouterr().err


@pytest.mark.parametrize("stats", [b"[" * 200_000 + b"]" * 200_000, b'{"count": ' + b"9" * 100_000 + b"}",
                                   b'{"count": "\xff"}'])
def test_a_hostile_stats_file_is_a_problem_not_a_crash(tmp_path, bad, capsys, stats):
    shard = tmp_path / "s-000000.tar"
    shard.write_bytes(bad["good"].read_bytes())
    (tmp_path / "s-000000_stats.json").write_bytes(stats)
    assert main(["validate", str(shard)]) == 1
    out, err = capsys.readouterr()
    assert out.startswith(f"{shard}: stats file s-000000_stats.json ") and out.count("\n") == 1
    assert "3 sample(s): 1 problem(s)" in err and "Traceback" not in out + err
