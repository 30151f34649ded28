"""The report: machine facts, targets, markdown tables, ``latest.json`` and the plot."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import attrs

from ._stats import max_in_window, per_second


@attrs.frozen(kw_only=True)
class Target:
    """One published target and whether this run met it."""

    name: str
    value: float
    goal: str
    met: bool

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "goal": self.goal, "met": self.met}


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "patchworks_async": _package_version("patchworks-async"),
        "aiohttp": _package_version("aiohttp"),
        "httpx": _package_version("httpx"),
        "aiolimiter": _package_version("aiolimiter"),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average_at_start": list(os.getloadavg()),
    }


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def overhead_table(rows: Sequence[dict[str, Any]]) -> str:
    """Requests a second, ratio to bare aiohttp, CPU per call and connections."""
    body = [
        [
            str(row["concurrency"]),
            row["side"],
            _fmt(row["requests_per_second"]),
            _fmt(row["ratio_to_aiohttp"], 2),
            _fmt(row["cpu_us_per_call"]),
            _fmt(row["server_cpu_busy"] * 100) + "%",
            str(row["connections_opened"]),
        ]
        for row in rows
    ]
    header = (
        "concurrency",
        "client",
        "requests/s (median)",
        "vs aiohttp",
        "client CPU us/call",
        "server CPU busy",
        "TCP connections",
    )
    return _table(header, body)


def cpu_table(result: dict[str, Any]) -> str:
    """Client CPU per call at one concurrency, ours and bare aiohttp."""
    body = [
        [side, _fmt(result[side]["cpu_us_per_call"], 1), _fmt(result[side]["requests_per_second"])]
        for side in result["sides"]
    ]
    body.append(["difference", _fmt(result["difference_us"], 1), ""])
    return _table(("client", "CPU us/call (median)", "requests/s"), body)


def matrix_table(rows: Sequence[dict[str, Any]]) -> str:
    """One line per cell: the ratio to bare aiohttp, both sides' rates and CPU per call."""
    body = []
    for row in rows:
        ours, bare = row["patchworks_async"], row["aiohttp"]
        peer = row.get("httpx")
        control = row.get("aiohttp_control")
        body.append(
            [
                str(row["concurrency"]),
                row["pattern"],
                row["connectors"],
                row["body"],
                f"{row['pool']} ({row['pool_size']})",
                _fmt(ours["ratio_to_aiohttp"], 2),
                _fmt(ours["requests_per_second"]),
                _fmt(bare["requests_per_second"]),
                f"{_fmt(ours['cpu_us_per_call'])} / {_fmt(bare['cpu_us_per_call'])}",
                _fmt(peer["ratio_to_aiohttp"], 2) if peer else "",
                _fmt(control["ratio_to_aiohttp"], 2) if control else "",
            ]
        )
    header = (
        "c",
        "pattern",
        "connectors",
        "body",
        "pool",
        "**ratio**",
        "ours/s",
        "aiohttp/s",
        "CPU us/call ours / aiohttp",
        "httpx ratio",
        "A/A (aiohttp vs aiohttp)",
    )
    return _table(header, body)


def matrix_summary(summary: dict[str, Any]) -> str:
    """The matrix's counts, medians and A/A noise floor, as a few lines."""
    if not summary["cells"]:
        return "no cells"
    lines = [
        f"{summary['at_or_above_1_0']} of {summary['cells']} cells at or above 1.0 "
        f"(not rounded), {summary['at_or_above_0_95']} at or above 0.95; median "
        f"{summary['median']:.3f}, lowest {summary['lowest']:.3f}, "
        f"highest {summary['highest']:.3f}",
        "median by dimension: "
        + ", ".join(f"{key} {value:.3f}" for key, value in summary["median_by_dimension"].items()),
    ]
    for concurrency, control in summary["aa_control_by_concurrency"].items():
        lines.append(
            f"A/A control at c={concurrency}: median {control['median']:.3f}, rounds "
            f"{control['lowest_round']:.2f} to {control['highest_round']:.2f}"
        )
    return "\n".join(lines)


def scale_table(result: dict[str, Any]) -> str:
    """CPU per call and memory at each checkpoint of instances seen."""
    body = [
        [
            f"{row['instances_seen']:,}",
            _fmt(row["cpu_us_per_call"]),
            _fmt(row["requests_per_second"]),
            f"+{row['rss_growth_mb']:.1f} MB",
            f"{row['python_heap_blocks_growth']:,}",
            f"{row['registry_entries']:,} / {row['registry_bound']:,}",
        ]
        for row in result["checkpoints"]
    ]
    header = (
        "instances seen",
        "CPU us/call (median, last 5 batches of 200)",
        "requests/s",
        "RSS growth",
        "Python heap blocks growth",
        "registry entries / bound",
    )
    return _table(header, body)


def limiter_table(result: dict[str, Any]) -> str:
    """Per phase and limiter: the limit, the busiest window and the share reached."""
    body = []
    for phase, rows in result["phases"].items():
        for row in rows:
            share = _fmt(row["achieved_share"] * 100, 1) + "%"
            if row["note"]:
                share += f" (not judged: {row['note']})"
            body.append(
                [
                    phase,
                    row["limiter"],
                    f"{row['limit']}/s",
                    str(row["requests"]),
                    str(row["max_in_any_window"]),
                    share,
                ]
            )
    header = ("phase", "limiter", "limit", "requests", "max in any 1 s window", "share of limit")
    return _table(header, body)


def bulk_table(makespan: dict[str, Any] | None, memory: Sequence[dict[str, Any]]) -> str:
    """Makespan against the ideal, and peak memory per size."""
    body = []
    if makespan is not None:
        body.append(
            [
                f"makespan, {makespan['items']:,} items at {makespan['limit_per_second']:,}/s",
                f"{makespan['makespan_seconds']:.2f} s (ideal {makespan['ideal_seconds']:.2f} s)",
                f"ratio {makespan['makespan_ratio']:.3f}",
            ]
        )
    for row in memory:
        body.append(
            [
                f"peak memory, {row['items']:,} items, no limit",
                f"+{row['peak_growth_mb']:.1f} MB RSS",
                f"{row['seconds']:.1f} s, {row['cpu_us_per_item']:.0f} us CPU/item",
            ]
        )
    return _table(("bulk", "result", "detail"), body)


def targets_table(targets: Sequence[Target]) -> str:
    body = [
        [
            target.name,
            str(target.value) if isinstance(target.value, int) else _fmt(target.value, 3),
            target.goal,
            "yes" if target.met else "**no**",
        ]
        for target in targets
    ]
    return _table(("target", "value", "goal", "met"), body)


def write_json(path: Path, results: dict[str, Any]) -> None:
    """Write ``results`` to ``path`` through a temporary file (never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(results, indent=2, allow_nan=True) + "\n")
    os.replace(temporary, path)


def plot(path: Path, arrivals: Sequence[float], started: float, limit: float, title: str) -> None:
    """Requests per second over time against the limit line, from the server's arrivals.

    Two series: a sliding one-second window (what the limit is about) and counts
    per 100 ms scaled to a second (how evenly the requests are spread within it).
    """
    # An optional extra (the bench extra), imported only to draw.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = 0.05
    times = sorted(arrivals)
    end = times[-1] if times else started
    xs: list[float] = []
    ys: list[int] = []
    first = last = 0
    point = started + 1.0
    while point <= end:
        while last < len(times) and times[last] < point:
            last += 1
        while first < last and times[first] < point - 1.0:
            first += 1
        xs.append(point - started)
        ys.append(last - first)
        point += step
    fine = per_second(times, started, 0.1)[:-1]  # the last 100 ms is cut short by the end
    peak = max_in_window(times, 1.0)
    figure, axes = plt.subplots(figsize=(9, 4.5), dpi=110)
    axes.plot(
        [0.1 * (index + 1) for index in range(len(fine))],
        [count * 10 for count in fine],
        color="0.75",
        linewidth=0.8,
        label="requests in each 100 ms, x 10",
    )
    axes.plot(
        xs,
        ys,
        linewidth=1.4,
        label=f"requests in the last second (busiest second: {peak:,})",
    )
    axes.axhline(
        limit, color="tab:red", linestyle="--", linewidth=1.2, label=f"limit: {limit:,.0f}/s"
    )
    axes.set_ylim(0, max(limit, peak, 10 * max(fine, default=0)) * 1.15)
    axes.set_xlabel("seconds since the job started")
    axes.set_ylabel("requests per second")
    axes.set_title(title)
    axes.legend(loc="lower center")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
