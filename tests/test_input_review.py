"""The review of issue 11's input and errors work: each finding's case, refused or fixed.

Input is refused, never guessed (``--ignore-column``, ``extra``, ``-f`` text); one
message for one mistake; every exception pickles; a client refuses a second loop,
closing included.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import io
import pathlib
import pickle
from typing import Any

import pytest

import patchworks_async
from patchworks_async import (
    AuthoriseRequest,
    EventLoopError,
    InvalidRequestError,
    ModelValidationError,
    PatchworksClient,
    PatchworksError,
    ReauthoriseRequest,
)
from patchworks_async.cli import _messages, _usage
from patchworks_async.cli._bulkinput import BadLine, InputReader
from patchworks_async.cli._config import InputError, request_from_options
from patchworks_async.cli._messages import cli_message
from patchworks_async.testing import FakePatchworks
from patchworks_async.testing.__main__ import read_instance_ids
from tests.test_cli import _error_line, cli


def _file(tmp_path: pathlib.Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# -- 1, 2: --ignore-column ---------------------------------------------------------------------


@pytest.mark.parametrize(("name", "text"), [("in.csv", "connector\n1\n"), ("in.jsonl", "{}\n")])
def test_ignoring_the_connector_column_is_refused(
    tmp_path: pathlib.Path, name: str, text: str
) -> None:
    source = _file(tmp_path, name, text)
    fmt = "csv" if name.endswith(".csv") else "jsonl"
    with pytest.raises(InputError, match="the connector column cannot be left out"):
        InputReader(source, fmt, ignore=["connector"])


async def test_ignore_column_connector_exits_2_and_creates_no_output(
    fake: FakePatchworks, tmp_path: pathlib.Path
) -> None:
    source = _file(tmp_path, "in.csv", "notes,name,connector\nx,y,1\n")
    output = tmp_path / "out.jsonl"
    run = await cli(
        fake, "bulk-reauthorise", "--input", source, "--output", str(output),
        "--ignore-column", "notes", "--ignore-column", "name", "--ignore-column", "connector",
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    _error_line(run, "InputError")
    assert "--ignore-column connector" in run.stderr
    assert not output.exists()
    assert fake.request_count == 0


@pytest.mark.parametrize("allow_unknown", [False, True])
def test_a_misspelt_ignored_key_of_json_lines_is_refused(
    tmp_path: pathlib.Path, allow_unknown: bool
) -> None:
    source = _file(tmp_path, "ok.jsonl", '{"connector": 1, "timezone": "UTC"}\n')
    with pytest.raises(InputError, match=r"--ignore-column timezn \(did you mean timezone\?\)"):
        InputReader(source, "jsonl", allow_unknown=allow_unknown, ignore=["timezn"])
    with InputReader(source, "jsonl", ignore=["timezone"]) as reader:
        (item,) = reader.records()
    assert not isinstance(item, BadLine)
    assert item.request == ReauthoriseRequest()  # left out, as asked


def test_a_misspelt_ignored_key_from_stdin_is_refused_at_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = b'{"connector": 1, "timezone": "UTC"}\n'
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    with InputReader("-", "jsonl", ignore=["timezn"]) as reader:
        records = reader.records()
        assert not isinstance(next(records), BadLine)
        with pytest.raises(InputError, match=r"timezn \(did you mean timezone\?\): no such key"):
            next(records)


# -- 3: extra is a key like any other ----------------------------------------------------------


def test_extra_in_the_data_is_an_unknown_key() -> None:
    with pytest.raises(ModelValidationError) as info:
        ReauthoriseRequest.from_dict({"extra": {"timezon": "UTC"}})
    assert info.value.errors == {"extra": "is not a field"}
    assert "extra" not in info.value.valid_fields
    # Not even when unknown keys are allowed: "extra" is the model's word, not the API's.
    with pytest.raises(ModelValidationError) as allowed:
        ReauthoriseRequest.from_dict({"extra": {"timezon": "UTC"}, "a": 1}, allow_extra=True)
    assert allowed.value.errors == {"extra": "is not a field"}


def test_extra_is_refused_the_same_way_from_json_and_from_field() -> None:
    for json_text, fields in (('{"extra": {"timezon": "UTC"}}', []), (None, ["extra=x"])):
        with pytest.raises(ModelValidationError) as info:
            request_from_options(ReauthoriseRequest, json_text, None, fields)
        assert info.value.errors == {"extra": "is not a field"}
        assert "--allow-unknown-fields" not in cli_message(info.value)  # it would not help


# -- 4, 12: text fields ------------------------------------------------------------------------


def test_every_bad_text_field_is_named_at_once() -> None:
    with pytest.raises(ModelValidationError) as info:
        request_from_options(
            ReauthoriseRequest,
            None,
            None,
            ["rate_limit_duration=abc", "connection_pool_id=x", "timezon=UTC"],
        )
    assert info.value.errors == {
        "rate_limit_duration": "must be an integer",
        "connection_pool_id": "must be an integer",
        "timezon": "is not a field (did you mean timezone?)",
    }


def test_every_bad_cell_of_a_csv_row_is_named_at_once(tmp_path: pathlib.Path) -> None:
    source = _file(tmp_path, "in.csv", "connector,rate_limit_duration,rate_limit_unit\n1,abc,x\n")
    with InputReader(source, "csv") as reader:
        (bad,) = reader.records()
    assert isinstance(bad, BadLine)
    assert isinstance(bad.error, ModelValidationError)
    assert set(bad.error.errors) == {"rate_limit_duration", "rate_limit_unit"}


def test_a_required_integer_that_is_not_one_is_not_also_missing() -> None:
    fields = ["authentication_implementation_id=1", "timezone=UTC", "date_format=Y"]
    fields += ["rate_limit_unit=minute", "rate_limit_duration=sixty"]
    with pytest.raises(ModelValidationError) as info:
        request_from_options(AuthoriseRequest, None, None, fields)
    assert info.value.errors == {"rate_limit_duration": "must be an integer"}


def test_broken_json_variables_are_refused_not_sent_as_text() -> None:
    with pytest.raises(ModelValidationError) as info:
        request_from_options(
            ReauthoriseRequest, None, None, ['variables=[{"key":"a","value":NaN}]']
        )
    assert "variables" in info.value.errors
    assert "NaN" not in str(info.value)  # no value echoed
    plain = request_from_options(ReauthoriseRequest, None, None, ["variables=plain text"])
    assert plain.variables == "plain text"


def test_a_field_given_twice_is_refused() -> None:
    with pytest.raises(InputError, match="--field timezone is given twice"):
        request_from_options(
            ReauthoriseRequest, None, None, ["timezone=UTC", "timezone=Europe/Paris"]
        )


async def test_text_field_problems_exit_2_naming_all(fake: FakePatchworks) -> None:
    key = fake.add_instance()
    run = await cli(
        fake, "reauthorise", key, "-f", "rate_limit_duration=abc", "-f", "connection_pool_id=x",
        "-f", "timezon=UTC",
    )  # fmt: skip
    assert run.returncode == 2
    _error_line(run, "ModelValidationError")
    for part in (
        "rate_limit_duration must be an integer",
        "connection_pool_id must be an integer",
        "timezon is not a field (did you mean timezone?)",
    ):
        assert part in run.stderr
    assert fake.request_count == 0


# -- 5: pickle ---------------------------------------------------------------------------------


def _examples() -> list[PatchworksError]:
    api = {"status": 401, "method": "POST", "url": "https://x/y", "headers": {"a": "b"}}
    names = sorted(
        name
        for name in patchworks_async.__all__
        if isinstance(getattr(patchworks_async, name), type)
        and issubclass(getattr(patchworks_async, name), PatchworksError)
    )
    built: list[PatchworksError] = []
    for name in names:
        cls = getattr(patchworks_async, name)
        if name == "ModelValidationError":
            built.append(cls("R", {"timezon": "is not a field"}, valid_fields=("timezone",)))
        elif name == "InvalidRequestError":
            built.append(cls("bad", field="timezone"))
        elif name == "BulkStoppedError":
            first = patchworks_async.AuthenticationError(
                status=401, method="POST", url="https://x/y", headers={}, body=None, message="401"
            )
            built.append(
                cls("stopped", reason="authentication", first_error=first, finished=1, not_sent=2)
            )
        elif name == "DuplicateConnectorError":
            built.append(cls("sent once", connector="7"))
        elif name in ("TransportError", "RequestTimeoutError", "HostUnreachableError"):
            built.append(cls("refused", method="GET", url="https://x", sent=False))
        elif name == "ResponseDecodeError":
            built.append(cls("no", status=200, method="GET", url="https://x", body=b"<"))
        elif name == "ResponseTooLargeError":
            built.append(cls("big", method="GET", url="https://x", limit=5))
        elif name == "UnprocessableEntityError":
            built.append(cls(errors={"timezone": ["bad"]}, body={}, **{**api, "status": 422}))
        elif issubclass(cls, patchworks_async.APIError):
            built.append(cls(body={"message": "m"}, message="m", **api))
        else:
            built.append(cls("message"))
    return built


@pytest.mark.parametrize("error", _examples(), ids=lambda error: type(error).__name__)
def test_every_public_exception_pickles_and_copies(error: PatchworksError) -> None:
    copied = pickle.loads(pickle.dumps(error))  # noqa: S301  # our own bytes, just made
    for again in (copied, copy.copy(error), copy.deepcopy(error)):
        assert type(again) is type(error)
        assert str(again) == str(error)
        assert again.args == error.args
        assert _comparable(vars(again)) == _comparable(vars(error))


def _comparable(attributes: dict[str, object]) -> dict[str, object]:
    """Exceptions compare by identity: a nested one (``first_error``) by type and text."""
    return {
        key: (type(value), str(value)) if isinstance(value, BaseException) else value
        for key, value in attributes.items()
    }


def test_the_examples_cover_every_public_exception() -> None:
    assert {"ModelValidationError", "AuthenticationError", "EventLoopError"} <= {
        type(error).__name__ for error in _examples()
    }
    assert len(_examples()) >= 14


# -- 7: one message ----------------------------------------------------------------------------


def test_a_column_and_a_field_are_refused_in_the_same_words(tmp_path: pathlib.Path) -> None:
    source = _file(tmp_path, "typo.csv", "connector,timezon\n1,UTC\n")
    with pytest.raises(InputError) as column:
        InputReader(source, "csv")
    with pytest.raises(ModelValidationError) as field:
        request_from_options(ReauthoriseRequest, None, None, ["timezon=UTC"])
    said = "timezon is not a field (did you mean timezone?); valid fields: "
    assert f"{source}: column {said}" in str(column.value)
    assert cli_message(field.value).startswith(said)
    assert "ReauthoriseRequest" not in cli_message(field.value)
    assert "ReauthoriseRequest: timezon is not a field (did you" in str(field.value)  # once


def test_a_huge_column_name_is_cut_in_the_message(tmp_path: pathlib.Path) -> None:
    source = _file(tmp_path, "wide.csv", "connector," + "x" * 3000 + "\n1,2\n")
    with pytest.raises(InputError) as info:
        InputReader(source, "csv")
    assert len(str(info.value)) < 600
    assert "x" * 77 + "..." in str(info.value)


# -- 8: fake-server --instances-file reads files as bulk-reauthorise does ------------------------


def test_instances_file_reads_a_bom_csv_and_ndjson(tmp_path: pathlib.Path) -> None:
    bom = tmp_path / "ids.csv"
    bom.write_bytes("\ufeffconnector,timezone\n7,UTC\n8,\n".encode())
    assert read_instance_ids(str(bom)) == ["7", "8"]
    spaced = _file(tmp_path, "spaced.CSV", "name, connector \nx, 9 \n")
    assert read_instance_ids(spaced) == ["9"]
    ndjson = _file(tmp_path, "ids.ndjson", '{"connector": 5}\n\n{"connector": "6"}\n')
    assert read_instance_ids(ndjson) == ["5", "6"]


# -- 9, 16: the command line's words ------------------------------------------------------------


def _args(**given: Any) -> argparse.Namespace:
    return argparse.Namespace(**{"api_key_file": None, "base_url": None, **given})


def test_one_table_maps_client_arguments_to_options() -> None:
    assert not hasattr(_messages, "_FLAGS")
    with pytest.raises(InvalidRequestError) as info:
        PatchworksClient(api_key="k", max_connections=0)
    said = _usage.in_cli_words(info.value, _usage.sources(_args()))
    assert said == "--concurrency must be an integer of at least 1"
    assert cli_message(info.value) == str(info.value)  # cli_message re-words nothing


def test_unknown_keys_inside_variables_say_the_option_does_not_reach_them() -> None:
    with pytest.raises(ModelValidationError) as info:
        request_from_options(
            ReauthoriseRequest,
            '{"variables": [{"key": "a", "value": "b", "bogus": 1}]}',
            None,
            [],
            allow_unknown=True,
        )
    said = cli_message(info.value)
    assert said.startswith("variables[0].bogus is not a field")
    assert "--allow-unknown-fields does not apply inside variables" in said


# -- 13, 17: a client and a second event loop -------------------------------------------------


def test_a_client_left_open_is_refused_by_a_second_loop_and_closes_in_its_own() -> None:
    loop = asyncio.new_event_loop()
    fake = FakePatchworks()
    try:
        loop.run_until_complete(fake.__aenter__())
        client = PatchworksClient(base_url=fake.url, api_key=fake.api_key, rate_limit=None)
        key = fake.add_instance()
        loop.run_until_complete(client.oauth.reauthorise(key))  # used, not closed
        sent = fake.request_count

        async def again() -> None:
            await client.oauth.reauthorise(key)

        with pytest.raises(EventLoopError, match="one client serves one loop"):
            asyncio.run(again())
        with pytest.raises(EventLoopError, match="close it in the loop that used it"):
            asyncio.run(client.aclose())
        assert fake.request_count == sent
        loop.run_until_complete(client.aclose())  # where it belongs: no unclosed socket
        asyncio.run(client.aclose())  # closed: idempotent from anywhere
    finally:
        loop.run_until_complete(fake.__aexit__(None, None, None))
        loop.close()
