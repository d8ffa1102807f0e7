"""``braid export`` through the real CLI: bad input and a non-empty output directory give one clear sentence
and exit code 2 before anything is written; --overwrite replaces an earlier export and nothing else."""

from __future__ import annotations

import json

import pytest
from export_samples import video_sample, web_sample, write_run

from pipelines.commands.cli import main

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("run"), [video_sample(0), web_sample(0)])


def fails(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    for n in needles:
        assert n in err, err


def test_bad_inputs(capsys, tmp_path):
    out = str(tmp_path / "out")
    fails(capsys, ["export", "bagel", "--out", out], "no shards given")
    (tmp_path / "empty").mkdir()
    fails(capsys, ["export", "hf", str(tmp_path / "empty"), "--out", out], "holds no .tar shards")
    fails(capsys, ["export", "hf", str(tmp_path / "missing.tar"), "--out", out], "does not exist")
    (tmp_path / "junk.tar").write_bytes(b"this is not a tar file at all" * 40)
    fails(capsys, ["export", "omnicorpus", str(tmp_path / "junk.tar"), "--out", out], "is not a tar shard")
    fails(capsys, ["export", "hf", str(tmp_path / "empty"), "--out", out, "--data-root", "/x"],
          "--data-root cannot be used with 'braid export hf'")
    fails(capsys, ["export", "bagel", str(tmp_path / "empty"), "--out", out, "--rows-per-group", "0"], "must be positive")
    assert not (tmp_path / "out").exists()


def test_tar_without_braid_samples(capsys, tmp_path):
    import io
    import tarfile

    with tarfile.open(tmp_path / "other.tar", "w") as tar:
        info = tarfile.TarInfo("readme.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    fails(capsys, ["export", "bagel", str(tmp_path / "other.tar"), "--out", str(tmp_path / "o")],
          "no sample in the given shards could be read")
    assert not (tmp_path / "o").exists()


def test_output_directory_rules(capsys, tmp_path, run_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    fails(capsys, ["export", "bagel", str(run_dir), "--out", str(out)], "exists and is not empty", "--overwrite")
    fails(capsys, ["export", "bagel", str(run_dir), "--out", str(out), "--overwrite"], "is not a Braid export")
    assert (out / "notes.txt").read_text() == "mine"
    fails(capsys, ["export", "hf", str(run_dir), "--out", str(run_dir)], "exists and is not empty")

    fresh = tmp_path / "fresh"
    assert main(["export", "bagel", str(run_dir), "--out", str(fresh), "--data-root", "/data/braid"]) == 0
    printed = capsys.readouterr().out
    assert "data_dir must be given exactly as '/data/braid/unified_edit'" in printed
    assert main(["export", "hf", str(run_dir), "--out", str(fresh), "--overwrite"]) == 0
    assert json.loads((fresh / "export.json").read_text())["format"] == "hf"
    assert not (fresh / "unified_edit").exists()  # the earlier export was replaced, not mixed in
    assert not list(tmp_path.glob(".fresh*"))  # no staging leftovers
