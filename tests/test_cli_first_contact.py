"""Issue 11, first contact: --help, exit codes, the demo's summary, the fake server by hand,
and what a new user sees after the first mistakes."""

from __future__ import annotations

import asyncio
import pathlib
import re
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from patchworks_async.cli import _app, _codes, _parser, _usage
from patchworks_async.cli._demo import DemoOptions, exit_code, run_demo
from patchworks_async.cli._demosummary import DemoReport, pacing, summary_rows
from patchworks_async.models import RateLimit
from patchworks_async.testing import FakePatchworks
from patchworks_async.testing.__main__ import InstancesFileError, read_instance_ids

from .test_cli import Run, _env, _finish, _start, cli

README = pathlib.Path(__file__).parent.parent / "README.md"


def _help(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert _app.main([*args, "--help"]) == 0
    return capsys.readouterr().out


# -- --help ------------------------------------------------------------------------------------


def test_fake_server_help_is_its_own(capsys: pytest.CaptureFixture[str]) -> None:
    out = _help(capsys, "fake-server")
    assert out.startswith("usage: patchworks-async fake-server ")
    assert "python -m patchworks_async.testing" not in out
    for option in ("--port", "--api-key", "--instances N", "--instances-file PATH", "--quota"):
        assert option in out
    # Its own exit codes, not the API commands' (it sends no call).
    assert "stopped by Ctrl-C or SIGTERM" in out
    assert "a call failed" not in out
    assert "PATCHWORKS_API_KEY" not in out


def test_demo_help_lists_only_what_the_demo_uses(capsys: pytest.CaptureFixture[str]) -> None:
    out = _help(capsys, "demo")
    for unused in ("--base-url", "PATCHWORKS_", "first found wins", "--api-key-file", "--timeout"):
        assert unused not in out, unused
    assert "deliberate 404s" in out
    for code, _meaning in _parser.DEMO_EXIT_CODES:
        assert re.search(rf"^  {code} ", out, re.MULTILINE), code


def _codes_in(text: str) -> set[int]:
    table = text.split("exit codes:\n", 1)[1]
    return {int(m[1]) for m in re.finditer(r"^  (\d+)\s", table, re.MULTILINE)}


def test_every_exit_code_is_documented(capsys: pytest.CaptureFixture[str]) -> None:
    defined = {value for name, value in vars(_codes).items() if name.startswith("EXIT_")}
    assert {code for code, _ in _parser.EXIT_CODES} == defined
    assert _codes_in(_help(capsys)) == defined
    for command in ("authenticate", "authorise", "reauthorise", "bulk-reauthorise"):
        assert _codes_in(_help(capsys, command)) == defined, command
    readme = " ".join(README.read_text().split())  # the list item, unwrapped
    item = readme.split("- Exit codes of the commands that call the API:", 1)[1].split(" - ")[0]
    assert {int(code) for code in re.findall(r"`(\d+)`", item)} == defined


def test_every_command_of_the_parser_has_a_handler() -> None:
    # _parser declares the commands and _app dispatches on their names: the two agree.
    parser = _parser.build_parser()
    commands = _usage._commands(parser)
    assert set(commands) == set(_app.HANDLERS)
    for name in commands:
        args = parser.parse_args(_minimal_args(name))
        assert args.command == name
        assert args.command_parser.prog == f"patchworks-async {name}"


def _minimal_args(name: str) -> list[str]:
    required = {
        "reauthorise": ["c-1"],
        "bulk-reauthorise": ["--input", "in.csv", "--output", "out.jsonl"],
    }
    return [name, *required.get(name, [])]


# -- the demo ----------------------------------------------------------------------------------


def _report(**changes: object) -> DemoReport:
    fields: dict[str, object] = {
        "instances": 10,
        "rate": 100,
        "concurrency": 4,
        "paced_instances": 0,
        "paced_calls": 1,
        "paced_rate": RateLimit("second", 2),
        "unknown_connectors": 3,
        "items": 13,
        "succeeded": 10,
        "deliberate_failures": 3,
        "unexpected_failures": Counter[str](),
        "retries": Counter({"503": 2}),
        "elapsed": 1.0,
        "departures": [i / 100 for i in range(15)],
        "arrivals": [i / 100 for i in range(15)],
        "pauses": [],
        "answers": Counter({200: 10, 404: 3, 503: 2}),
        "requests_seen": 15,
        "connections_opened": 1,
        "paced_min_gap": None,
    }
    fields.update(changes)
    return DemoReport(**fields)  # type: ignore[arg-type]  # a test's loose dict


def test_demo_exit_code_leaves_out_only_the_deliberate_failures() -> None:
    assert exit_code(_report()) == 0
    assert exit_code(_report(unexpected_failures=Counter({"ServerError": 1}))) == 1


def test_summary_labels_deliberate_and_unexpected_failures() -> None:
    rows = dict(summary_rows(_report(unexpected_failures=Counter({"ServerError": 2}))))
    assert rows["failed"] == (
        "5: 3 deliberate (NotFoundError (404) for the 3 unknown connectors) "
        "and 2 UNEXPECTED (ServerError 2)"
    )
    assert rows["retries"].startswith("2 (2 after a 503")
    assert rows["requests sent"] == "15 = 13 calls + 2 retries; the server saw 15"


def test_pacing_leaves_out_pauses_and_idle_gaps() -> None:
    interval = 1 / 99  # the limiter's spacing at 100/s with its 1% margin
    first = [i * interval for i in range(100)]
    # A 429 at the end of the first stretch pauses the client 1 s; then a 0.5 s idle gap.
    second_start = first[-1] + 1.0
    second = [second_start + i * interval for i in range(100)]
    third_start = second[-1] + 0.5
    third = [third_start + i * interval for i in range(100)]
    result = pacing(first + second + third, 100, [(first[-1], first[-1] + 1.0)])
    assert result.requests == 297
    assert result.rate == pytest.approx(99.0)
    assert result.paused == pytest.approx(1.0)
    assert result.idle == pytest.approx(0.5)
    # The whole run's rate would be 299 / (3 * 99 * interval + 1.5) = 66/s: not the limiter's.


async def test_demo_exits_1_when_a_call_fails_unexpectedly(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Every reauthorise answered 503 or 429: every call gives up after its 4 attempts.
    options = DemoOptions(
        instances=4, rate=200, concurrency=8, progress="off", fault_rate=1.0, paced_instances=0
    )
    report = await run_demo(options)
    assert report.succeeded == 0
    assert report.deliberate_failures == 0  # a 503 is not the 404 the demo asks for
    assert sum(report.unexpected_failures.values()) == 7
    assert exit_code(report) == 1
    rows = dict(summary_rows(report))
    assert "UNEXPECTED" in rows["failed"]
    assert len(report.departures) == report.items + report.retry_count == report.requests_seen
    capsys.readouterr()


# -- the fake server, started by hand ----------------------------------------------------------


@pytest.fixture
async def served(tmp_path: pathlib.Path) -> AsyncIterator[dict[str, str]]:
    ids = tmp_path / "instances.csv"
    ids.write_text("connector,timezone\nshop-1,UTC\nshop-2,\n")
    env = _env(None)
    process = await _start(
        env, "fake-server", "--port", "0", "--api-key", "k-123", "--instances-file", str(ids)
    )
    try:
        assert process.stdout is not None
        lines = [(await asyncio.wait_for(process.stdout.readline(), 20)).decode() for _ in range(5)]
        yield dict(line.strip().split(": ", 1) for line in lines)
    finally:
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.wait(), 20)
    assert process.returncode == 0


async def test_fake_server_starts_with_instances_from_a_file(served: dict[str, str]) -> None:
    assert served["instances"] == "2 (from " + served["instances"].split("(from ", 1)[1]
    env = {"PATCHWORKS_BASE_URL": served["url"], "PATCHWORKS_API_KEY": "k-123"}
    ok = await cli(None, "reauthorise", "shop-2", "-f", "timezone=UTC", **env)
    assert ok.returncode == 0, ok.stderr
    missing = await cli(None, "reauthorise", "shop-3", "-f", "timezone=UTC", **env)
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: NotFoundError: ")


async def test_fake_server_instances_n() -> None:
    env = _env(None)
    process = await _start(env, "fake-server", "--port", "0", "--instances", "3")
    try:
        assert process.stdout is not None
        lines = [(await asyncio.wait_for(process.stdout.readline(), 20)).decode() for _ in range(5)]
        fields = dict(line.strip().split(": ", 1) for line in lines)
        assert fields["instances"] == "3 (ids 1 to 3)"
        env = {"PATCHWORKS_BASE_URL": fields["url"], "PATCHWORKS_API_KEY": fields["api_key"]}
        assert (await cli(None, "reauthorise", "3", "-f", "timezone=UTC", **env)).returncode == 0
        assert (await cli(None, "reauthorise", "4", "-f", "timezone=UTC", **env)).returncode == 1
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 20)
    assert process.returncode == 0


def test_read_instance_ids(tmp_path: pathlib.Path) -> None:
    plain = tmp_path / "ids.txt"
    plain.write_text("# instances\n7\n\n8\n7\n")
    assert read_instance_ids(str(plain)) == ["7", "8"]
    jsonl = tmp_path / "ids.jsonl"
    jsonl.write_text('{"connector": 5, "timezone": "UTC"}\n\n{"connector": "a"}\n')
    assert read_instance_ids(str(jsonl)) == ["5", "a"]
    no_column = tmp_path / "bad.csv"
    no_column.write_text("id\n1\n")
    with pytest.raises(InstancesFileError, match='no "connector" column'):
        read_instance_ids(str(no_column))
    with pytest.raises(InstancesFileError, match="cannot read --instances-file"):
        read_instance_ids(str(tmp_path / "missing.txt"))


async def test_fake_server_port_taken_is_one_line_exit_1() -> None:
    async with FakePatchworks() as taken:
        run = await cli(None, "fake-server", "--port", str(taken.port))
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        f"patchworks-async fake-server: error: cannot listen on 127.0.0.1:{taken.port}: "
        "Address already in use (try --port 0 for a free port)"
    ]


async def test_module_fake_server_bad_file_is_exit_2(tmp_path: pathlib.Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "patchworks_async.testing", "--port", "0",
        "--instances-file", str(tmp_path / "nope.csv"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert out == b""
    assert err.decode().startswith("python -m patchworks_async.testing: error: cannot read")


# -- the first mistakes ------------------------------------------------------------------------


def _usage_error(run: Run, command: str) -> str:
    assert run.returncode == 2
    assert run.stdout == ""
    lines = run.stderr.splitlines()
    assert lines[0].startswith(f"usage: {command} "), run.stderr
    assert lines[-1].startswith(f"{command}: error: "), run.stderr
    return lines[-1]


async def test_typo_in_a_command_suggests_the_command() -> None:
    run = await cli(None, "reauthorize", "1")
    line = _usage_error(run, "patchworks-async")
    assert line.endswith("unknown command 'reauthorize' (did you mean reauthorise?)")


async def test_typo_in_an_option_is_the_commands_usage_error() -> None:
    run = await cli(None, "authenticate", "--base-ur", "http://127.0.0.1:1")
    line = _usage_error(run, "patchworks-async authenticate")
    assert line.endswith(
        "unrecognized arguments: --base-ur http://127.0.0.1:1 (did you mean --base-url?)"
    )
    demo = await cli(None, "demo", "--instance", "5")
    assert _usage_error(demo, "patchworks-async demo").endswith("(did you mean --instances?)")


@pytest.mark.parametrize(
    ("args", "env", "expected", "library_word"),
    [
        (["--base-url", "ftp://x"], {}, "--base-url must be an http(s) URL", "base_url"),
        ([], {"PATCHWORKS_BASE_URL": "nope"}, "PATCHWORKS_BASE_URL must be", "base_url"),
        (
            ["--base-url", "http://example.com"],
            {},
            "pass --allow-insecure-http to insist",
            "allow_insecure_http",
        ),
        ([], {"PATCHWORKS_API_KEY": "a\tb"}, "PATCHWORKS_API_KEY holds a control", "api_key"),
        (
            [],
            {
                "PATCHWORKS_API_KEY": "",
                "PATCHWORKS_USERNAME": "someone@example.com",
                "PATCHWORKS_PASSWORD": "password-4711",
                "PATCHWORKS_LOGIN_URL": "nope",
            },
            "PATCHWORKS_LOGIN_URL must be",
            "login.url",
        ),
    ],
)
async def test_client_errors_name_the_option_not_the_keyword(
    args: list[str], env: dict[str, str], expected: str, library_word: str
) -> None:
    env = {"PATCHWORKS_API_KEY": "key-4711", "PATCHWORKS_BASE_URL": "http://127.0.0.1:1", **env}
    run = await cli(None, "authenticate", *args, **env)
    assert run.returncode == 2
    assert run.stderr.startswith("error: InputError: "), run.stderr
    assert expected in run.stderr
    assert library_word not in run.stderr


async def test_dead_port_and_wrong_key_say_what_to_check(fake: FakePatchworks) -> None:
    async with FakePatchworks() as gone:
        dead = gone.url
    run = await cli(None, "authenticate", "--base-url", dead, "--max-attempts", "1",
                    PATCHWORKS_API_KEY="key-4711")  # fmt: skip
    assert run.returncode == 1
    assert run.stderr.startswith("error: TransportError: ")
    assert run.stderr.rstrip().endswith(
        "is the server running? check --base-url or PATCHWORKS_BASE_URL"
    )
    assert len(run.stderr.splitlines()) == 1
    wrong = await cli(fake, "authenticate", PATCHWORKS_API_KEY="pw_wrong_key_123")
    assert wrong.returncode == 1
    assert "check the credentials (--api-key-file, PATCHWORKS_API_KEY" in wrong.stderr
    assert len(wrong.stderr.splitlines()) == 1


async def test_fake_server_via_the_module_keeps_its_name() -> None:
    env = _env(None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "patchworks_async.testing", "--help",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    run = await _finish(process, env)
    assert run.returncode == 0
    assert run.stdout.startswith("usage: python -m patchworks_async.testing ")
    assert "--instances N" in run.stdout
