"""The command line refuses input it does not understand, never guesses (issue 11).

Unknown ``--field`` keys and CSV columns are refused before anything is sent, naming
them with the closest field; ``--allow-unknown-fields`` sends them, ``--ignore-column``
leaves a column out. Errors name the command line's flags, not Python arguments.
``--resume`` does not repeat bad lines; the progress total counts data rows.
"""

from __future__ import annotations

import argparse
import io
import pathlib

import pytest

from patchworks_async import InvalidRequestError, PatchworksClient, ReauthoriseRequest
from patchworks_async.cli._bulkinput import BadLine, InputReader, count_records
from patchworks_async.cli._bulkoutput import OutputFile
from patchworks_async.cli._config import InputError
from patchworks_async.cli._messages import cli_message
from patchworks_async.cli._usage import in_cli_words, sources
from patchworks_async.testing import FakePatchworks
from tests.test_cli import _error_line, _lines, cli


async def test_an_unknown_field_is_refused_with_the_closest_one(fake: FakePatchworks) -> None:
    key = fake.add_instance(timezone="UTC")
    run = await cli(fake, "reauthorise", key, "-f", "timezon=Europe/Paris")
    assert run.returncode == 2
    _error_line(run, "ModelValidationError")
    assert "timezon is not a field (did you mean timezone?)" in run.stderr
    assert "; valid fields: authentication_implementation_id, type, timezone" in run.stderr
    assert "ReauthoriseRequest" not in run.stderr  # no Python class name (review finding 7)
    assert "--allow-unknown-fields" in run.stderr
    assert fake.request_count == 0


async def test_allow_unknown_fields_sends_them(fake: FakePatchworks) -> None:
    key = fake.add_instance(timezone="UTC")
    run = await cli(
        fake, "reauthorise", key, "-f", "timezon=Europe/Paris", "--allow-unknown-fields"
    )
    assert run.returncode == 0, run.stderr
    assert fake.requests[-1].json == {"timezon": "Europe/Paris"}


async def test_every_bad_field_of_an_authorise_is_named(fake: FakePatchworks) -> None:
    run = await cli(
        fake, "authorise", "--json", '{"timezone": "UTC", "rate_limit_unit": "fortnite"}'
    )
    assert run.returncode == 2
    _error_line(run, "ModelValidationError")
    for path in ("authentication_implementation_id", "date_format", "rate_limit_duration"):
        assert f"{path} is required" in run.stderr
    assert "rate_limit_unit must be one of second, minute, hour, day" in run.stderr
    assert "@ $" not in run.stderr
    assert fake.request_count == 0


def _csv(tmp_path: pathlib.Path, header: str, rows: list[str]) -> pathlib.Path:
    source = tmp_path / "in.csv"
    source.write_text(header + "\n" + "".join(row + "\n" for row in rows))
    return source


async def test_an_unknown_column_is_refused_before_anything_is_sent(
    fake: FakePatchworks, tmp_path: pathlib.Path
) -> None:
    key = fake.add_instance()
    source = _csv(tmp_path, "connector,timezome,notes", [f"{key},UTC,call back"])
    output = tmp_path / "out.jsonl"
    run = await cli(fake, "bulk-reauthorise", "--input", str(source), "--output", str(output))
    assert run.returncode == 2
    _error_line(run, "InputError")
    # Worded as -f words it (review of issue 11, finding 7: one message for one mistake).
    assert (
        "column timezome is not a field (did you mean timezone?); column notes is not a field;"
        in run.stderr
    )
    assert "valid fields: authentication_implementation_id, type, timezone" in run.stderr
    assert "--allow-unknown-fields" in run.stderr
    assert "--ignore-column" in run.stderr
    assert fake.request_count == 0


async def test_columns_pass_through_or_are_ignored_when_asked(
    fake: FakePatchworks, tmp_path: pathlib.Path
) -> None:
    first, second = fake.add_instance(), fake.add_instance()
    source = _csv(
        tmp_path, "connector,timezone,notes,name", [f"{first},UTC,n1,Shop", f"{second},,,"]
    )
    output = tmp_path / "out.jsonl"
    run = await cli(
        fake, "bulk-reauthorise", "--input", str(source), "--output", str(output),
        "--allow-unknown-fields", "--ignore-column", "notes",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    bodies = {record.path.split("/")[-2]: record.json for record in fake.requests}
    assert bodies[first] == {"timezone": "UTC", "name": "Shop"}
    assert bodies[second] == {}
    misspelt = await cli(
        fake, "bulk-reauthorise", "--input", str(source), "--output", str(tmp_path / "o2.jsonl"),
        "--ignore-column", "note",
    )  # fmt: skip
    assert misspelt.returncode == 2
    assert "--ignore-column note (did you mean notes?): no such column" in misspelt.stderr


async def test_cli_errors_name_flags_not_python_arguments(fake: FakePatchworks) -> None:
    run = await cli(fake, "authenticate", "--base-url", "http://example.com")
    assert run.returncode == 2
    # The client's refusal is re-worded as the command line's own input error (cli/_usage.py).
    _error_line(run, "InputError")
    assert "--allow-insecure-http" in run.stderr
    assert "--base-url" in run.stderr
    assert "allow_insecure_http" not in run.stderr
    assert "base_url" not in run.stderr


def test_client_arguments_are_reworded_by_one_table() -> None:
    # Adapted by the review of issue 11 (finding 9): the one rewriter is
    # _usage.in_cli_words (what _app._client applies); cli_message re-words no argument.
    args = argparse.Namespace(api_key_file=None, base_url="http://example.com/")
    with pytest.raises(InvalidRequestError) as info:
        PatchworksClient(api_key="k", base_url="http://example.com/")
    said = in_cli_words(info.value, sources(args))
    assert said.startswith("--base-url uses plain http")
    assert said.endswith("(pass --allow-insecure-http to insist)")
    with pytest.raises(InvalidRequestError) as info:
        PatchworksClient(api_key="k", max_connections=0)
    assert in_cli_words(info.value, sources(args)) == (
        "--concurrency must be an integer of at least 1"
    )
    with pytest.raises(InvalidRequestError) as request_error:
        ReauthoriseRequest(rate_limit=1)  # type: ignore[call-arg]
    # A request's field keeps its name (it is what the user wrote after -f).
    assert "rate_limit is not a field" in cli_message(request_error.value)


async def test_resume_does_not_repeat_bad_lines(
    fake: FakePatchworks, tmp_path: pathlib.Path
) -> None:
    key, other = fake.add_instance(), fake.add_instance()
    source = _csv(
        tmp_path,
        "connector,rate_limit_duration",
        [f"{key},60", "missing-instance,5", f"{other},sixty", ",5"],
    )
    output = tmp_path / "out.jsonl"
    args = ("bulk-reauthorise", "--input", str(source), "--output", str(output))
    first = await cli(fake, *args, "--max-attempts", "1")
    assert first.returncode == 1
    assert sorted(record["line"] for record in _lines(output)) == [2, 3, 4, 5]
    again = await cli(fake, *args, "--resume", "--max-attempts", "1")
    assert again.returncode == 1  # the input is still bad
    lines = sorted(record["line"] for record in _lines(output))
    # Line 3 (a 404) was a call and is retried; lines 4 and 5 (bad input) are not rewritten.
    assert lines == [2, 3, 3, 4, 5]
    source.write_text(source.read_text().replace("sixty", "61"))
    fixed = await cli(fake, *args, "--resume", "--max-attempts", "1")
    assert fixed.returncode == 1
    records = _lines(output)
    assert [r["ok"] for r in records if r["line"] == 4] == [False, True]  # fixed, so sent


def test_progress_total_counts_data_rows(tmp_path: pathlib.Path) -> None:
    source = tmp_path / "in.csv"
    # A spreadsheet's blank rows (",,"), a blank line and a cell spanning two lines.
    source.write_text('connector,timezone,notes\n1,UTC,\n,,\n\n2,UTC,"two\nlines"\n,,\n')
    assert count_records(str(source), "csv") == 2
    with InputReader(str(source), "csv", allow_unknown=True) as reader:
        assert len(list(reader.records())) == 2
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('{"connector": 1}\n\n   \n{"connector": 2}\n')
    assert count_records(str(jsonl), "jsonl") == 2


def test_jsonl_unknown_keys_are_refused_before_reading(tmp_path: pathlib.Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"connector": 1}\n\n{"connector": 2, "timezon": "UTC"}\nnot json\n')
    with pytest.raises(InputError, match=r"key timezon is not a field \(did you mean timezone\?\)"):
        InputReader(str(source), "jsonl")
    with InputReader(str(source), "jsonl", allow_unknown=True) as reader:
        assert len(list(reader.records())) == 3  # read from the start after the check


def test_jsonl_unknown_keys_from_stdin_make_a_bad_line(monkeypatch: pytest.MonkeyPatch) -> None:
    data = b'{"connector": 1, "timezon": "UTC"}\n{"connector": 2, "skip": 1}\n'
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    with InputReader("-", "jsonl", ignore=["skip"]) as reader:
        first, second = list(reader.records())
    assert isinstance(first, BadLine)
    assert first.error.field == "timezon"  # type: ignore[attr-defined]
    assert "did you mean timezone?" in str(first.error)
    assert not isinstance(second, BadLine)


def test_output_writes_a_bad_line_once(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "out.jsonl"
    bad = BadLine(4, "7", InvalidRequestError("missing connector", field="connector"))
    with OutputFile(str(path), resume=False) as output:
        assert output.write_bad_line(bad) is True
        assert output.write_bad_line(bad) is False
    with OutputFile(str(path), resume=True) as output:
        assert output.write_bad_line(bad) is False
        other = BadLine(4, "7", InvalidRequestError("another reason"))
        assert output.write_bad_line(other) is True
    assert len(_lines(path)) == 2


def test_an_unknown_csv_column_fails_when_the_reader_opens(tmp_path: pathlib.Path) -> None:
    source = _csv(tmp_path, "connector,notes", ["1,x"])
    with pytest.raises(InputError, match="column notes is not a field"):
        InputReader(str(source), "csv")
    with InputReader(str(source), "csv", ignore=["notes"]) as reader:
        assert reader.unknown_columns == []
