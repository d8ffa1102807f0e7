"""What the SVG time limit costs: SVGs rasterised in a child process (pipelines/net/svg_raster.py) against
cairosvg called in the fetching process (what ``decode_image`` did before, with no limit), on ordinary SVGs;
and what a ``<use>`` bomb costs each way (the in-process baseline is stopped by an alarm at ``--bomb-cap-s``).

    .venv/bin/python benchmarks/bench_svg_raster.py [--n 100] [--limit-s 5] [--bomb-cap-s 30]
"""

from __future__ import annotations

import argparse
import resource
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.record import Row, write_result
from pipelines.net.netguard import Refused
from pipelines.net.svg_raster import rasterize_svg, render

ICON = (b'<svg xmlns="http://www.w3.org/2000/svg" width="240" height="160" viewBox="0 0 240 160">'
        b'<rect width="240" height="160" fill="#eef"/><circle cx="80" cy="80" r="50" fill="#36c"/>'
        b'<path d="M140 40 L220 80 L140 120 Z" fill="#c63"/><text x="20" y="150" font-size="14">diagram</text></svg>')


def use_bomb(levels: int = 9, fan: int = 10) -> bytes:
    parts = [('<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="100" '
              'height="100"><defs><g id="a0"><rect width="1" height="1" fill="red"/></g>')]
    for i in range(1, levels):
        parts.append(f'<g id="a{i}">' + "".join(f'<use xlink:href="#a{i - 1}"/>' for _ in range(fan)) + "</g>")
    parts.append(f'</defs><use xlink:href="#a{levels - 1}"/></svg>')
    return "".join(parts).encode()


def cpu_s() -> float:
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def timed(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--limit-s", type=float, default=5.0)
    ap.add_argument("--bomb-cap-s", type=float, default=30.0)
    a = ap.parse_args()

    rasterize_svg(ICON, 1024, a.limit_s)  # start the child once, as a run does on its first SVG
    ours = timed(lambda: rasterize_svg(ICON, 1024, a.limit_s), a.n)
    base = timed(lambda: render(ICON, 1024), a.n)

    bomb = use_bomb()
    t, c = time.perf_counter(), cpu_s()
    try:
        rasterize_svg(bomb, 1024, a.limit_s)
        outcome = "ok"
    except Refused as r:
        outcome = r.outcome
    bomb_ours, bomb_ours_cpu = time.perf_counter() - t, cpu_s() - c

    class Stop(BaseException):  # not an Exception: the renderer turns those into "does not render"
        pass

    def alarm(*_):
        raise Stop

    signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, a.bomb_cap_s)
    t, c = time.perf_counter(), cpu_s()
    try:
        render(bomb, 1024)
        capped = False
    except Stop:
        capped = True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    bomb_base, bomb_base_cpu = time.perf_counter() - t, cpu_s() - c

    write_result("bench_svg_raster", rows=[
        Row(name="ordinary SVG (240x160, 4 shapes)", metric="ms per SVG", ours=ours * 1e3, baseline=base * 1e3,
            baseline_name="cairosvg in the fetching process (no limit)", higher_is_better=False,
            note="child process kept warm; the start-up (once per process) is not counted"),
        Row(name=f"{len(bomb)}-byte <use> bomb, wall", metric="s", ours=bomb_ours, baseline=bomb_base,
            baseline_name="cairosvg in the fetching process" + (f" (stopped at {a.bomb_cap_s:g} s)" if capped else ""),
            higher_is_better=False, note=f"ours ends as {outcome} at limit {a.limit_s:g} s"),
        Row(name=f"{len(bomb)}-byte <use> bomb, CPU", metric="CPU s", ours=bomb_ours_cpu, baseline=bomb_base_cpu,
            baseline_name="cairosvg in the fetching process" + (" (stopped)" if capped else ""), higher_is_better=False),
    ], libraries=("cairosvg", "lxml"), extra={"n": a.n, "limit_s": a.limit_s, "bomb_cap_s": a.bomb_cap_s})


if __name__ == "__main__":
    main()
