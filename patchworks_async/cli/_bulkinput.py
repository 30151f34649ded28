"""The input of ``bulk-reauthorise``, read lazily (the output file is ``_bulkoutput``).

Input, CSV or JSON Lines, is read one record at a time (memory does not grow with
the file). Each record becomes an :class:`Item` or, when it cannot be sent, a
:class:`BadLine` carrying its line number and the reason.
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import IO, Any, Final, Self

import attrs
import orjson

from .. import _constants
from .._errors import (
    InvalidRequestError,
    PatchworksError,
)
from .._sansio import connector_key
from .._validation import did_you_mean, field_names, shown
from ..models import ReauthoriseRequest
from ._config import InputError, build_request, text_fields, unknown_columns_error

_EXTENSIONS: Final = _constants.INPUT_EXTENSIONS
# A cell may hold a whole ``variables`` array; the API refuses bodies over 8 MB anyway.
_MAX_CELL: Final = 8 * 1024 * 1024
_REAUTHORISE_FIELDS: Final = field_names(ReauthoriseRequest)
_MAX_LISTED: Final = 20  # column or key names listed in a message


class ClosedOnExit:
    """A file of the job that ``with`` closes: the input reader and the output file."""

    def close(self) -> None:
        """Close the file."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@attrs.frozen
class Item:
    """One input record ready to send."""

    line: int
    connector: str | int
    request: ReauthoriseRequest


@attrs.frozen
class BadLine:
    """One input record that cannot be sent: reported in the output with its line number."""

    line: int
    connector: Any
    error: PatchworksError


def input_format(path: str, given: str | None) -> str:
    """``--format`` when given, else the input's extension.

    Raises:
        InputError: neither says which format.
    """
    if given is not None:
        return given
    extension = os.path.splitext(path)[1].lower()
    found = _EXTENSIONS.get(extension)
    if found is None:
        raise InputError(
            f"cannot tell the format of {path}: name it .csv, .jsonl or .ndjson, or pass --format"
        )
    return found


def count_records(path: str, fmt: str) -> int | None:
    """How many records the input holds, for the progress total (``None`` for stdin).

    Counted as :class:`InputReader` reads them (one pass, constant memory): the
    non-blank lines of JSON Lines; the CSV rows after the header that have a
    non-empty cell (a spreadsheet's trailing ``,,,`` rows are blank lines, and a
    quoted cell may span lines), a row that is not valid CSV counting as one.
    """
    if path == "-":
        return None
    try:
        if fmt == "csv":
            return _count_csv_rows(path)
        with open(path, "rb") as file:
            return sum(1 for raw in file if raw.strip())
    except OSError:
        return None


def _count_csv_rows(path: str) -> int:
    csv.field_size_limit(_MAX_CELL)
    count = 0
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as file:
        reader = csv.reader(file)
        if next(reader, None) is None:  # the header (a bad one fails the job before this)
            return 0
        while True:
            try:
                row = next(reader, None)
            except csv.Error:
                count += 1  # a bad line, reported as one
                continue
            if row is None:
                return count
            if any(row):
                count += 1


class InputReader(ClosedOnExit):
    """Opens the input at once (a missing file or a bad CSV header fails early).

    Iterate :meth:`records` to read it lazily; use it as a context manager to close it.

    Columns (CSV) and keys (JSON Lines) that are not reauthorise fields are refused
    unless ``allow_unknown`` sends them as they are; the names in ``ignore`` are left
    out. An unknown CSV column fails at once, and so does an unknown key of a JSON
    Lines file (one pass over it first, constant memory): nothing is sent. Read from
    stdin, which cannot be read twice, an unknown key makes its line a bad line.
    A name in ``ignore`` that is no column (or no key of any line) is refused, so a
    misspelt one cannot let the column it meant through; from stdin this is known
    only at the end, when :meth:`records` raises it. ``connector`` cannot be ignored.

    Raises:
        InputError: the input cannot be read, its header is bad, a column or key is
            unknown, or an ignored name is ``connector`` or is not there.
    """

    def __init__(
        self, path: str, fmt: str, *, allow_unknown: bool = False, ignore: Sequence[str] = ()
    ) -> None:
        self.path = path
        self.format = fmt
        self.allow_unknown = allow_unknown
        if "connector" in ignore:
            raise InputError("--ignore-column connector: the connector column cannot be left out")
        self.ignore = frozenset(ignore)
        self.unknown_columns: list[str] = []
        self._keys_seen: dict[str, None] = {}  # stdin's keys, for the check at its end
        self._file: IO[Any] = self._open(path, fmt)
        self._header: list[str] = []
        self._csv: Iterator[list[str]] | None = None
        try:
            if fmt == "csv":
                self._read_header()
            elif path != "-" and (self.ignore or not allow_unknown):
                self._check_keys()
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _open(path: str, fmt: str) -> IO[Any]:
        if path == "-":
            return sys.stdin if fmt == "csv" else sys.stdin.buffer
        try:
            if fmt == "csv":
                # surrogateescape: a line that is not UTF-8 becomes one bad line, not a crash.
                return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")
            return open(path, "rb")
        except OSError as exc:
            raise InputError(f"cannot read --input {path}: {exc.strerror}") from None

    def _read_header(self) -> None:
        # The csv module's cell limit is process-wide; this process is the CLI's own.
        csv.field_size_limit(_MAX_CELL)
        reader = csv.reader(self._file)
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise InputError(f"{self.path}: line 1, the header, is not valid CSV ({exc})") from None
        if header is None:
            raise InputError(f"{self.path} is empty: expected a header row with a connector column")
        names = [name.strip() for name in header]
        if "connector" not in names:
            raise InputError(f"{self.path}: the header row has no connector column")
        if "" in names or len(set(names)) != len(names):
            raise InputError(f"{self.path}: the header row has an empty or repeated column name")
        self._header = names
        self._csv = reader
        self._check_columns(names)

    def _check_columns(self, names: list[str]) -> None:
        """Refuse unknown columns (unless allowed) and ignored columns that are not there."""
        self._check_ignored(names, "column")
        self.unknown_columns = [
            name
            for name in names
            if name != "connector" and name not in _REAUTHORISE_FIELDS and name not in self.ignore
        ]
        if self.unknown_columns and not self.allow_unknown:
            raise unknown_columns_error(self.path, self.unknown_columns, _REAUTHORISE_FIELDS)

    def _check_ignored(self, names: Sequence[str], kind: str) -> None:
        """Refuse ``--ignore-column`` names that are not among ``names``."""
        missing = sorted(self.ignore - set(names))
        if missing:
            where = "stdin" if self.path == "-" else self.path
            described = ", ".join(f"{shown(name)}{did_you_mean(name, names)}" for name in missing)
            listed = ", ".join(shown(name) for name in names[:_MAX_LISTED])
            more = f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else ""
            raise InputError(
                f"{where}: --ignore-column {described}: no such {kind} ({kind}s: {listed}{more})"
            )

    def _check_keys(self) -> None:
        """Refuse a JSON Lines file with keys that are not fields, or ignored names no line has."""
        seen: dict[str, None] = {}  # every key, in the order found
        for raw in self._file:
            if not raw.strip():
                continue
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue  # its own bad line when read
            if isinstance(data, dict):
                seen.update((key, None) for key in data if key not in seen)
        self._file.seek(0)
        self._check_ignored(list(seen), "key")
        known = {"connector", *_REAUTHORISE_FIELDS, *self.ignore}
        unknown = [key for key in seen if key not in known]
        if unknown and not self.allow_unknown:
            raise unknown_columns_error(self.path, unknown, _REAUTHORISE_FIELDS, kind="key")

    def records(self) -> Iterator[Item | BadLine]:
        """Each record in file order, read lazily."""
        if self.format == "csv":
            return self._csv_records()
        return self._jsonl_records()

    def _csv_records(self) -> Iterator[Item | BadLine]:
        reader = self._csv
        if reader is None:
            return
        line_num = getattr(reader, "line_num", 1)
        while True:
            start = line_num + 1
            try:
                row = next(reader, None)
            except csv.Error as exc:
                line_num = getattr(reader, "line_num", start)
                yield BadLine(start, None, InvalidRequestError(f"not valid CSV ({exc})"))
                continue
            if row is None:
                return
            line_num = getattr(reader, "line_num", start)
            if not any(row):
                continue  # a blank line
            yield self._csv_record(start, row)

    def _csv_record(self, line: int, row: list[str]) -> Item | BadLine:
        if len(row) != len(self._header):
            message = f"has {len(row)} cells, the header has {len(self._header)}"
            return BadLine(line, None, InvalidRequestError(message))
        cells = {
            name: cell
            for name, cell in zip(self._header, row, strict=True)
            if name not in self.ignore
        }
        connector = cells.pop("connector").strip()
        if not _is_utf8(row):
            return BadLine(line, None, InvalidRequestError("the line is not valid UTF-8"))
        try:
            fields, problems = text_fields(cells)
            return _item(line, connector or None, fields, problems, self.allow_unknown)
        except InvalidRequestError as error:
            return BadLine(line, connector or None, error)

    def _jsonl_records(self) -> Iterator[Item | BadLine]:
        for line, raw in enumerate(self._file, start=1):
            if not raw.strip():
                continue
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                yield BadLine(line, None, InvalidRequestError(f"not valid JSON ({exc})"))
                continue
            if not isinstance(data, dict):
                message = "must be a JSON object with a connector and reauthorise fields"
                yield BadLine(line, None, InvalidRequestError(message))
                continue
            if self.ignore and self.path == "-":
                self._keys_seen.update((key, None) for key in data if key not in self._keys_seen)
            connector = data.pop("connector", None)
            for name in self.ignore:
                data.pop(name, None)
            try:
                yield _item(line, connector, data, {}, self.allow_unknown)
            except InvalidRequestError as error:
                yield BadLine(line, connector, error)
        if self.path == "-" and self.ignore:
            # stdin cannot be read twice: checked at its end (a file is checked before).
            self._check_ignored(list(self._keys_seen), "key")

    def close(self) -> None:
        """Close the input (stdin is left open)."""
        if self._file not in (sys.stdin, sys.stdin.buffer):
            self._file.close()


def _item(
    line: int,
    connector: Any,
    fields: dict[str, Any],
    problems: dict[str, str],
    allow_unknown: bool,
) -> Item:
    if connector is None or connector == "":
        raise InvalidRequestError("missing connector", field="connector")
    connector_key(connector)  # the library's check: a str or an int, not empty, not too long
    request = build_request(ReauthoriseRequest, fields, problems, allow_unknown=allow_unknown)
    return Item(line, connector, request)


def _is_utf8(cells: list[str]) -> bool:
    try:
        "".join(cells).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
