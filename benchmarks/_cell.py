"""One cell of the matrix, measured and profiled: ``python -m benchmarks._cell``.

    python -m benchmarks._cell "c=64 gather distinct plain default"
    python -m benchmarks._cell "c=16 gather one rated default" --profile patchworks_async

The cell is named as the matrix prints it (``pool=`` optional); the server runs in
its own process, as in the matrix. It prints the ratio and the client process's
CPU microseconds per call of both sides, each round and the median (the matrix's
own ``run_cell``, with the full run's warm-up). ``--profile SIDE`` (repeatable)
then runs one longer gather of that side under py-spy (a sampling profiler in its
own process: ``pip install py-spy``) and prints the functions with the most self
and total time, as a share of the samples holding the GIL (system calls left out)
and in microseconds per call. py-spy shares the machine's cores, so compare
profiles of one run with each other, not with the unprofiled figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ._cli import INSTANCES
from ._matrix import (
    AIOHTTP,
    DISTINCT_WARM_UP,
    FACTORIES,
    OURS,
    Cell,
    Connectors,
    _warm_up,
    run_cell,
    timed,
)
from ._process import Server, server_process

#: py-spy's samples a second (it runs in its own process, on a core it shares).
_RATE = 500
#: The runner's and the event loop's frames, under every sample: left out of the totals.
_ROOTS = frozenset(
    {
        "<module> (_cell.py)", "main (_cell.py)", "_run_code (<frozen runpy>)",
        "_run_module_as_main (<frozen runpy>)", "run (runners.py)", "Runner.run (runners.py)",
        "BaseEventLoop.run_until_complete (base_events.py)",
        "BaseEventLoop.run_forever (base_events.py)", "BaseEventLoop._run_once (base_events.py)",
        "Handle._run (events.py)",
    }
)  # fmt: skip
#: Seconds py-spy is given to attach before the profiled runs start.
_ATTACH = 1.0


def parse_cell(text: str) -> Cell:
    """``"c=64 gather distinct plain default"`` (``pool=`` optional) as a :class:`Cell`."""
    words = text.replace("pool=", "").split()
    if len(words) != 5 or not words[0].startswith("c="):
        raise argparse.ArgumentTypeError(
            f"a cell is 'c=N PATTERN CONNECTORS BODY POOL', got {text!r}"
        )
    concurrency, pattern, connectors, body, pool = words
    return Cell(
        concurrency=int(concurrency[2:]), pattern=pattern, connectors=connectors, body=body,
        pool=pool,
    )  # fmt: skip


def _function(frame: str) -> str:
    """``"send (patchworks_async/_transport.py:240)"`` -> ``"send (_transport.py)"``."""
    name, _, where = frame.rpartition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({os.path.basename(file)})"


def profile_table(raw: str, calls: int, top: int) -> list[str]:
    """The top functions by self and by total time, from py-spy's raw output.

    py-spy recorded only while the profiled side ran, and only samples holding the
    GIL, so the percentages are of the Python work (system calls left out).

    Args:
        raw: py-spy's ``--format raw`` text (``frame;frame;... count`` lines).
        calls: the calls the samples cover (for microseconds per call).
        top: how many lines each table.

    Returns:
        Lines to print.
    """
    selfs: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    busy = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_function(frame) for frame in stack.split(";")]
        busy += count
        selfs[frames[-1]] += count
        for name in set(frames) - _ROOTS:
            totals[name] += count
    per_call = 1e6 / _RATE / calls
    lines = [f"busy {busy * per_call:.1f} us/call ({busy} samples at {_RATE}/s)"]
    for title, table in (("self", selfs), ("total", totals)):
        lines.append(f"  top by {title} time:  %busy  us/call  function (file)")
        for name, count in table.most_common(top):
            lines.append(f"    {100 * count / busy:20.1f}% {count * per_call:8.2f}  {name}")
    return lines


@contextlib.contextmanager
def _spying(samples: list[str]) -> Iterator[None]:
    """py-spy records this process for the block; its raw lines go to ``samples``.

    py-spy runs in its own process (stopped by its pid, SIGINT so it writes its file);
    ``--gil`` keeps only samples holding the GIL, so time in ``send``/``select``
    system calls (the kernel's, and the server's wake-up) is left out.
    """
    spy = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    with tempfile.TemporaryDirectory() as directory:
        output = Path(directory) / "profile.txt"
        process = subprocess.Popen(  # noqa: S603  # py-spy on this very process, no shell
            [spy, "record", "--pid", str(os.getpid()), "--format", "raw", "--nonblocking",
             "--gil", "--rate", str(_RATE), "--output", str(output)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(_ATTACH)
            yield
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(30)
        samples.extend(output.read_text().splitlines())


async def _profile(server: Server, cell: Cell, side: str, seconds: float, top: int) -> None:
    async with FACTORIES[side](server, cell) as call:
        ids = Connectors(cell.connectors, INSTANCES)
        await _warm_up(call, ids, cell, DISTINCT_WARM_UP)
        # One unprofiled run first: the first run after the warm-up pays for promoting
        # the warm-up's objects in the garbage collector, whichever side runs first.
        await timed(call, ids, cell, seconds, int(seconds * 4000))
        samples: list[str] = []
        with _spying(samples):
            done, _, _ = await timed(call, ids, cell, seconds, int(seconds * 4000))
    print(f"\n== {side}: {done} calls profiled")
    print("\n".join(profile_table("\n".join(samples), done, top)))


def _print_row(row: dict[str, Any]) -> None:
    for side in (OURS, AIOHTTP):
        figures = row[side]
        rounds = " ".join(f"{value:.1f}" for value in figures["cpu_us_each_round"])
        print(
            f"{side:<17} {figures['requests_per_second']:8.0f}/s  "
            f"cpu {figures['cpu_us_per_call']:6.1f} us/call (rounds: {rounds})"
        )
    ratios = " ".join(f"{value:.2f}" for value in row[OURS]["ratio_to_aiohttp_each_round"])
    print(f"ratio {row[OURS]['ratio_to_aiohttp']:.3f} (rounds: {ratios})")


async def _main(args: argparse.Namespace) -> None:
    cell: Cell = args.cell
    with server_process(INSTANCES) as server:
        print(cell.label)
        if not args.no_measure:
            row = await run_cell(
                server,
                cell,
                sides=(OURS, AIOHTTP),
                rounds=args.rounds,
                duration=args.seconds,
                instances=INSTANCES,
                distinct_warm_up=DISTINCT_WARM_UP,
            )
            _print_row(row)
        for side in args.profile or ():
            await _profile(server, cell, side, args.profile_seconds, args.top)


def main(argv: Sequence[str] | None = None) -> None:
    """Measure (and profile) one cell of the matrix.

    Args:
        argv: the arguments (default: the command line's).
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks._cell", description=__doc__)
    parser.add_argument("cell", type=parse_cell, help='e.g. "c=64 gather distinct plain default"')
    parser.add_argument("--rounds", type=int, default=9, help="measured rounds (default 9)")
    parser.add_argument("--seconds", type=float, default=0.35, help="seconds per run")
    parser.add_argument(
        "--profile", action="append", choices=(OURS, AIOHTTP), help="then profile this side"
    )
    parser.add_argument("--profile-seconds", type=float, default=5.0, help="one profiled run")
    parser.add_argument("--top", type=int, default=12, help="lines per profile table")
    parser.add_argument("--no-measure", action="store_true", help="profile only")
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
