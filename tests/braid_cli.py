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
