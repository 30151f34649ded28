"""``python -m benchmarks``: run the benchmarks, print the tables, write the results.

Exit codes: 0 when the run completed (targets missed or not), 1 on an error (the
traceback is printed), 3 with ``--fail-on-miss`` when a target was missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from . import _bulk, _limiter, _matrix, _overhead, _quota, _report
from ._process import Server, run_json, server_process
from ._report import Target
from ._stats import median

SECTIONS = ("overhead", "cpu", "matrix", "scale", "limiter", "bulk", "quota")
#: Sections that start no server process (they run on a virtual clock in-process).
IN_PROCESS = frozenset({"quota"})
RESULTS = Path(__file__).parent / "results"
MISSED_EXIT_CODE = 3


@attrs.frozen(kw_only=True)
class Config:
    """How big each benchmark is."""

    rounds: int
    seconds_per_run: float
    concurrencies: tuple[int, ...]
    cpu_rounds: int
    cpu_seconds_per_run: float
    windows: int
    bulk_items: int
    bulk_per_second: int
    capacity_seconds: float
    memory_sizes: tuple[int, ...]
    quota_minutes: int
    matrix_concurrencies: tuple[int, ...]
    matrix_rounds: int
    matrix_seconds_per_run: float
    matrix_distinct_warm_up: int
    scale_checkpoints: tuple[int, ...]


FULL = Config(
    rounds=7,
    seconds_per_run=1.0,
    concurrencies=(1, 16, 64),
    cpu_rounds=5,
    cpu_seconds_per_run=2.0,
    windows=6,
    bulk_items=20_000,
    bulk_per_second=1_000,
    capacity_seconds=1.0,
    memory_sizes=(20_000, 200_000),
    quota_minutes=10,
    matrix_concurrencies=_matrix.CONCURRENCIES,
    matrix_rounds=9,
    matrix_seconds_per_run=0.35,
    matrix_distinct_warm_up=_matrix.DISTINCT_WARM_UP,
    scale_checkpoints=(1_000, 10_000, 100_000),
)
QUICK = Config(
    rounds=1,
    seconds_per_run=0.25,
    concurrencies=(1, 16, 64),
    cpu_rounds=1,
    cpu_seconds_per_run=0.25,
    windows=2,
    bulk_items=2_000,
    bulk_per_second=1_000,
    capacity_seconds=0.25,
    memory_sizes=(2_000, 10_000),
    quota_minutes=2,
    matrix_concurrencies=(16,),
    matrix_rounds=1,
    matrix_seconds_per_run=0.05,
    matrix_distinct_warm_up=0,
    scale_checkpoints=(1_000, 2_000),
)
CLIENT_PER_SECOND = 20
ROOMY_CLIENT_PER_SECOND = 100
INSTANCE_PER_SECOND = (5, 10, 3)
MATRIX_TARGET = 1.0
#: The single-connector, pool-of-100 worker run is the kindest workload; held to the matrix's goal.
OVERHEAD_TARGET = MATRIX_TARGET
SHARE_TARGET = 0.98
MAKESPAN_TARGET = 1.03
MEMORY_TARGET_MB = 20.0
#: Instances the server knows: enough for the scale run's distinct instances.
INSTANCES = 100_001


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(
            "Benchmarks of patchworks-async against a server in another process on "
            "127.0.0.1: cost over bare aiohttp, limiter accuracy, bulk makespan and "
            "memory, CPU per call; and the adaptive quota on a shared key (virtual time)."
        ),
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run of every part (< 60 s): works, not fast"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        help="run only this part (repeatable)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=(
            "directory for latest.json and requests_per_second.png (default: "
            "benchmarks/results; with --quick, a temporary directory that is removed); "
            "with --only, the other sections of an existing latest.json are kept, "
            "each section saying which run made it"
        ),
    )
    parser.add_argument(
        "--fail-on-miss",
        action="store_true",
        help=f"exit {MISSED_EXIT_CODE} when a target is missed",
    )
    return parser


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def _overhead_part(server: Server, config: Config) -> dict[str, Any]:
    runs = await _overhead.run_rounds(
        server,
        sides=_overhead.SIDES,
        concurrencies=config.concurrencies,
        rounds=config.rounds,
        duration=config.seconds_per_run,
        progress=lambda line: _log(f"  overhead {line}"),
    )
    return {
        "rounds": config.rounds,
        "seconds_per_run": config.seconds_per_run,
        "pool_size": _overhead.POOL,
        "rows": _overhead.summarise(runs, _overhead.SIDES),
    }


async def _cpu_part(server: Server, config: Config) -> dict[str, Any]:
    sides = (_overhead.OURS, _overhead.AIOHTTP)
    runs = await _overhead.run_rounds(
        server,
        sides=sides,
        concurrencies=(16,),
        rounds=config.cpu_rounds,
        duration=config.cpu_seconds_per_run,
        progress=lambda line: _log(f"  cpu {line}"),
    )
    result: dict[str, Any] = {"concurrency": 16, "rounds": config.cpu_rounds, "sides": sides}
    for side in sides:
        mine = [run for run in runs if run.side == side]
        result[side] = {
            "cpu_us_per_call": median(run.cpu_us for run in mine),
            "cpu_us_each_round": [run.cpu_us for run in mine],
            "requests_per_second": median(run.per_second for run in mine),
        }
    result["difference_us"] = (
        result[_overhead.OURS]["cpu_us_per_call"] - result[_overhead.AIOHTTP]["cpu_us_per_call"]
    )
    return result


def _peer_cells(cells: Sequence[_matrix.Cell]) -> list[_matrix.Cell]:
    """The httpx reference row: one cell per concurrency (workers, one instance, plain)."""
    return [
        cell
        for cell in cells
        if (cell.pattern, cell.connectors, cell.body, cell.pool)
        == ("workers", "one", "plain", "concurrency")
    ]


async def _matrix_part(server: Server, config: Config) -> dict[str, Any]:
    cells = _matrix.all_cells(config.matrix_concurrencies)
    rows = await _matrix.run_matrix(
        server,
        cells,
        rounds=config.matrix_rounds,
        duration=config.matrix_seconds_per_run,
        instances=INSTANCES,
        distinct_warm_up=config.matrix_distinct_warm_up,
        peer_cells=_peer_cells(cells),
        progress=lambda line: _log(f"  matrix {line}"),
    )
    return {
        "rounds": config.matrix_rounds,
        "seconds_per_run": config.matrix_seconds_per_run,
        "summary": _matrix.summary(rows),
        "rows": rows,
    }


async def _scale_part(server: Server, config: Config) -> dict[str, Any]:
    calls = max(config.scale_checkpoints)
    _log(f"  scale: {calls:,} distinct instances with rate fields (a subprocess)")
    command = [
        "-m",
        "benchmarks._scale",
        "--url",
        server.url,
        "--api-key",
        server.api_key,
        "--calls",
        str(calls),
        "--checkpoints",
        ",".join(str(point) for point in config.scale_checkpoints),
    ]
    return await asyncio.to_thread(run_json, command, 1800.0)


async def _limiter_part(server: Server, config: Config) -> dict[str, Any]:
    _log(f"  limiter: 3 phases of {config.windows} s")
    return await _limiter.run(
        server,
        windows=config.windows,
        client_per_second=CLIENT_PER_SECOND,
        roomy_client_per_second=ROOMY_CLIENT_PER_SECOND,
        instance_per_second=INSTANCE_PER_SECOND,
    )


async def _bulk_part(server: Server, config: Config) -> dict[str, Any]:
    _log(f"  bulk: {config.bulk_items:,} items at {config.bulk_per_second:,}/s")
    makespan = await _bulk.makespan(
        server,
        count=config.bulk_items,
        per_second=config.bulk_per_second,
        capacity_seconds=config.capacity_seconds,
    )
    memory = []
    for size in config.memory_sizes:
        _log(f"  bulk: peak memory of {size:,} items (a subprocess)")
        memory.append(await _bulk.memory_async(server, count=size, limit_seconds=900.0))
    return {"makespan": makespan, "memory": memory}


async def _run(server: Server, config: Config, sections: Sequence[str]) -> dict[str, Any]:
    parts = {
        "overhead": _overhead_part,
        "cpu": _cpu_part,
        "matrix": _matrix_part,
        "scale": _scale_part,
        "limiter": _limiter_part,
        "bulk": _bulk_part,
    }
    results: dict[str, Any] = {}
    for name in SECTIONS:
        if name in sections and name not in IN_PROCESS:
            _log(f"{name} ...")
            started = time.monotonic()
            results[name] = await parts[name](server, config)
            results[name]["seconds"] = time.monotonic() - started
    return results


def targets(results: dict[str, Any]) -> list[Target]:
    """Every target this run can judge."""
    found: list[Target] = []
    overhead = results.get("overhead")
    if overhead is not None:
        for row in overhead["rows"]:
            if row["side"] == _overhead.OURS:
                ratio = row["ratio_to_aiohttp"]
                found.append(
                    Target(
                        name=f"overhead: requests/s vs aiohttp, concurrency {row['concurrency']}",
                        value=ratio,
                        goal=f">= {OVERHEAD_TARGET}",
                        met=ratio >= OVERHEAD_TARGET,
                    )
                )
    matrix = results.get("matrix")
    if matrix is not None:
        for row in matrix["rows"]:
            ratio = row[_matrix.OURS]["ratio_to_aiohttp"]
            found.append(
                Target(
                    name=(
                        f"matrix: c={row['concurrency']} {row['pattern']} {row['connectors']} "
                        f"{row['body']} pool={row['pool']}"
                    ),
                    value=ratio,
                    goal=f">= {MATRIX_TARGET}",
                    met=ratio >= MATRIX_TARGET,
                )
            )
    limiter = results.get("limiter")
    if limiter is not None:
        for phase, rows in limiter["phases"].items():
            for row in rows:
                label = f"limiter ({phase}): {row['limiter']}"
                found.append(
                    Target(
                        name=f"{label}, max in any window",
                        value=row["max_in_any_window"],
                        goal=f"<= {row['limit']}",
                        met=row["within_limit"],
                    )
                )
                if row["share_judged"]:
                    found.append(
                        Target(
                            name=f"{label}, share of limit",
                            value=row["achieved_share"],
                            goal=f">= {SHARE_TARGET}",
                            met=row["achieved_share"] >= SHARE_TARGET,
                        )
                    )
    bulk = results.get("bulk")
    if bulk is not None:
        ratio = bulk["makespan"]["makespan_ratio"]
        found.append(
            Target(
                name="bulk: makespan / (items / limit)",
                value=ratio,
                goal=f"<= {MAKESPAN_TARGET}",
                met=ratio <= MAKESPAN_TARGET,
            )
        )
        growths = [row["peak_growth_mb"] for row in bulk["memory"]]
        spread = max(growths) - min(growths)
        found.append(
            Target(
                name="bulk: peak memory spread across sizes (MB)",
                value=spread,
                goal=f"<= {MEMORY_TARGET_MB:.0f}",
                met=spread <= MEMORY_TARGET_MB,
            )
        )
    found.extend(_quota_targets(results.get("quota")))
    return found


def _quota_targets(quota: dict[str, Any] | None) -> list[Target]:
    found: list[Target] = []
    if quota is None:
        return found
    for row in quota["rows"]:
        if not row["adaptive"]:
            continue  # the comparison runs are shown, not judged
        label = f"quota ({row['scenario']})"
        found.append(
            Target(
                name=f"{label}: client 429s per minute after the first window",
                value=row["per_minute_429"],
                goal=f"<= {_quota.MAX_429_PER_MINUTE:g}",
                met=row["per_minute_429"] <= _quota.MAX_429_PER_MINUTE,
            )
        )
        found.append(
            Target(
                name=f"{label}: share of what the others left, used",
                value=row["used_share"],
                goal=f">= {_quota.SHARE_TARGET}",
                met=row["used_share"] >= _quota.SHARE_TARGET,
            )
        )
    return found


def render(results: dict[str, Any], found: Sequence[Target]) -> str:
    """The stdout report: markdown tables, one per part."""
    chunks = []
    machine = results["machine"]
    chunks.append(
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB; "
        f"Python {machine['python']}, aiohttp {machine['aiohttp']}, httpx {machine['httpx']}; "
        f"{machine['date']} ({results['mode']} run)"
    )
    if "overhead" in results:
        chunks.append("Overhead (PATCH reauthorise, limiters off; medians of interleaved rounds)")
        chunks.append(_report.overhead_table(results["overhead"]["rows"]))
    if "cpu" in results:
        chunks.append("Client CPU per call, concurrency 16, limiters off")
        chunks.append(_report.cpu_table(results["cpu"]))
    if "matrix" in results:
        chunks.append(
            "Matrix: ratio of requests/s to hand-written aiohttp (median of per-round "
            "ratios, alternating rounds)"
        )
        chunks.append(_report.matrix_table(results["matrix"]["rows"]))
        chunks.append(_report.matrix_summary(_matrix.summary(results["matrix"]["rows"])))
    if "scale" in results:
        chunks.append("Cost as instances grow (one client, a new instance per call, rate fields)")
        chunks.append(_report.scale_table(results["scale"]))
    if "limiter" in results:
        chunks.append("Limiter accuracy (server arrival times)")
        chunks.append(_report.limiter_table(results["limiter"]))
    if "bulk" in results:
        chunks.append("Bulk reauthorise_many")
        chunks.append(_report.bulk_table(results["bulk"]["makespan"], results["bulk"]["memory"]))
    if "quota" in results:
        chunks.append(
            f"Adaptive quota: {results['quota']['minutes']} virtual minutes per run, "
            f"client configured at {results['quota']['configured_per_minute']}/minute"
        )
        chunks.append(_quota.table(results["quota"]))
    if found:
        chunks.append("Targets")
        chunks.append(_report.targets_table(found))
    return "\n\n".join(chunks)


def _stamp(results: dict[str, Any], sections: Sequence[str]) -> None:
    """Each section run now records the run that made it (command, machine, load)."""
    run = {"command": results["command"], "machine": results["machine"]}
    for name in sections:
        if name in results:
            results[name]["run"] = run


def _keep_earlier(path: Path, results: dict[str, Any]) -> None:
    """Sections of the ``latest.json`` at ``path`` that this run did not redo, kept as they were.

    A section of an older file without its own ``run`` gets that file's command and machine.
    """
    if not path.exists():
        return
    earlier = json.loads(path.read_text())
    for name in SECTIONS:
        if name in results or name not in earlier:
            continue
        section = earlier[name]
        section.setdefault(
            "run", {"command": earlier.get("command"), "machine": earlier.get("machine")}
        )
        results[name] = section


def _write(output: Path, results: dict[str, Any]) -> None:
    bulk = results.get("bulk")
    if bulk is not None and "arrivals" in bulk["makespan"]:
        makespan = bulk["makespan"]
        _report.plot(
            output / "requests_per_second.png",
            makespan.pop("arrivals"),
            makespan["started"],
            makespan["limit_per_second"],
            f"reauthorise_many: {makespan['items']:,} items, client-wide limit "
            f"{makespan['limit_per_second']:,}/s",
        )
    _report.write_json(output / "latest.json", results)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    config = QUICK if args.quick else FULL
    sections = tuple(args.only) if args.only else SECTIONS
    temporary = args.output is None and args.quick
    output: Path = args.output or (
        Path(tempfile.mkdtemp(prefix="patchworks-bench-")) if temporary else RESULTS
    )
    started = time.monotonic()
    results: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "command": " ".join(["python -m benchmarks", *(sys.argv[1:] if argv is None else argv)]),
        "machine": _report.machine(),
        "config": attrs.asdict(config),
    }
    try:
        if any(name not in IN_PROCESS for name in sections):
            with server_process(INSTANCES) as server:
                results.update(asyncio.run(_run(server, config, sections)))
        if "quota" in sections:
            runs = len(_quota.SCENARIOS) * 2
            _log(f"quota ... ({runs} runs of {config.quota_minutes} virtual minutes)")
            quota_started = time.monotonic()
            results["quota"] = _quota.run(config.quota_minutes)
            results["quota"]["seconds"] = time.monotonic() - quota_started
        results["machine"]["load_average_at_end"] = list(os.getloadavg())
        results["seconds"] = time.monotonic() - started
        _stamp(results, sections)
        if not temporary and args.only:
            _keep_earlier(output / "latest.json", results)
        found = targets(results)
        results["targets"] = [target.as_dict() for target in found]
        _write(output, results)
        print(render(results, found))
        if temporary:
            # The smoke run checks that the files can be written; then they go.
            json.loads((output / "latest.json").read_text())
        else:
            _log(f"wrote {output / 'latest.json'}")
    finally:
        if temporary:
            shutil.rmtree(output, ignore_errors=True)
    _log(f"done in {time.monotonic() - started:.0f} s")
    missed = [target for target in found if not target.met]
    return MISSED_EXIT_CODE if missed and args.fail_on_miss else 0
