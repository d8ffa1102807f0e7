"""Flags that mean one thing: ``export FORMAT --help`` lists only that format's flags, spotcheck's model preset is
``--geometry`` (``--config`` is a YAML file wherever it exists), and ``make-tiny-vlm`` prints the flags to use it."""

from __future__ import annotations

import pytest

from pipelines.commands.cli import main


def _help(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def test_export_help_shows_only_the_formats_own_flags(capsys):
    own = {"bagel": ("--data-root", "--dataset-name", "--max-pixels", "--no-caption-pairs"),
           "hf": ("--license", "--pretty-name"), "omnicorpus": ("--images", "--doc-format")}
    for fmt, flags in own.items():
        text = _help(capsys, "export", fmt)
        for f in flags:
            assert f in text, (fmt, f)
        for other, theirs in own.items():
            if other != fmt:
                assert not any(f in text for f in theirs), (fmt, other, text)
        assert "--out" in text and "--rows-per-group" in text and "(default: " in text
    assert "(default: 64)" in _help(capsys, "export", "bagel")  # BAGEL's row group, not hf's 100
    assert "(default: 100)" in _help(capsys, "export", "hf")


def test_a_foreign_export_flag_is_one_sentence(capsys, tmp_path):
    assert main(["export", "hf", str(tmp_path), "--out", str(tmp_path / "o"), "--images", "files"]) == 2
    err = capsys.readouterr().err
    assert "--images cannot be used with 'braid export hf'" in err and err.count("\n") == 1


def test_spotcheck_geometry_is_not_called_config(capsys):
    text = _help(capsys, "spotcheck")
    assert "--geometry {tiny,small,base}" in text and "--config" not in text
    with pytest.raises(SystemExit):
        main(["spotcheck", "x.tar", "--out", "r.html", "--config", "tiny"])
    assert "unrecognized arguments: --config" in capsys.readouterr().err


@pytest.mark.timeout(300)
def test_make_tiny_vlm_prints_the_cli_flags(capsys, tmp_path):
    assert main(["make-tiny-vlm", str(tmp_path / "vlm")]) == 0
    out = capsys.readouterr().out
    assert f"--captioner hf --model {tmp_path / 'vlm'}" in out
    assert "CaptionerConfig(" not in out and (tmp_path / "vlm" / "config.json").is_file()
