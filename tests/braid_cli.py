"""Run the ``braid`` command in-process and capture what it prints (import as ``from braid_cli import braid``)."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout


def braid(*args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``braid ARGS...``."""
    from pipelines.commands.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def shard_members(out) -> dict[str, bytes]:
    """Every member of every shard in a run folder, by name: two runs wrote the same samples when these are equal."""
    import tarfile
    from pathlib import Path

    got = {}
    for tar in sorted(Path(out).glob("*.tar")):
        with tarfile.open(tar) as t:
            for m in t.getmembers():
                got[m.name] = t.extractfile(m).read()
    return got
