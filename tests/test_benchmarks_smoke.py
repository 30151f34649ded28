"""The benchmarks package: its pure helpers, its report, and its cheapest real run.

``.ci/run`` runs the whole ``python -m benchmarks --quick``; this keeps the pieces
honest in the ordinary test run, in about two seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import _cell, _cli, _matrix, _overhead, _quota, _report, _stats
from benchmarks._process import Control, Server, server_process


def test_max_in_window_is_half_open() -> None:
    assert _stats.max_in_window([], 1.0) == 0
    assert _stats.max_in_window([0.0, 0.5, 1.0, 1.5], 1.0) == 2
    assert _stats.max_in_window([0.0, 0.1, 0.2, 5.0], 1.0) == 3
    evenly = [index * 0.101 for index in range(100)]  # 10 a second, stretched by 1%
    assert _stats.max_in_window(evenly, 1.0) == 10


def test_achieved_rate_and_buckets() -> None:
    times = [index * 0.25 for index in range(9)]
    assert _stats.achieved_rate(times) == 4.0
    assert _stats.per_second(times, 0.0) == [4, 4, 1]
    assert _stats.ratio(1.0, 0.0) != _stats.ratio(1.0, 0.0)  # nan


def test_targets_and_report_from_results(tmp_path: Path) -> None:
    row = {"concurrency": 16, "side": _overhead.OURS, "ratio_to_aiohttp": 1.02}
    slower = {"concurrency": 64, "side": _overhead.OURS, "ratio_to_aiohttp": 0.95}
    window = {
        "limiter": "client-wide",
        "limit": 20,
        "max_in_any_window": 21,
        "within_limit": False,
        "achieved_share": 0.99,
        "share_judged": True,
    }
    results = {
        "overhead": {"rows": [row, slower]},
        "limiter": {"phases": {"client-wide": [window]}},
    }
    found = {target.name: target.met for target in _cli.targets(results)}
    assert found["overhead: requests/s vs aiohttp, concurrency 16"]
    assert not found["overhead: requests/s vs aiohttp, concurrency 64"]  # the goal is 1.0
    assert not found["limiter (client-wide): client-wide, max in any window"]
    assert found["limiter (client-wide): client-wide, share of limit"]
    _report.write_json(tmp_path / "latest.json", {"targets": list(found)})
    assert json.loads((tmp_path / "latest.json").read_text())["targets"]
    assert not list(tmp_path.glob("*.tmp"))


def test_one_short_run_per_side_against_the_server_process() -> None:
    async def both(server: Server) -> list[_overhead.Run]:
        control = Control(server)
        return [
            await _overhead.run_one(server, control, side, 2, 0.2)
            for side in (_overhead.OURS, _overhead.AIOHTTP)
        ]

    with server_process(instances=1) as server:
        ours, bare = asyncio.run(both(server))
    for run in (ours, bare):
        assert run.calls > 0
        assert run.connections == 2  # counted by the server: one per worker
    assert ours.client_connections == 2


def test_quota_rows_become_targets_and_a_table() -> None:
    result = _quota.run(2, _quota.SCENARIOS[4:5])  # 40% steady: two virtual minutes each way
    on, off = result["rows"]
    assert (on["adaptive"], off["adaptive"]) == (True, False)
    found = {target.name: target.met for target in _cli.targets({"quota": result})}
    assert len(found) == 2  # only the adaptive row is judged
    assert all(found.values())
    assert off["background_denied"] > 0  # counting its own calls only, it takes the other's share
    assert "| 240/min, other consumer 40% steady | on |" in _quota.table(result)


def test_matrix_has_every_cell_once() -> None:
    cells = _matrix.all_cells()
    assert len(cells) == 4 * 2 * 2 * 2 * 2
    assert len(set(cells)) == len(cells)
    assert {cell.pool_size for cell in cells if cell.pool == "default"} == {32}
    ids = _matrix.Connectors("distinct", 3)
    assert [ids.take() for _ in range(4)] == ["0", "1", "2", "0"]
    assert ids.seen == 4


def test_one_cell_is_named_as_the_matrix_prints_it_and_its_profile_is_tabled() -> None:
    cell = _cell.parse_cell("c=16 gather one rated pool=default")
    assert cell == _matrix.Cell(
        concurrency=16, pattern="gather", connectors="one", body="rated", pool="default"
    )
    assert _cell.parse_cell(cell.label) == cell
    with pytest.raises(argparse.ArgumentTypeError):
        _cell.parse_cell("c=16 gather one")
    raw = (
        "main (benchmarks/_cell.py:9);call (patchworks_async/_pipeline.py:336) 3\n"
        "main (benchmarks/_cell.py:9);call (patchworks_async/_pipeline.py:340);"
        "send (patchworks_async/_transport.py:240) 1\n"
    )
    lines = _cell.profile_table(raw, calls=2, top=5)
    assert lines[0].startswith("busy 4000.0 us/call (4 samples")  # 4 samples at 500/s, 2 calls
    selfs = lines[lines.index(next(line for line in lines if "by self" in line)) + 1 :]
    assert "75.0%" in selfs[0]
    assert "call (_pipeline.py)" in selfs[0]
    assert not any("main (_cell.py)" in line for line in lines)  # a root frame, left out


def test_one_matrix_cell_against_the_server_process() -> None:
    cell = _matrix.Cell(
        concurrency=2, pattern="gather", connectors="distinct", body="rated", pool="concurrency"
    )
    with server_process(instances=50) as server:
        row = asyncio.run(
            _matrix.run_cell(
                server,
                cell,
                sides=(_matrix.OURS, _matrix.AIOHTTP),
                rounds=2,
                duration=0.05,
                instances=50,
                distinct_warm_up=30,
            )
        )
    for side in (_matrix.OURS, _matrix.AIOHTTP):
        assert len(row[side]["ratio_to_aiohttp_each_round"]) == 2
        assert row[side]["instances_seen"] > 4 + 30  # the pool's warm-up, then the registry's
    assert row[_matrix.AIOHTTP]["ratio_to_aiohttp"] == 1.0


def _row(cell: _matrix.Cell, ratio: float, control: float | None = None) -> dict[str, object]:
    row: dict[str, object] = {
        "concurrency": cell.concurrency,
        "pattern": cell.pattern,
        "connectors": cell.connectors,
        "body": cell.body,
        "pool": cell.pool,
        _matrix.OURS: {"ratio_to_aiohttp": ratio},
    }
    if control is not None:
        row[_matrix.CONTROL] = {
            "ratio_to_aiohttp": control,
            "ratio_to_aiohttp_each_round": [control - 0.1, control, control + 0.1],
        }
    return row


def test_matrix_summary_counts_unrounded_ratios_and_the_control() -> None:
    one, two, three = _matrix.all_cells((16,))[:3]
    rows = [_row(one, 0.996, control=1.01), _row(two, 1.0), _row(three, 0.949)]
    summary = _matrix.summary(rows)
    assert summary["at_or_above_1_0"] == 1  # 0.996 shows as 1.00 in a table, and is below
    assert summary["at_or_above_0_95"] == 2
    assert summary["lowest"] == 0.949
    assert summary["aa_control_by_concurrency"]["16"]["lowest_round"] == 1.01 - 0.1
    assert "1 of 3 cells at or above 1.0" in _report.matrix_summary(summary)


def test_only_keeps_the_other_sections_of_the_earlier_file(tmp_path: Path) -> None:
    earlier = {
        "command": "python -m benchmarks",
        "machine": {"date": "earlier"},
        "matrix": {"rows": []},
        "cpu": {"difference_us": 9.0},
    }
    path = tmp_path / "latest.json"
    path.write_text(json.dumps(earlier))
    results: dict[str, Any] = {
        "command": "python -m benchmarks --only cpu",
        "machine": {"date": "now"},
        "cpu": {"difference_us": 1.0},
    }
    _cli._stamp(results, ("cpu",))
    _cli._keep_earlier(path, results)
    assert results["cpu"]["difference_us"] == 1.0
    assert results["cpu"]["run"]["machine"] == {"date": "now"}
    assert results["matrix"]["run"] == {
        "command": "python -m benchmarks",
        "machine": {"date": "earlier"},
    }
