"""The ``patchworks-async`` command line, end to end in a subprocess against FakePatchworks.

The fake runs in this test's event loop, so every subprocess is driven with asyncio
(never a blocking ``subprocess.run`` while the fake must answer). Every run checks
that neither the API key nor the login password appears in its output.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import attrs
import orjson
import pytest

from patchworks_async.cli import main
from patchworks_async.cli._bulkoutput import OutputFile
from patchworks_async.cli._config import InputError, parse_rate_limit, text_fields
from patchworks_async.cli._progress import RichReporter, Tally, make_reporter, plain_line
from patchworks_async.models import RateLimit
from patchworks_async.testing import FakePatchworks, Fault

SECRETS_ENV = ("PATCHWORKS_API_KEY", "PATCHWORKS_TOKEN", "PATCHWORKS_PASSWORD")


@attrs.frozen
class Run:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return orjson.loads(self.stdout)


def _env(fake: FakePatchworks | None, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PATCHWORKS_")}
    if fake is not None:
        env["PATCHWORKS_API_KEY"] = fake.api_key
        env["PATCHWORKS_BASE_URL"] = fake.url
    env.update(extra)
    return {key: value for key, value in env.items() if value != ""}


async def _start(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "patchworks_async",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


async def _finish(
    process: asyncio.subprocess.Process, env: dict[str, str], limit: float = 30.0
) -> Run:
    out, err = await asyncio.wait_for(process.communicate(), limit)
    run = Run(process.returncode or 0, out.decode(), err.decode())
    for name in SECRETS_ENV:
        secret = env.get(name)
        if secret:
            assert secret not in run.stdout + run.stderr, f"{name} leaked"
    assert "Traceback" not in run.stderr
    return run


async def cli(fake: FakePatchworks | None, *args: str, **env_extra: str) -> Run:
    env = _env(fake, **env_extra)
    return await _finish(await _start(env, *args), env)


def _error_line(run: Run, error: str) -> None:
    assert run.stdout == ""
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(f"error: {error}: "), run.stderr


def _lines(path: pathlib.Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


# -- packaging ---------------------------------------------------------------------------------


def test_library_import_does_not_load_rich() -> None:
    for module in ("patchworks_async", "patchworks_async.cli"):
        code = f"import {module}, sys; assert 'rich' not in sys.modules, sorted(sys.modules)"
        subprocess.run([sys.executable, "-c", code], check=True, timeout=30)  # noqa: S603  # our own interpreter


def test_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for line in ("exit codes:", "0 ", "1 ", "2 ", "3 ", "130", "bulk-reauthorise stopped"):
        assert line in out
    assert main(["bulk-reauthorise"]) == 2  # argparse: --input and --output are required


# -- single calls ------------------------------------------------------------------------------


async def test_authenticate_and_woo_app_auth(fake: FakePatchworks) -> None:
    run = await cli(fake, "authenticate")
    assert run.returncode == 0, run.stderr
    assert run.json()["authenticated"] is True
    assert run.stderr == ""
    woo = await cli(fake, "woo-app-auth", "--rate-limit", "none")
    assert (woo.returncode, woo.json()) == (0, {})


async def test_authorise_from_json_and_fields(fake: FakePatchworks) -> None:
    body = '{"authentication_implementation_id": "impl-1", "timezone": "UTC", "date_format": "Y"}'
    run = await cli(
        fake,
        "authorise",
        "--json",
        body,
        "--field",
        "rate_limit_unit=minute",
        "-f",
        "rate_limit_duration=60",
        "-f",
        'variables=[{"key": "shop", "value": "acme"}]',
        "-f",
        "timezone=Europe/London",
    )
    assert run.returncode == 0, run.stderr
    created = run.json()
    assert created["timezone"] == "Europe/London"
    assert created["rate_limit_duration"] == 60
    assert created["variables"] == [{"key": "shop", "value": "acme"}]
    assert fake.instances[str(created["id"])]["authentication_implementation_id"] == "impl-1"


async def test_reauthorise_one(fake: FakePatchworks, tmp_path: pathlib.Path) -> None:
    key = fake.add_instance(timezone="UTC")
    body = tmp_path / "body.json"
    body.write_text('{"date_format": "d/m/Y"}')
    run = await cli(
        fake, "reauthorise", key, "--json-file", str(body), "-f", "timezone=Europe/Paris"
    )
    assert run.returncode == 0, run.stderr
    assert run.json()["timezone"] == "Europe/Paris"
    assert fake.instances[key]["date_format"] == "d/m/Y"
    assert fake.instances[key]["reauthorise_count"] == 1


async def test_401_is_one_error_line_exit_1(fake: FakePatchworks) -> None:
    run = await cli(fake, "authenticate", PATCHWORKS_API_KEY="pw_wrong_key_123")
    assert run.returncode == 1
    _error_line(run, "AuthenticationError")
    assert "pw_wrong_key_123" not in run.stderr


async def test_404_is_one_error_line_exit_1(fake: FakePatchworks) -> None:
    run = await cli(fake, "reauthorise", "no-such-instance", "--max-attempts", "1")
    assert run.returncode == 1
    _error_line(run, "NotFoundError")
    assert "404" in run.stderr


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["authorise", "-f", "rate_limit_duration=sixty"],
            "ModelValidationError",
        ),  # every bad field (review 11 #4)
        (["authorise", "--json", "{not json"], "InputError"),
        (["reauthorise", "5", "--json", "[1, 2]"], "InputError"),
        (["reauthorise", "5", "-f", "no-equals-sign"], "InputError"),
    ],
)
async def test_bad_input_exits_2_and_sends_nothing(
    fake: FakePatchworks, args: list[str], error: str
) -> None:
    run = await cli(fake, *args)
    assert run.returncode == 2
    _error_line(run, error)
    assert fake.request_count == 0


async def test_usage_errors_exit_2(fake: FakePatchworks) -> None:
    no_credentials = await cli(None, "authenticate", "--base-url", fake.url)
    assert no_credentials.returncode == 2
    _error_line(no_credentials, "InputError")
    bad_rate = await cli(fake, "authenticate", "--rate-limit", "5/fortnight")
    assert bad_rate.returncode == 2
    assert "--rate-limit" in bad_rate.stderr
    assert fake.request_count == 0


async def test_api_key_file(fake: FakePatchworks, tmp_path: pathlib.Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(f"  {fake.api_key}  \nsecond line is ignored\n")
    run = await cli(None, "authenticate", "--api-key-file", str(key_file), "--base-url", fake.url)
    assert run.returncode == 0, run.stderr
    assert fake.api_key not in run.stdout + run.stderr
    assert fake.requests[-1].headers["Authorization"] == fake.api_key
    missing = await cli(None, "authenticate", "--api-key-file", str(tmp_path / "nope"))
    assert missing.returncode == 2
    _error_line(missing, "InputError")


async def test_login_from_the_environment(fake: FakePatchworks) -> None:
    run = await cli(
        None,
        "authenticate",
        PATCHWORKS_BASE_URL=fake.url,
        PATCHWORKS_USERNAME=fake.username,
        PATCHWORKS_PASSWORD=fake.password,
        PATCHWORKS_LOGIN_URL=fake.login_url,
    )
    assert run.returncode == 0, run.stderr
    assert run.json()["user"]["role"] == "administrator"  # a bearer token was used
    assert fake.login_count == 1


# -- bulk --------------------------------------------------------------------------------------


async def test_bulk_csv_with_bad_lines(fake: FakePatchworks, tmp_path: pathlib.Path) -> None:
    ids = [fake.add_instance() for _ in range(40)]
    source = tmp_path / "in.csv"
    with source.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["connector", "timezone", "rate_limit_duration", "variables", "name"])
        for index, key in enumerate(ids):
            if index == 5:
                writer.writerow([key, "UTC", "not-a-number", "", ""])  # line 7: bad int
            elif index == 9:
                writer.writerow(["", "UTC", "", "", ""])  # line 11: no connector
            elif index == 12:
                writer.writerow([key, "UTC", "", '[{"key": "a", "value": 1}]', "n"])
            else:
                writer.writerow([key, "UTC", "", "", ""])
        writer.writerow(["missing-instance", "UTC", "", "", ""])  # line 42: a 404
    output = tmp_path / "out.jsonl"
    run = await cli(
        fake, "bulk-reauthorise", "--input", str(source), "--output", str(output),
        "--max-attempts", "1", "--rate-limit", "none",
        "--allow-unknown-fields",  # the name column (refused without it since issue 11)
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    records = _lines(output)
    assert sorted(r["line"] for r in records) == list(range(2, 43))
    by_line = {r["line"]: r for r in records}
    assert by_line[7]["ok"] is False
    # A ModelValidationError (an InvalidRequestError) naming every bad cell (review 11 #4).
    assert by_line[7]["error"]["type"] == "ModelValidationError"
    assert by_line[7]["error"]["field"] == "rate_limit_duration"
    assert by_line[7]["error"]["errors"] == {"rate_limit_duration": "must be an integer"}
    assert by_line[11]["error"]["message"] == "missing connector"
    assert by_line[42]["error"] == {
        "type": "NotFoundError",
        "message": by_line[42]["error"]["message"],
        "status": 404,
    }
    assert "line 7: bad input" in run.stderr
    assert "line 11: bad input" in run.stderr
    ok = [r for r in records if r["ok"]]
    assert len(ok) == 38
    assert all(r["attempts"] == 1 and r["result"]["timezone"] == "UTC" for r in ok)
    assert fake.instances[ids[12]]["variables"] == [{"key": "a", "value": 1}]
    assert fake.instances[ids[12]]["name"] == "n"
    assert "done: 38 succeeded, 3 failed (2 bad input lines)" in run.stderr
    assert sorted(key for key in ids if fake.instances[key]["reauthorise_count"]) == sorted(
        ids[:5] + ids[6:9] + ids[10:]
    )


async def test_bulk_jsonl_with_bad_lines_and_plain_progress(
    fake: FakePatchworks, tmp_path: pathlib.Path
) -> None:
    ids = [fake.add_instance() for _ in range(60)]
    lines = [orjson.dumps({"connector": int(key), "timezone": "UTC"}).decode() for key in ids]
    lines[10] = '{"connector": '  # line 11: not JSON
    lines[20] = "[1, 2]"  # line 21: not an object
    # line 31: an integer field given as a string
    lines[30] = orjson.dumps({"connector": ids[30], "rate_limit_duration": "5"}).decode()
    lines.insert(40, "")  # a blank line is skipped, not an error
    source = tmp_path / "in.ndjson"
    source.write_text("\n".join(lines) + "\n")
    output = tmp_path / "out.jsonl"
    run = await cli(
        fake, "bulk-reauthorise", "--input", str(source), "--output", str(output),
        "--rate-limit", "200/second",
    )  # fmt: skip
    assert run.returncode == 1
    records = _lines(output)
    assert len(records) == 60
    bad = {r["line"]: r for r in records if not r["ok"]}
    assert sorted(bad) == [11, 21, 31]
    assert bad[31]["connector"] == ids[30]
    assert bad[31]["error"]["field"] == "rate_limit_duration"
    for number in (11, 21, 31):
        assert f"line {number}: bad input" in run.stderr
    # Not a terminal: plain progress lines, one at each tenth at least.
    progress = [line for line in run.stderr.splitlines() if line.startswith("progress: ")]
    assert len(progress) >= 5
    assert progress[-1].startswith("progress: 60/60 (100%)")
    assert sum(fake.instances[key]["reauthorise_count"] for key in ids) == 57


async def test_bulk_refuses_to_overwrite_without_resume(
    fake: FakePatchworks, tmp_path: pathlib.Path
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"connector": "1"}\n')
    output = tmp_path / "out.jsonl"
    output.write_text('{"line": 1, "connector": "1", "ok": true}\n')
    run = await cli(fake, "bulk-reauthorise", "--input", str(source), "--output", str(output))
    assert run.returncode == 2
    _error_line(run, "InputError")
    unknown = await cli(fake, "bulk-reauthorise", "--input", "in.txt", "--output", "o.jsonl")
    assert unknown.returncode == 2
    assert fake.request_count == 0


def _count_lines(path: pathlib.Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


async def _wait_for_lines(path: pathlib.Path, count: int) -> None:
    """Poll the output until it holds ``count`` lines (waiting for a state, with a deadline)."""
    deadline = time.monotonic() + 20.0
    while _count_lines(path) < count:
        assert time.monotonic() < deadline, "the job wrote too few lines in time"
        await asyncio.sleep(0.02)


async def test_resume_after_sigkill(fake: FakePatchworks, tmp_path: pathlib.Path) -> None:
    ids = [fake.add_instance() for _ in range(2000)]
    source = tmp_path / "in.csv"
    source.write_text("connector,timezone\n" + "".join(f"{key},UTC\n" for key in ids))
    output = tmp_path / "out.jsonl"
    args = ["bulk-reauthorise", "--input", str(source), "--output", str(output)]
    env = _env(fake)
    first = await _start(env, *args, "--rate-limit", "500/second")
    await _wait_for_lines(output, 300)
    first.kill()
    await _finish(first, env)
    assert first.returncode == -signal.SIGKILL
    await asyncio.sleep(0.2)  # let the fake finish what was in flight at the kill
    before = _lines_tolerant(output)
    ok_before = {r["connector"] for r in before if r["ok"]}
    assert 300 <= len(ok_before) < 2000
    # A torn write, as a SIGKILL in the middle of a line would leave it.
    with output.open("ab") as file:
        file.write(b'{"line": 9999, "connector": "')
    resumed_at = time.monotonic()

    second = await cli(fake, *args, "--resume", "--rate-limit", "none")
    assert second.returncode == 0, second.stderr
    assert f"{len(ok_before)} skipped (already ok)" in second.stderr

    records = _lines(output)  # every line parses: the torn one was cut off
    assert records[: len(before)] == before
    ok_lines = Counter(r["connector"] for r in records if r["ok"])
    assert set(ok_lines) == set(ids)
    assert set(ok_lines.values()) == {1}
    # Nothing that had succeeded before the kill was sent again ...
    sent_again = {r.path.split("/")[-2] for r in fake.requests if r.arrived >= resumed_at}
    assert not sent_again & ok_before
    # ... and each instance was reauthorised once, except those in flight at the kill:
    # their request reached the server but their outcome was never written.
    counts = {key: fake.instances[key]["reauthorise_count"] for key in ids}
    twice = {key for key, count in counts.items() if count == 2}
    assert set(counts.values()) <= {1, 2}
    assert not twice & ok_before
    assert len(twice) <= 128  # reauthorise_many's read-ahead window at concurrency 16


def _lines_tolerant(path: pathlib.Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_bytes().splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):  # a torn last line
            records.append(orjson.loads(line))
    return records


async def test_sigint_stops_promptly_with_130(fake: FakePatchworks, tmp_path: pathlib.Path) -> None:
    ids = [fake.add_instance() for _ in range(500)]
    fake.latency = 0.2
    source = tmp_path / "in.jsonl"
    source.write_text("".join(f'{{"connector": "{key}"}}\n' for key in ids))
    output = tmp_path / "out.jsonl"
    env = _env(fake)
    process = await _start(
        env, "bulk-reauthorise", "--input", str(source), "--output", str(output),
        "--rate-limit", "none",
    )  # fmt: skip
    await _wait_for_lines(output, 20)
    process.send_signal(signal.SIGINT)
    interrupted_at = time.monotonic()
    run = await _finish(process, env, limit=10)
    assert time.monotonic() - interrupted_at < 3.0
    assert run.returncode == 130
    assert "interrupted: " in run.stderr
    assert "Unclosed" not in run.stderr  # the client's session was closed
    assert "Task was destroyed" not in run.stderr
    records = _lines(output)
    assert 20 <= len(records) < 500
    for record in records:
        assert record["ok"] is True
        assert fake.instances[record["connector"]]["reauthorise_count"] == 1


# -- demo, fake-server -------------------------------------------------------------------------


async def test_demo_quick_prints_the_summary() -> None:
    run = await cli(None, "demo", "--quick")
    assert run.returncode == 0, run.stderr  # only the deliberate 404s failed
    for label in (
        "succeeded",
        "failed",
        "retries",
        "requests sent",
        "server answers",
        "rate while pacing",
        "rate over the whole run",
        "max requests in any 1 s",
        "connections opened",
    ):
        assert label in run.stdout
    # The 404s are labelled deliberate and are not retries; the numbers add up.
    rows = _summary(run.stdout)
    assert rows["failed"].startswith("3, all deliberate: NotFoundError (404)"), rows["failed"]
    assert "3 x 404 (deliberate)" in rows["server answers"]
    calls = int(rows["calls"].split()[0])
    retries = int(rows["retries"].split()[0])
    sent = re.fullmatch(
        r"(\d+) = (\d+) calls \+ (\d+) retries; the server saw (\d+)", rows["requests sent"]
    )
    assert sent is not None, rows["requests sent"]
    assert int(sent[1]) == calls + retries == int(sent[4])
    assert (int(sent[2]), int(sent[3])) == (calls, retries)
    assert "progress: " in run.stderr


def _summary(stdout: str) -> dict[str, str]:
    lines = stdout.split("summary:\n", 1)[1].splitlines()
    return dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in lines)


async def test_fake_server_subcommand() -> None:
    env = _env(None)
    process = await _start(env, "fake-server", "--port", "0")
    assert process.stdout is not None
    url_line = await asyncio.wait_for(process.stdout.readline(), 10)
    assert url_line.startswith(b"url: http://127.0.0.1:")
    process.send_signal(signal.SIGINT)
    await asyncio.wait_for(process.wait(), 10)
    assert process.returncode == 0


# -- pieces, in process ------------------------------------------------------------------------


def test_parse_rate_limit() -> None:
    assert parse_rate_limit("240/minute") == RateLimit("minute", 240)
    assert parse_rate_limit(" 4 / seconds ") == RateLimit("second", 4)
    assert parse_rate_limit("none") is None
    for bad in ("240", "0/second", "5/fortnight", "x/minute"):
        with pytest.raises(ValueError, match=r"N/UNIT|at least"):
            parse_rate_limit(bad)


def test_text_fields() -> None:
    # Changed by the review of issue 11 (finding 4): problems are returned, not raised,
    # so that every bad field is named at once with the model's own problems.
    assert text_fields(
        {"rate_limit_duration": " 60 ", "connection_pool_id": "-3", "timezone": "", "type": "x"}
    ) == ({"rate_limit_duration": 60, "connection_pool_id": -3, "type": "x"}, {})
    assert text_fields({"variables": '[{"key": "k"}]'}) == ({"variables": [{"key": "k"}]}, {})
    assert text_fields({"variables": '{"not": "an array"}'}) == (
        {"variables": '{"not": "an array"}'},
        {},
    )
    assert text_fields({"connection_pool_id": "1.5"}) == (
        {},
        {"connection_pool_id": "must be an integer"},
    )


def test_rich_progress_bar_draws_and_notes(capsys: pytest.CaptureFixture[str]) -> None:
    tally = Tally(4)
    reporter = make_reporter("bar", tally, description="reauthorising")
    assert isinstance(reporter, RichReporter)
    reporter.start()
    tally.succeeded, tally.failed = 3, 1
    reporter.update()
    reporter.note("line 3: bad input: [not markup]")
    reporter.stop()
    err = capsys.readouterr().err
    assert "line 3: bad input: [not markup]" in err
    assert "4/4" in err
    assert "1 failed" in err


def test_plain_progress_line() -> None:
    tally = Tally(200)
    tally.succeeded, tally.failed, tally.skipped = 40, 10, 100
    line = plain_line(tally)
    assert line.startswith("progress: 50/100 (50%), 10 failed, ")
    assert ", eta " in line
    tally.total = None
    assert plain_line(tally).startswith("progress: 50 done, 10 failed, ")


def test_resume_cuts_a_torn_last_line(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(
        b'{"line": 2, "connector": "a", "ok": true}\n'
        b"garbage that is not json\n"
        b'{"line": 3, "connector": 7, "ok": true}\n'
        b'{"line": 4, "connector": "b", "ok": false}\n'
        b'{"line": 5, "connec'
    )
    with OutputFile(str(path), resume=True) as output:
        assert output.done == {"a", "7"}
        output.write({"line": 6, "connector": "c", "ok": True})
        with pytest.raises(InputError, match="in use by another job"):
            OutputFile(str(path), resume=True)
    assert path.read_bytes().endswith(b'"ok": false}\n{"line":6,"connector":"c","ok":true}\n')


# -- a bulk job that cannot succeed stops (issue 11) -------------------------------------------


def _csv_of(tmp_path: pathlib.Path, connectors: list[str]) -> pathlib.Path:
    source = tmp_path / "in.csv"
    source.write_text("connector,timezone\n" + "".join(f"{key},UTC\n" for key in connectors))
    return source


async def test_bulk_with_a_wrong_key_stops_with_exit_3_and_resumes(
    fake: FakePatchworks, tmp_path: pathlib.Path
) -> None:
    ids = [fake.add_instance() for _ in range(400)]
    source = _csv_of(tmp_path, ids)
    output = tmp_path / "out.jsonl"
    args = ["bulk-reauthorise", "--input", str(source), "--output", str(output)]
    run = await cli(fake, *args, "--rate-limit", "none", PATCHWORKS_API_KEY="pw_wrong_key_9")
    assert run.returncode == 3, run.stderr
    sent = fake.request_count
    assert 1 <= sent <= 16  # only the calls in flight at the first 401
    records = _lines(output)
    assert len(records) == sent  # a line for each call sent, none for the others
    assert all(r["error"]["type"] == "AuthenticationError" for r in records)
    last = run.stderr.splitlines()[-1]
    assert last.startswith("stopped: "), run.stderr
    assert "(401): check the API key in PATCHWORKS_API_KEY" in last
    assert f"{400 - sent} items not sent" in last
    assert "--resume" in last
    assert run.stderr.count("AuthenticationError") == 1  # noted once, not 16 times
    resumed = await cli(fake, *args, "--resume", "--rate-limit", "none")
    assert resumed.returncode == 0, resumed.stderr
    ok = Counter(r["connector"] for r in _lines(output) if r["ok"])
    assert set(ok) == set(ids)
    assert set(ok.values()) == {1}


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_bulk_against_a_closed_port_says_so_and_stops(tmp_path: pathlib.Path) -> None:
    port = _closed_port()
    source = _csv_of(tmp_path, [str(i) for i in range(300)])
    output = tmp_path / "out.jsonl"
    run = await cli(
        None, "bulk-reauthorise", "--input", str(source), "--output", str(output),
        "--base-url", f"http://127.0.0.1:{port}", "--progress", "plain",
        PATCHWORKS_API_KEY="pw_unused_key_1",
    )  # fmt: skip
    assert run.returncode == 3, run.stderr
    assert f"note: cannot connect to 127.0.0.1:{port}" in run.stderr
    last = run.stderr.splitlines()[-1]
    assert last.startswith(f"stopped: 127.0.0.1:{port} is unreachable"), run.stderr
    assert "--base-url" in last
    written = len(_lines(output)) if output.exists() else 0
    assert f"{300 - written} items not sent" in last
    assert written <= 1  # the call that found the host down; the others were not sent


async def test_unreachable_after_0_keeps_going(tmp_path: pathlib.Path) -> None:
    port = _closed_port()
    source = _csv_of(tmp_path, [str(i) for i in range(20)])
    output = tmp_path / "out.jsonl"
    run = await cli(
        None, "bulk-reauthorise", "--input", str(source), "--output", str(output),
        "--base-url", f"http://127.0.0.1:{port}", "--unreachable-after", "0",
        "--max-attempts", "1", "--rate-limit", "none", PATCHWORKS_API_KEY="pw_unused_key_1",
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert len(_lines(output)) == 20


async def test_bulk_stops_after_three_403s_in_a_row(
    fake: FakePatchworks, tmp_path: pathlib.Path
) -> None:
    ids = [fake.add_instance() for _ in range(50)]
    source = _csv_of(tmp_path, ids)
    output = tmp_path / "out.jsonl"
    fake.add_faults(*[Fault.status_code(403)] * 3, paths="/reauthorise")
    run = await cli(
        fake, "bulk-reauthorise", "--input", str(source), "--output", str(output),
        "--concurrency", "1", "--rate-limit", "none",
    )  # fmt: skip
    assert run.returncode == 3, run.stderr
    last = run.stderr.splitlines()[-1]
    assert "refused 3 instances in a row (403)" in last
    assert "47 items not sent" in last
    assert len(_lines(output)) == 3
    assert fake.request_count == 3
